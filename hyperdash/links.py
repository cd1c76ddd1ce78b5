"""Addresses of the dashboard's pages, as the SDK and the command line print or open them."""

from __future__ import annotations

from urllib.parse import quote

__all__ = ["SHORT_ID_CHARS", "short_id", "run_page_url", "follow_message"]

#: How many characters of a run's uuid name it for a person (``hyperdash runs`` shows as many;
#: the server takes such a start of a uuid for the whole one when no other run starts so).
SHORT_ID_CHARS = 8


def short_id(run_uuid: str) -> str:
    """The first characters of a run's uuid, as ``hyperdash runs`` shows them."""
    return run_uuid[:SHORT_ID_CHARS]


def run_page_url(server_url: str, run_ref: str) -> str:
    """The dashboard page of a run: ``http://127.0.0.1:4680/runs/3f2a9c1e``. ``run_ref`` is
    its uuid or the start of it."""
    return f"{server_url.rstrip('/')}/runs/{quote(run_ref, safe='')}"


def follow_message(server_url: str, run_uuid: str) -> str:
    """What a run says when it starts: where to watch it."""
    return f"follow this run at {run_page_url(server_url, short_id(run_uuid))}"

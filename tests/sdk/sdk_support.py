"""Helpers shared by the SDK's tests."""

from __future__ import annotations


def texts(lines: list[dict], stream: str | None = None) -> list[str]:
    """The text of each log line (of ``stream`` only, when given)."""
    return [line["text"] for line in lines if stream is None or line["stream"] == stream]

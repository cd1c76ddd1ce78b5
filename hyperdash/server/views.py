"""How stored rows look in the API: runs, log lines, metric points.

Times are ISO-8601 UTC strings ending in ``Z`` (``null`` when unknown).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Protocol

import orjson
from starlette.responses import JSONResponse

__all__ = ["iso", "nonfinite", "point_json", "run_json", "trouble_json", "line_json", "Fields", "JSONReply"]


class Fields(Protocol):
    """A stored row's fields by column name: a SQLAlchemy ``RowMapping`` or a plain dict."""

    def __getitem__(self, name: str, /) -> Any: ...


class JSONReply(JSONResponse):
    """A JSON reply encoded by orjson (fast, and strict about what JSON can hold)."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def iso(ms: int | None) -> str | None:
    """Milliseconds since the epoch as ``2024-05-01T12:00:00.123Z``."""
    if ms is None:
        return None
    stamp = datetime.fromtimestamp(ms / 1000, timezone.utc)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


def nonfinite(text: str) -> dict:
    """A NaN or infinite value (``text``: ``NaN``, ``Infinity`` or ``-Infinity``) as the API
    shows it, JSON having no such numbers: ``value`` null and ``value_text`` (as rule firings do)."""
    return {"value": None, "value_text": text}


def point_json(name: str, value: float | str, step: int | None, ts: int, internal: object) -> dict:
    """A metric point as a run's stream sends it; ``value`` a number, or the text of a NaN or
    infinite one (see :func:`nonfinite`)."""
    shown = nonfinite(value) if isinstance(value, str) else {"value": value}
    return {"name": name, **shown, "step": step, "timestamp": iso(ts), "internal": bool(internal)}


def run_json(run: Fields) -> dict:
    """A ``runs`` row as the API shows it."""
    return {
        "uuid": run["uuid"],
        "name": run["name"],
        "status": run["status"],
        "started_at": iso(run["started_at"]),
        "ended_at": iso(run["ended_at"]),
        "last_seen_at": iso(run["last_seen_at"]),
        "exit_code": run["exit_code"],
        "signal": run["signal"],
        "host": run["host"],
        "pid": run["pid"],
        "api": run["api"],
        "last_seq": run["max_seq"],
        # a condition of a running run (server/stalls.py): when its job last made progress
        "stalled_since": iso(run["stalled_since"]) if run["status"] == "running" else None,
        "archived": run["archived_at"] is not None,
        **trouble_json(run),
    }


def trouble_json(run: Fields) -> dict:
    """A run's ``progress``, ``failure`` and ``stop`` as the API shows them (each null when
    there is none): see server/progress.py, server/summary.py and server/stop.py."""
    progress = run["progress"]
    failure = run["failure"]
    stop_at = run["stop_requested_at"]
    return {
        "progress": orjson.loads(progress) if progress else None,
        "failure": None if failure is None else {
            "summary": failure, "first_seq": run["failure_first_seq"], "last_seq": run["failure_last_seq"]},
        "stop": None if stop_at is None else {
            "requested_at": iso(stop_at), "by": run["stop_by"], "via": run["stop_via"]},
    }


def line_json(row: Fields) -> dict:
    """A ``logs`` row as the API shows it."""
    return {
        "seq": row["seq"],
        "stream": row["stream"],
        "text": row["text"],
        "timestamp": iso(row["ts"]),
        "partial": bool(row["partial"]),
        "progress": bool(row["progress"]),
    }

"""Read-only queries, each scoped to one account."""

from __future__ import annotations

from collections.abc import Iterator

import orjson
from sqlalchemy import and_, func, or_, select
from sqlalchemy.engine import Connection

from .. import events as ev
from .deletion import not_deleted
from .dialect import holds
from .errors import BadRequest, NotFound
from .store import logs, metrics, odd_metrics, run_events, runs
from .views import iso, line_json, nonfinite, point_json, run_json

__all__ = ["find_run", "list_runs", "run_detail", "log_lines", "log_text", "metric_series",
           "events_after", "MAX_PAGE"]

MAX_PAGE = 10_000
_LINE_COLUMNS = (logs.c.seq, logs.c.stream, logs.c.text, logs.c.ts, logs.c.partial, logs.c.progress)


def find_run(conn: Connection, user_id: int, run_uuid: str):
    """The run row, or NotFound (also for another account's run)."""
    # Run uuids are stored in lower case; a UUID may be written in either.
    row = conn.execute(select(runs).where(runs.c.user_id == user_id, runs.c.uuid == run_uuid.lower(),
                                          not_deleted())).first()
    if row is None:
        raise NotFound(f"no run {run_uuid}")
    return row


def _cursor(value: str) -> tuple[int, int]:
    try:
        started, run_id = (int(part) for part in value.split(".", 1))
    except ValueError:
        started = run_id = -1
    if not (0 <= started < 2**63 and 0 <= run_id < 2**63):
        raise BadRequest(f"not a cursor from this server: {value[:100]!r}", code="invalid_cursor")
    return started, run_id


def list_runs(conn: Connection, user_id: int, *, name: str | None = None, search: str | None = None,
              status: str | None = None, limit: int = 50, cursor: str | None = None,
              archived: str = "no") -> dict:
    """Newest first; ``next`` is the cursor of the following page, or None. ``name`` matches
    the whole name; ``search``, any part of it, in any case. ``status`` is a run status, or
    ``attention``: the runs that ended badly (failure, killed, lost) and the running ones that
    are stalled. ``archived``: ``no`` (the default) leaves archived runs out, ``only`` lists
    them alone, ``all`` lists both."""
    if status is not None and status not in ev.STATUS_FILTERS:
        raise BadRequest(f"unknown status {status!r}; one of {', '.join(ev.STATUS_FILTERS)}",
                         code="invalid_status")
    query = select(runs).where(runs.c.user_id == user_id, not_deleted())
    if archived != "all":
        query = query.where(runs.c.archived_at.is_(None) if archived == "no" else runs.c.archived_at.is_not(None))
    if name is not None:
        query = query.where(runs.c.name == name)
    if search:
        query = query.where(holds(conn, runs.c.name, search))
    if status == ev.ATTENTION:
        query = query.where(or_(runs.c.status.in_(ev.ENDED_BADLY),
                                and_(runs.c.status == ev.RUNNING, runs.c.stalled_since.is_not(None))))
    elif status is not None:
        query = query.where(runs.c.status == status)
    if cursor:
        started, run_id = _cursor(cursor)
        query = query.where(or_(runs.c.started_at < started,
                                and_(runs.c.started_at == started, runs.c.id < run_id)))
    rows = conn.execute(query.order_by(runs.c.started_at.desc(), runs.c.id.desc()).limit(limit + 1)).all()
    more = len(rows) > limit
    rows = rows[:limit]
    nxt = f"{rows[-1].started_at}.{rows[-1].id}" if more else None
    return {"runs": [run_json(r._mapping) for r in rows], "next": nxt}


def run_detail(conn: Connection, user_id: int, run_uuid: str) -> dict:
    """The run with its params (merged, latest wins) and each metric's latest point (``value``
    null and ``value_text`` saying which, when it is NaN or infinite)."""
    row = find_run(conn, user_id, run_uuid)
    params: dict = {}
    for payload in conn.execute(
        select(run_events.c.payload)
        .where(run_events.c.run_id == row.id, run_events.c.type == ev.PARAM).order_by(run_events.c.seq)
    ).scalars():
        params.update(orjson.loads(payload)["params"])
    latest = (
        select(metrics.c.name, func.max(metrics.c.seq).label("seq"))
        .where(metrics.c.run_id == row.id).group_by(metrics.c.name).subquery()
    )
    points = conn.execute(
        select(metrics.c.name, metrics.c.seq, metrics.c.value, metrics.c.step, metrics.c.ts, metrics.c.is_internal)
        .join(latest, and_(metrics.c.name == latest.c.name, metrics.c.seq == latest.c.seq))
        .where(metrics.c.run_id == row.id).order_by(metrics.c.name)
    ).all()
    result = run_json(row._mapping)
    result["params"] = params
    result["metrics"] = {p.name: {"value": p.value, "step": p.step, "timestamp": iso(p.ts),
                                  "internal": bool(p.is_internal)} for p in points}
    # A metric whose latest point is NaN or infinite (a loss that diverged, or was NaN from its
    # first step): that point, JSON having no such number.
    last_seq = {p.name: p.seq for p in points}
    for odd in conn.execute(select(odd_metrics).where(odd_metrics.c.run_id == row.id).order_by(odd_metrics.c.name)):
        if odd.last_seq > last_seq.get(odd.name, 0):
            result["metrics"][odd.name] = {**_last_odd(odd), "internal": bool(odd.is_internal)}
    return result


def log_lines(conn: Connection, run_id: int, *, after: int | None = None, before: int | None = None,
              tail: int | None = None, limit: int = 1000, q: str | None = None) -> list[dict]:
    """Lines in ascending seq order, of those with a seq above ``after`` and below ``before``
    (either bound, both or none): the last ``tail`` of them; else the last ``limit`` when
    ``before`` is given (a page back from it); else the first ``limit``. ``q`` keeps lines
    holding that text (case-insensitive)."""
    where = [logs.c.run_id == run_id, logs.c.superseded == 0]
    if after is not None:
        where.append(logs.c.seq > after)
    if before is not None:
        where.append(logs.c.seq < before)
    if q:
        where.append(holds(conn, logs.c.text, q))
    query = select(*_LINE_COLUMNS).where(*where)
    if tail is not None or before is not None:
        query = query.order_by(logs.c.seq.desc()).limit(tail if tail is not None else limit)
        return [line_json(r._mapping) for r in reversed(conn.execute(query).all())]
    return [line_json(r._mapping) for r in conn.execute(query.order_by(logs.c.seq).limit(limit))]


def log_text(store, run_id: int, page: int = 5000) -> Iterator[bytes]:
    """The whole log as text, a page of lines at a time (a piece marked partial continues)."""
    after = 0
    while True:
        with store.read() as conn:
            rows = conn.execute(
                select(logs.c.seq, logs.c.text, logs.c.partial)
                .where(logs.c.run_id == run_id, logs.c.superseded == 0, logs.c.seq > after)
                .order_by(logs.c.seq).limit(page)
            ).all()
        if not rows:
            return
        yield "".join(r.text if r.partial else r.text + "\n" for r in rows).encode("utf-8", "replace")
        after = rows[-1].seq


def metric_series(conn: Connection, run_id: int, name: str) -> dict:
    """One metric's points in seq order; ``internal`` when the SDK recorded it for itself
    (system metrics, progress), not the job. Its NaN and infinite points are not among them
    (charts draw numbers); ``nonfinite`` counts them and gives the last, or is null."""
    rows = conn.execute(
        select(metrics.c.step, metrics.c.value, metrics.c.ts, metrics.c.is_internal)
        .where(metrics.c.run_id == run_id, metrics.c.name == name).order_by(metrics.c.seq)
    ).all()
    odd = conn.execute(select(odd_metrics).where(odd_metrics.c.run_id == run_id, odd_metrics.c.name == name)).first()
    return {"name": name, "internal": any(r.is_internal for r in rows) or bool(odd and odd.is_internal),
            "points": [{"step": r.step, "value": r.value, "timestamp": iso(r.ts)} for r in rows],
            "nonfinite": {"count": odd.count, "last": _last_odd(odd)} if odd else None}


def _last_odd(odd) -> dict:
    """The last NaN or infinite point of an ``odd_metrics`` row, as the API shows a point."""
    return {"step": odd.last_step, **nonfinite(odd.last_value), "timestamp": iso(odd.last_ts)}


def events_after(conn: Connection, run_id: int, after: int, limit: int = 1000) -> list[tuple]:
    """Stored events with seq > ``after`` as ``(seq, event name, data)``, in seq order: lines,
    metric points (a NaN or infinite one as the API shows it) and params; at most ``limit``
    from each table, so a caller pages on from the last seq it got."""
    found: list[tuple] = []
    ends = []  # where a table's page ended, when it was full
    lines = conn.execute(
        select(*_LINE_COLUMNS)
        .where(logs.c.run_id == run_id, logs.c.seq > after, logs.c.superseded == 0)
        .order_by(logs.c.seq).limit(limit)
    ).all()
    found += [(line.seq, "log", line_json(line._mapping)) for line in lines]
    points = conn.execute(
        select(metrics.c.seq, metrics.c.name, metrics.c.value, metrics.c.step, metrics.c.ts, metrics.c.is_internal)
        .where(metrics.c.run_id == run_id, metrics.c.seq > after).order_by(metrics.c.seq).limit(limit)
    ).all()
    found += [(point.seq, "metric", point_json(point.name, point.value, point.step, point.ts, point.is_internal))
              for point in points]
    marks = conn.execute(
        select(run_events.c.seq, run_events.c.type, run_events.c.ts, run_events.c.payload)
        .where(run_events.c.run_id == run_id, run_events.c.seq > after, run_events.c.type.in_((ev.PARAM, ev.METRIC)))
        .order_by(run_events.c.seq).limit(limit)
    ).all()
    for mark in marks:  # (as live sends them)
        payload = orjson.loads(mark.payload)
        if mark.type == ev.PARAM:
            found.append((mark.seq, "param", {"params": payload["params"]}))
        else:
            found.append((mark.seq, "metric", point_json(payload["name"], payload["value"], payload["step"], mark.ts,
                                                         payload["is_internal"])))
    for page in (lines, points, marks):
        if len(page) >= limit:
            ends.append(page[-1].seq)
    found.sort(key=lambda item: item[0])
    # Stop where the shortest page ended, so nothing between is skipped.
    if ends:
        found = [item for item in found if item[0] <= min(ends)]
    return found

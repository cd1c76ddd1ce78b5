"""Stopping a run from afar: the request, kept on the run, and how the job hears of it.

:func:`request_stop` (a writer job) records who asked (the account's email) and from where
(``dashboard``, ``cli`` or ``api``) on a running (or lost) run of the caller's, and announces
:class:`~hyperdash.server.facts.StopRequested`. A run that has ended is refused (409
``run_finished``); asking again keeps the first request.

The job hears of it in the reply to its next batch or heartbeat: ingest adds
``"stop": {"<run uuid>": {"requested_at", "by", "via"}}`` for each run of the batch with a stop
pending (:func:`pending`), a field the original clients ignore. The writer's row of the run says
so at once when this process took the request; a request that another server process took is
read from the store at most every :data:`RECHECK_MS` per run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import Connection

from .. import events as ev
from .errors import Conflict
from .facts import Fact, RunState, StopRequested
from .queries import find_run
from .store import runs
from .views import iso

__all__ = ["request_stop", "pending", "Requested", "RECHECK_MS", "SOURCES", "RunFinished"]

#: How often, at most, ingest reads a run's stop request from the store (per run).
RECHECK_MS = 2000
#: Where a stop may come from.
SOURCES = ("dashboard", "cli", "api")


class RunFinished(Conflict):
    """409: the run has ended already; there is nothing to stop."""

    code = "run_finished"


@dataclass
class Requested:
    """What :func:`request_stop` did: the run as it stands, and the fact to announce."""

    run: RunState
    facts: list[Fact]


def request_stop(conn: Connection, cached_runs: dict[tuple[int, str], dict[str, Any]], user_id: int,
                 run_uuid: str, by: str, via: str, now: int) -> Requested:
    """Ask the caller's run ``run_uuid`` to stop (a writer job; ``cached_runs`` is the writer's
    :attr:`RunCache.runs <hyperdash.server.ingest.RunCache.runs>`, kept true). Raises NotFound
    for a run the caller does not have, :class:`RunFinished` for one that has ended."""
    if via not in SOURCES:
        raise ValueError(f"via must be one of {SOURCES}")
    row = find_run(conn, user_id, run_uuid)
    if row.status in ev.FINAL_STATUSES or row.ended_at is not None:
        raise RunFinished(f"the run {row.uuid} has already ended ({row.status}); there is nothing to stop")
    run = row._asdict()
    new = row.stop_requested_at is None
    if new:
        changes = {"stop_requested_at": now, "stop_by": by[:320], "stop_via": via}
        conn.execute(update(runs).where(runs.c.id == row.id).values(**changes))
        run.update(changes)
        cached = cached_runs.get((user_id, row.uuid))
        if cached is not None:
            cached.update(changes)
    state = RunState(**{name: run[name] for name in RunState.__struct_fields__})
    return Requested(state, [StopRequested(user_id, row.id, row.uuid, state)] if new else [])


def pending(conn: Connection, run: dict[str, Any], now: int, *, fresh: bool = False) -> dict[str, Any] | None:
    """The stop asked of ``run`` (the writer's row of it) while it has not ended, as the ingest
    reply tells it, or None. ``fresh``: the row was read in this transaction (several writing
    processes), so it holds any stop asked already."""
    if run.get("ended_at") is not None:
        return None
    if run.get("stop_requested_at") is None:
        if fresh or now - run.get("_stop_checked_at", 0) < RECHECK_MS:
            return None
        run["_stop_checked_at"] = now
        row = conn.execute(select(runs.c.stop_requested_at, runs.c.stop_by, runs.c.stop_via)
                           .where(runs.c.id == run["id"])).first()
        if row is None or row.stop_requested_at is None:
            return None
        run.update(row._asdict())
    return {"requested_at": iso(run["stop_requested_at"]), "by": run.get("stop_by"), "via": run.get("stop_via")}

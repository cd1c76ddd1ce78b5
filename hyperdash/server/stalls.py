"""Stalls: a run that is alive but stuck.

A running run is *stalled* when its job made no progress for its stall window: progress is
what the job records of its own, stored output, a param or metric point that is not internal
(``is_internal``: the SDK's bookkeeping, such as system metrics, ``exp.iter``'s loop sizes or
the TensorBoard directory), its start and its end. Heartbeats
only prove the process alive (they keep a run from going ``lost``), so a training loop frozen on
a dead data loader, whose shipper thread still beats, is told apart from a run that went silent.
A run must be alive to be stalled: it must have been heard from (a heartbeat is enough) once its
window had passed without progress. A job killed outright is heard from no more; it is on its
way to ``lost``, whatever its window, and is not told stalled first.
Stalled is a condition beside the run's status, not a status: it clears by itself when the job
makes progress again (ingest stores the batch and announces ``RunResumed``).

The window, in this order: the run's own (``stall_after`` in its ``run_started`` payload, from
``Experiment(..., stall_after=...)`` or ``hyperdash run --stall-after``), else the one set for
its name (the ``stall_names`` table, from the dashboard or the API), else the server's default
(``hyperdash server --stall-after``, ``$HYPERDASH_STALL_AFTER``, 30 minutes). 0 turns detection
off, for the run, the name or the server.

:func:`mark_stalled` is the sweep, a plain function of a connection and the time, run on the
writer like the sweep that marks runs lost.
"""

from __future__ import annotations

import os
from typing import Any

from sqlalchemy import delete, func, select, true, update
from sqlalchemy.engine import Connection

from .. import events as ev
from ..settings import parse_duration
from .deletion import not_deleted
from .dialect import skip_locked
from .facts import Fact, RunStalled, RunState
from .ingest import Stored
from .store import runs, stall_names

__all__ = ["DEFAULT_STALL_AFTER_S", "stall_after_from_env", "mark_stalled", "stall_window", "name_windows",
           "set_name_window", "run_state"]

DEFAULT_STALL_AFTER_S = 1800.0
_STATE_FIELDS = RunState.__struct_fields__


def stall_after_from_env() -> float:
    """``$HYPERDASH_STALL_AFTER`` (a duration such as ``600``, ``10m``, ``1h``, or ``off``), else the
    default, in seconds; ValueError for anything else."""
    value = os.environ.get("HYPERDASH_STALL_AFTER", "").strip()
    if not value:
        return DEFAULT_STALL_AFTER_S
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise ValueError(f"HYPERDASH_STALL_AFTER: {exc}") from None


def run_state(run: Any) -> RunState:
    """A run (a ``runs`` row's mapping, or the writer's dict of one) as facts carry it."""
    return RunState(**{name: run[name] for name in _STATE_FIELDS})


def _window(default_ms: int):
    # (the name's window by a subquery, not a join: the runs selected are locked, alone)
    named = select(stall_names.c.stall_after_ms).where(
        stall_names.c.user_id == runs.c.user_id, stall_names.c.name == runs.c.name).scalar_subquery()
    return func.coalesce(runs.c.stall_after_ms, named, default_ms)


def mark_stalled(conn: Connection, now_ms: int, default_ms: int, cache: Any = None,
                 heard_past_window: bool = True) -> Stored:
    """Mark the running runs that made no progress for their window, and were heard from after
    it, as stalled (as of ``now_ms``); a writer job that announces a ``RunStalled`` for each.
    ``cache``: the writer's run cache (an object with a ``runs`` dict of the rows it holds, by
    (user id, uuid)), kept up to date. ``heard_past_window=False`` drops the sign of life asked
    for, for a sweep whose clock is moved ahead, past any heartbeat."""
    window = _window(default_ms)
    last = func.coalesce(runs.c.last_progress_at, runs.c.started_at)
    alive = runs.c.last_seen_at >= last + window if heard_past_window else true()
    # (a run another process is storing a batch of right now is locked, and passed over: it is
    # making progress; the rows taken stay locked, so no batch moves them on meanwhile)
    rows = conn.execute(skip_locked(conn, select(runs).where(
        runs.c.status == ev.RUNNING, runs.c.stalled_since.is_(None), window > 0, last + window < now_ms,
        alive, not_deleted(),
    ).order_by(runs.c.id))).all()
    facts: list[Fact] = []
    for row in rows:
        since = row.last_progress_at if row.last_progress_at is not None else row.started_at
        conn.execute(update(runs).where(runs.c.id == row.id, runs.c.stalled_since.is_(None))
                     .values(stalled_since=since))
        run = row._asdict()
        run["stalled_since"] = since
        held = cache.runs.get((row.user_id, row.uuid)) if cache is not None else None
        if held is not None:
            held["stalled_since"] = since
        facts.append(RunStalled(row.user_id, row.id, row.uuid, since, run_state(run)))
    return Stored(0, 0, facts)


def stall_window(conn: Connection, run: Any, default_ms: int) -> tuple[int, str]:
    """A run's stall window in milliseconds (0: off) and where it comes from: ``run``, ``name``
    or ``server``."""
    if run.stall_after_ms is not None:
        return run.stall_after_ms, "run"
    if run.name is not None:
        named = conn.execute(select(stall_names.c.stall_after_ms).where(
            stall_names.c.user_id == run.user_id, stall_names.c.name == run.name)).scalar()
        if named is not None:
            return named, "name"
    return default_ms, "server"


def name_windows(conn: Connection, user_id: int) -> dict[str, int]:
    """The stall windows an account set for its run names, in milliseconds, by name."""
    return {row.name: row.stall_after_ms for row in conn.execute(
        select(stall_names.c.name, stall_names.c.stall_after_ms)
        .where(stall_names.c.user_id == user_id).order_by(stall_names.c.name))}


def set_name_window(conn: Connection, user_id: int, name: str, window_ms: int | None) -> None:
    """Set (or, with None, forget) the stall window of every run of ``name`` (a writer job).
    A run already stalled stays so until its job makes progress."""
    conn.execute(delete(stall_names).where(stall_names.c.user_id == user_id, stall_names.c.name == name))
    if window_ms is not None:
        conn.execute(stall_names.insert().values(user_id=user_id, name=name, stall_after_ms=window_ms))

"""Deleting runs: a tombstone at once, the run's rows in small steps.

A deleted run's uuid becomes a tombstone (``deleted_runs``): from that commit on, a batch for it
is answered 410 ``run_deleted`` (see :func:`is_deleted`), never taken as the start of a new run
holding half the old one's lines. The rows that refer to the run (every table of
:func:`dependent_tables`) are then removed a few thousand at a time, each step a short writer
job, so that ingest goes on between the steps; the ``runs`` row goes last, and the tombstone is
marked purged. Whatever a restart interrupted is finished by :func:`purge_step`, which the app
runs among the writer's periodic jobs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy import Column, Table, delete, exists, select, tuple_, update
from sqlalchemy.engine import Connection, Row

from .. import events as ev
from .dialect import insert_many, skip_locked
from .errors import ApiError, Conflict
from .facts import Fact, RunDeleted
from .store import (
    deleted_runs,
    log_envelopes,
    log_tails,
    logs,
    metrics,
    notify_outbox,
    odd_metrics,
    rule_firings,
    rule_states,
    rules,
    run_events,
    run_shares,
    runs,
    streams,
)

if TYPE_CHECKING:
    from .ingest import RunCache

__all__ = ["RunGone", "RunStillRunning", "Deleted", "dependent_tables", "is_deleted", "mark_deleted", "forget",
           "not_deleted", "purge_step", "PURGE_ROWS", "GONE_MESSAGE"]

#: The most rows of one table a purge step removes (a short transaction, whatever the run's size).
PURGE_ROWS = 5000
GONE_MESSAGE = "run {uuid} was deleted on the server; its events are no longer taken"


class RunGone(ApiError):
    """410: the batch is for a run that was deleted. A client drops the run's events for good."""

    status = 410
    code = "run_deleted"


class RunStillRunning(Conflict):
    """409: the run is still running (being sent to); ``force`` deletes it all the same."""

    code = "run_running"


@dataclass
class Deleted:
    """A writer job's result: the runs tombstoned (uuids), and the facts announced after the commit."""

    uuids: list[str] = field(default_factory=list)
    run_ids: list[int] = field(default_factory=list)
    facts: list[Fact] = field(default_factory=list)


def dependent_tables() -> list[tuple[Table, Column]]:
    """Every table holding rows of one run, with the column that names the run (``runs.id``).

    Deleting a run removes its rows from each of these: a new table that refers to runs is one
    line here."""
    return [
        (logs, logs.c.run_id),
        (metrics, metrics.c.run_id),
        (run_events, run_events.c.run_id),
        (odd_metrics, odd_metrics.c.run_id),
        (streams, streams.c.run_id),
        (log_tails, log_tails.c.run_id),
        (log_envelopes, log_envelopes.c.run_id),
        (notify_outbox, notify_outbox.c.run_id),
        (run_shares, run_shares.c.run_id),
        # (a run's own rules; a name's rules have no run_id and stay)
        (rules, rules.c.run_id),
        (rule_states, rule_states.c.run_id),
        (rule_firings, rule_firings.c.run_id),
    ]


def not_deleted():
    """A condition on ``runs``: the run is not deleted (its rows may still be going). A lookup of
    ``deleted_runs`` by its primary key per run, so it costs an index probe, never a scan."""
    return ~exists().where(deleted_runs.c.user_id == runs.c.user_id, deleted_runs.c.uuid == runs.c.uuid)


def is_deleted(conn: Connection, user_id: int, run_uuid: str) -> bool:
    """Whether the account deleted a run with this uuid."""
    return conn.execute(select(deleted_runs.c.run_id).where(
        deleted_runs.c.user_id == user_id, deleted_runs.c.uuid == run_uuid)).first() is not None


def deleted_among(conn: Connection, keys: Sequence[tuple[int, str]]) -> set[tuple[int, str]]:
    """Which of the ``(user_id, uuid)`` pairs (at most a thousand) the accounts deleted."""
    if not keys:
        return set()
    rows = conn.execute(select(deleted_runs.c.user_id, deleted_runs.c.uuid).where(
        tuple_(deleted_runs.c.user_id, deleted_runs.c.uuid).in_(list(keys))))
    return {(row.user_id, row.uuid) for row in rows}


def mark_deleted(conn: Connection, rows: Sequence[Row], reason: str, cache: RunCache | None,
                 now: int | None = None) -> Deleted:
    """Tombstone the runs of ``rows`` (``runs`` rows) for good (a writer job): from this commit on
    their uuids are refused. Announces a ``RunDeleted`` for each; the rows go with :func:`purge_step`."""
    now = ev.now_ms() if now is None else now
    result = Deleted()
    # (once only, even when two server processes tombstone the same run at once)
    insert_many(conn, deleted_runs, ("user_id", "uuid", "run_id", "reason", "deleted_at"),
                [(row.user_id, row.uuid, row.id, reason, now) for row in rows])
    for row in rows:
        # Seen now: the sweep for silent runs leaves it alone while it goes.
        conn.execute(update(runs).where(runs.c.id == row.id).values(last_seen_at=now))
        if cache is not None:
            forget(cache, row.user_id, row.uuid, row.id)
        result.uuids.append(row.uuid)
        result.run_ids.append(row.id)
        result.facts.append(RunDeleted(row.user_id, row.id, row.uuid))
    return result


def forget(cache: RunCache, user_id: int, run_uuid: str, run_id: int) -> None:
    """Drop what the writer's cache holds of a run: its row, streams, hints and rule states (on
    SQLite a later run may be given the same id)."""
    cache.runs.pop((user_id, run_uuid), None)
    for key in [key for key in cache.streams if key[0] == run_id]:
        del cache.streams[key]
    cache.hints.pop(run_id, None)
    cache.rules.forget_run(user_id, run_id)


def purge_step(conn: Connection, run_ids: Iterable[int] | None = None, limit: int = PURGE_ROWS) -> bool:
    """Remove up to ``limit`` rows per dependent table of one deleted run not yet purged (one of
    ``run_ids`` if given), or, when it has none left, the run itself (a writer job). Returns
    whether a step was taken (False: nothing is left to purge)."""
    query = select(deleted_runs.c.user_id, deleted_runs.c.uuid, deleted_runs.c.run_id).where(
        deleted_runs.c.purged_at.is_(None))
    if run_ids is not None:
        query = query.where(deleted_runs.c.run_id.in_(list(run_ids)))
    # Locked for this step: a second process purging at the same moment takes another run (two
    # deleting the same rows at once would see none removed and call the purge done too early).
    tomb = conn.execute(skip_locked(conn, query.order_by(deleted_runs.c.deleted_at).limit(1))).first()
    if tomb is None:
        return False
    removed = 0
    for table, column in dependent_tables():
        removed += _delete_some(conn, table, column, tomb.run_id, limit)
    if removed == 0:
        conn.execute(delete(runs).where(runs.c.id == tomb.run_id))
        conn.execute(update(deleted_runs).where(deleted_runs.c.user_id == tomb.user_id,
                                                deleted_runs.c.uuid == tomb.uuid).values(purged_at=ev.now_ms()))
    return True


def _delete_some(conn: Connection, table: Table, column: Column, run_id: int, limit: int) -> int:
    """Delete up to ``limit`` of the run's rows of ``table`` (by primary key: both dialects take
    ``DELETE ... WHERE key IN (SELECT key ... LIMIT n)``); how many went."""
    key = list(table.primary_key.columns)
    some = select(*key).where(column == run_id).limit(limit)
    where = key[0].in_(some) if len(key) == 1 else tuple_(*key).in_(some)
    return conn.execute(delete(table).where(where)).rowcount or 0

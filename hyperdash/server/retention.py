"""Keeping the store tidy: finished runs older than a number of days go, in the background.

The server may keep runs for ``--keep-days`` days (``keep_days`` of :func:`create_app
<hyperdash.server.app.create_app>`), and each account may choose its own number of days (the
``account_settings`` table): a run goes when it is older than either. "Older" counts from the
run's end (for a lost run, from the last it was heard of). Running runs are never removed.

:func:`tidy_job` is one of the writer's periodic jobs: each time it either takes one step of
removing a deleted run's rows (:func:`~hyperdash.server.deletion.purge_step`, a few thousand rows
at most) or tombstones the next few expired runs, so ingest waits on no long transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from sqlalchemy import BigInteger, and_, cast, func, or_, select
from sqlalchemy.engine import Connection

from .. import events as ev
from .deletion import Deleted, mark_deleted, not_deleted, purge_step
from .dialect import upsert
from .errors import BadRequest
from .store import account_settings, runs

if TYPE_CHECKING:
    from .ingest import RunCache

__all__ = ["DAY_MS", "MAX_KEEP_DAYS", "TIDY_INTERVAL_S", "expired_runs", "tidy_job", "checked_keep_days",
           "account_keep_days", "set_account_keep_days"]

DAY_MS = 86_400_000
#: The most days a setting may name (about a century).
MAX_KEEP_DAYS = 36_500
#: How often the writer runs :func:`tidy_job`.
TIDY_INTERVAL_S = 0.5
#: The most expired runs tombstoned in one job.
EXPIRE_AT_ONCE = 20


def checked_keep_days(days, what: str = "keep_days") -> int | None:
    """``days`` as a whole number of days from 1 to :data:`MAX_KEEP_DAYS`, or None (keep for good);
    anything else is a BadRequest."""
    if days is None:
        return None
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_KEEP_DAYS:
        raise BadRequest(f"{what} must be a whole number of days from 1 to {MAX_KEEP_DAYS}, or null",
                         code="invalid_keep_days")
    return days


def expired_runs(conn: Connection, server_days: int | None, now: int, limit: int = EXPIRE_AT_ONCE) -> list:
    """Finished runs older than the server's days or their account's, not deleted yet (oldest first)."""
    ended = func.coalesce(runs.c.ended_at, runs.c.last_seen_at)
    old = [and_(account_settings.c.keep_days.is_not(None),
                ended < now - cast(account_settings.c.keep_days, BigInteger) * DAY_MS)]
    if server_days is not None:
        old.append(ended < now - server_days * DAY_MS)
    return list(conn.execute(
        select(runs.c.id, runs.c.user_id, runs.c.uuid)
        .select_from(runs.outerjoin(account_settings, account_settings.c.user_id == runs.c.user_id))
        .where(runs.c.status != ev.RUNNING, or_(*old), not_deleted())
        .order_by(ended).limit(limit)
    ).all())


def tidy_job(server_days: int | None, cache: RunCache | None) -> Callable[[Connection], Deleted | None]:
    """The writer's periodic job: one purge step, else the next expired runs tombstoned."""

    def job(conn: Connection) -> Deleted | None:
        if purge_step(conn):
            return None
        rows = expired_runs(conn, server_days, ev.now_ms())
        return mark_deleted(conn, rows, "retention", cache) if rows else None

    return job


def account_keep_days(conn: Connection, user_id: int) -> int | None:
    """The account's own number of days, or None (the server's rule alone)."""
    return conn.execute(select(account_settings.c.keep_days).where(account_settings.c.user_id == user_id)).scalar()


def set_account_keep_days(conn: Connection, user_id: int, days: int | None) -> None:
    """Set the account's number of days (None: none of its own); a writer job."""
    # (one statement: two processes setting it at once for an account without a row both insert)
    conn.execute(upsert(conn, account_settings, ("user_id",), {"user_id": user_id, "keep_days": days}))

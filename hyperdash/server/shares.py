"""Read-only links to one run, for a colleague without an account.

A share is a random token (:func:`secrets.token_urlsafe`, 32 bytes) that its owner hands out as a
link; the store keeps only its SHA-256, so the table leaks no working link. The token names one
run and nothing else: the routes of :mod:`hyperdash.server.share_api` answer for that run alone,
and no other route knows such tokens. Revoking a share, or deleting its run, ends it at once.
"""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import select, update
from sqlalchemy.engine import Connection, Row

from .. import events as ev
from .deletion import not_deleted
from .store import run_shares, runs

__all__ = ["TOKEN_BYTES", "hash_token", "new_share", "list_shares", "revoke_share", "shared_run"]

TOKEN_BYTES = 32
# No token is longer (token_urlsafe(32) has 43 characters): a longer one is refused unread.
_MAX_TOKEN_CHARS = 64


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def new_share(conn: Connection, user_id: int, run_id: int, run_uuid: str) -> tuple[int, str, int] | None:
    """A new share of the run (a writer job): ``(id, token, created_at)``; the token is shown
    only now. None when the run is deleted meanwhile (read before this job, it may have gone
    since; on SQLite a later run of the account may even be given its id)."""
    there = conn.execute(select(runs.c.id).where(runs.c.id == run_id, runs.c.user_id == user_id,
                                                 runs.c.uuid == run_uuid, not_deleted())).first()
    if there is None:
        return None
    token = secrets.token_urlsafe(TOKEN_BYTES)
    now = ev.now_ms()
    share_id = conn.execute(run_shares.insert().values(
        user_id=user_id, run_id=run_id, token_hash=hash_token(token), created_at=now, revoked_at=None,
    ).returning(run_shares.c.id)).scalar_one()
    return share_id, token, now


def list_shares(conn: Connection, user_id: int, run_id: int) -> list[Row]:
    """The run's shares not revoked, oldest first."""
    return list(conn.execute(select(run_shares.c.id, run_shares.c.created_at).where(
        run_shares.c.user_id == user_id, run_shares.c.run_id == run_id, run_shares.c.revoked_at.is_(None),
    ).order_by(run_shares.c.id)).all())


def revoke_share(conn: Connection, user_id: int, run_id: int, share_id: int) -> bool:
    """Revoke one of the run's shares (a writer job); False when it has no such live share."""
    return bool(conn.execute(update(run_shares).where(
        run_shares.c.id == share_id, run_shares.c.user_id == user_id, run_shares.c.run_id == run_id,
        run_shares.c.revoked_at.is_(None),
    ).values(revoked_at=ev.now_ms())).rowcount)


def shared_run(conn: Connection, token: str) -> Row | None:
    """The ``runs`` row a live share token names, or None (unknown, revoked, or its run deleted)."""
    if not token or len(token) > _MAX_TOKEN_CHARS:
        return None
    return conn.execute(
        select(runs).join(run_shares, run_shares.c.run_id == runs.c.id)
        .where(run_shares.c.token_hash == hash_token(token), run_shares.c.revoked_at.is_(None),
               run_shares.c.user_id == runs.c.user_id, not_deleted())
    ).first()

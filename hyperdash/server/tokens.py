"""API keys, access tokens, browser sessions and one-time sign-in links, and who they prove.

Keys and tokens are random and kept only as SHA-256 hashes. An API key lives until it is
revoked; ingest asks who a key belongs to on every request, so answers are cached for a few
seconds (a revocation empties the cache at once, in every server process sharing the database:
the revoking transaction signals ``"keys"`` through the store's relay). Access tokens (from signup and login) expire
``ACCESS_TOKEN_DAYS`` after they were made, browser sessions ``SESSION_DAYS`` after, sign-in
links ``LOGIN_TOKEN_SECONDS`` after (or when used, or when a newer link for the same account is
made); ``purge_expired`` deletes them a week later.

The local account (local mode, see ``server/main.py``) has no password: it signs in only
through the links a loopback start prints. A server that is not in local mode (``local_mode``
False) therefore refuses the local account's sign-in links and browser sessions; its API keys,
secrets kept in a private file on the machine, keep working for the jobs that use them.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

from sqlalchemy import delete, select, update

from ..events import now_ms as _now_ms
from .store import ACCESS_TOKEN_LIFETIME_MS, Store, api_keys, tokens, users
from .text import clean
from .views import iso

__all__ = ["Tokens", "User", "SESSION_DAYS", "ACCESS_TOKEN_DAYS", "LOGIN_TOKEN_SECONDS", "KEY_PREFIX"]

SESSION_DAYS = 30
ACCESS_TOKEN_DAYS = ACCESS_TOKEN_LIFETIME_MS // 86_400_000
LOGIN_TOKEN_SECONDS = 15 * 60
KEY_PREFIX = "hd_"
_KEY_CACHE_SECONDS = 30
# The signal (Store.signal) of a revoked key: every process forgets the keys it cached.
KEYS_SIGNAL = "keys"
_PURGE_AFTER_MS = 7 * 86_400_000
_TOKEN_NAMES = {"access": "access token", "session": "dashboard session", "login": "sign-in link"}


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class User:
    """An account, as a credential proves it."""

    id: int
    email: str
    is_local: bool = False


class Tokens:
    """Keys, tokens, sessions and sign-in links on one :class:`~hyperdash.server.store.Store`."""

    def __init__(self, store: Store):
        self.store = store
        # Whether the server runs in local mode; only then may the local account sign in.
        self.local_mode = False
        self._key_touched: dict[int, float] = {}
        # key hash -> (user, key id, monotonic expiry): ingest asks for every request.
        self._key_cache: dict[str, tuple[User, int, float]] = {}
        self._key_generation = 0  # bumped by every revocation, so no lookup caches a stale answer
        store.on_signal(KEYS_SIGNAL, self.forget_keys)

    # --- API keys -----------------------------------------------------------------------------
    def create_api_key(self, user_id: int, name: str) -> dict:
        """A new key for the user: ``{"id", "name", "api_key"}`` (the key is shown only now).
        The name is a label: cleaned (see ``server/text.py``), cut to 200 characters."""
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        name = clean((name or "key").strip()[:200]) or "key"

        def job(conn):
            return conn.execute(api_keys.insert().values(
                user_id=user_id, name=name, prefix=key[:10], key_hash=_digest(key), created_at=_now_ms()
            )).inserted_primary_key[0]

        return {"id": self.store.writer.call(job), "name": name, "api_key": key}

    def list_api_keys(self, user_id: int) -> list[dict]:
        with self.store.read() as conn:
            rows = conn.execute(
                select(api_keys).where(api_keys.c.user_id == user_id).order_by(api_keys.c.id)
            ).all()
        return [{"id": r.id, "name": r.name, "prefix": r.prefix, "created_at": iso(r.created_at),
                 "last_used_at": iso(r.last_used_at), "revoked_at": iso(r.revoked_at)} for r in rows]

    def revoke_api_key(self, user_id: int, key_id: int) -> bool:
        def job(conn):
            count = conn.execute(
                update(api_keys)
                .where(api_keys.c.id == key_id, api_keys.c.user_id == user_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=_now_ms())
            ).rowcount
            if count:
                self.store.signal(conn, KEYS_SIGNAL)  # the other processes forget it too
            return count

        revoked = bool(self.store.writer.call(job))
        self.forget_keys()  # a revoked key stops working at once
        return revoked

    def forget_keys(self) -> None:
        """Empty the cache of keys (a key was revoked here or in another process)."""
        self._key_generation += 1
        self._key_cache.clear()

    def user_for_api_key(self, key: str) -> User | None:
        digest = _digest(key)
        cached = self._key_cache.get(digest)
        if cached is not None and cached[2] > time.monotonic():
            self._touch_key(cached[1])
            return cached[0]
        generation = self._key_generation
        with self.store.read() as conn:
            row = conn.execute(
                select(api_keys.c.id, users.c.id.label("user_id"), users.c.email, users.c.is_local)
                .join(users, users.c.id == api_keys.c.user_id)
                .where(api_keys.c.key_hash == digest, api_keys.c.revoked_at.is_(None))
            ).first()
        if row is None:
            return None
        user = User(row.user_id, row.email, bool(row.is_local))
        if len(self._key_cache) > 10_000:
            self._key_cache.clear()
        if generation == self._key_generation:
            self._key_cache[digest] = (user, row.id, time.monotonic() + _KEY_CACHE_SECONDS)
        self._touch_key(row.id)
        return user

    def api_key_refusal(self, key: str) -> str:
        """Why ``key`` is refused, for the 401's ``reason``: ``"revoked"`` or ``"unknown"``."""
        with self.store.read() as conn:
            revoked = conn.execute(select(api_keys.c.id).where(
                api_keys.c.key_hash == _digest(key), api_keys.c.revoked_at.is_not(None))).first()
        return "revoked" if revoked else "unknown"

    def _touch_key(self, key_id: int) -> None:
        # Record use at most once a minute per key: a write per request would cost ingest.
        now = time.monotonic()
        if now - self._key_touched.get(key_id, -1e9) < 60:
            return
        self._key_touched[key_id] = now
        stamp = _now_ms()
        self.store.writer.submit(
            lambda conn: conn.execute(update(api_keys).where(api_keys.c.id == key_id).values(last_used_at=stamp))
        )

    # --- tokens: access tokens, browser sessions, one-time sign-in links ---------------------
    def _create_token(self, user_id: int, kind: str, ttl_s: float | None, csrf: str | None = None,
                      revoke_earlier: bool = False) -> str:
        token = secrets.token_urlsafe(32)
        now = _now_ms()
        values = dict(user_id=user_id, kind=kind, token_hash=_digest(token), csrf_token=csrf,
                      created_at=now, expires_at=None if ttl_s is None else now + int(ttl_s * 1000))

        def job(conn):
            if revoke_earlier:
                conn.execute(update(tokens).where(tokens.c.user_id == user_id, tokens.c.kind == kind,
                                                  tokens.c.used_at.is_(None)).values(used_at=now))
            conn.execute(tokens.insert().values(**values))

        self.store.writer.call(job)
        return token

    def _token_row(self, token: str, kind: str, why: list | None = None):
        """The token's row joined with its user, or None; ``why`` gets the reason if known."""
        with self.store.read() as conn:
            row = conn.execute(
                select(tokens, users.c.email, users.c.is_local)
                .join(users, users.c.id == tokens.c.user_id)
                .where(tokens.c.token_hash == _digest(token), tokens.c.kind == kind)
            ).first()
        if row is None:
            return None
        problem = None
        if row.used_at is not None:
            problem = f"this {_TOKEN_NAMES[kind]} was revoked"
        elif row.expires_at is not None and row.expires_at < _now_ms():
            problem = f"this {_TOKEN_NAMES[kind]} expired at {iso(row.expires_at)}"
        elif row.is_local and not self.local_mode and kind != "access":
            problem = "the local account signs in only while the server runs in local mode (on loopback)"
        if problem is not None:
            if why is not None:
                why.append(problem)
            return None
        return row

    def create_access_token(self, user_id: int) -> str:
        """A token for API clients (header ``authorization``), valid ``ACCESS_TOKEN_DAYS``."""
        return self._create_token(user_id, "access", ACCESS_TOKEN_DAYS * 86400)

    def user_for_access_token(self, token: str, why: list | None = None) -> User | None:
        row = self._token_row(token, "access", why)
        return User(row.user_id, row.email, bool(row.is_local)) if row else None

    def revoke_access_token(self, token: str) -> bool:
        """End an access token (log out); False when it was not a live one."""
        digest, now = _digest(token), _now_ms()
        return bool(self.store.writer.call(lambda conn: conn.execute(
            update(tokens).where(tokens.c.token_hash == digest, tokens.c.kind == "access",
                                 tokens.c.used_at.is_(None))
            .values(used_at=now)
        ).rowcount))

    def purge_expired(self, conn) -> int:
        """Delete tokens a week after they expired or were used or revoked (a writer job; till
        then a client that sends one is told why it fails); how many."""
        before = _now_ms() - _PURGE_AFTER_MS
        return conn.execute(delete(tokens).where(
            (tokens.c.expires_at < before) | (tokens.c.used_at < before))).rowcount

    def create_browser_session(self, user_id: int) -> tuple[str, str]:
        """A new dashboard session: ``(session_token, csrf_token)``."""
        csrf = secrets.token_urlsafe(24)
        return self._create_token(user_id, "session", SESSION_DAYS * 86400, csrf), csrf

    def user_for_session(self, session_token: str) -> User | None:
        row = self._token_row(session_token, "session")
        return User(row.user_id, row.email, bool(row.is_local)) if row else None

    def csrf_for_session(self, session_token: str) -> str | None:
        row = self._token_row(session_token, "session")
        return row.csrf_token if row else None

    def end_browser_session(self, session_token: str) -> None:
        digest = _digest(session_token)
        self.store.writer.call(lambda conn: conn.execute(
            update(tokens).where(tokens.c.token_hash == digest).values(used_at=_now_ms())
        ))

    def create_login_token(self, user_id: int) -> str:
        """A token for a one-time sign-in link, valid ``LOGIN_TOKEN_SECONDS`` or until used; the
        account's earlier links stop working."""
        return self._create_token(user_id, "login", LOGIN_TOKEN_SECONDS, revoke_earlier=True)

    def redeem_login_token(self, token: str) -> User | None:
        """The user a sign-in token was made for, once; ``None`` if unknown, used, expired, or
        the local account's while the server is not in local mode."""
        digest, now = _digest(token), _now_ms()
        local_mode = self.local_mode

        def job(conn):
            row = conn.execute(
                select(tokens.c.user_id, tokens.c.expires_at, users.c.is_local)
                .join(users, users.c.id == tokens.c.user_id)
                .where(tokens.c.token_hash == digest, tokens.c.kind == "login", tokens.c.used_at.is_(None))
            ).first()
            if row is None or (row.expires_at is not None and row.expires_at < now):
                return None
            if row.is_local and not local_mode:
                return None
            conn.execute(update(tokens).where(tokens.c.token_hash == digest).values(used_at=now))
            return row.user_id

        user_id = self.store.writer.call(job)
        if user_id is None:
            return None
        with self.store.read() as conn:
            row = conn.execute(select(users).where(users.c.id == user_id)).first()
        return User(row.id, row.email, bool(row.is_local)) if row else None

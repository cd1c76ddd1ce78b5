"""Accounts, API keys, tokens and browser sessions: the auth service.

The running app holds one :class:`Auth` at ``request.app.state.auth``. Page routes use it so::

    from hyperdash.server.auth import (SESSION_COOKIE, CSRF_HEADER, current_user, optional_user,
                                       cookie_settings, User, WrongCredentials, Throttled)

    auth = request.app.state.auth
    user = auth.authenticate(email, password, client_ip)  # -> User; raises WrongCredentials
                                                           #    (401) or Throttled (429)
    session_token, csrf_token = auth.create_browser_session(user.id)
    response.set_cookie(SESSION_COOKIE, session_token, **cookie_settings())
    user = auth.user_for_session(session_token)           # -> User or None
    csrf = auth.csrf_for_session(session_token)           # -> str or None
    auth.end_browser_session(session_token)               # sign out
    token = auth.create_login_token(user.id)              # one-time sign-in link token
    user = auth.redeem_login_token(token)                 # -> User or None (works once)

FastAPI dependencies: ``current_user`` (the caller from an API key in ``x-hyperdash-auth``, an
access token in ``authorization`` (raw or ``Bearer``), or the ``hyperdash_session`` cookie; 401
``api_key_requred`` otherwise; a cookie-authenticated request other than GET/HEAD must carry
``x-csrf-token`` equal to the session's CSRF token, else 403 ``csrf``) and ``optional_user``
(the same, but ``None`` instead of 401, for pages that redirect to a sign-in form). After
either, ``request.state.csrf_token`` holds the session's CSRF token when a cookie was used.

Passwords are kept as scrypt hashes with a random salt; keys and tokens are random and kept only
as SHA-256 hashes. Repeated wrong passwords for one email from one address are slowed down.
Access tokens (from signup and login) expire ``ACCESS_TOKEN_DAYS`` after they were made, browser
sessions ``SESSION_DAYS`` after; ``purge_expired`` deletes them (the app runs it hourly).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from dataclasses import dataclass
from functools import lru_cache

from fastapi import Request
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from ..events import AUTH_HEADER, now_ms as _now_ms
from .errors import ApiError, BadRequest, Conflict, Forbidden, Throttled, Unauthorized
from .store import ACCESS_TOKEN_LIFETIME_MS, Store, api_keys, tokens, users
from .views import iso

__all__ = ["Auth", "User", "WrongCredentials", "Throttled", "SESSION_COOKIE", "CSRF_HEADER", "SESSION_DAYS",
           "ACCESS_TOKEN_DAYS", "LOCAL_EMAIL", "current_user", "optional_user", "refused_key", "cookie_settings",
           "MIN_PASSWORD_CHARS"]

SESSION_COOKIE = "hyperdash_session"
CSRF_HEADER = "x-csrf-token"
SESSION_DAYS = 30
ACCESS_TOKEN_DAYS = ACCESS_TOKEN_LIFETIME_MS // 86_400_000
LOGIN_TOKEN_SECONDS = 24 * 3600
MIN_PASSWORD_CHARS = 8
MAX_PASSWORD_CHARS = 1024
LOCAL_EMAIL = "local@localhost"
KEY_PREFIX = "hd_"
_SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")
_SURROGATE = re.compile("[\ud800-\udfff]")
# scrypt: about 50 ms and 16 MiB per hash.
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}
# Wrong passwords: free for the first few, then an exponentially growing wait (capped).
_FREE_FAILURES = 3
_MAX_DELAY = 300


_PURGE_AFTER_MS = 7 * 86_400_000
_TOKEN_NAMES = {"access": "access token", "session": "dashboard session", "login": "sign-in link"}


class WrongCredentials(ApiError):
    status = 401
    code = "wrong_credentials"


@dataclass(frozen=True)
class User:
    id: int
    email: str
    is_local: bool = False


def cookie_settings(secure: bool = False) -> dict:
    """Keyword arguments for ``response.set_cookie(SESSION_COOKIE, token, **...)``."""
    return {"httponly": True, "samesite": "lax", "secure": secure, "max_age": SESSION_DAYS * 86400,
            "path": "/"}


def has_surrogates(text: str) -> bool:
    """Whether ``text`` holds a lone surrogate (JSON can carry one; UTF-8 cannot)."""
    return not text.isascii() and _SURROGATE.search(text) is not None


def _label(text: str) -> str:
    """A name to store: lone surrogates replaced by U+FFFD."""
    return _SURROGATE.sub("\ufffd", text) if has_surrogates(text) else text


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    key = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **_SCRYPT)
    return f"scrypt${_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}${salt.hex()}${key.hex()}"


def verify_password(password: str, stored: str | None) -> bool:
    if not stored:
        return False
    try:
        _, n, r, p, salt, key = stored.split("$")
        got = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r),
                             p=int(p), dklen=len(key) // 2)
    except (ValueError, UnicodeEncodeError):
        return False
    return hmac.compare_digest(got.hex(), key)


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return hash_password(secrets.token_urlsafe(16))


class Auth:
    """Every account operation, on one :class:`~hyperdash.server.store.Store`."""

    def __init__(self, store: Store):
        self.store = store
        self._failures: dict[tuple[str, str], tuple[int, float]] = {}
        self._failures_lock = threading.Lock()
        self._key_touched: dict[int, float] = {}
        # key hash -> (user, key id, monotonic expiry): ingest asks for every request.
        self._key_cache: dict[str, tuple[User, int, float]] = {}
        self._key_generation = 0  # bumped by every revocation, so no lookup caches a stale answer

    # --- accounts -----------------------------------------------------------------------------
    def create_user(self, email: str, password: str | None, *, is_local: bool = False) -> User:
        email = email.strip()
        if not is_local:
            if has_surrogates(email):
                raise BadRequest("the email address holds a lone surrogate (not valid Unicode text)",
                                 code="invalid_email")
            if has_surrogates(password or ""):
                raise BadRequest("the password holds a lone surrogate (not valid Unicode text)",
                                 code="invalid_password")
            if not _EMAIL.match(email) or len(email) > 320:
                raise BadRequest(f"not an email address: {email!r}", code="invalid_email")
            if len(password or "") < MIN_PASSWORD_CHARS:
                raise BadRequest(
                    f"the password must have {MIN_PASSWORD_CHARS} characters or more", code="weak_password"
                )
            if len(password) > MAX_PASSWORD_CHARS:
                raise BadRequest(f"the password may have at most {MAX_PASSWORD_CHARS} characters",
                                 code="invalid_password")
        pw_hash = hash_password(password) if password else None

        def job(conn):
            exists = conn.execute(select(users.c.id).where(users.c.email == email.lower())).first()
            if exists:
                return None
            return conn.execute(users.insert().values(
                email=email.lower(), password_hash=pw_hash, is_local=is_local, created_at=_now_ms()
            )).inserted_primary_key[0]

        try:
            user_id = self.store.writer.call(job)
        except IntegrityError:
            user_id = None
        if user_id is None:
            raise Conflict(f"an account with the email {email} exists already", code="email_taken")
        return User(user_id, email.lower(), is_local)

    def user_by_id(self, user_id: int) -> User | None:
        with self.store.read() as conn:
            row = conn.execute(select(users).where(users.c.id == user_id)).first()
        return User(row.id, row.email, bool(row.is_local)) if row else None

    def local_user(self) -> User | None:
        with self.store.read() as conn:
            row = conn.execute(select(users).where(users.c.is_local.is_(True)).limit(1)).first()
        return User(row.id, row.email, True) if row else None

    def user_count(self) -> int:
        with self.store.read() as conn:
            return len(conn.execute(select(users.c.id).limit(1)).all())

    def authenticate(self, email: str, password: str, client: str = "") -> User:
        """The user with this email and password; raises WrongCredentials or Throttled."""
        key = (email.strip().lower(), client)
        self._check_throttle(key)
        if has_surrogates(email) or has_surrogates(password):
            row = None  # no account has such an email or password
        else:
            with self.store.read() as conn:
                row = conn.execute(select(users).where(users.c.email == key[0])).first()
        if row is None:
            verify_password(password, _dummy_hash())  # take as long as for a known email
        if row is None or not verify_password(password, row.password_hash):
            self._record_failure(key)
            raise WrongCredentials("wrong email or password")
        with self._failures_lock:
            self._failures.pop(key, None)
        return User(row.id, row.email, bool(row.is_local))

    def _check_throttle(self, key: tuple[str, str]) -> None:
        with self._failures_lock:
            count, until = self._failures.get(key, (0, 0.0))
        wait = until - time.monotonic()
        if wait > 0:
            raise Throttled(
                f"too many wrong passwords; try again in {int(wait) + 1} s", retry_after=int(wait) + 1
            )

    def _record_failure(self, key: tuple[str, str]) -> None:
        with self._failures_lock:
            count, _ = self._failures.get(key, (0, 0.0))
            count += 1
            delay = 0 if count < _FREE_FAILURES else min(2 ** (count - _FREE_FAILURES), _MAX_DELAY)
            self._failures[key] = (count, time.monotonic() + delay)
            if len(self._failures) > 100_000:  # bound the memory an attacker can make us use
                self._failures.clear()

    # --- API keys -----------------------------------------------------------------------------
    def create_api_key(self, user_id: int, name: str) -> dict:
        """A new key for the user: ``{"id", "name", "api_key"}`` (the key is shown only now)."""
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        name = _label((name or "key").strip()[:200]) or "key"

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
            return conn.execute(
                update(api_keys)
                .where(api_keys.c.id == key_id, api_keys.c.user_id == user_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=_now_ms())
            ).rowcount

        revoked = bool(self.store.writer.call(job))
        self._key_generation += 1
        self._key_cache.clear()  # a revoked key stops working at once
        return revoked

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
            self._key_cache[digest] = (user, row.id, time.monotonic() + 30)
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
    def _create_token(self, user_id: int, kind: str, ttl_s: float | None, csrf: str | None = None) -> str:
        token = secrets.token_urlsafe(32)
        now = _now_ms()
        values = dict(user_id=user_id, kind=kind, token_hash=_digest(token), csrf_token=csrf,
                      created_at=now, expires_at=None if ttl_s is None else now + int(ttl_s * 1000))
        self.store.writer.call(lambda conn: conn.execute(tokens.insert().values(**values)))
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
        if row.used_at is not None:
            if why is not None:
                why.append(f"this {_TOKEN_NAMES[kind]} was revoked")
            return None
        if row.expires_at is not None and row.expires_at < _now_ms():
            if why is not None:
                why.append(f"this {_TOKEN_NAMES[kind]} expired at {iso(row.expires_at)}")
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
        """A token for a one-time sign-in link (valid for a day, or until used)."""
        return self._create_token(user_id, "login", LOGIN_TOKEN_SECONDS)

    def redeem_login_token(self, token: str) -> User | None:
        """The user a sign-in token was made for, once; ``None`` if unknown, used or expired."""
        digest, now = _digest(token), _now_ms()

        def job(conn):
            row = conn.execute(
                select(tokens.c.user_id, tokens.c.expires_at)
                .where(tokens.c.token_hash == digest, tokens.c.kind == "login", tokens.c.used_at.is_(None))
            ).first()
            if row is None or (row.expires_at is not None and row.expires_at < now):
                return None
            conn.execute(update(tokens).where(tokens.c.token_hash == digest).values(used_at=now))
            return row.user_id

        user_id = self.store.writer.call(job)
        return self.user_by_id(user_id) if user_id is not None else None

    # --- the caller of a request --------------------------------------------------------------
    def user_for_request(self, request: Request) -> User | None:
        """The caller proven by access token, key or session cookie, or None (CSRF enforced).

        The first valid one counts, so a stale key beside a fresh token (or the reverse) still
        works. Why a token failed, when known, is left in ``request.state.auth_problem``."""
        headers = request.headers
        why: list[str] = []
        token = access_token(request)
        if token:
            user = self.user_for_access_token(token, why)
            if user is not None:
                return user
        key = headers.get(AUTH_HEADER)
        if key:
            user = self.user_for_api_key(key)
            if user is not None:
                return user
        if why:
            request.state.auth_problem = why[0]
        if token or key:
            return None
        session = request.cookies.get(SESSION_COOKIE)
        if session:
            row = self._token_row(session, "session")
            if row is None:
                return None
            request.state.csrf_token = row.csrf_token
            if request.method not in _SAFE_METHODS:
                sent = headers.get(CSRF_HEADER, "")
                if not sent or not hmac.compare_digest(sent, row.csrf_token or ""):
                    raise Forbidden("missing or wrong CSRF token (header x-csrf-token)", code="csrf")
            return User(row.user_id, row.email, bool(row.is_local))
        return None


def access_token(request: Request) -> str | None:
    """The access token in the ``authorization`` header (raw or ``Bearer``), if any."""
    authorization = request.headers.get("authorization")
    if not authorization:
        return None
    scheme, _, rest = authorization.partition(" ")
    return (rest.strip() if scheme.lower() == "bearer" and rest else authorization.strip()) or None


def current_user(request: Request) -> User:
    """FastAPI dependency: the authenticated caller, else 401 ``api_key_requred``."""
    user = request.app.state.auth.user_for_request(request)
    if user is None:
        problem = getattr(request.state, "auth_problem", None)
        if problem:
            raise Unauthorized(f"{problem}; log in again (hyperdash login) for a new one")
        key = request.headers.get(AUTH_HEADER)
        if key:
            raise refused_key(request.app.state.auth, key)
        raise Unauthorized(
            "a valid API key (header x-hyperdash-auth), access token (header authorization) "
            "or dashboard session is required"
        )
    return user


def refused_key(auth: Auth, key: str) -> Unauthorized:
    """The 401 for an API key that no live key matches; ``reason`` says whether it was revoked
    (the code stays ``api_key_requred``, on which the original clients stop sending)."""
    reason = auth.api_key_refusal(key)
    message = ("this API key was revoked" if reason == "revoked" else "no account on this server has this API key")
    return Unauthorized(f"{message} (header x-hyperdash-auth)", details={"reason": reason})


def optional_user(request: Request) -> User | None:
    """FastAPI dependency: the authenticated caller, or None."""
    return request.app.state.auth.user_for_request(request)

"""Accounts and the authentication of requests: the auth service.

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

The parts: ``passwords.py`` (hashing, bounded in concurrency), ``throttle.py`` (wrong passwords
slowed down per address, per account and overall), ``tokens.py`` (keys, tokens, sessions,
sign-in links) and ``text.py`` (what text may reach the store). ``signup_open`` False (the
``--no-signup`` option) closes ``POST /api/v1/users``; an admin then makes accounts with
``hyperdash server adduser``.
"""

from __future__ import annotations

import hmac
import re

from fastapi import Request
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ..events import AUTH_HEADER
from ..events import now_ms as _now_ms
from .errors import ApiError, BadRequest, Conflict, Forbidden, Throttled, Unauthorized
from .passwords import MAX_PASSWORD_CHARS, MIN_PASSWORD_CHARS, hash_password, verify_password, verify_unknown
from .store import Store, users
from .text import checked, has_surrogates, is_clean
from .throttle import Throttle
from .tokens import ACCESS_TOKEN_DAYS, SESSION_DAYS, Tokens, User

__all__ = ["Auth", "User", "WrongCredentials", "Throttled", "SESSION_COOKIE", "CSRF_HEADER", "SESSION_DAYS",
           "ACCESS_TOKEN_DAYS", "LOCAL_EMAIL", "current_user", "optional_user", "refused_key", "cookie_settings",
           "MIN_PASSWORD_CHARS", "MAX_EMAIL_CHARS", "SignupClosed"]

SESSION_COOKIE = "hyperdash_session"
CSRF_HEADER = "x-csrf-token"
LOCAL_EMAIL = "local@localhost"
MAX_EMAIL_CHARS = 320  # the most an email address may have (RFC 3696)
_SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")


class WrongCredentials(ApiError):
    status = 401
    code = "wrong_credentials"


class SignupClosed(ApiError):
    status = 403
    code = "signup_closed"


def cookie_settings(secure: bool = False) -> dict:
    """Keyword arguments for ``response.set_cookie(SESSION_COOKIE, token, **...)``."""
    return {"httponly": True, "samesite": "lax", "secure": secure, "max_age": SESSION_DAYS * 86400,
            "path": "/"}


class Auth(Tokens):
    """Every account operation, on one :class:`~hyperdash.server.store.Store`."""

    def __init__(self, store: Store):
        super().__init__(store)
        self.throttle = Throttle(store)
        self.signup_open = True

    # --- accounts -----------------------------------------------------------------------------
    def signup(self, email: str, password: str) -> User:
        """An account made by its owner (``POST /api/v1/users``); SignupClosed when closed."""
        if not self.signup_open:
            raise SignupClosed("sign-up is closed on this server; ask its admin for an account "
                               "(hyperdash server adduser)")
        return self.create_user(email, password)

    def create_user(self, email: str, password: str | None, *, is_local: bool = False) -> User:
        email = email.strip()
        if not is_local:
            checked(email, "the email address", code="invalid_email")
            if has_surrogates(password or ""):
                raise BadRequest("the password holds a lone surrogate (not valid Unicode text)",
                                 code="invalid_password")
            if len(email) > MAX_EMAIL_CHARS or not _EMAIL.match(email):
                raise BadRequest(f"not an email address: {email!r}", code="invalid_email")
            if password is None or len(password) < MIN_PASSWORD_CHARS:
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
        """The user with this email and password; raises WrongCredentials or Throttled.

        ``client`` is the caller's address (behind a trusted proxy, the one it forwards)."""
        email = email.strip().lower()
        self.throttle.check(email, client)
        if not is_clean(email) or has_surrogates(password):
            row = None  # no account has such an email or password
        else:
            with self.store.read() as conn:
                row = conn.execute(select(users).where(users.c.email == email)).first()
        if row is None:
            verify_unknown(password)  # take as long as for a known email
        if row is None or not verify_password(password, row.password_hash):
            self.throttle.failed(email, client)
            raise WrongCredentials("wrong email or password")
        self.throttle.succeeded(email, client)
        return User(row.id, row.email, bool(row.is_local))

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

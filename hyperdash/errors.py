"""The SDK's exception hierarchy.

Every failure that crosses the HTTP boundary is translated into one of these in
:mod:`hyperdash.transport` (the only module that knows ``requests``), so callers catch
``hyperdash.errors`` and nothing else::

    HyperdashError
    ├── ConfigError               a settings file that cannot be read or parsed
    ├── NoCredentials             neither an API key nor an access token is configured
    ├── TransportError            anything that went wrong talking to the server
    │   ├── ServerUnreachable     no connection, or no answer in time (carries .url)
    │   ├── AuthenticationError   401: missing, wrong or revoked API key / access token
    │   ├── RateLimited           429: slow down (carries .retry_after, seconds or None)
    │   ├── ServerError           5xx (carries .status and .retry_after)
    │   └── APIError              other 4xx (carries .status, .code, .message)
    ├── AccountError              an account call refused for a reason a person can fix
    │   ├── WrongPassword         login: unknown email or wrong password
    │   └── EmailTaken            signup: the email has an account already
    ├── AmbiguousRun              the start of a run id that several runs share (carries .candidates)
    ├── CommandError              ``hyperdash run`` cannot start its command (carries .exit_code)
    └── DemoError                 ``hyperdash demo`` cannot go ahead

The front ends raise the ones that concern them (:mod:`hyperdash.account`,
:mod:`hyperdash.child`, :mod:`hyperdash.demo` keep them importable by their old names too); the
command line turns every one into a one-line message.
"""

from __future__ import annotations

from typing import TypedDict

__all__ = [
    "HyperdashError",
    "ConfigError",
    "TransportError",
    "ServerUnreachable",
    "AuthenticationError",
    "RateLimited",
    "ServerError",
    "APIError",
    "RunDeleted",
    "NoCredentials",
    "AccountError",
    "WrongPassword",
    "EmailTaken",
    "AmbiguousRun",
    "CommandError",
    "DemoError",
    "Candidate",
]


class HyperdashError(Exception):
    """Base class of every error raised by the hyperdash package."""


class ConfigError(HyperdashError):
    """A settings file (hyperdash.json) that exists but cannot be read or parsed."""


class TransportError(HyperdashError):
    """A request to the server failed."""


class ServerUnreachable(TransportError):
    """No connection to the server, or no answer within the timeout."""

    def __init__(self, url: str, reason: str = ""):
        self.url = url
        self.reason = reason
        super().__init__(f"cannot reach {url}" + (f": {reason}" if reason else ""))


class AuthenticationError(TransportError):
    """The server answered 401: the API key (or access token) is missing, wrong or revoked.

    ``reason`` is the server's word on an API key it refused: ``"revoked"`` (it was, by its
    owner) or ``"unknown"`` (no account has it); ``None`` when it did not say. ``key_source``
    is where the refused key was found, in words, when the caller knows (see
    :func:`hyperdash.config.api_key_and_source`).
    """

    def __init__(self, message: str = "the API key was refused", code: str | None = None,
                 status: int | None = 401, reason: str | None = None, key_source: str | None = None):
        self.status = status  # None: refused here, before asking the server (no key at all)
        self.code = code
        self.message = message
        self.reason = reason
        self.key_source = key_source
        super().__init__(message)

    def refused_key(self) -> str:
        """Why the server refused the API key and where the key came from, in words: ``the
        server refused the API key (401: it was revoked); it came from the environment variable
        HYPERDASH_API_KEY``."""
        why = {"revoked": "it was revoked", "unknown": "no account on this server has it"}.get(
            self.reason or "", self.message)
        where = f"; it came from {self.key_source}" if self.key_source else ""
        return f"the server refused the API key (401: {why}){where}"


class RateLimited(TransportError):
    """The server answered 429; ``retry_after`` is its Retry-After in seconds, when given."""

    def __init__(self, retry_after: float | None = None, message: str = "rate limited"):
        self.status = 429
        self.retry_after = retry_after
        self.message = message
        super().__init__(message + (f" (retry after {retry_after:g}s)" if retry_after else ""))


class ServerError(TransportError):
    """The server answered 5xx (``retry_after`` from a 503's Retry-After, when given)."""

    def __init__(self, status: int, message: str = "", retry_after: float | None = None):
        self.status = status
        self.message = message
        self.retry_after = retry_after
        super().__init__(f"server error {status}" + (f": {message}" if message else ""))


class APIError(TransportError):
    """The server refused the request with a 4xx other than 401 and 429."""

    def __init__(self, status: int, code: str | None = None, message: str = ""):
        self.status = status
        self.code = code
        self.message = message
        super().__init__(message or f"request refused ({status}{', ' + code if code else ''})")


class RunDeleted(APIError):
    """410: the run was deleted on the server. Its events are dropped for good, never resent."""

    def __init__(self, code: str | None = None, message: str = ""):
        super().__init__(410, code, message or "the run was deleted on the server")


class NoCredentials(HyperdashError):
    """Neither an API key nor an access token is configured on this machine."""

    def __init__(self) -> None:
        super().__init__("no API key found: run `hyperdash login` (or `hyperdash signup` for a new account)")


class AccountError(HyperdashError):
    """The server refused an account call (signup, login) for a reason a person can fix."""


class WrongPassword(AccountError):
    """Login refused: unknown email or wrong password."""


class EmailTaken(AccountError):
    """Signup refused: an account with this email exists already."""


class Candidate(TypedDict):
    """One of the runs an ambiguous run id could mean."""

    uuid: str
    name: str | None


class AmbiguousRun(HyperdashError):
    """The start of a run id that the ids of several runs start with; ``candidates`` holds
    those runs (``{"uuid", "name"}``, newest first, perhaps not all of them)."""

    def __init__(self, ref: str, candidates: list[Candidate], total: int | None = None, message: str = ""):
        self.ref = ref
        self.candidates = candidates
        self.total = max(total or 0, len(candidates))
        if not message:
            listed = ", ".join(f"{c.get('uuid')} ({c.get('name')})" for c in candidates)
            more = self.total - len(candidates)
            message = (f"{ref!r} is the start of the ids of {self.total} runs: {listed}"
                       + (f" and {more} more" if more > 0 else "") + "; give more of the id")
        super().__init__(message)


class CommandError(HyperdashError):
    """The command of ``hyperdash run`` could not be started; ``exit_code`` is what a shell
    would return (127: not found, 126: found but not executable)."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


class DemoError(HyperdashError):
    """The demo cannot go ahead (no server extra, the port is taken, no usable key)."""

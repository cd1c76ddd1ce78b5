"""The SDK's exception hierarchy.

Every failure that crosses the HTTP boundary is translated into one of these in
:mod:`hyperdash.transport` (the only module that knows ``requests``), so callers catch
``hyperdash.errors`` and nothing else::

    HyperdashError
    ├── ConfigError               a settings file that cannot be read or parsed
    └── TransportError            anything that went wrong talking to the server
        ├── ServerUnreachable     no connection, or no answer in time (carries .url)
        ├── AuthenticationError   401: missing, wrong or revoked API key / access token
        ├── RateLimited           429: slow down (carries .retry_after, seconds or None)
        ├── ServerError           5xx (carries .status and .retry_after)
        └── APIError              other 4xx (carries .status, .code, .message)
"""

from __future__ import annotations

__all__ = [
    "HyperdashError",
    "ConfigError",
    "TransportError",
    "ServerUnreachable",
    "AuthenticationError",
    "RateLimited",
    "ServerError",
    "APIError",
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
    """The server answered 401: the API key (or access token) is missing, wrong or revoked."""

    def __init__(self, message: str = "the API key was refused", code: str | None = None,
                 status: int | None = 401):
        self.status = status  # None: refused here, before asking the server (no key at all)
        self.code = code
        self.message = message
        super().__init__(message)


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

"""The server's one exception hierarchy, and the handlers that turn every error into JSON.

Every error reply is ``{"code": "...", "message": "..."}``; nothing a client sends gets a 500.
A message quotes at most ``MAX_MESSAGE_CHARS`` characters, whatever the client sent. A database
out of reach (or too busy to answer) is a 503 with ``Retry-After`` on every route: a page that
says so on the dashboard's, JSON on the API's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from ..events import API_KEY_REQUIRED
from .views import JSONReply

__all__ = ["ApiError", "BadRequest", "Unauthorized", "Forbidden", "NotFound", "Conflict",
           "TooLarge", "Throttled", "Unavailable", "DATABASE_DOWN", "MAX_MESSAGE_CHARS", "database_down",
           "install_handlers"]

log = logging.getLogger("hyperdash.server")

# The longest message a reply carries: messages quote what clients send (an email, a status, a
# type), which may be megabytes; a longer one loses its middle.
MAX_MESSAGE_CHARS = 500

# Errors of the database rather than of the request or of this code: a connection refused or
# dropped, a database gone or too busy (a lock, a deadlock), or every connection of the pool in
# use past its timeout. The same request may work shortly.
DATABASE_DOWN = (OperationalError, InterfaceError, PoolTimeout)


def _capped(message: str) -> str:
    """``message``, its middle cut out when it is longer than ``MAX_MESSAGE_CHARS``."""
    if len(message) <= MAX_MESSAGE_CHARS:
        return message
    half = (MAX_MESSAGE_CHARS - 1) // 2
    return f"{message[:half]}…{message[-half:]}"


class ApiError(Exception):
    """An error the client caused or must know about, with its HTTP status and JSON code."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None,
                 headers: dict[str, str] | None = None, details: dict | None = None):
        message = _capped(message)
        super().__init__(message)
        self.message = message
        self.details = details  # more fields of the reply, beside code and message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.headers = headers

    def response(self) -> JSONReply:
        return JSONReply(
            {"code": self.code, "message": self.message, **(self.details or {})}, status_code=self.status,
            headers=self.headers,
        )


class BadRequest(ApiError):
    status = 400
    code = "bad_request"


class Unauthorized(ApiError):
    status = 401
    # The original clients stop sending for good only on this literal (sic).
    code = API_KEY_REQUIRED


class Forbidden(ApiError):
    status = 403
    code = "forbidden"


class NotFound(ApiError):
    status = 404
    code = "not_found"


class Conflict(ApiError):
    status = 409
    code = "conflict"


class TooLarge(ApiError):
    status = 413
    code = "too_large"


class Unavailable(ApiError):
    """The server cannot store now (shutting down, or the database failed); retry later."""

    status = 503
    code = "unavailable"

    def __init__(self, message: str, retry_after: int = 5):
        super().__init__(message, headers={"Retry-After": str(retry_after)})


def database_down(exc: Exception) -> Unavailable:
    """The 503 for a :data:`DATABASE_DOWN` error, which is logged in one line (no traceback:
    while the database is away, or the server overloaded, every request meets it)."""
    cause = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    if isinstance(exc, PoolTimeout):  # (the database answers; this server has no connection free)
        log.warning("no database connection was free in time: %s", cause[0] if cause else "pool timeout")
        return Unavailable("the server is busy: every database connection is in use; try again in a few seconds")
    log.error("the database failed: %s", cause[0] if cause else type(exc).__name__)
    return Unavailable("the database is unavailable; try again in a few seconds")


class Throttled(ApiError):
    """Too many attempts; ``retry_after`` seconds until the next one is heard."""

    status = 429
    code = "throttled"

    def __init__(self, message: str, retry_after: int):
        super().__init__(message, headers={"Retry-After": str(retry_after)})
        self.retry_after = retry_after


_STATUS_CODES = {400: "bad_request", 401: API_KEY_REQUIRED, 403: "forbidden", 404: "not_found",
                 405: "method_not_allowed", 409: "conflict", 413: "too_large", 429: "throttled"}


# Reasons for pydantic's error types, in words; others keep pydantic's own message.
_REASONS = {
    "missing": "is required",
    "int_parsing": "must be an integer",
    "int_type": "must be an integer",
    "int_from_float": "must be an integer",
    "float_parsing": "must be a number",
    "float_type": "must be a number",
    "string_type": "must be a string",
    "bool_parsing": "must be true or false",
    "bool_type": "must be true or false",
    "model_type": "must be a JSON object",
    "dict_type": "must be a JSON object",
    "model_attributes_type": "must be a JSON object",
    "greater_than_equal": "must be at least {ge}",
    "greater_than": "must be above {gt}",
    "less_than_equal": "must be at most {le}",
    "less_than": "must be below {lt}",
    "string_too_long": "must have at most {max_length} characters",
    "string_too_short": "must have at least {min_length} characters",
}


def _describe_validation(exc: RequestValidationError) -> str:
    """One line a person can read: each problem as ``<field> <reason>``."""
    parts = []
    for err in exc.errors()[:5]:
        kind = err.get("type")
        if kind == "json_invalid":
            parts.append("the request body is not valid JSON")
            continue
        # ("path", "key_id") -> "key id"; ("body", "email") -> "email"; ("body",) -> "the body"
        names = [str(p) for p in err.get("loc", ())[1:]]
        where = ".".join(names).replace("_", " ") or "the request body"
        reason = _REASONS.get(kind)
        if reason is not None:
            try:
                reason = reason.format(**err.get("ctx", {}))
            except (KeyError, IndexError):
                reason = None
        if reason is None:
            reason = str(err.get("msg", "is not valid")).splitlines()[0]
            reason = reason[:1].lower() + reason[1:]
        parts.append(f"{where} {reason}")
    return "; ".join(parts) or "invalid request"


def install_handlers(app: FastAPI, page: Callable[[Request, ApiError], Response] | None = None) -> None:
    """Make every error, ours or the framework's, a JSON ``{"code", "message"}`` reply.

    ``page(request, error)``, when given, answers a database out of reach outside ``/api/``:
    a dashboard page that says so, for a person in a browser."""

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError):
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError):
        kinds = {err.get("type") for err in exc.errors()}
        code = "invalid_json" if "json_invalid" in kinds else "invalid_request"
        return BadRequest(_describe_validation(exc), code=code).response()

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException):
        code = _STATUS_CODES.get(exc.status_code, "error")
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        return ApiError(message, code=code, status=exc.status_code,
                        headers=getattr(exc, "headers", None)).response()

    async def _database(request: Request, exc: Exception):
        error = database_down(exc)
        if page is not None and not request.url.path.startswith("/api/"):
            return page(request, error)
        return error.response()

    for kind in DATABASE_DOWN:
        app.add_exception_handler(kind, _database)

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception):
        return unexpected_reply(exc)


def unexpected_reply(exc: Exception) -> JSONReply:
    """The reply to an error nobody expected (logged with its traceback): 500, saying no more."""
    log.exception("unexpected error", exc_info=exc)
    return JSONReply({"code": "internal", "message": "internal server error"}, status_code=500)

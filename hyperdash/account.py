"""The account and query calls of the command line, over the SDK's transport.

Signup, login and API keys; the runs of an account and their logs, for ``hyperdash runs`` and
``hyperdash logs``. Every failure arrives as one of :mod:`hyperdash.errors`.
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from . import config
from .errors import (
    AmbiguousRun,
    APIError,
    AuthenticationError,
    Candidate,
    ConfigError,
    EmailTaken,
    NoCredentials,
    WrongPassword,
)
from .transport import Transport

_UUID_PREFIX = re.compile("[0-9a-f-]+")  # what the start of a run's id can be

__all__ = [
    "NoCredentials",
    "WrongPassword",
    "EmailTaken",
    "Session",
    "signup",
    "login",
    "list_keys",
    "create_key",
    "revoke_key",
    "list_runs",
    "get_run",
    "find_run",
    "looks_like_run_id",
    "run_logs",
    "delete_runs",
    "set_archived",
    "create_share",
    "list_shares",
    "revoke_share",
]

API = "/api/v1"
#: The fewest characters the server takes in the password of a new account (PROTOCOL.md).
MIN_PASSWORD_CHARS = 8
#: How many of the runs an ambiguous run id could mean are named in the error.
MAX_CANDIDATES = 10

#: A JSON object of the API's replies (a run, a log line, a key), as the server sends it.
JSONObject = dict[str, Any]


@dataclass
class Session:
    """Where to send account calls, and how to prove who we are."""

    server_url: str
    api_key: str | None = None
    access_token: str | None = None
    key_source: str | None = None  #: where the key was found, in words, for error messages

    @classmethod
    def from_settings(cls) -> Session:
        """The configured server with the configured key (and the access token of the last login)."""
        key, source = config.api_key_and_source()
        try:
            token = config.load_settings().get("access_token")
        except ConfigError:
            if not key:
                raise
            token = None  # (a key from before the file, $HYPERDASH_API_KEY, is enough without it)
        if not key and not token:
            raise NoCredentials()
        return cls(config.server_url(), api_key=key, access_token=token or None, key_source=source)

    def request(self, method: str, path: str, *, timeout: float | None = None, **kwargs: Any) -> Any:
        """One API call, proven by the access token alone where there is one (as the original
        clients do: a revoked API key must not lock its owner out of rotating it), else by the
        API key; a token the server no longer knows falls back to the key. ``timeout``: for a
        call the server itself may take long over (seconds; default the transport's)."""
        options: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
        if self.access_token:
            try:
                return Transport(self.server_url, access_token=self.access_token, **options).request(
                    method, API + path, **kwargs
                )
            except AuthenticationError:
                if not self.api_key:
                    raise
        try:
            return Transport(self.server_url, api_key=self.api_key, **options).request(method, API + path, **kwargs)
        except AuthenticationError as exc:
            if self.api_key:
                exc.key_source = self.key_source or config.ARGUMENT_SOURCE
            raise


def signup(server_url: str, email: str, password: str) -> JSONObject:
    """Create an account; ``{"api_key", "access_token"}``."""
    try:
        reply: JSONObject = Session(server_url).request("POST", "/users", json={"email": email, "password": password})
        return reply
    except APIError as exc:
        if exc.status == 409:
            raise EmailTaken(
                f"an account with {email} exists already on {server_url}: run `hyperdash login`"
            ) from None
        raise


def login(server_url: str, email: str, password: str) -> JSONObject:
    """Sign in; ``{"access_token", "api_key"}``, the key a new one named after this host."""
    body = {"email": email, "password": password, "host": socket.gethostname()}
    try:
        reply: JSONObject = Session(server_url).request("POST", "/sessions", json=body)
        return reply
    except (AuthenticationError, APIError) as exc:
        if isinstance(exc, AuthenticationError) or exc.status in (401, 403):
            raise WrongPassword(f"wrong email or password for {server_url}") from None
        raise


def list_keys(session: Session) -> list[JSONObject]:
    """The API keys of the account (never their secret), newest first as the server gives them."""
    found: list[JSONObject] = session.request("GET", "/users/api_keys")["api_keys"]
    return found


def create_key(session: Session, name: str | None = None) -> JSONObject:
    """A new API key; the reply holds the secret in ``api_key``, shown this once."""
    created: JSONObject = session.request("POST", "/users/api_keys", json={"name": name or socket.gethostname()})
    return created


def revoke_key(session: Session, key_id: int | str) -> None:
    """Revoke a key: it stops working at once."""
    session.request("DELETE", f"/users/api_keys/{quote(str(key_id), safe='')}")


def list_runs(session: Session, *, name: str | None = None, search: str | None = None, status: str | None = None,
              limit: int = 20, archived: str = "no") -> list[JSONObject]:
    """The account's runs, newest first: with the whole ``name``, or a name holding ``search``;
    ``archived`` ``only`` lists the archived ones (``all``: both)."""
    params: dict[str, str | int] = {"limit": limit, "archived": archived}
    if name:
        params["name"] = name
    if search:
        params["q"] = search
    if status:
        params["status"] = status
    found: list[JSONObject] = session.request("GET", "/runs", params=params)["runs"]
    return found


def get_run(session: Session, run_uuid: str) -> JSONObject:
    """The run ``run_uuid`` (or the one run whose id starts with it), as the server has it now."""
    run: JSONObject = session.request("GET", f"/runs/{quote(run_uuid, safe='')}")
    return run


def stop_run(session: Session, run_uuid: str) -> JSONObject:
    """Ask the run ``run_uuid`` to stop; the run as the server has it then (with ``stop``).
    A run that has ended is refused: an :class:`~hyperdash.errors.APIError` with status 409."""
    run: JSONObject = session.request("POST", f"/runs/{quote(run_uuid, safe='')}/stop", json={"via": "cli"})
    return run


def find_run(session: Session, ref: str) -> JSONObject | None:
    """The run that ``ref`` names: its uuid, a run name (its newest run), or the start of its
    uuid; ``None`` when none does (an empty ``ref`` names none). Archived runs are found too.
    Raises :class:`~hyperdash.errors.AmbiguousRun` for the start of the ids of several runs."""
    if not ref.strip():
        return None
    ambiguous = None
    try:
        return get_run(session, ref)
    except APIError as exc:
        if exc.status == 409 and exc.code == "ambiguous_run":
            ambiguous = exc  # unless a run has this name
        elif exc.status not in (404, 422, 400):
            raise
    named = list_runs(session, name=ref, limit=1, archived="all")
    if named and named[0].get("name") == ref:
        return named[0]
    # Shorter than the server resolves (or resolved there and shared by several runs).
    if not looks_like_run_id(ref):
        return None
    prefix = ref.strip().lower()
    matches = [r for r in list_runs(session, limit=1000, archived="all") if r["uuid"].lower().startswith(prefix)]
    candidates: list[Candidate] = [{"uuid": r["uuid"], "name": r.get("name")} for r in matches[:MAX_CANDIDATES]]
    if len(matches) > 1:
        raise AmbiguousRun(ref, candidates, total=len(matches))
    if ambiguous is not None:  # the runs it could mean are older than those listed here
        raise AmbiguousRun(ref, candidates, message=ambiguous.message)
    return matches[0] if matches else None


def looks_like_run_id(ref: str) -> bool:
    """Whether ``ref`` can be a run's id or the start of one."""
    return _UUID_PREFIX.fullmatch(ref.strip().lower()) is not None


def run_logs(session: Session, run_uuid: str, *, after: int = 0, limit: int = 5000) -> list[JSONObject]:
    """Up to ``limit`` log lines of a run after ``seq`` ``after``, in order."""
    reply = session.request(
        "GET", f"/runs/{quote(run_uuid, safe='')}/logs", params={"after": after, "limit": limit}
    )
    lines: list[JSONObject] = reply["lines"]
    return lines


def delete_runs(session: Session, *, run_uuid: str | None = None, name: str | None = None,
                force: bool = False) -> list[str]:
    """Delete one run (``run_uuid``, or the start of it) or every run called ``name``; the uuids
    deleted. A running run is refused (409 ``run_running``) unless ``force``."""
    params = {"force": "true"} if force else {}
    if run_uuid is not None:
        reply = session.request("DELETE", f"/runs/{quote(run_uuid, safe='')}", params=params)
    else:
        reply = session.request("DELETE", "/runs", params={**params, "name": name or ""})
    deleted: list[str] = reply["deleted"]
    return deleted


def set_archived(session: Session, run_uuid: str, archived: bool) -> None:
    """Archive the run (out of the default lists), or bring it back."""
    session.request("POST" if archived else "DELETE", f"/runs/{quote(run_uuid, safe='')}/archive")


def create_share(session: Session, run_uuid: str) -> JSONObject:
    """A new read-only link to the run: ``{"id", "url", "token", "created_at"}``."""
    made: JSONObject = session.request("POST", f"/runs/{quote(run_uuid, safe='')}/shares")
    return made


def list_shares(session: Session, run_uuid: str) -> list[JSONObject]:
    """The run's live links: ``{"id", "created_at"}`` each."""
    found: list[JSONObject] = session.request("GET", f"/runs/{quote(run_uuid, safe='')}/shares")["shares"]
    return found


def revoke_share(session: Session, run_uuid: str, share_id: int) -> None:
    """Revoke one of the run's links: it stops working at once."""
    session.request("DELETE", f"/runs/{quote(run_uuid, safe='')}/shares/{share_id}")

"""The one module that knows HTTP: requests to the server, and their errors translated.

Ingest requests, a run's steady traffic, go straight over one kept-alive :mod:`http.client`
connection where the server is a plain ``http://`` one and no proxy is configured: a fraction of
the CPU of a ``requests`` call, and no import of ``requests`` at all for a job or an uploader
that only sends events. Everything else (``https://``, proxies, a host with a netrc entry, the
CLI's account calls and streams) goes through ``requests``, imported on first use, not with this
module, so that ``import hyperdash`` stays cheap. An ingest request the direct path meets a
redirect on goes again through ``requests``, which follows it, and so do all that come after: the
direct path never counts a batch delivered on an answer ``requests`` would have treated otherwise.
"""

from __future__ import annotations

import json as jsonlib
import os
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from . import errors
from .events import API_HEADER, API_KEY_REQUIRED, AUTH_HEADER, INGEST_PATH, VERSION_HEADER
from .version import __version__

if TYPE_CHECKING:
    import http.client

    import requests

__all__ = ["Transport", "DEFAULT_TIMEOUT"]

# (connect, read) seconds. A server that accepts and never answers costs at most the read part.
DEFAULT_TIMEOUT = (3.05, 10.0)
# Set, any of these sends plain-http requests through a proxy: only requests knows how.
_PROXY_VARIABLES = ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY")


class _NotDirect(Exception):
    """An answer of the direct path that only ``requests`` handles (a redirect): send it there."""


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    import time
    from email.utils import parsedate_to_datetime  # an HTTP date

    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


class Transport:
    """A client of one Hyperdash server.

    ``api_key`` is a string or a callable returning one (called for every ingest request, so
    a rotated key is used at once); ``access_token`` authorizes account calls of the CLI;
    ``headers`` go with every request. Every method raises only :mod:`hyperdash.errors`
    exceptions.
    """

    def __init__(
        self,
        server_url: str,
        api_key: str | Callable[[], str | None] | None = None,
        access_token: str | None = None,
        timeout: float | tuple[float, float] = DEFAULT_TIMEOUT,
        headers: Mapping[str, str] | None = None,
    ):
        self.server_url = server_url.rstrip("/")
        self.api_key = api_key
        self.access_token = access_token
        self.timeout = timeout
        self.headers = dict(headers or {})
        self._session: requests.Session | None = None
        self._connection: http.client.HTTPConnection | None = None
        self._direct: bool | None = None  # whether ingest goes over http.client (decided once)

    # -- plumbing -------------------------------------------------------------------------
    @property
    def session(self) -> requests.Session:
        """The pooled HTTP session, made on first use."""
        if self._session is None:
            import requests

            self._session = requests.Session()
            self._session.headers.update(self._common_headers())
        return self._session

    def _common_headers(self) -> dict[str, str]:
        return {"user-agent": f"hyperdash-python/{__version__}", VERSION_HEADER: __version__, **self.headers}

    def warm_up(self) -> None:
        """Import what the next ingest request needs (a run does it before timing its first
        request)."""
        if self._goes_direct():
            import http.client  # noqa: F401
        else:
            self.session  # noqa: B018  (made for its import)

    def close(self) -> None:
        """Close the pooled connections."""
        if self._session is not None:
            self._session.close()
            self._session = None
        self._close_connection()

    def _close_connection(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _current_key(self) -> str | None:
        return self.api_key() if callable(self.api_key) else self.api_key

    def _send(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        import requests

        url = self.server_url + path
        try:
            resp = self.session.request(method, url, timeout=self.timeout, **kwargs)
        except requests.Timeout:
            raise errors.ServerUnreachable(self.server_url, "no answer in time") from None
        except requests.ConnectionError as exc:
            raise errors.ServerUnreachable(self.server_url, _short_reason(exc)) from None
        except requests.RequestException as exc:
            raise errors.TransportError(f"request to {url} failed: {exc}") from None
        if resp.status_code >= 400:
            raise _error_of(resp)
        if resp.status_code >= 300:  # a redirect requests could not follow: nothing reached the server
            raise _unfollowed(resp.status_code, resp.reason, resp.url)
        return resp

    # -- calls ----------------------------------------------------------------------------
    def send_events(self, envelopes: Iterable[dict[str, Any]] | bytes, api: str) -> dict[str, Any]:
        """POST a batch of envelopes (or a JSON body already encoded) to the ingest endpoint.

        Returns the server's reply, ``{"stored": N, "duplicates": M}``, with ``"stop": {run
        uuid: {"requested_at", "by", "via"}}`` when a run of the batch was asked to stop. A batch that JSON
        cannot carry (a NaN, an infinity) is refused here as the server would refuse it: an
        :class:`~hyperdash.errors.APIError` with status 400.
        """
        if isinstance(envelopes, bytes):
            body = envelopes
        else:
            try:
                body = encode_batch(envelopes)
            except ValueError as exc:
                raise errors.APIError(400, "invalid_json", f"an event cannot be sent as JSON: {exc}") from None
        key = self._current_key()
        if not key:
            raise errors.AuthenticationError(
                "no API key is configured (set HYPERDASH_API_KEY, put one in hyperdash.json, "
                "or run `hyperdash login`)", code=API_KEY_REQUIRED, status=None)
        headers = {AUTH_HEADER: key, API_HEADER: api, "content-type": "application/json"}
        if self._goes_direct():
            try:
                return _object(self._post_direct(INGEST_PATH, body, headers), self.server_url + INGEST_PATH)
            except _NotDirect:
                self._direct = False  # this request and every later one go the way requests goes
        resp = self._send("POST", INGEST_PATH, data=body, headers=headers)
        return _object(_json_of(resp), resp.url)

    def _goes_direct(self) -> bool:
        if self._direct is None:
            self._direct = self.server_url.startswith("http://") and "@" not in self.server_url and \
                not any(os.environ.get(name) for name in _PROXY_VARIABLES) and not self._has_netrc_entry()
        return self._direct

    def _has_netrc_entry(self) -> bool:
        """Whether requests would send basic auth from a netrc file to this server (asked of
        requests itself, and only when a netrc file is there, so that a job without one never
        imports requests)."""
        named = os.environ.get("NETRC")
        places = [named] if named is not None else ["~/.netrc", "~/_netrc"]
        if not any(os.path.exists(os.path.expanduser(place)) for place in places):
            return False
        from requests.utils import get_netrc_auth

        return get_netrc_auth(self.server_url) is not None

    def _post_direct(self, path: str, body: bytes, headers: dict[str, str]) -> Any:
        """POST over the kept-alive http.client connection: the decoded JSON reply."""
        import http.client
        from urllib.parse import urlsplit

        parts = urlsplit(self.server_url)
        connect_timeout, read_timeout = self.timeout if isinstance(self.timeout, tuple) else (self.timeout,) * 2
        all_headers = {**self._common_headers(), **headers}
        for _ in range(2):
            conn, fresh = self._connection, self._connection is None
            try:
                if conn is None:
                    conn = self._connection = http.client.HTTPConnection(
                        parts.hostname or "localhost", parts.port or 80, timeout=connect_timeout)
                    conn.connect()
                    assert conn.sock is not None
                    conn.sock.settimeout(read_timeout)
                conn.request("POST", parts.path + path, body=body, headers=all_headers)
                resp = conn.getresponse()
                data = resp.read()
            except TimeoutError:
                self._close_connection()
                raise errors.ServerUnreachable(self.server_url, "no answer in time") from None
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as exc:
                self._close_connection()
                if fresh:
                    raise errors.ServerUnreachable(self.server_url, _short_reason(exc)) from None
                continue  # the server had closed the kept-alive connection: once more, on a new one
            except (OSError, http.client.HTTPException) as exc:
                self._close_connection()
                raise errors.ServerUnreachable(self.server_url, _short_reason(exc)) from None
            if resp.will_close:
                self._close_connection()
            if resp.status >= 400:
                raise _error_from(resp.status, resp.reason, resp.getheader("retry-after"), _decoded(data))
            if resp.status >= 300:  # requests follows it (or says why not); a success it is not
                self._close_connection()
                raise _NotDirect(resp.status)
            if not data:
                return {}
            try:
                return jsonlib.loads(data)
            except ValueError:
                raise errors.TransportError(f"the server at {self.server_url + path} answered {resp.status} "
                                            "with something that is not JSON") from None
        raise AssertionError("unreachable")  # (the second try returns or raises)

    def request(
        self,
        method: str,
        path: str,
        json: Any = None,
        params: dict[str, Any] | None = None,
        stream: bool = False,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """An API call (``path`` like ``/api/v1/users``): its decoded JSON reply, or with
        ``stream=True`` the open response (for server-sent events, for instance)."""
        all_headers: dict[str, str] = {}
        key = self._current_key()
        if key:
            all_headers[AUTH_HEADER] = key
        if self.access_token:
            all_headers["authorization"] = self.access_token
        all_headers.update(headers or {})
        resp = self._send(method, path, json=json, params=params, stream=stream, headers=all_headers)
        return resp if stream else _json_of(resp)

    def health(self) -> dict[str, Any]:
        """``GET /api/v1/health``."""
        path = "/api/v1/health"
        return _object(self.request("GET", path), self.server_url + path)


def encode_batch(envelopes: Iterable[dict[str, Any]]) -> bytes:
    """The JSON array body of an ingest request. Raises ``ValueError`` for a NaN or an
    infinity, which JSON has no words for."""
    return jsonlib.dumps(list(envelopes), ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode(
        "utf-8", "surrogatepass"
    )


def _short_reason(exc: Exception) -> str:
    text = str(exc)
    for marker in ("Connection refused", "Name or service not known", "timed out", "reset by peer"):
        if marker in text:
            return marker.lower()
    return text[:200]


def _json_of(resp: requests.Response) -> Any:
    if not resp.content:
        return {}
    try:
        return resp.json()
    except ValueError:
        raise errors.TransportError(
            f"the server at {resp.url} answered {resp.status_code} with something that is not JSON"
        ) from None


def _object(reply: Any, url: str) -> dict[str, Any]:
    """A decoded reply that must be a JSON object; anything else is a server we cannot talk to."""
    if not isinstance(reply, dict):
        raise errors.TransportError(f"the server at {url} answered with JSON that is not an object")
    return reply


def _decoded(data: bytes) -> Any:
    try:
        return jsonlib.loads(data)
    except ValueError:
        return {}


def _unfollowed(status: int, reason: str | None, url: str) -> errors.TransportError:
    return errors.TransportError(f"the server at {url} answered {status} {reason or ''}".rstrip()
                                 + ", a redirect that could not be followed")


def _error_of(resp: requests.Response) -> errors.TransportError:
    try:
        body = resp.json()
    except ValueError:
        body = {}
    return _error_from(resp.status_code, resp.reason, resp.headers.get("retry-after"), body)


def _error_from(status: int, reason: str | None, retry_after_header: str | None, body: Any) -> errors.TransportError:
    """The error an answer with ``status`` >= 400 (and a decoded JSON ``body``) means."""
    if not isinstance(body, dict):
        body = {}
    code = body.get("code")
    message = str(body.get("message") or body.get("detail") or "")
    retry_after = _retry_after(retry_after_header)
    if status == 401:
        return errors.AuthenticationError(message or "the API key was refused", code=code, reason=body.get("reason"))
    if status == 429:
        return errors.RateLimited(retry_after, message or "rate limited")
    if status >= 500:
        return errors.ServerError(status, message, retry_after)
    if status == 410:
        return errors.RunDeleted(code, message)
    return errors.APIError(status, code, message or reason or "")

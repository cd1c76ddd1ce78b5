"""The one module that knows HTTP: requests to the server, and their errors translated.

Ingest requests, a run's steady traffic, go straight over one kept-alive connection of our own
(:class:`_Connection`) where the server is a plain ``http://`` one and no proxy is configured: a
POST and its answer, read whole, for half the CPU that :mod:`http.client` spends on one (whose
general header parsing, the ``email`` package, is most of it), and no import of ``requests``,
``http.client``, ``email`` or ``ssl`` for a job or an uploader that only sends events.
Everything else (``https://``, proxies, a host with a netrc entry, the CLI's account calls and
streams) goes through ``requests``, imported on first use, not with this module, so that
``import hyperdash`` stays cheap. An ingest request the direct path meets a redirect on goes
again through ``requests``, which follows it, and so do all that come after: the direct path
never counts a batch delivered on an answer ``requests`` would have treated otherwise.
"""

from __future__ import annotations

import json as jsonlib
import os
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from . import errors
from .events import API_HEADER, API_KEY_REQUIRED, AUTH_HEADER, INGEST_PATH, VERSION_HEADER
from .version import __version__

if TYPE_CHECKING:
    import socket

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
        self._connection: _Connection | None = None
        self._direct: bool | None = None  # whether ingest goes over _Connection (decided once)

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
            import socket  # noqa: F401
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
    def send_events(self, envelopes: Iterable[dict[str, Any]] | bytes, api: str,
                    content_type: str = "application/json") -> dict[str, Any]:
        """POST a batch of envelopes (or a body already encoded, of ``content_type``: JSON, or
        :data:`~hyperdash.events.ATTACHED_TEXT_TYPE`) to the ingest endpoint.

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
        headers = {AUTH_HEADER: key, API_HEADER: api, "content-type": content_type}
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
        """POST over the kept-alive connection: the decoded JSON reply."""
        from urllib.parse import urlsplit

        parts = urlsplit(self.server_url)
        head = _request_head(parts.path + path, parts.netloc, {**self._common_headers(), **headers}, len(body))
        connect_timeout, read_timeout = self.timeout if isinstance(self.timeout, tuple) else (self.timeout,) * 2
        for _ in range(2):
            conn, fresh = self._connection, self._connection is None
            try:
                if conn is None:
                    conn = self._connection = _Connection(
                        parts.hostname or "localhost", parts.port or 80, connect_timeout, read_timeout)
                answer = conn.post(head, body)
            except TimeoutError:
                self._close_connection()
                raise errors.ServerUnreachable(self.server_url, "no answer in time") from None
            except (_Closed, ConnectionResetError, BrokenPipeError) as exc:
                self._close_connection()
                if fresh:
                    raise errors.ServerUnreachable(self.server_url, _short_reason(exc)) from None
                continue  # the server had closed the kept-alive connection: once more, on a new one
            except (OSError, _BadAnswer) as exc:
                self._close_connection()
                raise errors.ServerUnreachable(self.server_url, _short_reason(exc)) from None
            if answer.will_close:
                self._close_connection()
            if answer.status >= 400:
                raise _error_from(answer.status, answer.reason, answer.headers.get("retry-after"),
                                  _decoded(answer.body))
            if answer.status >= 300:  # requests follows it (or says why not); a success it is not
                self._close_connection()
                raise _NotDirect(answer.status)
            if not answer.body:
                return {}
            try:
                return jsonlib.loads(answer.body)
            except ValueError:
                raise errors.TransportError(f"the server at {self.server_url + path} answered {answer.status} "
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
    status = resp.status_code
    if 400 <= status < 500 and status not in (401, 429) and _not_ours(status, body):
        # (not an answer of a Hyperdash API: the address leads elsewhere, or to a path it has not)
        where = resp.url.partition("?")[0]
        return errors.APIError(status, None, f"the server at {where} answered {status} {resp.reason or ''}".rstrip()
                               + ", not as a Hyperdash server answers: is its address right?")
    return _error_from(status, resp.reason, resp.headers.get("retry-after"), body)


def _not_ours(status: int, body: Any) -> bool:
    """Whether an error answer is no Hyperdash API's: without its JSON, or a 404 for a path it
    does not have."""
    if not isinstance(body, dict) or "code" not in body:
        return True
    return status == 404 and body.get("code") == "not_found" and body.get("message") == "Not Found"


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


# -- the direct path's HTTP/1.1 ----------------------------------------------------------------
# The largest answer head and body the direct path reads: ingest answers are a few hundred bytes.
_MAX_ANSWER_HEAD = 64 * 1024
_MAX_ANSWER_BODY = 16 * 1024 * 1024
_FORBIDDEN_IN_HEADERS = frozenset("\r\n\0")
_HEX_DIGITS = b"0123456789abcdefABCDEF"


def _is_number(text: str) -> bool:
    """Whether ``text`` is a decimal number as HTTP writes one (``str.isdigit`` takes ``²`` too)."""
    return text.isascii() and text.isdigit()


class _Closed(ConnectionError):
    """The server closed the connection before the answer began (a kept-alive connection it
    had let go: the request goes again on a new one)."""


class _BadAnswer(Exception):
    """An answer that is not HTTP/1.x, or larger than the direct path reads."""


class _Answer(NamedTuple):
    status: int
    reason: str
    headers: dict[str, str]  # names in lower case
    body: bytes
    will_close: bool  # the server closes the connection after it


def _request_head(target: str, host: str, headers: Mapping[str, str], length: int) -> bytes:
    """The head of a POST of ``length`` bytes to ``target``. A header value that would break the
    head (a line break, a NUL, a character outside Latin-1) is refused, as ``requests`` refuses it."""
    lines = [f"POST {target} HTTP/1.1", f"Host: {host}", "Accept-Encoding: identity"]
    for name, value in headers.items():
        if not _FORBIDDEN_IN_HEADERS.isdisjoint(value):
            raise errors.TransportError(f"the {name} header holds a line break or a NUL, which HTTP forbids")
        lines.append(f"{name}: {value}")
    lines += [f"Content-Length: {length}", "", ""]
    try:
        return "\r\n".join(lines).encode("latin-1")
    except UnicodeEncodeError as exc:
        bad = exc.object[exc.start:exc.end]
        raise errors.TransportError(f"a request header holds a character HTTP cannot carry: {bad!r}") from None


class _Connection:
    """One kept-alive HTTP/1.1 connection to a plain ``http://`` server, for ingest requests: a
    POST, and its answer read whole (by ``Content-Length``, chunked, or up to the close). What
    :mod:`http.client` does for this one exchange, less its general header parsing (the
    ``email`` package), which cost most of its CPU per request."""

    def __init__(self, host: str, port: int, connect_timeout: float, read_timeout: float):
        import socket

        # An ASCII name goes as bytes, which getaddrinfo takes as they are (typeshed has str
        # only): a str passes through the IDNA codec, whose first use imports some 2 ms of
        # modules, the run's and the uploader's to pay.
        name: str | bytes = host.encode("ascii") if host.isascii() else host
        self.sock: socket.socket = socket.create_connection((name, port), connect_timeout)  # type: ignore[arg-type]
        try:
            self.sock.settimeout(read_timeout)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # (small requests go at once)
        except OSError:
            self.sock.close()
            raise
        self._buffer = bytearray()

    def close(self) -> None:
        self.sock.close()

    def post(self, head: bytes, body: bytes) -> _Answer:
        """Send a request (its head and body) and read its answer. Raises :class:`_Closed` when
        the server closed the connection before answering, :class:`_BadAnswer`, ``OSError``."""
        if len(body) <= 64 * 1024:
            self.sock.sendall(head + body)  # (one segment for a small request)
        else:
            self.sock.sendall(head)
            self.sock.sendall(body)
        while True:
            status, reason, headers, will_close = self._read_head()
            if not 100 <= status < 200:
                break  # (an interim answer, 100 Continue, comes before the real one)
        length = headers.get("content-length")
        if status in (204, 304):
            body = b""
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            body = self._read_chunked()
        elif length is None:  # the body ends with the connection
            body, will_close = self._read_to_close(), True
        elif not _is_number(length) or int(length) > _MAX_ANSWER_BODY:
            raise _BadAnswer(f"an answer with Content-Length {length[:40]!r}")
        else:
            body = self._read_exactly(int(length))
        # bytes after the answer (nothing was asked for them): the connection is not used again
        return _Answer(status, reason, headers, body, will_close or bool(self._buffer))

    def _read_head(self) -> tuple[int, str, dict[str, str], bool]:
        end = self._buffer.find(b"\r\n\r\n")
        while end < 0 and len(self._buffer) <= _MAX_ANSWER_HEAD:
            searched = max(0, len(self._buffer) - 3)
            if not self._fill():
                if self._buffer:
                    raise _BadAnswer("the connection closed inside an answer's head")
                raise _Closed("the server closed the connection without answering")
            end = self._buffer.find(b"\r\n\r\n", searched)
        if not 0 <= end <= _MAX_ANSWER_HEAD:
            raise _BadAnswer("an answer whose head is over 64 KiB")
        lines = bytes(self._buffer[:end]).decode("latin-1").split("\r\n")
        del self._buffer[:end + 4]
        version, _, rest = lines[0].partition(" ")
        code, _, reason = rest.partition(" ")
        if not version.startswith("HTTP/1.") or not _is_number(code) or not 100 <= int(code) <= 999:
            raise _BadAnswer(f"an answer that is not HTTP/1.x: {lines[0][:80]!r}")
        headers: dict[str, str] = {}
        name = ""
        for line in lines[1:]:
            if line[:1] in (" ", "\t") and name:  # (an obsolete folded line goes on the last one)
                headers[name] = f"{headers[name]} {line.strip()}"
                continue
            name, colon, value = line.partition(":")
            if not colon or not name or name != name.strip():
                raise _BadAnswer(f"a malformed header line in an answer: {line[:80]!r}")
            name = name.lower()
            headers[name] = f"{headers[name]}, {value.strip()}" if name in headers else value.strip()
        connection = {token.strip() for token in headers.get("connection", "").lower().split(",")}
        will_close = "close" in connection or (version == "HTTP/1.0" and "keep-alive" not in connection)
        return int(code), reason.strip(), headers, will_close

    def _fill(self) -> bool:
        """Read what has come into the buffer; False when the server closed the connection."""
        data = self.sock.recv(65536)
        self._buffer += data
        return bool(data)

    def _read_exactly(self, count: int) -> bytes:
        while len(self._buffer) < count:
            if not self._fill():
                raise _BadAnswer("the connection closed inside an answer's body")
        data = bytes(self._buffer[:count])
        del self._buffer[:count]
        return data

    def _read_line(self) -> bytes:
        end = self._buffer.find(b"\r\n")
        while end < 0:
            if len(self._buffer) > _MAX_ANSWER_HEAD or not self._fill():
                raise _BadAnswer("a malformed chunked answer")
            end = self._buffer.find(b"\r\n")
        line = bytes(self._buffer[:end])
        del self._buffer[:end + 2]
        return line

    def _read_chunked(self) -> bytes:
        body = bytearray()
        while True:
            size = self._read_line().split(b";", 1)[0].strip()
            if not size or size.strip(_HEX_DIGITS):  # (int() would take "+5", "0x5" and "5_0" too)
                raise _BadAnswer(f"a chunk size that is not a number: {size[:40]!r}")
            count = int(size, 16)
            if count == 0:
                while self._read_line():  # (trailer fields, up to an empty line)
                    pass
                return bytes(body)
            if len(body) + count > _MAX_ANSWER_BODY:
                raise _BadAnswer("an answer over 16 MiB")
            body += self._read_exactly(count)
            if self._read_line():
                raise _BadAnswer("a chunk longer than its size")

    def _read_to_close(self) -> bytes:
        while self._fill():
            if len(self._buffer) > _MAX_ANSWER_BODY:
                raise _BadAnswer("an answer over 16 MiB")
        data = bytes(self._buffer)
        self._buffer.clear()
        return data

"""The direct path's HTTP/1.1: ingest requests as they go on the wire, and every way an answer
can be framed or go wrong, against a loopback listener that answers with scripted bytes."""

from __future__ import annotations

import json
import socket
import threading

import pytest

from hyperdash import errors
from hyperdash.transport import Transport

OK = b'{"stored":1,"duplicates":0}'


class RawServer:
    """A loopback listener that reads each request whole (head and ``Content-Length`` body) and
    answers it with the next bytes of ``answers`` (the last repeats); after an answer whose item
    is a tuple ``(bytes, True)`` it closes the connection. It notes every request and on which
    connection it came."""

    def __init__(self, answers: list):
        self.answers = answers
        self.requests: list[tuple[int, bytes, bytes]] = []  # (connection number, head, body)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._talk, args=(conn, self.connections), daemon=True).start()

    def _talk(self, conn: socket.socket, number: int) -> None:
        with conn:
            data = b""
            while True:
                while b"\r\n\r\n" not in data:
                    more = conn.recv(65536)
                    if not more:
                        return
                    data += more
                head, _, data = data.partition(b"\r\n\r\n")
                length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                                  if line.lower().startswith(b"content-length:")))
                while len(data) < length:
                    data += conn.recv(65536)
                body, data = data[:length], data[length:]
                self.requests.append((number, head, body))
                answer = self.answers[min(len(self.requests), len(self.answers)) - 1]
                answer, close = answer if isinstance(answer, tuple) else (answer, False)
                conn.sendall(answer)
                if close:
                    return

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def raw_server():
    servers: list[RawServer] = []

    def start(*answers) -> RawServer:
        servers.append(RawServer(list(answers)))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def send(transport: Transport, seq: int = 1) -> dict:
    return transport.send_events([{"type": "log", "seq": seq}], "monitor")


def with_length(status: str, body: bytes, *headers: str) -> bytes:
    return (f"HTTP/1.1 {status}\r\n" + "".join(h + "\r\n" for h in headers)
            + f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def test_a_request_goes_as_one_post_with_its_headers_and_its_body_byte_for_byte(raw_server):
    server = raw_server(with_length("200 OK", OK))
    transport = Transport(server.url + "/prefix/", api_key="key-1", headers={"x-extra": "yes"})
    big = "é" * 100_000  # over 64 KiB: head and body go in two writes
    assert transport.send_events([{"type": "log", "seq": 1, "body": big}], "monitor") == {"stored": 1, "duplicates": 0}
    _, head, body = server.requests[0]
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0] == "POST /prefix/api/v1/sdk/http HTTP/1.1"
    fields = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
    assert fields["host"] == server.url.removeprefix("http://")
    assert fields["content-length"] == str(len(body))
    assert fields["x-hyperdash-auth"] == "key-1" and fields["x-extra"] == "yes"
    assert fields["content-type"] == "application/json"
    assert json.loads(body) == [{"type": "log", "seq": 1, "body": big}]
    transport.close()


def test_a_kept_alive_connection_carries_request_after_request(raw_server):
    server = raw_server(with_length("200 OK", OK))
    transport = Transport(server.url, api_key="k")
    assert [send(transport, seq)["stored"] for seq in (1, 2, 3)] == [1, 1, 1]
    assert [number for number, _, _ in server.requests] == [1, 1, 1]
    transport.close()


@pytest.mark.parametrize(("answer", "connections"), [
    # chunked, with a chunk extension and a trailer field
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
     + b"5;ext=1\r\n" + OK[:5] + b"\r\n" + f"{len(OK) - 5:x}\r\n".encode() + OK[5:] + b"\r\n0\r\nX-Trailer: t\r\n\r\n",
     [1, 1]),
    (b"HTTP/1.1 100 Continue\r\n\r\n" + with_length("200 OK", OK), [1, 1]),
    (b"HTTP/1.1 200 OK\r\nX-Note: one\r\n  two\r\n" + f"Content-Length: {len(OK)}\r\n\r\n".encode() + OK, [1, 1]),
    # answers that end their connection: the next request goes on a new one
    ((b"HTTP/1.1 200 OK\r\n\r\n" + OK, True), [1, 2]),  # no length: the body ends with the connection
    ((with_length("200 OK", OK, "Connection: close"), True), [1, 2]),
    ((b"HTTP/1.0 200 OK\r\n" + f"Content-Length: {len(OK)}\r\n\r\n".encode() + OK, True), [1, 2]),
    # bytes after the answer that nobody asked for: the connection is not trusted again
    ((with_length("200 OK", OK) + b"HTTP/1.1 200 OK\r\n", True), [1, 2]),
], ids=["chunked", "interim answer first", "folded header", "no length", "connection close", "HTTP/1.0",
        "bytes after the answer"])
def test_answers_framed_every_way_a_server_may_frame_them_are_read_whole(raw_server, answer, connections):
    server = raw_server(answer)
    transport = Transport(server.url, api_key="k")
    assert send(transport, 1) == {"stored": 1, "duplicates": 0}
    assert send(transport, 2) == {"stored": 1, "duplicates": 0}
    assert [number for number, _, _ in server.requests] == connections
    transport.close()


def test_error_answers_become_the_sdks_errors_with_the_servers_words(raw_server):
    server = raw_server(
        with_length("429 Too Many Requests", b'{"code":"rate_limited","message":"slow down"}', "Retry-After: 7"),
        with_length("503 Service Unavailable", b"{}", "Retry-After: 2"),
        with_length("401 Unauthorized", b'{"code":"invalid_api_key","message":"no such key"}'),
        with_length("400 Bad Request", b'{"code":"invalid","message":"event 0: bad"}'),
    )
    transport = Transport(server.url, api_key="k")
    with pytest.raises(errors.RateLimited) as limited:
        send(transport)
    assert limited.value.retry_after == 7
    with pytest.raises(errors.ServerError) as busy:
        send(transport)
    assert busy.value.status == 503 and busy.value.retry_after == 2
    with pytest.raises(errors.AuthenticationError, match="no such key"):
        send(transport)
    with pytest.raises(errors.APIError, match="event 0: bad") as bad:
        send(transport)
    assert bad.value.status == 400 and bad.value.code == "invalid"
    transport.close()


@pytest.mark.parametrize(("answer", "reason"), [
    (b"SSH-2.0-OpenSSH_9.2\r\n\r\n", "not HTTP/1.x"),
    (b"HTTP/1.1 2OO OK\r\n\r\n", "not HTTP/1.x"),
    (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "malformed header"),
    (b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n", "over 64 KiB"),
    (with_length("200 OK", OK).replace(b"Content-Length: 27", b"Content-Length: -1"), "Content-Length '-1'"),
    ((b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + OK, True), "closed inside an answer's body"),
    ((b"HTTP/1.1 200 OK\r\nContent-", True), "closed inside an answer's head"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "chunk size that is not a number"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\n", "chunk size that is not a number"),
    ("HTTP/1.1 1²3 OK\r\n\r\n".encode("latin-1"), "not HTTP/1.x"),
    (b"HTTP/1.1 099 OK\r\n\r\n", "not HTTP/1.x"),
    ("HTTP/1.1 200 OK\r\nContent-Length: ²\r\n\r\n".encode("latin-1"), "Content-Length"),
], ids=["not http", "bad status", "no colon", "huge head", "bad length", "short body", "short head", "bad chunk",
        "0x chunk", "superscript status", "status under 100", "superscript length"])
def test_an_answer_that_is_not_http_as_we_read_it_is_a_clear_error_and_counts_nothing(raw_server, answer, reason):
    server = raw_server(answer)
    transport = Transport(server.url, api_key="k")
    with pytest.raises(errors.ServerUnreachable, match=reason):
        send(transport)
    transport.close()


def test_a_server_that_closes_a_new_connection_without_answering_is_unreachable_not_retried(raw_server):
    server = raw_server((b"", True))
    transport = Transport(server.url, api_key="k")
    with pytest.raises(errors.ServerUnreachable, match="closed the connection without answering"):
        send(transport)
    assert len(server.requests) == 1  # a fresh connection that fails is not tried again
    transport.close()


def test_a_server_that_never_answers_costs_the_read_timeout_and_no_more(raw_server):
    listener = socket.create_server(("127.0.0.1", 0))  # accepts (the kernel's backlog) and never reads
    try:
        transport = Transport(f"http://127.0.0.1:{listener.getsockname()[1]}", api_key="k", timeout=(1.0, 0.3))
        with pytest.raises(errors.ServerUnreachable, match="no answer in time"):
            send(transport)
        transport.close()
    finally:
        listener.close()


@pytest.mark.parametrize("key", ["k\r\nX-Injected: 1", "k\x00", "clé-\u2603"], ids=["line break", "NUL", "snowman"])
def test_a_header_value_http_cannot_carry_is_refused_and_nothing_is_sent(raw_server, key):
    server = raw_server(with_length("200 OK", OK))
    transport = Transport(server.url, api_key=key)
    with pytest.raises(errors.TransportError) as refused:
        send(transport)
    assert not isinstance(refused.value, errors.ServerUnreachable)
    assert server.requests == [] and server.connections == 0
    transport.close()

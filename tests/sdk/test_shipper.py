"""The shipper's manners: heartbeats when quiet, Retry-After, backoff, a bounded close."""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from hyperdash import errors, events, framing
from hyperdash.config import KeySource
from hyperdash.server.checks import checked_batch
from hyperdash.shipper import PROBE_EVENTS, Backoff, Shipper, SpoolSender, _body, encoded_events
from hyperdash.spool import EVENT, Record, Spool
from hyperdash.transport import Transport


class LoopbackServer:
    """An HTTP listener on a loopback port, each request served on a thread of its own."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]):
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class ScriptedServer(LoopbackServer):
    """An HTTP listener on a loopback port that answers ingest requests from a script of
    ``(status, headers)`` replies (the last one repeats) and notes when each request came (and
    its headers, in ``headers``)."""

    def __init__(self, replies, gate: threading.Event | None = None, blocks: bool = False, attached: bool = False):
        self.replies = list(replies)
        self.blocks = blocks  # whether replies say the server takes blocks of lines
        self.attached = attached  # whether they say it takes texts after the JSON
        # what it answers a body with texts after the JSON, when it does not read them: what a
        # server of ours that predates them answers (None: it reads them)
        self.refusal: tuple[int, str] | None = None if attached else (400, "invalid_json")
        self.requests: list[tuple[float, list]] = []  # what it took (with texts after the JSON put in place)
        self.headers: list[dict[str, str]] = []
        self.refused = 0  # bodies with texts after the JSON refused as a server without them refuses them
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                raw = self.rfile.read(int(self.headers["content-length"]))
                owner.headers.append({name.lower(): value for name, value in self.headers.items()})
                if self.headers["content-type"] == events.ATTACHED_TEXT_TYPE and owner.refusal is not None:
                    owner.refused += 1
                    self.answer(owner.refusal[0], {"code": owner.refusal[1], "message": "cannot read that"})
                    return
                body = json.loads(raw) if self.headers["content-type"] == "application/json" else texts_put_in(raw)
                owner.requests.append((time.monotonic(), body))
                if gate is not None:  # the request stays in flight until the test opens the gate
                    gate.wait(30)
                status, headers = owner.replies[min(len(owner.requests), len(owner.replies)) - 1]
                ok = {"stored": len(body), "duplicates": 0, **({"log_blocks": True} if owner.blocks else {}),
                      **({"attached_text": True} if owner.attached else {})}
                self.answer(status, ok if status == 200 else {"code": "busy", "message": "try later"}, headers)

            def answer(self, status, answer, headers=None):
                reply = json.dumps(answer).encode()
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args):
                pass

        super().__init__(Handler)


def texts_put_in(raw: bytes) -> list:
    """The envelopes of a body whose log texts follow its JSON, each text put in its event's
    ``body``; every byte of them taken."""
    head, _, text = raw.partition(b"\n")
    envelopes = json.loads(head)
    offset = 0
    for env in envelopes:
        size = env["payload"].pop("bytes", None)
        if size is not None:
            env["payload"]["body"] = text[offset:offset + size].decode("utf-8", "replace")
            offset += size
    assert offset == len(text)
    return envelopes


class Clock:
    """A clock the test moves by hand: the shipper's retries fall due when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def wait_until(predicate, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def make_shipper(url: str, lines: int = 3, **kwargs) -> tuple[Shipper, list[str]]:
    run_uuid = str(uuid.uuid4())
    spool = Spool.create(run_uuid, {"server": url})
    spool.append(EVENT, None, 1, 1, 1, json.dumps({"type": "run_started", "payload": {"job_name": "s"}}).encode())
    if lines:
        spool.append(framing.LINES, "stdout", 2, lines, 1, b"".join(b"l%d\n" % i for i in range(lines)))
    warnings: list[tuple[str, str]] = []  # (key, message): the run shows one line per key
    sender = SpoolSender(spool, Transport(url, api_key="k"), run_uuid, "monitor")
    shipper = Shipper(sender, warn=lambda key, msg: warnings.append((key, msg)), first_send_delay=0,
                      flush_interval=0.01, **kwargs)
    return shipper, warnings


def test_retry_after_is_honoured():
    server = ScriptedServer([(429, {"Retry-After": "1.5"}), (200, {})])
    clock = Clock()
    try:
        shipper, warnings = make_shipper(server.url, clock=clock)
        shipper.start()
        wait_until(lambda: shipper.last_error is not None)
        assert shipper.retry_at == clock.now + 1.5  # exactly what the server asked, no jitter
        clock.now = shipper.retry_at
        wait_until(lambda: len(server.requests) == 2 and not shipper.sender.pending())
        assert server.requests[1][1] == server.requests[0][1]  # the same events again
        assert warnings == []  # being asked to slow down is no problem to report
        shipper.close(2)
    finally:
        server.close()


def test_server_errors_back_off_and_warn_under_one_key():
    server = ScriptedServer([(500, {})])
    clock = Clock()
    try:
        shipper, warnings = make_shipper(server.url, clock=clock)
        shipper.start()
        delays = []
        for attempt in range(1, 7):
            wait_until(lambda tries=attempt: len(server.requests) == tries and shipper.retry_at > clock.now)
            delays.append(shipper.retry_at - clock.now)
            clock.now = shipper.retry_at  # the next try falls due
        shipper.close(0.5)
        # exponential backoff with full jitter: each delay within [d/2, d], d = 0.5 s doubling to 10 s
        for failures, delay in enumerate(delays):
            ceiling = min(10.0, 0.5 * 2 ** failures)
            assert ceiling / 2 <= delay <= ceiling, (failures, delays)
        assert {key for key, _ in warnings} == {"server"} and "server error 500" in warnings[0][1]
        assert shipper.sender.pending()  # nothing acknowledged, nothing forgotten
    finally:
        server.close()


def lines_sent(server: ScriptedServer) -> list[list[str]]:
    """The log lines' bodies of each request the server received."""
    return [[event["payload"]["body"] for event in body if event["type"] == "log"] for _, body in server.requests]


def add_line(shipper: Shipper, seq: int) -> None:
    shipper.sender.spool.append(framing.LINES, "stdout", seq, 1, 1, b"new %d\n" % seq)
    shipper.nudge()


def test_an_idle_shipper_sends_a_new_line_at_once():
    server = ScriptedServer([(200, {})])
    try:
        # no timer would send it for a minute: only the nudge can
        shipper, _ = make_shipper(server.url, lines=0)
        shipper.flush_interval = shipper.heartbeat_interval = 60
        shipper.start()
        wait_until(lambda: len(server.requests) == 1 and not shipper.sender.pending())
        wait_until(lambda: shipper._idle)
        add_line(shipper, 2)
        wait_until(lambda: len(server.requests) == 2)
        assert lines_sent(server)[1] == ["new 2"]
        shipper.close(2)
    finally:
        server.close()


def test_lines_that_keep_coming_go_together_one_request_per_send_interval():
    # A training loop's line every 2 ms: each would find the shipper idle (its request long
    # answered), yet they go in one request per send_interval, not one each.
    server = ScriptedServer([(200, {})])
    try:
        shipper, _ = make_shipper(server.url, lines=0, send_interval=0.05)
        shipper.flush_interval = shipper.heartbeat_interval = 60
        shipper.start()
        wait_until(lambda: len(server.requests) == 1 and shipper._idle)
        started = time.monotonic()
        for seq in range(2, 252):
            add_line(shipper, seq)
            time.sleep(0.002)
        wait_until(lambda: not shipper.sender.pending())
        took = time.monotonic() - started
        requests = len(server.requests) - 1
        assert [line for batch in lines_sent(server) for line in batch] == [f"new {seq}" for seq in range(2, 252)]
        assert 2 <= requests <= took / 0.05 + 2, (requests, took)
        # and after a quiet spell, the next line goes at once, alone
        time.sleep(0.2)
        add_line(shipper, 252)
        wait_until(lambda: len(server.requests) == requests + 2)
        assert lines_sent(server)[-1] == ["new 252"]
        shipper.close(2)
    finally:
        server.close()


def test_lines_that_come_while_a_request_is_in_flight_go_together_in_the_next():
    gate = threading.Event()
    server = ScriptedServer([(200, {})], gate=gate)
    try:
        shipper, _ = make_shipper(server.url, lines=0)
        shipper.flush_interval = shipper.heartbeat_interval = 60
        shipper.start()
        wait_until(lambda: len(server.requests) == 1)  # in flight, held at the gate
        for seq in range(2, 7):
            add_line(shipper, seq)
        gate.set()
        wait_until(lambda: not shipper.sender.pending())
        assert len(server.requests) == 2
        assert lines_sent(server)[1] == [f"new {seq}" for seq in range(2, 7)]
        shipper.close(2)
    finally:
        gate.set()
        server.close()


def test_heartbeat_after_silence_and_none_while_busy(account):
    shipper, _ = make_shipper(account.server.url, lines=0, heartbeat_interval=0.3)
    shipper.sender.transport.api_key = account.api_key
    shipper.start()
    run = account.wait_for(lambda: [r for r in account.runs() if r["uuid"] == shipper.sender.run_uuid])[0]
    first_seen = run["last_seen_at"]
    account.wait_for(lambda: account.run(run["uuid"])["last_seen_at"] > first_seen, timeout=5)
    shipper.close(1)
    assert account.logs(run["uuid"]) == []  # heartbeats are not events


def test_close_is_bounded_against_a_server_that_never_answers():
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    try:
        shipper, _ = make_shipper(f"http://127.0.0.1:{listener.getsockname()[1]}")
        shipper.start()
        listener.settimeout(10)
        connection, _ = listener.accept()  # a request is in flight, and no answer will come
        started = time.monotonic()
        shipper.close(1.0)
        # bounded by the close's timeout, far below the 10 s a read may wait for an answer
        assert time.monotonic() - started < 5
        assert shipper.sender.pending() and shipper.sender.frozen
        connection.close()
    finally:
        listener.close()


def test_backoff_grows_with_jitter_up_to_the_cap():
    backoff = Backoff(base=0.5, cap=4)
    delays = [backoff.next_delay() for _ in range(8)]
    assert all(0.25 <= d <= 0.5 for d in delays[:1])
    assert all(2 <= d <= 4 for d in delays[4:])
    backoff.reset()
    assert backoff.next_delay() <= 0.5


def test_backoff_stays_at_the_cap_however_many_failures():
    # a server down for hours: thousands of failures in a row must not overflow the delay
    backoff = Backoff(base=0.5, cap=10.0)
    delays = [backoff.next_delay() for _ in range(3000)]
    assert all(5.0 <= d <= 10.0 for d in delays[10:])
    backoff.reset()
    assert backoff.next_delay() <= 0.5


def test_key_source_is_what_the_transport_calls(monkeypatch):
    keys = iter(["first", "second"])
    source = KeySource(lambda: next(keys), refresh_seconds=0)
    transport = Transport("http://127.0.0.1:9", api_key=source.get)
    assert transport._current_key() == "first" and transport._current_key() == "second"


def test_an_ingest_request_goes_again_on_a_new_connection_when_the_server_dropped_the_kept_alive_one():
    requests_seen = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the server is

        def do_POST(self):
            requests_seen.append(json.loads(self.rfile.read(int(self.headers["content-length"]))))
            reply = json.dumps({"stored": 1, "duplicates": 0}).encode()
            self.send_response(200)
            self.send_header("content-length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)
            self.close_connection = True  # an idle timeout: gone without a word to the client

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    transport = Transport(f"http://127.0.0.1:{httpd.server_address[1]}", api_key="k")
    try:
        for seq in (1, 2, 3):
            assert transport.send_events([{"type": "log", "seq": seq}], "monitor") == {"stored": 1, "duplicates": 0}
        assert [body[0]["seq"] for body in requests_seen] == [1, 2, 3]
    finally:
        transport.close()
        httpd.shutdown()
        httpd.server_close()


class Redirector(LoopbackServer):
    """A loopback listener that answers every POST with ``status``, a ``Location`` at ``target``
    (none when None) and ``body``, as a proxy sending plain http to https does; it counts them."""

    def __init__(self, status: int, target: str | None, body: bytes = b""):
        self.posts = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # kept alive, as a proxy's connection is

            def do_POST(self):
                self.rfile.read(int(self.headers["content-length"]))
                owner.posts += 1
                self.send_response(status)
                if target is not None:
                    self.send_header("location", target + self.path)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        super().__init__(Handler)


@pytest.mark.parametrize(("status", "body"), [(308, b""), (307, b""), (308, b"<html>moved</html>")])
def test_a_redirected_ingest_request_is_followed_and_every_event_arrives(status, body):
    receiver = ScriptedServer([(200, {})])
    redirector = Redirector(status, receiver.url, body)
    try:
        shipper, warnings = make_shipper(redirector.url)
        shipper.start()
        wait_until(lambda: not shipper.sender.pending())
        add_line(shipper, 5)  # (the first lines hold seqs 2 to 4)
        wait_until(lambda: not shipper.sender.pending())
        add_line(shipper, 6)
        wait_until(lambda: not shipper.sender.pending())
        shipper.close(2)
        events = [event for _, batch in receiver.requests for event in batch]
        assert [e["type"] for e in events if e["type"] != "log"][:1] == ["run_started"]
        assert [e["payload"]["body"] for e in events if e["type"] == "log"] == ["l0", "l1", "l2", "new 5", "new 6"]
        # each batch reached the receiver once through the redirect; only the first also went
        # the direct way, met the redirect there and was sent again: later ones go straight to requests
        assert redirector.posts == len(receiver.requests) + 1 and len(receiver.requests) >= 3
        assert warnings == [] and shipper.last_error is None
    finally:
        redirector.close()
        receiver.close()


def test_a_redirect_that_cannot_be_followed_delivers_nothing_and_keeps_the_events():
    redirector = Redirector(308, None)  # no Location: nowhere to go
    clock = Clock()
    try:
        shipper, warnings = make_shipper(redirector.url, clock=clock)
        shipper.start()
        wait_until(lambda: shipper.last_error is not None)
        shipper.close(0.5)
        assert isinstance(shipper.last_error, errors.TransportError)
        assert "308" in str(shipper.last_error) and "could not be followed" in str(shipper.last_error)
        assert {key for key, _ in warnings} == {"transport"}
        assert shipper.sender.pending()  # nothing acknowledged, nothing forgotten
        # the direct path met the redirect and handed the request to requests, which said why not
        assert redirector.posts >= 2
    finally:
        redirector.close()


def test_basic_auth_from_a_netrc_entry_for_the_server_goes_with_ingest_requests(tmp_path, monkeypatch):
    server = ScriptedServer([(200, {})])
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login ana password s3cret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    try:
        transport = Transport(server.url, api_key="k")
        assert transport.send_events([{"type": "log", "seq": 1}], "monitor") == {"stored": 1, "duplicates": 0}
        transport.close()
        assert server.headers[0]["authorization"] == "Basic " + base64.b64encode(b"ana:s3cret").decode()
        assert server.headers[0]["x-hyperdash-auth"] == "k"

        netrc.write_text("machine elsewhere.example login ana password s3cret\n")  # not this server's
        transport = Transport(server.url, api_key="k")
        transport.send_events([{"type": "log", "seq": 2}], "monitor")
        transport.close()
        assert "authorization" not in server.headers[1]
    finally:
        server.close()


def seqs_and_texts_sent(requests: list) -> list[tuple[int, str]]:
    """(seq, text) of every log line the requests carried, blocks of lines opened up."""
    out = []
    for _, body in requests:
        for env in body:
            if env["type"] != "log":
                continue
            payload = env["payload"]
            if "lines" in payload:
                texts = payload["body"].split("\n")
                assert texts.pop() == "" and len(texts) == payload["lines"]
                out += [(env["seq"] + i, text) for i, text in enumerate(texts)]
            else:
                out.append((env["seq"], payload["body"]))
    return out


@pytest.mark.parametrize("blocks, attached", [(True, True), (True, False), (False, False)],
                         ids=["server takes blocks and texts after the JSON", "server takes blocks",
                              "server does not say"])
def test_lines_go_in_blocks_only_once_the_server_has_said_it_takes_them(blocks, attached):
    server = ScriptedServer([(200, {})], blocks=blocks, attached=attached)
    try:
        run_uuid = str(uuid.uuid4())
        spool = Spool.create(run_uuid, {"server": server.url})
        spool.append(EVENT, None, 1, 1, 1, json.dumps({"type": "run_started", "payload": {"job_name": "s"}}).encode())
        texts = [f"line {i} " + "x" * (i % 300) for i in range(5000)]
        spool.append(framing.LINES, "stdout", 2, len(texts), 1, "".join(t + "\n" for t in texts).encode())
        sender = SpoolSender(spool, Transport(server.url, api_key="k"), run_uuid, "monitor")
        while sender.send_batch():
            pass
        assert seqs_and_texts_sent(server.requests) == list(enumerate(texts, start=2))  # every line, once, in order
        first = server.requests[0][1]
        assert len(first) == PROBE_EVENTS and all("lines" not in env["payload"] for env in first)
        later = [env for _, body in server.requests[1:] for env in body]
        types = [headers["content-type"] for headers in server.headers]
        assert types == ["application/json"] + [events.ATTACHED_TEXT_TYPE if attached else "application/json"] * (
            len(types) - 1)
        if attached:  # the record's lines left, a batch's worth (2,000 events) a block, uncut
            assert [env["payload"]["lines"] for env in later] == [2000, 2000, len(texts) + 1 - PROBE_EVENTS - 4000]
        elif blocks:
            assert all(env["payload"]["lines"] > 1 for env in later)
            assert len(later) < 100  # (about 1.3 MB of lines, in 16 KiB blocks)
            assert max(len(env["payload"]["body"].encode()) for env in later) <= events.LOG_BLOCK_BYTES
        else:
            assert len(later) == len(texts) + 1 - PROBE_EVENTS
            assert all("lines" not in env["payload"] for env in later)
        assert spool.acked_seq == len(texts) + 1
        spool.close()
    finally:
        server.close()


@pytest.mark.parametrize("attach", [False, True], ids=["texts in the JSON", "texts after the JSON"])
def test_blocks_of_lines_cut_anywhere_carry_each_line_once_and_pass_the_servers_check(attach):
    run_uuid = str(uuid.uuid4())
    # Lines of every length up to the longest a piece may be, invalid UTF-8 among them.
    texts = [b"\xff\xfe" * (n % 50) + b"a" * ((n * 997) % events.MAX_LINE_BYTES) for n in range(60)]
    blob = b"".join(t + b"\n" for t in texts)
    record = Record(0, len(blob), framing.LINES, "stderr", 11, len(texts), 5, blob)
    expected = [(11 + i, t.decode("utf-8", "replace")) for i, t in enumerate(texts)]
    for after, limit in [(0, None), (10, None), (10 + 7, None), (0, 1), (10 + 59, 5), (10 + 3, 20), (10 + 60, None)]:
        fragments, count = encoded_events(record, run_uuid, after, limit, blocks=True, attach=attach)
        body, content_type = _body(fragments)
        assert content_type == (events.ATTACHED_TEXT_TYPE if attach and fragments else "application/json")
        envelopes = texts_put_in(body) if attach else json.loads(body)
        got = seqs_and_texts_sent([(0, envelopes)]) if fragments else []
        start = max(0, after - 10)
        want = expected[start:] if limit is None else expected[start:start + limit]
        assert got == want and count == len(want)
        if fragments:
            batch = checked_batch(body, 1, "monitor", attached_text=attach)  # what the server makes of them
            assert [(line.seq, line.text) for line in batch.parts[run_uuid].lines] == want
            if attach:  # what is left of the record, one block (a text sent as it is needs no cutting)
                assert len(envelopes) == 1
            else:
                assert all(len(env["payload"]["body"].encode()) <= events.MAX_LOG_BODY_BYTES for env in envelopes)


def spool_of_lines(url: str, texts: list[str]) -> tuple[Spool, str]:
    run_uuid = str(uuid.uuid4())
    spool = Spool.create(run_uuid, {"server": url})
    spool.append(EVENT, None, 1, 1, 1, json.dumps({"type": "run_started", "payload": {"job_name": "s"}}).encode())
    spool.append(framing.LINES, "stdout", 2, len(texts), 1, "".join(t + "\n" for t in texts).encode())
    return spool, run_uuid


def test_a_server_that_stops_taking_blocks_gets_the_same_lines_again_one_each():
    server = ScriptedServer([(200, {})], blocks=True)
    try:
        texts = [f"line {i}" for i in range(3000)]
        spool, run_uuid = spool_of_lines(server.url, texts)
        sender = SpoolSender(spool, Transport(server.url, api_key="k"), run_uuid, "monitor")
        assert sender.send_batch() == PROBE_EVENTS
        server.blocks = False  # an older server put back in its place
        assert sender.send_batch() == 2000  # sent as blocks, taken for single lines...
        assert spool.acked_seq == PROBE_EVENTS  # ...so not counted as stored
        while sender.send_batch():
            pass
        resent = [env for _, body in server.requests[2:] for env in body]
        assert all("lines" not in env["payload"] for env in resent)
        assert [(env["seq"], env["payload"]["body"]) for env in resent] == list(enumerate(texts, start=2))[99:]
        assert spool.acked_seq == len(texts) + 1
        spool.close()
    finally:
        server.close()


def test_batches_of_one_event_with_texts_after_the_json_carry_every_line():
    # (where 413s have cut the batches down to one event: a batch is never left empty)
    server = ScriptedServer([(200, {})], blocks=True, attached=True)
    try:
        texts = [f"line {i}" for i in range(PROBE_EVENTS + 5)]
        spool, run_uuid = spool_of_lines(server.url, texts)
        sender = SpoolSender(spool, Transport(server.url, api_key="k"), run_uuid, "monitor", batch_events=1)
        counts = []
        while sender.pending() and len(counts) < 200:
            counts.append(sender.send_batch())
        assert counts == [1] * (len(texts) + 1)
        assert seqs_and_texts_sent(server.requests) == list(enumerate(texts, start=2))
        spool.close()
    finally:
        server.close()


@pytest.mark.parametrize("refusal, replies_say_it", [
    ((400, "invalid_json"), False),  # an older server of ours put back: the text is not JSON
    ((400, "invalid_event"), False),  # the same, when the text happens to be whitespace (JSON's)
    ((415, "unsupported_media_type"), True),  # a proxy in front of a server that takes the form
], ids=["not json", "whitespace", "a proxy refuses the type"])
def test_a_server_that_stops_taking_texts_after_the_json_gets_the_same_lines_again_in_json(refusal, replies_say_it):
    server = ScriptedServer([(200, {})], blocks=True, attached=True)
    try:
        texts = [f"line {i}" for i in range(3000)]
        spool, run_uuid = spool_of_lines(server.url, texts)
        sender = SpoolSender(spool, Transport(server.url, api_key="k"), run_uuid, "monitor")
        assert sender.send_batch() == PROBE_EVENTS
        server.refusal, server.attached = refusal, replies_say_it
        assert sender.send_batch() == 0  # refused whole: nothing stored...
        assert server.refused == 1 and spool.acked_seq == PROBE_EVENTS and sender.pending()  # ...nothing counted
        while sender.send_batch():
            pass
        assert server.refused == 1  # (once: the next batches go as JSON)
        assert {headers["content-type"] for headers in server.headers[2:]} == {"application/json"}
        assert seqs_and_texts_sent(server.requests) == list(enumerate(texts, start=2))
        assert spool.acked_seq == len(texts) + 1
        spool.close()
    finally:
        server.close()


def test_a_block_refused_as_too_large_is_sent_again_cut_smaller():
    server = ScriptedServer([(200, {}), (413, {}), (200, {})], blocks=True)
    try:
        texts = [f"line {i}" for i in range(300)]  # (short: the lines after the probe fit one block)
        spool, run_uuid = spool_of_lines(server.url, texts)
        sender = SpoolSender(spool, Transport(server.url, api_key="k"), run_uuid, "monitor")
        assert sender.send_batch() == PROBE_EVENTS
        with pytest.raises(errors.APIError) as raised:
            sender.send_batch()
        assert raised.value.status == 413 and len(server.requests[1][1]) == 1
        assert sender.batch_events == 100  # half the 201 lines of the block refused
        while sender.send_batch():
            pass
        assert [len(body) for _, body in server.requests[2:]] == [1, 1, 1]  # blocks of 100, 100 and 1
        assert seqs_and_texts_sent(server.requests[2:]) == list(enumerate(texts, start=2))[99:]
        assert spool.acked_seq == len(texts) + 1
        spool.close()
    finally:
        server.close()

"""Server-sent events, against a real uvicorn in this process (``ServerThread``)."""

from __future__ import annotations

import threading
import time
import uuid

import httpx2
import orjson
import pytest
from server_helpers import env, log

from hyperdash import events
from hyperdash.server.main import ServerThread


class Events:
    """Reads a server-sent event stream: ``take(n)`` gives the next n events as dicts."""

    def __init__(self, client: httpx2.Client, url: str, headers: dict):
        self._cm = client.stream("GET", url, headers=headers, timeout=httpx2.Timeout(10.0))
        self.response = self._cm.__enter__()
        self._lines = self.response.iter_lines()

    def take(self, n: int) -> list[dict]:
        found, current = [], {}
        while len(found) < n:
            line = next(self._lines)
            if line == "":
                if "event" in current:
                    current["data"] = orjson.loads(current["data"])
                    found.append(current)
                current = {}
            elif not line.startswith(":") and ":" in line:
                field, _, value = line.partition(":")
                current[field] = value.lstrip()
        return found

    def close(self) -> None:
        self._cm.__exit__(None, None, None)


@pytest.fixture
def live(db_url):
    with ServerThread(db_url=db_url) as server:
        with httpx2.Client(base_url=server.url) as client:
            resp = client.post("/api/v1/users",
                               json={"email": f"{uuid.uuid4().hex[:8]}@x.org", "password": "password!"})
            key = resp.json()["api_key"]
            yield server, client, {events.AUTH_HEADER: key}


def post(client, headers, body):
    resp = client.post(events.INGEST_PATH, headers=headers, json=body)
    assert resp.status_code == 200, resp.text


def test_run_stream_follows_and_resumes(live):
    server, client, headers = live
    run = str(uuid.uuid4())
    post(client, headers,
         [env("run_started", run, {"job_name": "live"}, seq=1), log(run, 2, "one"), log(run, 3, "two")])
    stream = Events(client, f"/api/v1/runs/{run}/events", headers)
    assert stream.response.headers["content-type"].startswith("text/event-stream")
    first = stream.take(3)
    assert first[0]["event"] == "status" and first[0]["data"]["name"] == "live"
    assert [(e["event"], e["id"], e["data"]["text"]) for e in first[1:]] == [("log", "2", "one"), ("log", "3", "two")]
    post(client, headers, [log(run, 4, "three"),
                           env("metric", run, {"name": "loss", "value": 0.5, "timestamp": 1, "is_internal": False,
                                               "step": 7}, seq=5),
                           env("param", run, {"params": {"lr": 0.1}}, seq=6)])
    got = stream.take(3)
    assert [(e["event"], e["id"]) for e in got] == [("log", "4"), ("metric", "5"), ("param", "6")]
    assert got[1]["data"] == {"name": "loss", "value": 0.5, "step": 7, "timestamp": "1970-01-01T00:00:00.001Z",
                              "internal": False}
    assert got[2]["data"] == {"params": {"lr": 0.1}}
    stream.close()

    # Gone for a while: what happened meanwhile comes after Last-Event-ID, nothing before it.
    post(client, headers, [log(run, 7, "four"), env("run_ended", run, {"final_status": "success"}, seq=8)])
    resumed = Events(client, f"/api/v1/runs/{run}/events", {**headers, "last-event-id": "6"})
    status, line = resumed.take(2)
    assert status["event"] == "status" and status["data"]["status"] == "success"
    assert (line["event"], line["id"], line["data"]["text"]) == ("log", "7", "four")
    resumed.close()
    by_query = Events(client, f"/api/v1/runs/{run}/events?after=3", headers)
    assert [e["id"] for e in by_query.take(5)[1:]] == ["4", "5", "6", "7"]
    by_query.close()


def follow_new_run(client, headers, name: str) -> tuple[str, Events]:
    """A run just started, and its stream, past its first status."""
    run = str(uuid.uuid4())
    post(client, headers, [env("run_started", run, {"job_name": name}, seq=1)])
    stream = Events(client, f"/api/v1/runs/{run}/events", headers)
    stream.take(1)
    return run, stream


def test_run_stream_sends_a_line_stored_after_a_later_one(live):
    # An older batch retried after a newer one went: its lines are new to whoever follows.
    server, client, headers = live
    run, stream = follow_new_run(client, headers, "late")
    post(client, headers, [log(run, 4, "three"), log(run, 5, "four")])
    post(client, headers, [log(run, 2, "one"), log(run, 3, "two")])
    got = stream.take(4)
    # Each id is the highest seq sent, where a reconnection resumes.
    assert [(e["data"]["seq"], e["id"]) for e in got] == [(4, "4"), (5, "5"), (2, "5"), (3, "5")]
    stream.close()


def test_run_stream_sends_nan_points_live_and_after_a_resume(live):
    # A loss going NaN is what a person following the run must see at once; JSON has no NaN: the
    # value is null and its text says which, as the API shows it.
    server, client, headers = live
    run, stream = follow_new_run(client, headers, "diverging")

    def point(seq: int, value) -> dict:
        return env("metric", run, {"name": "loss", "value": value, "timestamp": seq, "is_internal": False,
                                   "step": seq}, seq=seq, timestamp=seq)

    post(client, headers, [point(2, 0.5), point(3, "NaN"), point(4, "-Infinity")])
    expected = [("2", {"name": "loss", "value": 0.5, "step": 2, "timestamp": "1970-01-01T00:00:00.002Z",
                       "internal": False}),
                ("3", {"name": "loss", "value": None, "value_text": "NaN", "step": 3,
                       "timestamp": "1970-01-01T00:00:00.003Z", "internal": False}),
                ("4", {"name": "loss", "value": None, "value_text": "-Infinity", "step": 4,
                       "timestamp": "1970-01-01T00:00:00.004Z", "internal": False})]
    assert [(e["id"], e["data"]) for e in stream.take(3)] == expected
    stream.close()
    resumed = Events(client, f"/api/v1/runs/{run}/events?after=1", headers)
    assert [(e["id"], e["data"]) for e in resumed.take(4)[1:]] == expected
    resumed.close()


def test_run_stream_reports_status_changes(live):
    server, client, headers = live
    run = str(uuid.uuid4())
    post(client, headers, [env("run_started", run, {"job_name": "s"}, seq=1)])
    stream = Events(client, f"/api/v1/runs/{run}/events", headers)
    assert stream.take(1)[0]["data"]["status"] == "running"
    post(client, headers, [env("run_ended", run, {"final_status": "failure", "exit_code": 2}, seq=2)])
    ended = stream.take(1)[0]
    assert ended["event"] == "status" and ended["data"]["status"] == "failure" and ended["data"]["exit_code"] == 2
    stream.close()


def test_account_stream_announces_runs(live):
    server, client, headers = live
    stream = Events(client, "/api/v1/events", headers)
    run = str(uuid.uuid4())
    post(client, headers, [env("run_started", run, {"job_name": "announced"}, seq=1)])
    created = stream.take(1)[0]
    assert created["event"] == "run" and created["data"]["uuid"] == run and created["data"]["status"] == "running"
    post(client, headers, [log(run, 2, "no news for the list")])
    post(client, headers, [env("run_ended", run, {"final_status": "user_canceled"}, seq=3)])
    assert stream.take(1)[0]["data"]["status"] == "user_canceled"
    stream.close()


def test_another_accounts_stream_is_not_found(live):
    server, client, headers = live
    run = str(uuid.uuid4())
    post(client, headers, [env("run_started", run, {"job_name": "mine"}, seq=1)])
    other = client.post("/api/v1/users",
                        json={"email": f"{uuid.uuid4().hex[:8]}@x.org", "password": "password!"}).json()
    resp = client.get(f"/api/v1/runs/{run}/events", headers={events.AUTH_HEADER: other["api_key"]})
    assert resp.status_code == 404
    assert client.get("/api/v1/events").status_code == 401


def test_quiet_streams_are_pinged(live, monkeypatch):
    from hyperdash.server import api

    monkeypatch.setattr(api, "PING_SECONDS", 0.2)
    server, client, headers = live
    with client.stream("GET", "/api/v1/events", headers=headers, timeout=10) as resp:
        lines = resp.iter_lines()
        comments = [line for line in (next(lines) for _ in range(8)) if line.startswith(": ping")]
    assert len(comments) >= 2


def test_open_streams_do_not_hold_up_shutdown(db_url):
    server = ServerThread(db_url=db_url).start()
    with httpx2.Client(base_url=server.url) as client:
        key = client.post("/api/v1/users", json={"email": "s@x.org", "password": "password!"}).json()["api_key"]
        stream = Events(client, "/api/v1/events", {events.AUTH_HEADER: key})
        reader = threading.Thread(target=lambda: list(stream._lines), daemon=True)
        reader.start()
        started = time.monotonic()
        server.stop()
        assert time.monotonic() - started < 8
        reader.join(5)
        assert not reader.is_alive(), "the stream did not end when the server stopped"


def test_account_stream_tells_when_a_run_goes_lost_and_comes_back(live):
    from hyperdash.server.ingest import mark_lost

    server, client, headers = live
    state = server.app.state
    stream = Events(client, "/api/v1/events", headers)
    run = str(uuid.uuid4())
    post(client, headers, [env("run_started", run, {"job_name": "quiet"}, seq=1)])
    assert stream.take(1)[0]["data"]["status"] == "running"
    # The sweep for silent runs, with its clock set past the timeout, so no timing matters.
    later = events.now_ms() + int(state.lost_timeout * 1000) + 1000
    state.store.writer.call(lambda conn: mark_lost(conn, state.lost_timeout, state.run_cache, now_ms=later))
    lost = stream.take(1)[0]
    assert (lost["event"], lost["data"]["uuid"], lost["data"]["status"]) == ("run", run, "lost")
    post(client, headers, env("heartbeat", run, {}))
    assert stream.take(1)[0]["data"]["status"] == "running"
    stream.close()


def test_streams_end_when_the_hub_missed_news(live):
    server, client, headers = live
    run = str(uuid.uuid4())
    post(client, headers, [env("run_started", run, {"job_name": "m"}, seq=1), log(run, 2, "one")])
    stream = Events(client, f"/api/v1/runs/{run}/events", headers)
    assert [e["event"] for e in stream.take(2)] == ["status", "log"]
    server.app.state.hub.on_overflow(1)  # what the store's dispatcher says when it dropped facts
    rest = list(stream._lines)  # ends (within the client's 10 s read timeout, else it raises)
    assert not any(line.startswith("event:") for line in rest)
    stream.close()
    # The browser reconnects and reads what it missed from the store.
    post(client, headers, [log(run, 3, "two")])
    resumed = Events(client, f"/api/v1/runs/{run}/events", {**headers, "last-event-id": "2"})
    assert [(e["event"], e["data"].get("text")) for e in resumed.take(2)] == [("status", None), ("log", "two")]
    resumed.close()


def test_a_commit_told_after_the_stream_read_it_is_not_sent_twice(live):
    """PostgreSQL's relay tells a commit a moment after it, so a stream that opens meanwhile reads
    its events from the store and is then told them: they go out once, and so does the status."""
    server, client, headers = live
    told: list = []
    got_them = threading.Event()

    def keep(facts):
        told.append(facts)
        got_them.set()

    server.app.state.store.everywhere.subscribe(keep, name="test-listener")
    run = str(uuid.uuid4())
    post(client, headers, [env("run_started", run, {"job_name": "late"}, seq=1), log(run, 2, "one"),
                           env("metric", run, {"name": "loss", "value": 0.5, "timestamp": 1, "is_internal": False,
                                               "step": 1}, seq=3)])
    assert got_them.wait(10)
    stream = Events(client, f"/api/v1/runs/{run}/events", headers)
    assert [(e["event"], e["id"]) for e in stream.take(3)] == [("status", "0"), ("log", "2"), ("metric", "3")]
    for facts in told:  # the same commit, told again now, as a relay late by a moment would
        server.app.state.hub.on_facts(facts)
    post(client, headers, [log(run, 4, "two")])
    assert [(e["event"], e["id"], e["data"].get("text")) for e in stream.take(1)] == [("log", "4", "two")]
    stream.close()

"""Several real ``hyperdash server`` processes on one PostgreSQL database: what one process
stores or changes, the others see at once."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid

import orjson
import psycopg
import pytest
import requests
from pg_schema import fresh_schema
from server_helpers import log

from hyperdash import events as ev
from hyperdash.server.throttle import CLIENT_FREE

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


@pytest.fixture
def pg_url():
    with fresh_schema() as url:
        yield url


@pytest.fixture
def start_servers(server_factory, pg_url):
    """``start_servers(count, *args)``: that many server processes on this test's schema,
    started at the same moment (so on an empty database they create its schema together)."""

    def start(count: int, *args: str):
        servers = [server_factory(*args, start=False) for _ in range(count)]
        errors: list[BaseException] = []

        def one(server):
            server.db_url = pg_url
            try:
                server.start(timeout=60)
            except BaseException as exc:  # reported below, with the server's log
                errors.append(exc)

        threads = [threading.Thread(target=one, args=(s,)) for s in servers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors, errors
        return servers

    return start


class Stream:
    """A server-sent event stream read on a thread: ``events`` holds (event, data) as they come."""

    def __init__(self, url: str, headers: dict):
        self.events: list[tuple[str, dict]] = []
        self._resp = requests.get(url, headers=headers, stream=True, timeout=60)
        assert self._resp.status_code == 200, self._resp.text
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        name = None
        try:
            for line in self._resp.iter_lines():
                if line.startswith(b"event: "):
                    name = line[7:].decode()
                elif line.startswith(b"data: ") and name:
                    self.events.append((name, orjson.loads(line[6:])))
        except (requests.RequestException, AttributeError):  # closed by close()
            pass

    def named(self, name: str) -> list[dict]:
        return [data for event, data in list(self.events) if event == name]

    def wait(self, predicate, timeout: float = 15.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.05)
        raise AssertionError(f"not seen within {timeout}s: {self.events[-5:]}")

    def close(self) -> None:
        self._resp.close()


def post(server, api_key: str, envelopes: list[dict]) -> requests.Response:
    # (a connection of its own each time: with --workers, any worker may accept it)
    return requests.post(server.url + ev.INGEST_PATH, json=envelopes, timeout=60,
                         headers={ev.AUTH_HEADER: api_key})


def started(run_uuid: str, name: str) -> dict:
    return ev.envelope(ev.RUN_STARTED, run_uuid, {"job_name": name, "host": "h", "pid": 1, "api": "cli_run"}, seq=1)


def line(run_uuid: str, seq: int, text: str, **flags) -> dict:
    return ev.envelope(ev.LOG, run_uuid, {"uuid": str(uuid.uuid4()), "level": "info", "body": text,
                                          "stream": "stdout", **flags}, seq=seq)


def test_lines_stored_through_one_process_are_live_in_order_on_the_others_streams(start_servers):
    a, b = start_servers(2)
    account = a.signup()
    headers = {ev.AUTH_HEADER: account.api_key}
    runs_stream = Stream(a.url + "/api/v1/events", headers)
    run = str(uuid.uuid4())
    assert post(b, account.api_key, [started(run, "across")]).status_code == 200
    # The account's stream on A hears of the run created through B.
    runs_stream.wait(lambda: any(r["uuid"] == run for r in runs_stream.named("run")))

    live = Stream(a.url + f"/api/v1/runs/{run}/events", headers)
    live.wait(lambda: live.named("status"))
    texts = []
    seq = 1
    for k in range(50):  # alternately through B and A; every fifth batch too big for a notification
        seq += 1
        text = f"line {k} " + ("x" * 9000 if k % 5 == 0 else "")
        texts.append(text)
        assert post(b if k % 2 == 0 else a, account.api_key, [line(run, seq, text)]).status_code == 200
    live.wait(lambda: len(live.named("log")) >= 50)
    time.sleep(0.3)  # (nothing more may come)
    got = live.named("log")
    assert [entry["text"] for entry in got] == texts  # each once, in order
    assert [entry["seq"] for entry in got] == list(range(2, 52))
    live.close()
    runs_stream.close()


def test_a_key_revoked_through_one_process_is_refused_by_the_other_within_a_second(start_servers):
    a, b = start_servers(2)
    reply = a.session.post(a.url + "/api/v1/users", json={"email": f"k-{uuid.uuid4().hex[:8]}@example.com",
                                                          "password": "correct horse battery"}, timeout=10)
    token, key = reply.json()["access_token"], reply.json()["api_key"]
    run = str(uuid.uuid4())
    assert post(b, key, [started(run, "keyed")]).status_code == 200  # B now caches the key
    keys = a.session.get(a.url + "/api/v1/users/api_keys", headers={"authorization": token}, timeout=10).json()
    key_id = keys["api_keys"][0]["id"]
    revoked = a.session.delete(a.url + f"/api/v1/users/api_keys/{key_id}", headers={"authorization": token},
                               timeout=10)
    assert revoked.status_code == 200, revoked.text
    deadline = time.monotonic() + 1.0
    while True:
        status = post(b, key, [line(run, 2, "after the revocation")]).status_code
        if status == 401 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert status == 401
    assert post(a, key, [line(run, 3, "after the revocation")]).status_code == 401


def test_wrong_passwords_through_either_process_count_once_for_both(start_servers):
    """A guesser who spreads wrong passwords over the server's processes (``--workers``) gets no
    more tries than one process gives: the counts are the database's."""
    a, b = start_servers(2)
    codes = []
    for i in range(2 * CLIENT_FREE):  # alternately through A and B, each for another account
        reply = requests.post((a, b)[i % 2].url + "/api/v1/sessions", timeout=30,
                              json={"email": f"guess-{i}@example.com", "password": "not the password"})
        codes.append(reply.status_code)
    assert codes == [401] * CLIENT_FREE + [429] * CLIENT_FREE


def test_runs_lost_through_one_process_come_back_through_the_other_and_go_lost_once(start_servers):
    a, b = start_servers(2, "--lost-timeout", "1")
    account = a.signup()
    headers = {ev.AUTH_HEADER: account.api_key}
    watch_a = Stream(a.url + "/api/v1/events", headers)
    watch_b = Stream(b.url + "/api/v1/events", headers)
    runs = [str(uuid.uuid4()) for _ in range(8)]
    for k, run in enumerate(runs):
        assert post(a if k % 2 else b, account.api_key, [started(run, f"quiet-{k}")]).status_code == 200

    def lost_on(stream):
        return {r["uuid"] for r in stream.named("run") if r["status"] == ev.LOST}

    watch_a.wait(lambda: lost_on(watch_a) == set(runs))
    watch_b.wait(lambda: lost_on(watch_b) == set(runs))
    # Each run went lost once, whichever process swept: one status event each, on each stream.
    for stream in (watch_a, watch_b):
        lost = [r["uuid"] for r in stream.named("run") if r["status"] == ev.LOST]
        assert sorted(lost) == sorted(runs)
    # Each comes back through the process that did not create it (whose memory said "running").
    for k, run in enumerate(runs):
        assert post(b if k % 2 else a, account.api_key, [line(run, 2, "back")]).status_code == 200
    statuses = {run: account.run(run)["status"] for run in runs}
    assert statuses == {run: ev.RUNNING for run in runs}


def test_a_progress_line_stored_through_one_process_is_replaced_by_the_next_through_the_other(start_servers):
    a, b = start_servers(2)
    account = a.signup()
    run = str(uuid.uuid4())
    assert post(a, account.api_key, [started(run, "bars"), line(run, 2, "epoch 1")]).status_code == 200
    assert post(b, account.api_key, [line(run, 3, "10%", progress=True)]).status_code == 200
    assert post(a, account.api_key, [line(run, 4, "50%", progress=True)]).status_code == 200
    assert post(b, account.api_key, [line(run, 5, "done")]).status_code == 200
    assert [entry["text"] for entry in account.logs(run)] == ["epoch 1", "done"]


def test_original_clients_numbering_holds_when_their_batches_reach_different_processes(start_servers):
    a, b = start_servers(2)
    account = a.signup()
    run = str(uuid.uuid4())
    # Original clients send no seq and cut their output anywhere: the server numbers the lines.
    sent: dict[str, list[str]] = {"stdout": [], "stderr": []}
    errors: list[str] = []

    def send(server, stream: str, count: int) -> None:
        for k in range(count):
            texts = [f"{stream} {k}.{i}" for i in range(5)]
            sent[stream] += texts
            body = "".join(t + "\n" for t in texts)
            # (the first chunk is cut mid-line, the second finishes it)
            chunks = [log(run, None, body[:7], stream=stream), log(run, None, body[7:], stream=stream)]
            resp = post(server, account.api_key, chunks)
            if resp.status_code != 200:
                errors.append(resp.text)

    threads = [threading.Thread(target=send, args=(a, "stdout", 30)),
               threading.Thread(target=send, args=(b, "stderr", 30))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    lines = account.logs(run)
    seqs = [entry["seq"] for entry in lines]
    assert len(seqs) == len(set(seqs)) == 300  # every line, each with a number of its own
    for stream, texts in sent.items():  # each stream's lines whole and in order
        assert [entry["text"] for entry in lines if entry["stream"] == stream] == texts
    assert account.run(run)["last_seq"] == max(seqs)


def test_processes_starting_together_on_an_empty_database_all_start(start_servers):
    servers = start_servers(3)  # (each creates and migrates the schema, under one lock)
    account = servers[0].signup()
    for server in servers:
        assert post(server, account.api_key, [started(str(uuid.uuid4()), "up")]).status_code == 200
    with psycopg.connect(servers[0].db_url.replace("postgresql+psycopg", "postgresql")) as conn:
        versions = conn.execute("SELECT version FROM schema_migrations ORDER BY version").fetchall()
    assert [v for (v,) in versions] == list(range(1, len(versions) + 1))  # each applied once


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def test_workers_serve_one_address_with_several_processes(server_factory, pg_url):
    server = server_factory("--workers", "3", start=False)
    server.db_url = pg_url
    server.start(timeout=60)
    assert server.proc is not None
    workers = _children(server.proc.pid)
    assert len(workers) == 3
    account = server.signup()
    headers = {ev.AUTH_HEADER: account.api_key}
    run = str(uuid.uuid4())
    assert post(server, account.api_key, [started(run, "workers")]).status_code == 200
    # Streams land on whichever worker accepts them; every line reaches every one of them.
    streams = [Stream(server.url + f"/api/v1/runs/{run}/events", headers) for _ in range(6)]
    for stream in streams:
        stream.wait(lambda s=stream: s.named("status"))
    for seq in range(2, 22):
        assert post(server, account.api_key, [line(run, seq, f"line {seq}")]).status_code == 200
    for stream in streams:
        stream.wait(lambda s=stream: len(s.named("log")) >= 20)
        assert [entry["seq"] for entry in stream.named("log")] == list(range(2, 22))
        stream.close()
    # A worker that dies is replaced; stopping the server stops every worker.
    subprocess.run(["kill", "-KILL", str(workers[0])], check=True)
    account.wait_for(lambda: len(_children(server.proc.pid)) == 3 and workers[0] not in _children(server.proc.pid))
    server.stop()
    time.sleep(0.5)
    alive = [pid for pid in workers[1:]
             if subprocess.run(["kill", "-0", str(pid)], capture_output=True).returncode == 0]
    assert alive == []


@pytest.mark.parametrize("when", ["serving", "starting"])
def test_workers_end_when_their_supervisor_is_killed_outright(server_factory, pg_url, hyperdash_home, when):
    # They used to serve on as orphans, holding the address: a new server could not start.
    server = server_factory("--workers", "2", start=False)
    server.db_url = pg_url
    if when == "serving":
        server.start(timeout=60)
        supervisor = server.proc
    else:  # killed as soon as its workers are there, before they serve
        supervisor = subprocess.Popen([sys.executable, "-m", "hyperdash", "server", "--port", str(server.port),
                                       "--workers", "2", "--db", pg_url], stdin=subprocess.DEVNULL,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while len(_children(supervisor.pid)) < 2:
            assert time.monotonic() < deadline and supervisor.poll() is None, "no workers started"
            time.sleep(0.01)
    workers = _children(supervisor.pid)
    assert len(workers) == 2
    supervisor.kill()
    supervisor.wait(10)

    def gone() -> bool:  # (ended: no such process, or a zombie that init has not reaped yet)
        def state(pid: int) -> str:
            try:
                with open(f"/proc/{pid}/stat") as stat:
                    return stat.read().rpartition(")")[2].split()[0]
            except OSError:
                return "gone"

        return all(state(pid) in ("gone", "Z") for pid in workers)

    deadline = time.monotonic() + 20
    while not gone():
        assert time.monotonic() < deadline, "the workers outlived their supervisor"
        time.sleep(0.2)
    server.start(timeout=60)  # the same address, free again
    assert len(_children(server.proc.pid)) == 2


def test_workers_on_sqlite_are_refused_with_the_reason(tmp_path):
    done = subprocess.run([sys.executable, "-m", "hyperdash", "server", "--port", "0", "--workers", "2",
                           "--db", f"sqlite:///{tmp_path / 'one.db'}"], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "--workers 2 needs PostgreSQL" in done.stderr
    assert not (tmp_path / "one.db").exists()

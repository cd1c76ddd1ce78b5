"""Back-pressure: while the writer's queue is full, ingest answers 503 with Retry-After and
stores nothing; a sender that honours Retry-After gets every line in."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid

import pytest
from server_helpers import REPLY_FLAGS, Api, env, log

from hyperdash import events as ev
from hyperdash.server.errors import Unavailable
from hyperdash.server.main import ServerThread


def hold_writer(store) -> threading.Event:
    """Keep the store's writer busy until the returned event is set, with a job of 10 bytes
    waiting behind: the queue then holds more than a bound of 1 byte."""
    gate, holding = threading.Event(), threading.Event()

    def hold(conn):
        holding.set()
        gate.wait(30)

    store.writer.submit(hold)
    assert holding.wait(10)
    store.writer.submit(lambda conn: None, size=10)  # (taken by the group after the held one)
    assert store.writer.queued_bytes == 10
    return gate


def test_a_full_queue_answers_503_with_retry_after_and_stores_nothing(make_client):
    client = make_client(max_queued_bytes=1)
    api = Api(client)
    gate = hold_writer(client.app.state.store)
    run = str(uuid.uuid4())
    batch = [env(ev.RUN_STARTED, run, {"job_name": "full", "host": "h", "pid": 1, "api": "cli_run"}, seq=1),
             log(run, 2, "refused")]
    try:
        resp = api.ingest(batch)
        assert resp.status_code == 503, resp.text
        assert resp.headers["retry-after"] == "1"
        assert resp.json()["code"] == "unavailable"
        assert "busy" in resp.json()["message"]
    finally:
        gate.set()
    assert api.get(f"/api/v1/runs/{run}").status_code == 404  # nothing of it was stored
    assert api.ok(batch) == {"stored": 2, "duplicates": 0, **REPLY_FLAGS}  # once the queue drains, it goes in
    assert api.lines(run) == ["refused"]


def test_a_write_that_waits_too_long_is_told_to_come_back_and_is_not_done_later(make_client):
    # A database that stops answering holds the writer, and every write queued behind it: the
    # request waiting on one is told to come back (503), not failed (500), and its job dropped.
    store = make_client().app.state.store
    gate = hold_writer(store)
    done: list[int] = []
    try:
        with pytest.raises(Unavailable) as caught:
            store.writer.call(lambda conn: done.append(1), timeout=0.5)
        assert caught.value.status == 503 and caught.value.headers == {"Retry-After": "1"}
    finally:
        gate.set()
    assert store.writer.call(lambda conn: "after") == "after"  # (the writer goes on)
    assert done == []


def test_a_batch_bigger_than_the_bound_still_goes_alone(make_client):
    client = make_client(max_queued_bytes=1)
    api = Api(client)
    run = str(uuid.uuid4())
    assert api.ok([log(run, 1, "x" * 5000)]) == {"stored": 1, "duplicates": 0, **REPLY_FLAGS}


def test_the_sdk_waits_out_a_full_queue_and_every_line_lands(tmp_path):
    with ServerThread(db_url=f"sqlite:///{tmp_path / 'hd.db'}", max_queued_bytes=1) as server:
        auth = server.app.state.auth
        user = auth.create_user("busy@example.com", "a long password")
        key = auth.create_api_key(user.id, "job")["api_key"]
        gate = hold_writer(server.app.state.store)
        environ = dict(os.environ, HYPERDASH_SERVER=server.url, HYPERDASH_API_KEY=key,
                       HYPERDASH_HOME=str(tmp_path / "home"))
        script = "import time\nfor i in range(200):\n    print(f'line {i}', flush=True)\n    time.sleep(0.03)\n"
        command = [sys.executable, "-m", "hyperdash", "run", "-n", "busy", "--exit-timeout", "60", "--",
                   sys.executable, "-c", script]
        job = subprocess.Popen(command, env=environ, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(2)  # the job's batches are refused meanwhile, and retried after Retry-After
        gate.set()
        _, err = job.communicate(timeout=120)
        assert job.returncode == 0, err
        assert b"busy" in err  # (the SDK says why it waits: the server answered 503)
        store = server.app.state.store
        with store.read() as conn:
            texts = [row[0] for row in conn.exec_driver_sql("SELECT text FROM logs ORDER BY seq")]
            status = conn.exec_driver_sql("SELECT status FROM runs").scalar_one()
    assert texts == [f"line {i}" for i in range(200)]  # every line, once, in order
    assert status == ev.SUCCESS

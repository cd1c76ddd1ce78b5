"""``hyperdash runs`` says which running runs are stalled."""

from __future__ import annotations

import uuid

import requests

from hyperdash import events as ev


def test_runs_shows_a_stalled_run(hd, account):
    run = str(uuid.uuid4())

    def send(envelope: dict) -> None:
        resp = requests.post(account.server.url + ev.INGEST_PATH, json=[envelope], timeout=10,
                             headers={ev.AUTH_HEADER: account.api_key})
        assert resp.status_code == 200, resp.text

    send(ev.envelope(ev.RUN_STARTED, run, {"job_name": "stuck in the cli", "stall_after": 0.5}, seq=1))
    # (alive, as its heartbeats say, and no progress)
    account.wait_for(lambda: send(ev.envelope(ev.HEARTBEAT, run, {})) or account.run(run)["stalled_since"])
    result = hd("runs", "-n", "stuck in the cli")
    assert result.returncode == 0, result.stderr
    row = result.stdout.decode().splitlines()[1]
    assert row.startswith(run[:8]) and "running (stalled)" in row

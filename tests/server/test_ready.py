"""The readiness check: ``/api/v1/ready`` answers 200 while the database answers, and 503 with
Retry-After, within about a second, while it does not; ``/api/v1/health`` only says that the
server answers."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from hyperdash.server import __version__
from hyperdash.server.api import READY_TIMEOUT_S
from hyperdash.server.app import create_app

OK = {"ok": True, "version": __version__}


def test_ready_answers_ok_while_the_database_answers(client):
    for path in ("/api/v1/ready", "/api/v1/health"):
        resp = client.get(path)  # (no account needed: a probe has none)
        assert resp.status_code == 200, resp.text
        assert resp.json() == OK
    described = client.get("/openapi.json").json()["paths"]["/api/v1/ready"]["get"]
    assert {"200", "503"} <= set(described["responses"])


def wait_until_ready(client: TestClient, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while (resp := client.get("/api/v1/ready")).status_code != 200:
        assert time.monotonic() < deadline, resp.text
        time.sleep(0.2)
    assert resp.json() == OK


@pytest.mark.postgres
@pytest.mark.parametrize("how", ["cut", "refused", "stalled"])
def test_ready_says_503_while_postgresql_is_out_of_reach_and_health_still_answers(outage, how):
    # /api/v1/health answered ok while the database was away, and there was nothing else a
    # load balancer or an orchestrator could ask.
    db_url, proxy = outage
    with TestClient(create_app(db_url), raise_server_exceptions=False) as client:
        wait_until_ready(client)
        {"cut": proxy.cut, "refused": proxy.close, "stalled": proxy.stall}[how]()
        for _ in range(3):  # (a stalled ping outlives a check: the next ones wait for its answer)
            started = time.monotonic()
            resp = client.get("/api/v1/ready")
            assert time.monotonic() - started < READY_TIMEOUT_S + 2, "the check waited on the database"
            assert resp.status_code == 503, resp.text
            assert int(resp.headers["retry-after"]) > 0
            assert resp.json()["code"] == "unavailable"
            assert resp.json()["message"] in ("the database is unavailable; try again in a few seconds",
                                              f"the database did not answer within {READY_TIMEOUT_S:g} s; "
                                              "try again in a few seconds")
        resp = client.get("/api/v1/health")
        assert resp.status_code == 200 and resp.json() == OK
        if how != "refused":  # ...and ready again once the database is back
            proxy.mend()
            wait_until_ready(client)

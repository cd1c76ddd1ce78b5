"""A PostgreSQL that goes out of reach and comes back: the time it was away is not silence of
the runs (their jobs sent all along, answered with errors), so none is marked lost for it; and
every request meanwhile is told to come back (503, Retry-After), the dashboard's with a page."""

from __future__ import annotations

import re
import socket
import threading
import time
import uuid

import pytest
from fastapi.testclient import TestClient
from server_helpers import Api, env

from hyperdash.events import AUTH_HEADER, INGEST_PATH
from hyperdash.server.app import create_app
from hyperdash.server.auth import SESSION_COOKIE

pytestmark = pytest.mark.postgres


def test_the_time_the_database_was_away_is_not_silence_of_the_runs(outage, caplog):
    # A run used to be marked lost as soon as the database came back after an outage longer
    # than the lost timeout, though its job had been sending all along.
    db_url, proxy = outage
    client = TestClient(create_app(db_url, lost_timeout=3.0), raise_server_exceptions=False)
    with client:
        api = Api(client)
        run = str(uuid.uuid4())
        api.ok([env("run_started", run, {"job_name": "outlives the database"}, seq=1)])
        proxy.cut()
        time.sleep(5)  # longer than the lost timeout; the job's beats are refused meanwhile
        assert api.ingest([env("heartbeat", run, {})]).status_code >= 500
        proxy.mend()
        statuses = []
        deadline = time.monotonic() + 1.5  # (the job's next beat comes a moment after the database)
        while time.monotonic() < deadline:
            resp = client.get(f"/api/v1/runs/{run}", headers=api.headers)
            if resp.status_code == 200:
                statuses.append(resp.json()["status"])
            time.sleep(0.1)
        api.ok([env("heartbeat", run, {})])
        time.sleep(1)
        statuses.append(api.json(f"/api/v1/runs/{run}")["status"])
        assert statuses and set(statuses) == {"running"}, statuses
        # The periodic jobs said their failure once each (they used to log a traceback each
        # time, several a second), and that they succeed again.
        periodic = len(client.app.state.store.writer._periodic)
        said = [r.getMessage() for r in caplog.records if r.name == "hyperdash.server"]
        assert 0 < said.count("periodic store job failed") <= periodic, said
        assert any(m.startswith("periodic store job works again") for m in said), said
        # ...and a run that stays silent once the database is back is lost after the timeout.
        deadline = time.monotonic() + 15
        while api.json(f"/api/v1/runs/{run}")["status"] != "lost":
            assert time.monotonic() < deadline, "the silent run was never marked lost"
            time.sleep(0.2)


@pytest.mark.parametrize("how", ["cut", "refused"])
def test_requests_while_the_database_is_out_of_reach_are_told_to_come_back(outage, how):
    # Signing in (API or dashboard) while PostgreSQL was out of reach answered 500; every route
    # now answers 503 with Retry-After: one line for the API, a page for a person.
    db_url, proxy = outage
    client = TestClient(create_app(db_url), raise_server_exceptions=False)
    with client:
        api = Api(client)
        unused_key = client.post("/api/v1/users/api_keys", headers=api.headers, json={"name": "k"}).json()["api_key"]
        auth = client.app.state.auth
        session, _csrf = auth.create_browser_session(auth.authenticate(api.email, api.password).id)
        token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text).group(1)
        if how == "cut":
            proxy.cut()  # connections dropped, new ones closed at once
        else:
            proxy.close()  # nothing listens: connections refused
        credentials = {"email": api.email, "password": api.password}
        replies = {
            "login": client.post("/api/v1/sessions", json=credentials),
            "runs": client.get("/api/v1/runs", headers=api.headers),
            "ingest": client.post(INGEST_PATH, headers={AUTH_HEADER: unused_key},
                                  json=[env("run_started", str(uuid.uuid4()), {"job_name": "j"}, seq=1)]),
        }
        for what, resp in replies.items():
            assert resp.status_code == 503, (what, resp.text)
            assert int(resp.headers["retry-after"]) > 0
            assert resp.json() == {"code": "unavailable",
                                   "message": "the database is unavailable; try again in a few seconds"}
        form = client.post("/login", data={**credentials, "csrf_token": token}, follow_redirects=False)
        client.cookies.set(SESSION_COOKIE, session)
        for what, resp in {"sign-in form": form, "runs page": client.get("/")}.items():
            assert resp.status_code == 503, (what, resp.text)
            assert int(resp.headers["retry-after"]) > 0 and resp.headers["content-type"].startswith("text/html")
            assert "The database is unavailable; try again in a few seconds." in resp.text, what
        if how == "cut":  # ...and back to work once the database is
            proxy.mend()
            deadline = time.monotonic() + 10
            while (resp := client.post("/api/v1/sessions", json=credentials)).status_code == 503:
                assert time.monotonic() < deadline, resp.text
                time.sleep(0.2)
            assert resp.status_code == 200, resp.text


def test_a_database_host_that_never_answers_is_given_up_on_within_the_connect_timeout(monkeypatch):
    # A host that takes the connection and says nothing (or drops the packets) held each request
    # for the system's TCP timeout, minutes, before it could be told to come back.
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import OperationalError

    from hyperdash.server import dialect

    monkeypatch.setattr(dialect, "CONNECT_TIMEOUT_S", 2)
    silent = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    threading.Thread(target=lambda: held.extend(iter(lambda: silent.accept()[0], None)), daemon=True).start()
    engine = dialect.open_engine(make_url(f"postgresql://postgres@127.0.0.1:{silent.getsockname()[1]}/test"))
    outcome: list[BaseException] = []

    def connect() -> None:
        try:
            engine.connect().close()
        except BaseException as exc:
            outcome.append(exc)

    started = time.monotonic()
    attempt = threading.Thread(target=connect, daemon=True)
    attempt.start()
    attempt.join(30)
    try:
        assert not attempt.is_alive(), "the connection attempt was still waiting after 30 s"
        assert time.monotonic() - started < 10
        assert len(outcome) == 1 and isinstance(outcome[0], OperationalError), outcome
    finally:
        engine.dispose()
        silent.close()
        for conn in held:
            conn.close()

"""Asking a run to stop: the route, who may, and how the job's next batch or heartbeat hears of it."""

from __future__ import annotations

import uuid

from server_helpers import REPLY_FLAGS, Api, env, log

from hyperdash.server.api import Error
from hyperdash.server.auth import CSRF_HEADER, SESSION_COOKIE
from hyperdash.server.facts import StopRequested


def _started(api: Api) -> str:
    run = str(uuid.uuid4())
    api.ok([env("run_started", run, {"job_name": "long", "host": "h", "pid": 1, "api": "cli_run"}, seq=1)])
    return run


def _stop(api: Api, run: str, **kwargs):
    return api.client.post(f"/api/v1/runs/{run}/stop", headers={"authorization": api.access_token}, **kwargs)


def test_a_stop_reaches_the_jobs_next_batch_and_heartbeat(api: Api):
    run = _started(api)
    assert api.ok([log(run, 2, "working")]) == {"stored": 1, "duplicates": 0, **REPLY_FLAGS}  # nothing asked yet
    resp = _stop(api, run[:8], json={"via": "cli"})  # (the start of the uuid names it too)
    assert resp.status_code == 202, resp.text
    asked = resp.json()["stop"]
    assert asked["by"] == api.email and asked["via"] == "cli" and asked["requested_at"].endswith("Z")
    assert resp.json()["status"] == "running"
    reply = api.ok([log(run, 3, "still working")])
    assert reply == {"stored": 1, "duplicates": 0, **REPLY_FLAGS, "stop": {run: asked}}
    assert api.ok(env("heartbeat", run, {}))["stop"] == {run: asked}
    # Asking again keeps the first request.
    again = _stop(api, run)
    assert again.status_code == 202 and again.json()["stop"] == asked
    # The run ends: nothing more to ask, and the run remembers who stopped it.
    reply = api.ok([env("run_ended", run, {"final_status": "user_canceled", "exit_code": 130, "signal": None},
                        seq=4)])
    assert "stop" not in reply
    shown = api.json(f"/api/v1/runs/{run}")
    assert shown["status"] == "user_canceled" and shown["stop"] == asked


def test_another_account_cannot_stop_the_run(client):
    owner, other = Api(client), Api(client)
    run = _started(owner)
    for who in (other,):
        refused = _stop(who, run)
        assert refused.status_code == 404 and refused.json()["code"] == "not_found"
        refused = client.post(f"/api/v1/runs/{run}/stop", headers=who.headers)  # by API key too
        assert refused.status_code == 404
    assert owner.json(f"/api/v1/runs/{run}")["stop"] is None
    assert "stop" not in owner.ok(env("heartbeat", run, {}))
    nobody = client.post(f"/api/v1/runs/{run}/stop")
    assert nobody.status_code == 401


def test_a_finished_run_is_not_stopped(api: Api):
    run = _started(api)
    api.ok([env("run_ended", run, {"final_status": "success", "exit_code": 0, "signal": None}, seq=2)])
    resp = _stop(api, run)
    assert resp.status_code == 409
    assert resp.json()["code"] == "run_finished"
    assert "already ended (success)" in resp.json()["message"]
    Error.model_validate(resp.json())
    assert api.json(f"/api/v1/runs/{run}")["stop"] is None


def test_bad_input_changes_nothing(api: Api):
    run = _started(api)
    assert _stop(api, run, json={"via": "dashboard"}).status_code == 400  # only a session is the dashboard
    assert _stop(api, run, json={"via": 3}).status_code == 400
    assert _stop(api, str(uuid.uuid4())).status_code == 404
    assert api.json(f"/api/v1/runs/{run}")["stop"] is None


def test_the_dashboard_is_named_for_a_session_and_needs_its_csrf_token(client):
    api = Api(client)
    run = _started(api)
    auth = client.app.state.auth
    user = auth.authenticate(api.email, api.password, "browser")
    session, csrf = auth.create_browser_session(user.id)
    client.cookies.set(SESSION_COOKIE, session)
    try:
        assert client.post(f"/api/v1/runs/{run}/stop").status_code == 403  # no CSRF token
        assert api.json(f"/api/v1/runs/{run}")["stop"] is None
        resp = client.post(f"/api/v1/runs/{run}/stop", headers={CSRF_HEADER: csrf})
        assert resp.status_code == 202 and resp.json()["stop"]["via"] == "dashboard"
    finally:
        client.cookies.clear()


def test_the_request_is_announced(api: Api):
    run = _started(api)
    seen = []
    api.client.app.state.store.dispatcher.subscribe(seen.extend, name="test")
    assert _stop(api, run).status_code == 202
    api.client.app.state.store.writer.call(lambda conn: None)  # (a commit after it)
    api.client.app.state.store.dispatcher.close()
    stops = [f for f in seen if isinstance(f, StopRequested)]
    assert len(stops) == 1 and stops[0].run_uuid == run and stops[0].run.stop_by == api.email


def test_a_request_taken_by_another_server_process_reaches_the_job(make_client):
    # Two apps on one store stand for two server processes: one takes the stop, the job
    # sends its batches to the other, whose writer knew the run before.
    first = make_client()
    api = Api(first)
    run = _started(api)
    second = Api.__new__(Api)
    second.client, second.headers = make_client(), api.headers
    assert "stop" not in second.ok([log(run, 2, "a")])
    assert _stop(api, run).status_code == 202
    import time

    deadline = time.monotonic() + 5
    seq = 3
    while time.monotonic() < deadline:
        reply = second.ok([log(run, seq, "b")])
        seq += 1
        if "stop" in reply:
            break
        time.sleep(0.2)
    assert reply["stop"][run]["by"] == api.email


def test_an_original_client_goes_on_as_before(api: Api):
    # The original clients send one envelope a request, without seq, and read only the status
    # of the reply: a stop asked of their run changes nothing for them.
    run = str(uuid.uuid4())
    assert api.ingest(env("run_started", run, {"job_name": "old"})).status_code == 200
    assert _stop(api, run).status_code == 202
    for body in (log(run, None, "epoch 1\nepoch"), env("heartbeat", run, {}), log(run, None, " 2\n"),
                 env("run_ended", run, {"final_status": "success"})):
        resp = api.ingest(body)
        assert resp.status_code == 200, resp.text
    assert api.lines(run) == ["epoch 1", "epoch 2"]
    shown = api.json(f"/api/v1/runs/{run}")
    assert shown["status"] == "success" and shown["stop"]["by"] == api.email

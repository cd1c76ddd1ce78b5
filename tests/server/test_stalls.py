"""Stalls on the server: what counts as progress, the windows (server, name, run), the sweep,
the facts, and who may see the settings."""

from __future__ import annotations

import time
import uuid

import pytest
from server_helpers import Api, env, log
from sqlalchemy import select

from hyperdash import events
from hyperdash.server.facts import RunResumed, RunStalled
from hyperdash.server.queries import events_after
from hyperdash.server.stalls import mark_stalled
from hyperdash.server.store import runs


def start(api: Api, name: str = "train", seq: int = 1, **extra) -> str:
    run = str(uuid.uuid4())
    api.ok([env(events.RUN_STARTED, run, {"job_name": name, **extra}, seq=seq)])
    return run


def sweep_later(api: Api, seconds: float):
    """Run the stall sweep with a clock set ``seconds`` ahead, so no timing matters; its facts.
    (No heartbeat can come from the time it is set to, so it asks for none past the window.)"""
    app = api.client.app
    later = events.now_ms() + int(seconds * 1000)
    return app.state.store.writer.call(lambda conn: mark_stalled(
        conn, later, app.state.stall_after_ms, app.state.run_cache, heard_past_window=False)).facts


def sweep_now(api: Api):
    """The stall sweep as the server runs it, now; its facts."""
    app = api.client.app
    return app.state.store.writer.call(
        lambda conn: mark_stalled(conn, events.now_ms(), app.state.stall_after_ms, app.state.run_cache)).facts


def heartbeat(api: Api, run: str) -> None:
    api.ok([env(events.HEARTBEAT, run, {})])


def test_a_run_with_heartbeats_alone_stalls_and_clears_when_it_speaks(make_client):
    api = Api(make_client(stall_after=60))
    run = start(api)
    heartbeat(api, run)
    assert sweep_later(api, 30) == []
    facts = sweep_later(api, 61)
    assert [type(f) for f in facts] == [RunStalled] and facts[0].run.uuid == run
    shown = api.json(f"/api/v1/runs/{run}")
    assert shown["status"] == "running" and shown["stalled_since"] is not None
    assert [r["stalled_since"] is not None for r in api.json("/api/v1/runs")["runs"]] == [True]
    assert sweep_later(api, 120) == []  # stalled once, not once per sweep
    heartbeat(api, run)  # alive is not progress
    assert api.json(f"/api/v1/runs/{run}")["stalled_since"] is not None
    api.ok([log(run, 2, "epoch 2")])
    assert api.json(f"/api/v1/runs/{run}")["stalled_since"] is None


def test_a_run_is_stalled_only_once_heard_from_after_its_window(make_client):
    # A job killed outright stops its heartbeats too: it is on its way to lost, and used to be
    # told stalled first whenever its window was shorter than the lost timeout.
    api = Api(make_client(stall_after=1))
    run = start(api)
    time.sleep(1.1)
    assert sweep_now(api) == []  # the window passed, but nothing since says the job lives
    assert api.json(f"/api/v1/runs/{run}")["stalled_since"] is None
    heartbeat(api, run)  # alive, and still no progress: stuck
    facts = sweep_now(api)
    assert [type(f) for f in facts] == [RunStalled] and facts[0].run.uuid == run


def test_internal_metrics_are_not_progress_but_metrics_and_params_are(make_client):
    api = Api(make_client(stall_after=60))
    run = start(api)
    api.ok([env(events.METRIC, run, {"name": "cpu", "value": 3.0, "is_internal": True}, seq=2)])
    assert len(sweep_later(api, 61)) == 1
    api.ok([env(events.PARAM, run, {"params": {"lr": 0.1}}, seq=3)])
    assert api.json(f"/api/v1/runs/{run}")["stalled_since"] is None
    assert len(sweep_later(api, 61)) == 1
    api.ok([env(events.METRIC, run, {"name": "loss", "value": 3.0}, seq=4)])
    assert api.json(f"/api/v1/runs/{run}")["stalled_since"] is None


def test_internal_params_are_not_progress_and_keep_their_flag(make_client):
    api = Api(make_client(stall_after=60))
    run = start(api)
    api.ok([env(events.PARAM, run, {"params": {"hd_iter_0_epochs": 10}, "is_internal": True}, seq=2),
            env(events.PARAM, run, {"params": {"tensorboard.run": "a"}, "is_internal": True}, seq=3)])
    assert len(sweep_later(api, 61)) == 1  # the SDK's bookkeeping is not the job speaking
    api.ok([env(events.PARAM, run, {"params": {"hd_iter_1_epochs": 5}, "is_internal": True}, seq=4)])
    assert api.json(f"/api/v1/runs/{run}")["stalled_since"] is not None
    shown = api.json(f"/api/v1/runs/{run}")
    assert shown["params"] == {"hd_iter_0_epochs": 10, "tensorboard.run": "a", "hd_iter_1_epochs": 5}
    store = api.client.app.state.store
    caught_up = store.writer.call(lambda conn: events_after(conn, conn.execute(
        select(runs.c.id).where(runs.c.uuid == run)).scalar_one(), 0))
    # (a stream that catches up sends a param as a live one does)
    assert [data for _, kind, data in caught_up if kind == "param"][0] == {"params": {"hd_iter_0_epochs": 10}}
    # A param of the job's own, with the flag false or (as original clients send it) without it.
    api.ok([env(events.PARAM, run, {"params": {"lr": 0.1}, "is_internal": False}, seq=5)])
    assert api.json(f"/api/v1/runs/{run}")["stalled_since"] is None
    assert len(sweep_later(api, 61)) == 1
    api.ok([env(events.PARAM, run, {"params": {"lr": 0.2}}, seq=6)])
    assert api.json(f"/api/v1/runs/{run}")["stalled_since"] is None


def test_a_param_whose_flag_is_not_a_boolean_is_refused(make_client):
    api = Api(make_client(stall_after=60))
    run = start(api)
    reply = api.ingest([
        env(events.PARAM, run, {"params": {"lr": 0.1}, "is_internal": "yes"}, seq=2)])
    assert reply.status_code == 400 and "param 'is_internal' must be true or false" in reply.text
    assert api.json(f"/api/v1/runs/{run}")["params"] == {}


def test_resumed_fact_and_live_status(make_client):
    api = Api(make_client(stall_after=60))
    seen = []
    app = api.client.app
    app.state.store.dispatcher.subscribe(seen.extend, name="test")
    run = start(api)
    sweep_later(api, 61)
    api.ok([log(run, 2, "back at it")])
    deadline = time.monotonic() + 5
    while not any(isinstance(f, RunResumed) for f in seen):
        assert time.monotonic() < deadline, seen
        time.sleep(0.05)
    resumed = next(f for f in seen if isinstance(f, RunResumed))
    assert resumed.run.stalled_since is None and resumed.run_uuid == run


def test_windows_run_beats_name_beats_server(make_client):
    api = Api(make_client(stall_after=600))
    own = start(api, "job", stall_after=30)
    named = start(api, "job")
    other = start(api, "other")
    assert api.json(f"/api/v1/runs/{own}/stall")["source"] == "run"
    resp = api.client.put("/api/v1/stalls/job", headers=api.headers, json={"stall_after_s": "2m"})
    assert resp.status_code == 200 and resp.json() == {"name": "job", "stall_after_s": 120.0}
    assert api.json(f"/api/v1/runs/{named}/stall")["stall_after_s"] == 120.0
    assert api.json(f"/api/v1/runs/{named}/stall")["source"] == "name"
    assert api.json(f"/api/v1/runs/{other}/stall") | {"last_progress_at": None} == {
        "stall_after_s": 600.0, "source": "server", "stalled_since": None, "last_progress_at": None}
    assert {f.run_uuid for f in sweep_later(api, 31)} == {own}
    assert {f.run_uuid for f in sweep_later(api, 121)} == {named}
    assert {f.run_uuid for f in sweep_later(api, 601)} == {other}
    assert api.json("/api/v1/stalls") == {"default_s": 600.0, "names": [{"name": "job", "stall_after_s": 120.0}]}


def test_zero_turns_detection_off(make_client):
    api = Api(make_client(stall_after=0))
    start(api, "a")
    off = start(api, "b", stall_after=0)
    on = start(api, "c", stall_after=5)
    assert {f.run_uuid for f in sweep_later(api, 10**6)} == {on}
    api.client.put("/api/v1/stalls/b", headers=api.headers, json={"stall_after_s": 10})
    assert off not in {f.run_uuid for f in sweep_later(api, 10**6)}  # the run's own 0 wins


def test_ended_and_lost_runs_do_not_stall(make_client):
    api = Api(make_client(stall_after=60))
    run = start(api)
    api.ok([env(events.RUN_ENDED, run, {"final_status": "success"}, seq=2)])
    assert sweep_later(api, 61) == []


def test_bad_windows_are_refused_and_change_nothing(api):
    for body in ({"stall_after_s": "soon"}, {"stall_after_s": -5}, {"stall_after_s": 10**9}, {},
                 {"stall_after_s": True}, {"stall_after_s": [60]}):
        resp = api.client.put("/api/v1/stalls/job", headers=api.headers, json=body)
        assert resp.status_code in (400, 422), (body, resp.text)
        assert resp.json()["message"]
    assert api.json("/api/v1/stalls")["names"] == []
    run = str(uuid.uuid4())
    resp = api.ingest([env(events.RUN_STARTED, run, {"job_name": "x", "stall_after": "10m"}, seq=1)])
    assert resp.status_code == 400 and "stall_after" in resp.json()["message"]


def test_another_account_sees_no_stall_settings(client):
    alice, bob = Api(client), Api(client)
    run = start(alice, "secret-job")
    alice.client.put("/api/v1/stalls/secret-job", headers=alice.headers, json={"stall_after_s": 60})
    assert bob.json("/api/v1/stalls")["names"] == []
    assert bob.get(f"/api/v1/runs/{run}/stall").status_code == 404
    assert client.get("/api/v1/stalls").status_code == 401


def test_stalled_and_lost_stay_apart(make_client):
    """A run whose heartbeats go on is stalled, never lost; one that sends nothing at all is
    lost (and a lost run is not shown stalled)."""
    from hyperdash.server.ingest import mark_lost

    api = Api(make_client(stall_after=60, lost_timeout=120))
    app = api.client.app
    beating, silent = start(api, "beating"), start(api, "silent")
    sweep_later(api, 61)
    time.sleep(0.05)
    between = events.now_ms()  # after the silent run's last word, before the beating one's
    time.sleep(0.05)
    heartbeat(api, beating)
    lost = app.state.store.writer.call(
        lambda conn: mark_lost(conn, 120, app.state.run_cache, now_ms=between + 120_000)).facts
    assert [f.run_uuid for f in lost] == [silent]
    shown = {r["uuid"]: (r["status"], r["stalled_since"] is not None) for r in api.json("/api/v1/runs")["runs"]}
    assert shown == {beating: ("running", True), silent: ("lost", False)}


def test_the_sweep_passes_over_a_run_another_process_is_writing(make_client, db_url):
    """On PostgreSQL the stall sweep locks what it marks and skips a run whose row another
    transaction holds (a batch being stored: progress), as the lost sweep does."""
    if not db_url.startswith("postgresql"):
        pytest.skip("row locks: PostgreSQL")
    api = Api(make_client(stall_after=60))
    run = start(api)
    store = api.client.app.state.store
    with store.engine.connect() as other, other.begin():
        other.execute(select(runs.c.id).where(runs.c.uuid == run).with_for_update())
        assert sweep_later(api, 120) == []
    facts = sweep_later(api, 120)
    assert [type(f) for f in facts] == [RunStalled] and facts[0].run.uuid == run


def test_needs_attention_lists_the_runs_that_went_wrong_and_the_stalled_ones(make_client):
    """``status=attention``: failure, killed, lost, and running runs that are stalled; not a
    success, a canceled run, a running one making progress, nor one that stalled and then
    succeeded. Paged as any status is."""
    from hyperdash.server.ingest import mark_lost

    api = Api(make_client(stall_after=60, lost_timeout=120))
    app = api.client.app
    lost = start(api, "lost")
    app.state.store.writer.call(
        lambda conn: mark_lost(conn, 120, app.state.run_cache, now_ms=events.now_ms() + 121_000))
    stalled, resumed, recovered = start(api, "stalled"), start(api, "resumed"), start(api, "stalled, then success")
    assert len(sweep_later(api, 61)) == 3
    api.ok([log(resumed, 2, "epoch 2")])  # progress again: no longer stalled
    api.ok([env(events.RUN_ENDED, recovered, {"final_status": "success"}, seq=2)])
    ended = {}
    for status in ("success", "failure", "killed", "user_canceled"):
        ended[status] = start(api, status)
        api.ok([env(events.RUN_ENDED, ended[status], {"final_status": status}, seq=2)])
    start(api, "running")

    shown = api.json("/api/v1/runs", status="attention")["runs"]
    assert {r["name"]: r["status"] for r in shown} == {
        "killed": "killed", "failure": "failure", "stalled": "running", "lost": "lost"}
    assert [r["uuid"] for r in shown] == [ended["killed"], ended["failure"], stalled, lost]  # newest first
    paged, params = [], {"status": "attention", "limit": 1}
    while True:
        page = api.json("/api/v1/runs", **params)
        paged += [r["uuid"] for r in page["runs"]]
        if page["next"] is None:
            break
        params["cursor"] = page["next"]
    assert paged == [r["uuid"] for r in shown]
    refused = api.get("/api/v1/runs", status="needs-attention")
    assert refused.status_code == 400 and refused.json()["code"] == "invalid_status"
    assert "attention" in refused.json()["message"]

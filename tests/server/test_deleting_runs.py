"""Deleting runs through the API, on SQLite and PostgreSQL: everything of the run goes, only
its owner may, a running run needs force, and a deleted run's uuid is refused for good."""

from __future__ import annotations

import threading
import time
import uuid

import httpx2
import orjson
import pytest
import test_live
from server_helpers import Api, env, log
from sqlalchemy import func, select, text
from test_live import Events

from hyperdash import events
from hyperdash.server.checks import checked_batch
from hyperdash.server.deletion import dependent_tables, mark_deleted, purge_step
from hyperdash.server.ingest import BatchJob, RunCache, mark_lost, store_batch
from hyperdash.server.stalls import mark_stalled
from hyperdash.server.store import Store, deleted_runs, logs, metrics, rule_firings, rule_states, rules, runs

live = test_live.live  # the fixture: a real server in this process, and an account on it


def finished(api: Api, name: str, lines: int = 3, status: str = events.SUCCESS) -> str:
    """A run with lines, a metric, a param, and (unless running) an end."""
    run = str(uuid.uuid4())
    body = [env(events.RUN_STARTED, run, {"job_name": name}, seq=1),
            env(events.PARAM, run, {"params": {"lr": 0.1}}, seq=2),
            env(events.METRIC, run, {"name": "loss", "value": 0.5, "is_internal": False, "step": 1}, seq=3)]
    body += [log(run, 4 + i, f"{name} line {i}") for i in range(lines)]
    if status != events.RUNNING:
        body.append(env(events.RUN_ENDED, run, {"final_status": status, "exit_code": 0}, seq=4 + lines))
    api.ok(body)
    return run


def rows_of(client, run_uuid: str) -> dict[str, int]:
    """How many rows each table holds of the run (by its id, even once the run is gone)."""
    store = client.app.state.store
    with store.read() as conn:
        run_id = conn.execute(select(runs.c.id).where(runs.c.uuid == run_uuid)).scalar()
        if run_id is None:
            run_id = conn.execute(select(deleted_runs.c.run_id).where(deleted_runs.c.uuid == run_uuid)).scalar()
    return rows_of_id(store, run_id)


def rows_of_id(store: Store, run_id: int) -> dict[str, int]:
    """How many rows each table holds of the run ``run_id``."""
    with store.read() as conn:
        counts = {table.name: conn.execute(select(func.count()).select_from(table).where(column == run_id)).scalar()
                  for table, column in dependent_tables()}
        counts["runs"] = conn.execute(select(func.count()).where(runs.c.id == run_id)).scalar()
    return counts


def big_run(store: Store, run_uuid: str, rows: int):
    """A finished run (its ``runs`` row) of account 1 with ``rows`` lines and as many points."""
    def make(conn):
        run_id = conn.execute(runs.insert().values(
            user_id=1, uuid=run_uuid, status=events.SUCCESS, started_at=1, last_seen_at=1, max_seq=2 * rows,
        ).returning(runs.c.id)).scalar_one()
        conn.execute(logs.insert(), [{"run_id": run_id, "seq": seq, "stream": "stdout", "text": "x", "ts": 1,
                                      "partial": 0, "progress": 0, "superseded": 0} for seq in range(1, rows + 1)])
        conn.execute(metrics.insert(), [{"run_id": run_id, "seq": rows + k, "ts": 1, "name": "m", "value": 1.0,
                                         "step": None, "is_internal": 0} for k in range(1, rows + 1)])
        return conn.execute(select(runs).where(runs.c.id == run_id)).one()

    return store.writer.call(make)


def backend_pid(conn) -> int:
    return conn.execute(text("SELECT pg_backend_pid()")).scalar_one()


def wait_for_lock(store: Store, pid: int, timeout: float = 10.0) -> None:
    """Wait until the PostgreSQL backend ``pid`` waits for a lock that another transaction holds."""
    deadline = time.monotonic() + timeout
    with store.engine.connect() as conn:
        while conn.execute(text("SELECT wait_event_type FROM pg_stat_activity WHERE pid = :pid"),
                           {"pid": pid}).scalar() != "Lock":
            assert time.monotonic() < deadline, "never waited for the lock"
            conn.rollback()  # (a new snapshot of the activity for the next look)
            time.sleep(0.01)


def test_deleting_a_run_removes_all_of_it_and_nothing_else(api, client):
    gone = finished(api, "old", lines=20)
    kept = finished(api, "old")
    client.post(f"/api/v1/runs/{gone}/shares", headers=api.headers)  # a share refers to it too
    assert rows_of(client, gone)["logs"] == 20 and rows_of(client, gone)["run_shares"] == 1

    resp = client.delete(f"/api/v1/runs/{gone[:8]}", headers=api.headers)  # a uuid's start names it
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"deleted": [gone]}

    assert set(rows_of(client, gone).values()) == {0}
    assert api.get(f"/api/v1/runs/{gone}").status_code == 404
    assert [r["uuid"] for r in api.json("/api/v1/runs")["runs"]] == [kept]
    assert len(api.lines(kept)) == 3 and api.json(f"/api/v1/runs/{kept}")["params"] == {"lr": 0.1}
    assert api.get(f"/api/v1/runs/{gone}").status_code == 404
    assert client.delete(f"/api/v1/runs/{gone}", headers=api.headers).status_code == 404  # once only


def test_a_purge_goes_in_small_steps(db_url):
    # A store with no app (so no periodic job purges beside the test's steps).
    store = Store(db_url)
    try:
        row = big_run(store, "big", 25)
        store.writer.call(lambda conn: mark_deleted(conn, [row], "deleted", None))
        left = []
        while store.writer.call(lambda conn: purge_step(conn, [row.id], limit=10)):
            with store.read() as conn:
                left.append(conn.execute(select(func.count()).where(logs.c.run_id == row.id)).scalar())
        assert left == [15, 5, 0, 0]  # 10 rows a step, then the run itself
        with store.read() as conn:
            assert conn.execute(select(func.count()).where(runs.c.id == row.id)).scalar() == 0
            assert conn.execute(select(deleted_runs.c.purged_at).where(deleted_runs.c.uuid == "big")).scalar()
    finally:
        store.close()


@pytest.mark.postgres
def test_two_processes_purging_at_once_never_take_the_same_run(pg_store):
    store = pg_store
    row = big_run(store, "big", 25)
    store.writer.call(lambda conn: mark_deleted(conn, [row], "deleted", None))
    with store.engine.connect() as a, store.engine.connect() as b:
        with a.begin():
            assert purge_step(a, [row.id], limit=10)  # (its transaction holds the run's rows it removed)
            with b.begin():
                # Another process's step meanwhile: it has nothing to take, and neither waits for
                # the first one's rows nor removes none of them and calls the run purged.
                b.execute(text("SET LOCAL lock_timeout = '2s'"))
                assert not purge_step(b, [row.id], limit=10)
        assert rows_of_id(store, row.id)["logs"] == 15
    while store.writer.call(lambda conn: purge_step(conn, [row.id], limit=10)):
        pass
    assert set(rows_of_id(store, row.id).values()) == {0}
    with store.read() as conn:
        assert conn.execute(select(deleted_runs.c.purged_at).where(deleted_runs.c.run_id == row.id)).scalar()


@pytest.mark.postgres
def test_a_batch_that_waited_for_a_run_being_deleted_is_refused(pg_store):
    """Another process tombstones the run while this one's transaction waits for the run's row:
    the batch meets the tombstone (410), it is not stored."""
    store = pg_store
    run = str(uuid.uuid4())
    body = orjson.dumps([env(events.RUN_STARTED, run, {"job_name": "going"}, seq=1), log(run, 2, "first")])
    assert store.writer.call(lambda conn: store_batch(conn, checked_batch(body, 1, None))).stored == 2
    late = checked_batch(orjson.dumps([log(run, 3, "late")]), 1, None)
    cache = RunCache(shared=True)
    seen: dict = {}

    def other_process():
        with store.engine.connect() as b, b.begin():
            seen["pid"] = backend_pid(b)
            started.set()
            cache.begin(b, [BatchJob(late, cache)])  # (waits for the run's row)
            seen["cached"] = (1, run) in cache.runs
            seen["result"] = store_batch(b, late, cache)

    started = threading.Event()
    with store.engine.connect() as a:
        with a.begin():
            mark_deleted(a, a.execute(select(runs).where(runs.c.uuid == run)).all(), "deleted", None)
            waiting = threading.Thread(target=other_process)
            waiting.start()
            started.wait()
            wait_for_lock(store, seen["pid"])
        waiting.join(timeout=10)
    assert not waiting.is_alive()
    assert seen["cached"] is False and seen["result"].gone == run and seen["result"].stored == 0
    with store.read() as conn:
        assert conn.execute(select(logs.c.text).where(logs.c.text == "late")).all() == []


def test_another_account_gets_404_and_nothing_changes(api, client):
    run = finished(api, "mine")
    other = Api(client)
    assert client.delete(f"/api/v1/runs/{run}", headers=other.headers).status_code == 404
    assert client.delete("/api/v1/runs", params={"name": "mine"}, headers=other.headers).status_code == 404
    assert client.delete("/api/v1/runs", params={"name": "mine"}).status_code == 401
    assert rows_of(client, run)["logs"] == 3 and len(api.lines(run)) == 3


def test_deleting_every_run_of_a_name(api, client):
    a, b = finished(api, "sweep"), finished(api, "sweep", status=events.FAILURE)
    other = finished(api, "sweeps")
    resp = client.delete("/api/v1/runs", params={"name": "sweep"}, headers=api.headers)
    assert resp.status_code == 200, resp.text
    assert sorted(resp.json()["deleted"]) == sorted([a, b])
    assert [r["uuid"] for r in api.json("/api/v1/runs")["runs"]] == [other]
    assert client.delete("/api/v1/runs", params={"name": "sweep"}, headers=api.headers).status_code == 404
    # Bad input changes nothing.
    assert client.delete("/api/v1/runs", headers=api.headers).status_code == 400
    assert client.delete("/api/v1/runs", params={"name": ""}, headers=api.headers).status_code == 400


def test_a_running_run_is_refused_unless_forced_and_late_batches_get_410(api, client):
    run = finished(api, "live", status=events.RUNNING)
    resp = client.delete(f"/api/v1/runs/{run}", headers=api.headers)
    assert resp.status_code == 409 and resp.json()["code"] == "run_running", resp.text
    assert resp.json()["running"] == [run]
    assert len(api.lines(run)) == 3  # nothing changed

    resp = client.delete(f"/api/v1/runs/{run}", params={"force": "true"}, headers=api.headers)
    assert resp.status_code == 200, resp.text
    late = api.ingest([log(run, 50, "a late line"), log(run, 51, "another")])
    assert late.status_code == 410, late.text
    assert late.json()["code"] == "run_deleted" and run in late.json()["message"]
    # Not even a heartbeat, nor an original client's chunk without seq, brings it back.
    assert api.ingest(env(events.HEARTBEAT, run, {})).status_code == 410
    assert api.ingest(log(run, None, "chunk\n")).status_code == 410
    assert api.get(f"/api/v1/runs/{run}").status_code == 404
    assert set(rows_of(client, run).values()) == {0}
    # Another account may still use that uuid for a run of its own (uuids are per account).
    other = Api(client)
    other.ok([log(run, 1, "mine")])
    assert other.lines(run) == ["mine"]


def test_the_delete_route_is_documented(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert "delete" in paths["/api/v1/runs/{run_uuid}"] and "delete" in paths["/api/v1/runs"]
    assert "410" in paths[events.INGEST_PATH]["post"]["responses"]


def test_streams_are_told_of_a_delete(live):
    server, client, headers = live
    run = str(uuid.uuid4())
    assert client.post(events.INGEST_PATH, headers=headers, json=[log(run, 1, "x")]).status_code == 200
    account = Events(httpx2.Client(base_url=server.url), "/api/v1/events", headers)
    own = Events(httpx2.Client(base_url=server.url), f"/api/v1/runs/{run}/events", headers)
    try:
        assert [e["event"] for e in own.take(2)] == ["status", "log"]
        assert client.delete(f"/api/v1/runs/{run}", headers=headers, params={"force": "true"}).status_code == 200
        told = account.take(1)[0]
        assert (told["event"], told["data"]) == ("deleted", {"uuid": run})
        with pytest.raises(StopIteration):  # the run's own stream ended
            own.take(1)
        assert client.get(f"/api/v1/runs/{run}/events", headers=headers).status_code == 404
    finally:
        account.close()
        own.close()


def nan(run: str, seq: int) -> dict:
    return env(events.METRIC, run, {"name": "loss", "value": "NaN", "step": seq}, seq=seq)


def rule_rows(client, run_id: int) -> list[int]:
    """How many rows of a run the tables of metric rules hold: rules, states, firings."""
    with client.app.state.store.read() as conn:
        return [conn.execute(select(func.count()).select_from(table).where(table.c.run_id == run_id)).scalar()
                for table in (rules, rule_states, rule_firings)]


def test_a_run_given_a_deleted_runs_id_starts_its_rules_afresh(api, client, db_url):
    named = client.post("/api/v1/rules", headers=api.headers, json={"name": "nightly", "metric": "loss", "nan": True})
    assert named.status_code == 201, named.text
    first = str(uuid.uuid4())
    api.ok([env(events.RUN_STARTED, first, {"job_name": "nightly"}, seq=1)])
    assert client.post(f"/api/v1/runs/{first}/rules", headers=api.headers,
                       json={"metric": "acc", "below": 0.5}).status_code == 201  # a rule of its own
    api.ok([nan(first, 2)])  # (the writer holds where the rules stand on it now)
    assert len(api.json(f"/api/v1/runs/{first}/rules")["firings"]) == 1
    with client.app.state.store.read() as conn:
        old_id = conn.execute(select(runs.c.id).where(runs.c.uuid == first)).scalar()
    assert rule_rows(client, old_id) == [1, 1, 1]  # its own rule; the name rule's state and firing
    assert client.delete(f"/api/v1/runs/{first}", params={"force": "true"}, headers=api.headers).status_code == 200
    assert rule_rows(client, old_id) == [0, 0, 0] and set(rows_of(client, first).values()) == {0}

    second = str(uuid.uuid4())
    api.ok([env(events.RUN_STARTED, second, {"job_name": "nightly"}, seq=1)])
    with client.app.state.store.read() as conn:
        new_id = conn.execute(select(runs.c.id).where(runs.c.uuid == second)).scalar()
        # The name's rule stays; the deleted run's own is gone.
        assert conn.execute(select(rules.c.name)).scalars().all() == ["nightly"]
    if db_url.startswith("sqlite"):
        assert new_id == old_id  # SQLite gives the newest run's id again
    reply = api.json(f"/api/v1/runs/{second}/rules")
    assert reply["firings"] == [] and [r["id"] for r in reply["rules"]] == [named.json()["id"]]
    api.ok([nan(second, 2)])
    assert [f["value_text"] for f in api.json(f"/api/v1/runs/{second}/rules")["firings"]] == ["NaN"]
    with client.app.state.store.read() as conn:
        assert conn.execute(select(rule_states.c.fired).where(rule_states.c.run_id == new_id)).scalar() == 1


@pytest.fixture
def slow_purge(make_client, monkeypatch) -> Api:
    """An account on an app whose periodic purge waits an hour: a deleted run's rows stay."""
    monkeypatch.setattr("hyperdash.server.app.TIDY_INTERVAL_S", 3600.0)
    return Api(make_client())


def tombstone(client, run_uuid: str) -> int:
    """Delete a run as the API does, but take one purge step only (of one row): its rows stay."""
    state = client.app.state

    def job(conn):
        rows = conn.execute(select(runs).where(runs.c.uuid == run_uuid)).all()
        return mark_deleted(conn, rows, "deleted", state.run_cache).run_ids[0]

    run_id = state.store.writer.call(job)
    assert state.store.writer.call(lambda conn: purge_step(conn, [run_id], limit=1))
    left = rows_of(client, run_uuid)
    assert left["runs"] == 1 and left["logs"] > 0
    return run_id


def test_a_batch_for_a_run_being_purged_gets_410_and_nothing_is_stored(slow_purge):
    api, client = slow_purge, slow_purge.client
    run = finished(api, "live", lines=5, status=events.RUNNING)
    api.ok([log(run, 20, "before")])  # the writer holds the run now
    tombstone(client, run)
    before = rows_of(client, run)
    late = api.ingest([log(run, 21, "a late line"), env(events.HEARTBEAT, run, {})])
    assert late.status_code == 410, late.text
    assert late.json()["code"] == "run_deleted"
    assert rows_of(client, run) == before


def test_a_run_being_purged_is_out_of_lists_pages_and_sweeps(slow_purge):
    api, client = slow_purge, slow_purge.client
    kept = finished(api, "grid")
    alive = finished(api, "other", status=events.RUNNING)
    gone = finished(api, "grid", status=events.RUNNING)
    tombstone(client, gone)

    assert [r["uuid"] for r in api.json("/api/v1/runs")["runs"]] == [alive, kept]
    assert [r["uuid"] for r in api.json("/api/v1/runs", name="grid")["runs"]] == [kept]
    assert api.get(f"/api/v1/runs/{gone}").status_code == 404
    assert api.get(f"/api/v1/runs/{gone}/logs").status_code == 404
    assert [r["uuid"] for r in api.json("/api/v1/compare", name="grid")["runs"]] == [kept]
    assert api.get("/api/v1/compare/series", run=[kept, gone]).status_code == 404

    # The sweeps pass it over: it is never called lost or stalled (nor notified as such).
    state = client.app.state
    later = events.now_ms() + 10**9
    stalled = state.store.writer.call(lambda conn: mark_stalled(conn, later, 1000, state.run_cache,
                                                                heard_past_window=False))
    assert [fact.run.uuid for fact in stalled.facts] == [alive]
    lost = state.store.writer.call(lambda conn: mark_lost(conn, 1.0, state.run_cache, now_ms=later))
    assert [fact.run.uuid for fact in lost.facts] == [alive]
    with state.store.read() as conn:
        assert conn.execute(select(runs.c.status).where(runs.c.uuid == gone)).scalar() == events.RUNNING
        assert conn.execute(select(runs.c.stalled_since).where(runs.c.uuid == gone)).scalar() is None

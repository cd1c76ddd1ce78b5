"""Old finished runs removed in the background (the server's --keep-days and an account's own
setting), on SQLite and PostgreSQL, with run times set in the database."""

from __future__ import annotations

import threading
import time

import pytest
from server_helpers import Api
from sqlalchemy import update
from test_deleting_runs import backend_pid, finished, rows_of, wait_for_lock

from hyperdash import events
from hyperdash.server.app import create_app
from hyperdash.server.retention import DAY_MS
from hyperdash.server.store import runs


def age(client, run_uuid: str, days: float, *, ended: bool = True) -> None:
    """Make the run look ``days`` old (its end, or for a lost or running run its last sign of life)."""
    when = events.now_ms() - int(days * DAY_MS)
    values = {"started_at": when - 1000, "last_seen_at": when, **({"ended_at": when} if ended else {})}
    client.app.state.store.writer.call(lambda conn: conn.execute(update(runs).where(runs.c.uuid == run_uuid)
                                                                 .values(**values)))


def wait_until_gone(api: Api, uuids: list[str], timeout: float = 15.0) -> None:
    """Wait until the runs are deleted and purged (a deleted run is 404 at once, its rows go after)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(api.get(f"/api/v1/runs/{u}").status_code == 404 and rows_of(api.client, u)["runs"] == 0
               for u in uuids):
            return
        time.sleep(0.1)
    raise AssertionError(f"still there after {timeout} s: {uuids}")


def test_the_servers_keep_days_removes_old_finished_runs_only(make_client):
    client = make_client(keep_days=2)
    api = Api(client)
    old, recent = finished(api, "old", lines=30), finished(api, "recent")
    running, lost = finished(api, "running", status=events.RUNNING), finished(api, "lost", status=events.RUNNING)
    age(client, old, 3)
    age(client, recent, 1)
    # Started a month ago and still sending: never removed, however old.
    month_ago = events.now_ms() - 30 * DAY_MS
    client.app.state.store.writer.call(lambda conn: conn.execute(
        update(runs).where(runs.c.uuid == running).values(started_at=month_ago)))
    client.app.state.store.writer.call(lambda conn: conn.execute(
        update(runs).where(runs.c.uuid == lost).values(status=events.LOST)))
    age(client, lost, 5, ended=False)

    wait_until_gone(api, [old, lost])
    assert set(rows_of(client, old).values()) == {0}
    assert {r["uuid"] for r in api.json("/api/v1/runs")["runs"]} == {recent, running}
    assert api.ingest([{"type": events.HEARTBEAT, "timestamp": events.now_ms(), "sdk_run_uuid": old,
                        "payload": {}}]).status_code == 410  # a late replay brings nothing back
    assert api.json("/api/v1/users/settings") == {"keep_days": None, "server_keep_days": 2}


def test_an_accounts_own_setting_applies_to_its_runs_alone(make_client):
    client = make_client()  # no server-wide rule
    tidy, hoarder = Api(client), Api(client)
    resp = client.put("/api/v1/users/settings", json={"keep_days": 7}, headers=tidy.headers)
    assert resp.status_code == 200 and resp.json() == {"keep_days": 7, "server_keep_days": None}
    mine, theirs, young = finished(tidy, "a"), finished(hoarder, "a"), finished(tidy, "b")
    age(client, mine, 8)
    age(client, theirs, 800)
    age(client, young, 6)
    wait_until_gone(tidy, [mine])
    time.sleep(1.0)  # two more rounds of the job
    assert hoarder.get(f"/api/v1/runs/{theirs}").status_code == 200
    assert tidy.get(f"/api/v1/runs/{young}").status_code == 200
    # Back to none of its own.
    back = client.put("/api/v1/users/settings", json={"keep_days": None}, headers=tidy.headers)
    assert back.json()["keep_days"] is None


@pytest.mark.parametrize("bad", [0, -1, 36501, 1.5, "7", True, None])
def test_bad_settings_are_refused_and_change_nothing(api, client, bad):
    client.put("/api/v1/users/settings", json={"keep_days": 30}, headers=api.headers)
    body = {} if bad is None else {"keep_days": bad}
    resp = client.put("/api/v1/users/settings", json=body, headers=api.headers)
    assert resp.status_code == 400, resp.text
    assert api.json("/api/v1/users/settings")["keep_days"] == 30


def test_a_bad_server_setting_is_refused(db_url):
    with pytest.raises(Exception, match="keep_days must be a whole number of days"):
        create_app(db_url, keep_days=0)


def test_the_rule_never_picks_a_running_run_however_silent(db_url):
    from hyperdash.server.retention import expired_runs
    from hyperdash.server.store import Store

    store = Store(db_url)  # no app: no sweep marks the silent run lost meanwhile
    try:
        long_ago = events.now_ms() - 400 * DAY_MS

        def make(conn):
            for uuid_, status in (("silent", events.RUNNING), ("done", events.SUCCESS)):
                conn.execute(runs.insert().values(user_id=1, uuid=uuid_, status=status, started_at=long_ago,
                                                  ended_at=None if status == events.RUNNING else long_ago,
                                                  last_seen_at=long_ago, max_seq=0))

        store.writer.call(make)
        with store.read() as conn:
            assert [r.uuid for r in expired_runs(conn, 1, events.now_ms())] == ["done"]
            assert expired_runs(conn, None, events.now_ms()) == []  # no rule: nothing goes
    finally:
        store.close()


@pytest.mark.postgres
def test_two_processes_setting_an_account_at_once_both_succeed(pg_store):
    """The account has no setting yet; two transactions set one at once (the second waits for
    the first's row): neither fails, and the last one set holds."""
    from hyperdash.server.retention import account_keep_days, set_account_keep_days

    store = pg_store
    seen: dict = {}

    def other_process():
        try:
            with store.engine.connect() as b, b.begin():
                seen["pid"] = backend_pid(b)
                started.set()
                set_account_keep_days(b, 1, 30)
        except Exception as exc:  # (told to the test below)
            seen["error"] = exc

    started = threading.Event()
    with store.engine.connect() as a:
        with a.begin():
            set_account_keep_days(a, 1, 7)
            second = threading.Thread(target=other_process)
            second.start()
            started.wait()
            wait_for_lock(store, seen["pid"])
        second.join(timeout=10)
    assert not second.is_alive() and "error" not in seen, seen.get("error")
    with store.read() as conn:
        assert account_keep_days(conn, 1) == 30

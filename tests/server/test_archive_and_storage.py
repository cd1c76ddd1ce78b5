"""Archiving runs out of the default lists, and how much each name's runs take, on SQLite and
PostgreSQL."""

from __future__ import annotations

import uuid

from server_helpers import Api, env, log
from sqlalchemy import func, select
from test_deleting_runs import finished

from hyperdash import events
from hyperdash.server.dialect import byte_length
from hyperdash.server.store import logs, runs


def listed(api: Api, **params) -> list[str]:
    return [r["uuid"] for r in api.json("/api/v1/runs", **params)["runs"]]


def test_an_archived_run_leaves_the_default_list_until_unarchived(api, client):
    a, b = finished(api, "keep"), finished(api, "shelve")
    resp = client.post(f"/api/v1/runs/{b}/archive", headers=api.headers)
    assert resp.status_code == 200 and resp.json() == {"uuid": b, "archived": True}
    assert listed(api) == [a]
    assert listed(api, name="shelve") == []
    assert listed(api, archived="only") == [b]
    assert listed(api, archived="all") == [b, a]
    assert api.json(f"/api/v1/runs/{b}")["uuid"] == b  # still whole
    # Every view of a run says whether it is archived.
    assert api.json(f"/api/v1/runs/{b}")["archived"] is True and api.json(f"/api/v1/runs/{a}")["archived"] is False
    assert [r["archived"] for r in api.json("/api/v1/runs", archived="all")["runs"]] == [True, False]
    assert len(api.lines(b)) == 3
    assert client.post(f"/api/v1/runs/{b}/archive", headers=api.headers).status_code == 200  # twice: the same

    resp = client.delete(f"/api/v1/runs/{b[:8]}/archive", headers=api.headers)
    assert resp.status_code == 200 and resp.json() == {"uuid": b, "archived": False}
    assert listed(api) == [b, a]
    assert listed(api, archived="only") == []
    assert api.json(f"/api/v1/runs/{b}")["archived"] is False


def test_archiving_is_refused_to_others_and_for_bad_input(api, client):
    run = finished(api, "mine")
    other = Api(client)
    assert client.post(f"/api/v1/runs/{run}/archive", headers=other.headers).status_code == 404
    assert client.post(f"/api/v1/runs/{run}/archive").status_code == 401
    assert api.get("/api/v1/runs", archived="maybe").status_code == 400
    assert listed(api) == [run]


def test_storage_per_name_counts_as_runs_are_stored(api, client):
    a = finished(api, "big", lines=10)
    finished(api, "big", lines=5)
    finished(api, "small", lines=1)
    api.ok([log(a, 100, "héllo")])  # 6 bytes in UTF-8
    client.post(f"/api/v1/runs/{a}/archive", headers=api.headers)
    other = Api(client)
    finished(other, "big", lines=50)

    names = {n["name"]: n for n in api.json("/api/v1/names/storage")["names"]}
    assert set(names) == {"big", "small"}
    big = names["big"]
    text = sum(len(f"big line {i}") for i in range(10)) + sum(len(f"big line {i}") for i in range(5)) + 6
    assert big == {"name": "big", "runs": 2, "archived": 1, "lines": 16, "bytes": text, "points": 2}
    assert names["small"]["lines"] == 1 and names["small"]["runs"] == 1
    assert [n["name"] for n in api.json("/api/v1/names/storage")["names"]] == ["big", "small"]  # largest first

    # A duplicate is not counted twice; a deleted run no longer counts.
    api.ok([log(a, 100, "héllo")])
    assert {n["name"]: n for n in api.json("/api/v1/names/storage")["names"]}["big"]["lines"] == 16
    assert client.delete("/api/v1/runs", params={"name": "small"}, headers=api.headers).status_code == 200
    assert [n["name"] for n in api.json("/api/v1/names/storage")["names"]] == ["big"]


def test_counters_follow_the_runs_end_and_original_clients(api):
    run = "0c0ffee0-0000-4000-8000-000000000001"
    api.ok([log(run, None, "one\ntwo\n"), env(events.METRIC, run, {"name": "m", "value": 1.0, "is_internal": False})])
    api.ok([env(events.RUN_ENDED, run, {"final_status": events.SUCCESS, "exit_code": 0})])
    (row,) = api.json("/api/v1/names/storage")["names"]
    assert (row["lines"], row["bytes"], row["points"]) == (2, 6, 1)


def counted_from_the_lines(client, run_uuid: str) -> tuple[int, int]:
    """(lines, bytes) of a run as the migration that added the counters computes them from its
    stored lines."""
    with client.app.state.store.read() as conn:
        run_id = conn.execute(select(runs.c.id).where(runs.c.uuid == run_uuid)).scalar()
        lines = conn.execute(select(func.count()).where(logs.c.run_id == run_id, logs.c.superseded == 0)).scalar()
        size = conn.execute(select(func.coalesce(func.sum(byte_length(conn, logs.c.text)), 0))
                            .where(logs.c.run_id == run_id)).scalar()
    return lines, size


def test_a_redrawn_bar_counts_once(api, client):
    run = str(uuid.uuid4())

    def bar(seq: int, n: int, **flags) -> dict:
        return log(run, seq, f"{n:3d}%|{'█' * (n // 10):10}| {n}/100 [00:{n // 10:02d}<00:10, 10.00it/s]",
                   stream="stderr", **flags)

    # Redrawn within a batch, then from one batch to the next, then finished by its last state.
    api.ok([env(events.RUN_STARTED, run, {"job_name": "bar"}, seq=1), log(run, 2, "start")]
           + [bar(3 + k, 10 * (k + 1), progress=True) for k in range(5)])
    for k in range(5, 10):
        api.ok([bar(3 + k, 10 * (k + 1), progress=True)])
    api.ok([bar(13, 100), log(run, 14, "done")])
    # A bar that is erased (tqdm's leave=False), a line, and a late copy of a state already replaced.
    api.ok([bar(15, 50, progress=True)])
    api.ok([log(run, 16, "", stream="stderr", progress=True), log(run, 17, "after")])
    api.ok([log(run, 19, "last", stream="stderr")])
    api.ok([bar(18, 90, progress=True), env(events.RUN_ENDED, run, {"final_status": events.SUCCESS}, seq=20)])

    shown = api.lines(run)
    assert len(shown) == 5 and shown[1].startswith("100%")
    (row,) = api.json("/api/v1/names/storage")["names"]
    assert (row["lines"], row["bytes"]) == counted_from_the_lines(client, run) \
        == (5, sum(len(text.encode()) for text in shown))

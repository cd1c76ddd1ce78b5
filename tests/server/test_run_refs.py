"""Runs named by the start of their uuid, on SQLite and PostgreSQL; why a key is refused."""

from __future__ import annotations

import test_deleting_runs
from server_helpers import Api, env, log
from test_deleting_runs import tombstone

from hyperdash import events

ONE = "5eed0000-1111-4111-8111-111111111111"
TWO = "5eed0000-2222-4222-8222-222222222222"

slow_purge = test_deleting_runs.slow_purge  # the fixture: an app whose deleted runs' rows stay


def started(api: Api, run_uuid: str, name: str) -> None:
    api.ok([env(events.RUN_STARTED, run_uuid, {"job_name": name}, seq=1), log(run_uuid, 2, f"{name} says hi"),
            env(events.METRIC, run_uuid, {"name": "loss", "value": 0.5, "timestamp": events.now_ms(),
                                          "is_internal": False, "step": 1}, seq=3)])


def test_every_run_route_takes_a_unique_start_of_the_uuid(api):
    started(api, ONE, "first")
    started(api, TWO, "second")
    prefix = ONE[:10]  # 5eed0000-1: one run only

    assert api.json(f"/api/v1/runs/{prefix}")["uuid"] == ONE
    assert api.json(f"/api/v1/runs/{prefix.upper()}")["uuid"] == ONE
    assert [line["text"] for line in api.json(f"/api/v1/runs/{prefix}/logs")["lines"]] == ["first says hi"]
    assert api.json(f"/api/v1/runs/{prefix}/metrics/loss")["points"][0]["value"] == 0.5
    assert api.get(f"/api/v1/runs/{prefix}/logs.txt").text == "first says hi\n"
    with api.client.stream("GET", f"/api/v1/runs/{prefix}/events", headers=api.headers) as stream:
        assert stream.status_code == 200
        lines = stream.iter_lines()
        while not (line := next(lines)).startswith("data:"):
            pass
    assert f'"uuid":"{ONE}"' in line  # the stream starts with the run's status


def test_a_start_several_runs_share_is_refused_with_them_and_a_short_one_is_no_prefix(api, client):
    started(api, ONE, "first")
    started(api, TWO, "second")
    other = Api(client)
    started(other, "5eed0000-3333-4333-8333-333333333333", "another account's")

    for path in ("/api/v1/runs/5eed0000", "/api/v1/runs/5eed0000/logs", "/api/v1/runs/5eed0000-"):
        resp = api.get(path)
        assert resp.status_code == 409, resp.text
        body = resp.json()
        assert body["code"] == "ambiguous_run" and ONE in body["message"] and TWO in body["message"]
        assert [c["uuid"] for c in body["candidates"]] == [TWO, ONE]  # newest first, this account's only
    # Fewer than 8 hex digits, or not the shape of a uuid: not taken as a start, so not found.
    for ref in ("5eed000", "5eed0000x", "first"):
        assert api.get(f"/api/v1/runs/{ref}").status_code == 404
    assert other.json("/api/v1/runs/5eed0000")["name"] == "another account's"


def test_a_start_shared_with_a_run_being_deleted_names_the_live_run(slow_purge):
    api = slow_purge
    started(api, ONE, "first")
    started(api, TWO, "second")
    api.ok([log(TWO, 4, "second says more")])
    tombstone(api.client, TWO)  # (its rows stay until the purge ends)
    assert api.json("/api/v1/runs/5eed0000")["uuid"] == ONE
    assert api.get(f"/api/v1/runs/{TWO}").status_code == 404


def test_a_refused_key_says_whether_it_was_revoked(api, client):
    made = client.post("/api/v1/users/api_keys", json={"name": "old"}, headers=api.headers).json()
    assert client.delete(f"/api/v1/users/api_keys/{made['id']}", headers=api.headers).status_code == 200
    revoked = {events.AUTH_HEADER: made["api_key"]}
    unknown = {events.AUTH_HEADER: "hd_never_made"}

    for headers, reason in ((revoked, "revoked"), (unknown, "unknown")):
        for resp in (client.get("/api/v1/runs", headers=headers),
                     client.post(events.INGEST_PATH, headers=headers, json=[log(ONE, 1, "x")])):
            assert resp.status_code == 401
            body = resp.json()
            # The code the original clients stop on stays; the reason is beside it.
            assert body["code"] == "api_key_requred" and body["reason"] == reason, body
    assert "revoked" in client.get("/api/v1/runs", headers=revoked).json()["message"]
    assert api.json("/api/v1/runs")["runs"] == []  # nothing was stored by the refused batches

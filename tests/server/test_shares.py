"""Read-only links to one run, on SQLite and PostgreSQL: they work without an account, for that
run alone, until revoked; a guess, another run, the account's pages and the API refuse them."""

from __future__ import annotations

import html
import threading
import time
import uuid

import httpx2
import pytest
import test_deleting_runs
import test_live
from server_helpers import Api, env, log
from sqlalchemy import select
from test_deleting_runs import finished, rows_of, tombstone
from test_live import Events

from hyperdash import events
from hyperdash.server import share_api
from hyperdash.server.store import run_shares

HOSTILE = '<script>alert(1)</script><img src=x onerror=alert(2)>"\'&'

live = test_live.live  # the fixture: a real server in this process, and an account on it
slow_purge = test_deleting_runs.slow_purge  # the fixture: an app whose deleted runs' rows stay


def share(api: Api, run_uuid: str) -> dict:
    resp = api.client.post(f"/api/v1/runs/{run_uuid}/shares", headers=api.headers)
    assert resp.status_code == 201, resp.text
    return resp.json()


def anonymous(client):
    """The same app, with no cookie and no key."""
    client.cookies.clear()
    return client


def test_a_link_shows_its_run_without_an_account(api, client):
    run = finished(api, "shared", lines=3)
    made = share(api, run)
    token = made["token"]
    assert len(token) >= 43 and made["url"].endswith(f"/shared/{token}")
    with client.app.state.store.read() as conn:  # only its hash is kept
        assert conn.execute(select(run_shares.c.token_hash)).scalar() not in (token, None)
        assert token not in str(conn.execute(select(run_shares)).all())

    page = anonymous(client).get(f"/shared/{token}")
    assert page.status_code == 200 and "shared line 0" in page.text
    assert 'name="api-base"' in page.text and "Sign out" not in page.text and api.email not in page.text
    assert "delete-open" not in page.text and "share-open" not in page.text  # no owner's actions
    assert page.headers["content-security-policy"].startswith("default-src 'self'")
    base = f"/api/v1/shared/{token}"
    assert client.get(f"{base}/me").json() == {"uuid": run}
    detail = client.get(f"{base}/runs/{run}").json()
    assert detail["uuid"] == run and detail["params"] == {"lr": 0.1} and detail["metrics"]["loss"]["value"] == 0.5
    assert [line["text"] for line in client.get(f"{base}/runs/{run}/logs").json()["lines"]][:1] == ["shared line 0"]
    assert client.get(f"{base}/runs/{run}/logs", params={"tail": 1}).json()["lines"][0]["text"] == "shared line 2"
    assert client.get(f"{base}/runs/{run}/metrics/loss").json()["points"][0]["value"] == 0.5
    assert client.get(f"{base}/runs/{run}/logs.txt").text.startswith("shared line 0\n")


def test_a_link_does_not_tell_who_asked_the_run_to_stop(api, client):
    """Who stopped a run is an account's email: the owner sees it, a shared link does not."""
    run = str(uuid.uuid4())
    api.ok([env(events.RUN_STARTED, run, {"job_name": "stopped"}, seq=1), log(run, 2, "working")])
    stopped = client.post(f"/api/v1/runs/{run}/stop", headers=api.headers)
    assert stopped.status_code == 202, stopped.text
    assert api.json(f"/api/v1/runs/{run}")["stop"]["by"] == api.email
    token = share(api, run)["token"]
    detail = anonymous(client).get(f"/api/v1/shared/{token}/runs/{run}").json()
    assert detail["stop"]["by"] is None and detail["stop"]["via"] == "api" and detail["stop"]["requested_at"]
    page = client.get(f"/shared/{token}")
    assert page.status_code == 200 and api.email not in page.text and html.escape(api.email) not in page.text


def test_a_link_reaches_nothing_else(api, client):
    run, other_run = finished(api, "shared"), finished(api, "private")
    token = share(api, run)["token"]
    client = anonymous(client)
    base = f"/api/v1/shared/{token}"
    for path in (f"{base}/runs/{other_run}", f"{base}/runs/{other_run}/logs", f"{base}/runs/{other_run}/events",
                 f"{base}/runs/{other_run}/metrics/loss", f"{base}/runs/{run[:8]}", f"{base}/runs"):
        assert client.get(path).status_code == 404, path
    # The token is no credential anywhere else.
    for headers in ({"authorization": f"Bearer {token}"}, {"authorization": token}, {events.AUTH_HEADER: token}):
        for path in ("/api/v1/runs", f"/api/v1/runs/{run}", f"/api/v1/runs/{run}/logs", "/api/v1/me",
                     "/api/v1/names/storage", f"/api/v1/runs/{run}/shares", "/api/v1/events"):
            assert client.get(path, headers=headers).status_code == 401, (path, headers)
        assert client.delete(f"/api/v1/runs/{run}", headers=headers).status_code == 401
        assert client.post(events.INGEST_PATH, headers=headers, json=[log(run, 90, "x")]).status_code == 401
    client.cookies.set("hyperdash_session", token)
    for path in ("/", f"/runs/{run}", "/storage"):
        resp = client.get(path, follow_redirects=False)
        assert resp.status_code == 303 and resp.headers["location"].startswith("/login"), path
    client.cookies.clear()
    assert len(api.lines(run)) == 3  # nothing changed


def test_a_link_reads_its_runs_rules_and_firings_and_nothing_else(api, client):
    run, other_run = finished(api, "shared", status=events.RUNNING), finished(api, "private", status=events.RUNNING)
    for uuid_, metric in ((run, "loss"), (other_run, "secret_metric")):
        assert client.post(f"/api/v1/runs/{uuid_}/rules", headers=api.headers,
                           json={"metric": metric, "above": 1}).status_code == 201
    for name, metric in (("shared", "acc"), ("private", "private_acc")):
        assert client.post("/api/v1/rules", headers=api.headers,
                           json={"name": name, "metric": metric, "below": 0.1}).status_code == 201
    api.ok([env(events.METRIC, run, {"name": "loss", "value": 5.0}, seq=20),
            env(events.METRIC, other_run, {"name": "secret_metric", "value": 9.0}, seq=20)])
    token = share(api, run)["token"]
    base = f"/api/v1/shared/{token}"
    owners = api.json(f"/api/v1/runs/{run}/rules")

    client = anonymous(client)
    found = client.get(f"{base}/runs/{run}/rules")
    assert found.status_code == 200, found.text
    assert found.json() == owners  # what the owner sees of this run, and only that
    assert [r["metric"] for r in found.json()["rules"]] == ["loss", "acc"]
    assert [(f["metric"], f["value"]) for f in found.json()["firings"]] == [("loss", 5.0)]
    assert "secret_metric" not in found.text and "private" not in found.text
    # Another run's, by the same token, or a change through it: refused.
    assert client.get(f"{base}/runs/{other_run}/rules").status_code == 404
    assert client.get(f"{base}/rules").status_code == 404
    assert client.post(f"{base}/runs/{run}/rules", json={"metric": "x", "nan": True}).status_code == 405
    rule_id = owners["rules"][0]["id"]
    assert client.delete(f"{base}/rules/{rule_id}").status_code == 404
    for headers in ({"authorization": f"Bearer {token}"}, {events.AUTH_HEADER: token}):
        assert client.get(f"/api/v1/runs/{run}/rules", headers=headers).status_code == 401
        assert client.get("/api/v1/rules", headers=headers).status_code == 401
        assert client.delete(f"/api/v1/rules/{rule_id}", headers=headers).status_code == 401
    assert api.json(f"/api/v1/runs/{run}/rules") == owners  # nothing changed
    # Revoked: refused like a token never made.
    share_id = api.json(f"/api/v1/runs/{run}/shares")["shares"][0]["id"]
    assert api.client.delete(f"/api/v1/runs/{run}/shares/{share_id}", headers=api.headers).status_code == 200
    assert client.get(f"{base}/runs/{run}/rules").status_code == 404


def test_no_link_is_made_for_a_run_deleted_after_it_was_read(slow_purge, monkeypatch):
    api = slow_purge
    run = finished(api, "going")
    own_run = share_api._own_run

    def read_then_deleted(request, user, run_uuid):
        row = own_run(request, user, run_uuid)
        tombstone(api.client, run)  # (as another request or process may, before the share is made)
        return row

    monkeypatch.setattr(share_api, "_own_run", read_then_deleted)
    resp = api.client.post(f"/api/v1/runs/{run}/shares", headers=api.headers)
    assert resp.status_code == 404, resp.text
    assert rows_of(api.client, run)["run_shares"] == 0


@pytest.mark.parametrize("guess", ["x" * 43, "", "a", "%00", "." * 10, "y" * 300])
def test_a_guessed_link_refuses(api, client, guess):
    token = share(api, finished(api, "shared"))["token"]
    assert guess != token
    client = anonymous(client)
    assert client.get(f"/shared/{guess}").status_code in (404, 307, 308)
    assert client.get(f"/api/v1/shared/{guess}/me").status_code == 404


def test_a_revoked_link_refuses_and_only_its_owner_revokes(api, client):
    run = finished(api, "shared")
    first, second = share(api, run), share(api, run)
    assert [s["id"] for s in api.json(f"/api/v1/runs/{run}/shares")["shares"]] == [first["id"], second["id"]]
    other = Api(client)
    assert client.delete(f"/api/v1/runs/{run}/shares/{first['id']}", headers=other.headers).status_code == 404
    assert client.post(f"/api/v1/runs/{run}/shares", headers=other.headers).status_code == 404
    assert client.get(f"/api/v1/runs/{run}/shares", headers=other.headers).status_code == 404

    assert client.delete(f"/api/v1/runs/{run}/shares/{first['id']}", headers=api.headers).json() == {
        "revoked": first["id"]}
    assert client.delete(f"/api/v1/runs/{run}/shares/{first['id']}", headers=api.headers).status_code == 404
    client = anonymous(client)
    assert client.get(f"/shared/{first['token']}").status_code == 404
    assert client.get(f"/api/v1/shared/{first['token']}/runs/{run}").status_code == 404
    assert client.get(f"/api/v1/shared/{second['token']}/runs/{run}").status_code == 200  # the other still works
    # Deleting the run ends its links too.
    assert client.delete(f"/api/v1/runs/{run}", headers=api.headers).status_code == 200
    assert client.get(f"/api/v1/shared/{second['token']}/me").status_code == 404


def test_the_shared_page_escapes_text(api, client):
    run = str(uuid.uuid4())
    api.ok([env(events.RUN_STARTED, run, {"job_name": HOSTILE}, seq=1), log(run, 2, HOSTILE),
            env(events.PARAM, run, {"params": {HOSTILE: HOSTILE}}, seq=3)])
    token = share(api, run)["token"]
    page = anonymous(client).get(f"/shared/{token}").text
    assert "<script>alert(1)" not in page and "<img src=x" not in page
    assert html.escape(HOSTILE, quote=False)[:20] in page or "\\u003cscript\\u003e" in page


def test_a_shared_stream_is_live_and_ends_soon_after_revoking(live):
    server, client, headers = live
    run = str(uuid.uuid4())
    assert client.post(events.INGEST_PATH, headers=headers, json=[log(run, 1, "first")]).status_code == 200
    made = client.post(f"/api/v1/runs/{run}/shares", headers=headers).json()
    stream = Events(httpx2.Client(base_url=server.url), f"/api/v1/shared/{made['token']}/runs/{run}/events", {})
    try:
        assert [e["event"] for e in stream.take(2)] == ["status", "log"]
        assert client.post(events.INGEST_PATH, headers=headers, json=[log(run, 2, "live")]).status_code == 200
        assert stream.take(1)[0]["data"]["text"] == "live"

        revoked_at = time.monotonic()
        assert client.delete(f"/api/v1/runs/{run}/shares/{made['id']}", headers=headers).status_code == 200
        ended = threading.Event()

        def drain():
            try:
                stream.take(1000)
            except (StopIteration, httpx2.HTTPError):
                ended.set()

        threading.Thread(target=drain, daemon=True).start()
        assert ended.wait(8), "the stream went on after its link was revoked"
        assert time.monotonic() - revoked_at < 8
    finally:
        stream.close()

"""Accounts: signup, login, keys, tokens, browser sessions and CSRF, throttled wrong passwords."""

from __future__ import annotations

import json
import uuid

import pytest
from server_helpers import Api, log
from sqlalchemy import select

from hyperdash import events
from hyperdash.server.auth import ACCESS_TOKEN_DAYS, CSRF_HEADER, SESSION_COOKIE, WrongCredentials
from hyperdash.server.errors import Throttled
from hyperdash.server.store import api_keys, tokens, users


def test_signup_gives_a_working_key_and_token(client):
    api = Api(client)
    assert api.json("/api/v1/me") == {"email": api.email}
    for auth in (api.access_token, f"Bearer {api.access_token}"):
        resp = client.get("/api/v1/me", headers={"authorization": auth})
        assert resp.status_code == 200 and resp.json()["email"] == api.email


@pytest.mark.parametrize("body,code", [
    ({"email": "not-an-email", "password": "long enough"}, "invalid_email"),
    ({"email": "a@example.com", "password": "short"}, "weak_password"),
    ({"email": "a@example.com", "password": "x" * 5000}, "invalid_password"),
    ({"email": "a" * 400 + "@example.com", "password": "long enough"}, "invalid_email"),
    ({"email": "a@example.com"}, "invalid_request"),
    ({"email": 5, "password": "long enough"}, "invalid_request"),
])
def test_bad_signups_are_refused(client, body, code):
    resp = client.post("/api/v1/users", json=body)
    assert resp.status_code == 400 and resp.json()["code"] == code and resp.json()["message"]
    with client.app.state.store.read() as conn:
        assert conn.execute(select(users.c.email)).all() == []


def test_taken_email_is_a_conflict(client):
    api = Api(client)
    resp = client.post("/api/v1/users", json={"email": api.email.upper(), "password": "another password"})
    assert resp.status_code == 409 and resp.json()["code"] == "email_taken"
    assert api.email in resp.json()["message"].lower()


def test_secrets_are_kept_only_as_hashes(client):
    api = Api(client)
    with client.app.state.store.read() as conn:
        stored = [str(v) for table in (users, api_keys, tokens) for row in conn.execute(select(table)) for v in row]
    blob = "\n".join(stored)
    assert api.password not in blob and api.api_key not in blob and api.access_token not in blob
    assert "scrypt$" in blob


def test_login_makes_a_key_named_after_the_host(client):
    api = Api(client)
    resp = client.post("/api/v1/sessions", json={"email": api.email, "password": api.password, "host": "gpu-box"})
    assert resp.status_code == 200, resp.text
    token, key = resp.json()["access_token"], resp.json()["api_key"]
    keys = client.get("/api/v1/users/api_keys", headers={"authorization": token}).json()["api_keys"]
    assert [k["name"] for k in keys] == ["signup", "gpu-box"]
    assert set(keys[0]) >= {"id", "name", "prefix", "created_at", "last_used_at", "revoked_at"}
    assert keys[0]["created_at"].endswith("Z") and keys[0]["revoked_at"] is None
    assert key.startswith(keys[1]["prefix"])
    assert client.get("/api/v1/me", headers={events.AUTH_HEADER: key}).status_code == 200


def test_wrong_passwords_are_refused_then_slowed_down(client):
    api = Api(client)
    wrong = {"email": api.email, "password": "not the password"}
    codes = [client.post("/api/v1/sessions", json=wrong) for _ in range(4)]
    assert [r.status_code for r in codes[:3]] == [401, 401, 401]
    assert codes[0].json()["code"] == "wrong_credentials"
    assert codes[3].status_code == 429 and int(codes[3].headers["retry-after"]) >= 1
    # While throttled even the right password waits.
    right = client.post("/api/v1/sessions", json={"email": api.email, "password": api.password})
    assert right.status_code == 429
    # The service the sign-in page uses says the same.
    with pytest.raises(Throttled):
        client.app.state.auth.authenticate(api.email, api.password, "testclient")
    with pytest.raises(WrongCredentials):
        client.app.state.auth.authenticate(api.email, "wrong", "another-address")


def test_revoked_key_stops_working_at_once(client):
    api = Api(client)
    created = client.post("/api/v1/users/api_keys", headers=api.headers, json={"name": "laptop"})
    assert created.status_code == 201 and created.json()["name"] == "laptop"
    key = created.json()["api_key"]
    other = {events.AUTH_HEADER: key}
    run = str(uuid.uuid4())
    assert client.post(events.INGEST_PATH, headers=other, json=[log(run, 1, "x")]).status_code == 200
    resp = client.delete(f"/api/v1/users/api_keys/{created.json()['id']}", headers=api.headers)
    assert resp.status_code == 200
    refused = client.post(events.INGEST_PATH, headers=other, json=[log(run, 2, "y")])
    assert refused.status_code == 401 and refused.json()["code"] == "api_key_requred"
    assert client.get("/api/v1/runs", headers=other).status_code == 401
    listed = api.json("/api/v1/users/api_keys")["api_keys"]
    assert [k["revoked_at"] is not None for k in listed] == [False, True]
    assert client.delete(f"/api/v1/users/api_keys/{created.json()['id']}", headers=api.headers).status_code == 404
    # Someone else's key id cannot be revoked.
    other_account = Api(client)
    first_id = listed[0]["id"]
    assert client.delete(f"/api/v1/users/api_keys/{first_id}", headers=other_account.headers).status_code == 404
    assert api.get("/api/v1/me").status_code == 200


def test_queries_need_credentials(client):
    for headers in ({}, {events.AUTH_HEADER: "wrong"}, {"authorization": "Bearer wrong"}):
        resp = client.get("/api/v1/runs", headers=headers)
        assert resp.status_code == 401 and resp.json()["code"] == "api_key_requred"


def test_browser_session_cookie_and_csrf(client):
    api = Api(client)
    auth = client.app.state.auth
    user = auth.authenticate(api.email, api.password, "browser")
    session, csrf = auth.create_browser_session(user.id)
    assert auth.user_for_session(session).email == api.email
    assert auth.csrf_for_session(session) == csrf
    client.cookies.set(SESSION_COOKIE, session)
    try:
        assert client.get("/api/v1/me").json() == {"email": api.email}
        refused = client.post("/api/v1/users/api_keys", json={"name": "x"})
        assert refused.status_code == 403 and refused.json()["code"] == "csrf"
        wrong = client.post("/api/v1/users/api_keys", json={"name": "x"}, headers={CSRF_HEADER: "nope"})
        assert wrong.status_code == 403
        made = client.post("/api/v1/users/api_keys", json={"name": "x"}, headers={CSRF_HEADER: csrf})
        assert made.status_code == 201
        auth.end_browser_session(session)
        assert client.get("/api/v1/me").status_code == 401
        assert auth.user_for_session(session) is None
    finally:
        client.cookies.clear()


def test_one_time_login_token(client):
    api = Api(client)
    auth = client.app.state.auth
    user = auth.authenticate(api.email, api.password, "x")
    token = auth.create_login_token(user.id)
    assert auth.redeem_login_token(token).email == api.email
    assert auth.redeem_login_token(token) is None
    assert auth.redeem_login_token("made-up") is None


def test_openapi_schema_lists_the_api(client):
    schema = client.get("/openapi.json").json()
    paths = schema["paths"]
    for path in ("/api/v1/health", "/api/v1/users", "/api/v1/sessions", "/api/v1/users/api_keys",
                 events.INGEST_PATH, "/api/v1/runs", "/api/v1/runs/{run_uuid}", "/api/v1/runs/{run_uuid}/logs",
                 "/api/v1/runs/{run_uuid}/events", "/api/v1/events"):
        assert path in paths, path
    ingest_body = paths[events.INGEST_PATH]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert ingest_body["oneOf"][1]["maxItems"] == events.MAX_BATCH_EVENTS
    assert events.ATTACHED_TEXT_TYPE in paths[events.INGEST_PATH]["post"]["requestBody"]["content"]
    assert client.get("/api/v1/health").json()["ok"] is True


def test_unknown_routes_answer_json(client):
    resp = client.get("/api/v1/nothing-here")
    assert resp.status_code == 404 and resp.json()["code"] == "not_found"
    resp = client.put("/api/v1/runs")
    assert resp.status_code == 405 and resp.json()["code"] == "method_not_allowed"


@pytest.mark.parametrize("field,code", [("password", "invalid_password"), ("email", "invalid_email")])
def test_lone_surrogates_in_signup_are_refused(client, field, code):
    body = {"email": "someone@example.com", "password": "abcdefgh"}
    body[field] = "\ud800" + body[field]
    # json.dumps writes the surrogate as the escape \ud800, as a JSON client may.
    resp = client.post("/api/v1/users", content=json.dumps(body), headers={"content-type": "application/json"})
    assert resp.status_code == 400 and resp.json()["code"] == code and "surrogate" in resp.json()["message"]
    with client.app.state.store.read() as conn:
        assert conn.execute(select(users.c.email)).all() == []


def test_lone_surrogates_elsewhere_are_refused_or_replaced(client):
    api = Api(client)
    login = {"email": api.email, "password": "\udc00" + api.password}
    resp = client.post("/api/v1/sessions", content=json.dumps(login), headers={"content-type": "application/json"})
    assert resp.status_code == 401 and resp.json()["code"] == "wrong_credentials"
    resp = client.post("/api/v1/users/api_keys", content=json.dumps({"name": "box\ud800"}),
                       headers={**api.headers, "content-type": "application/json"})
    assert resp.status_code == 201 and resp.json()["name"] == "box\ufffd"
    assert [k["name"] for k in api.json("/api/v1/users/api_keys")["api_keys"]] == ["signup", "box\ufffd"]


def test_a_valid_token_beside_a_revoked_key_is_enough(client):
    api = Api(client)
    created = client.post("/api/v1/users/api_keys", headers=api.headers, json={"name": "old"}).json()
    assert client.delete(f"/api/v1/users/api_keys/{created['id']}", headers=api.headers).status_code == 200
    revoked_key = {events.AUTH_HEADER: created["api_key"]}
    both = {**revoked_key, "authorization": api.access_token}
    resp = client.get("/api/v1/users/api_keys", headers=both)
    assert resp.status_code == 200, resp.text
    assert client.post("/api/v1/users/api_keys", headers=both, json={"name": "new"}).status_code == 201
    # A valid key beside a wrong token works too; the revoked key alone does not.
    assert client.get("/api/v1/me", headers={**api.headers, "authorization": "Bearer wrong"}).status_code == 200
    alone = client.get("/api/v1/me", headers=revoked_key)
    assert alone.status_code == 401 and alone.json()["code"] == "api_key_requred"


def test_access_tokens_expire_and_can_be_revoked(client):
    api = Api(client)
    auth = client.app.state.auth
    store = client.app.state.store
    with store.read() as conn:
        row = conn.execute(select(tokens).where(tokens.c.kind == "access")).one()
    assert row.expires_at - row.created_at == ACCESS_TOKEN_DAYS * 86400 * 1000
    me = {"authorization": f"Bearer {api.access_token}"}
    assert client.get("/api/v1/me", headers=me).status_code == 200

    # Move the token's end into the past, as if its days had gone by.
    def expire(days_ago: int) -> None:
        store.writer.call(lambda conn: conn.execute(tokens.update().where(tokens.c.id == row.id)
                                                    .values(expires_at=row.created_at - days_ago * 86_400_000)))

    expire(1)
    resp = client.get("/api/v1/me", headers=me)
    assert resp.status_code == 401 and resp.json()["code"] == "api_key_requred"
    assert "expired" in resp.json()["message"] and "log in again" in resp.json()["message"]
    # Kept a week to say why it fails, then deleted.
    assert store.writer.call(auth.purge_expired) == 0
    expire(8)
    assert store.writer.call(auth.purge_expired) == 1

    login = client.post("/api/v1/sessions", json={"email": api.email, "password": api.password}).json()
    fresh = {"authorization": login["access_token"]}
    assert client.get("/api/v1/me", headers=fresh).status_code == 200
    assert client.delete("/api/v1/sessions", headers=fresh).status_code == 200
    resp = client.get("/api/v1/me", headers=fresh)
    assert resp.status_code == 401 and "revoked" in resp.json()["message"]
    assert client.delete("/api/v1/sessions", headers=fresh).status_code == 401


@pytest.mark.parametrize("path,params,headers,words", [
    ("/api/v1/users/api_keys/99999999999999999999999", {}, {}, "key id must be at most"),
    ("/api/v1/users/api_keys/abc", {}, {}, "key id must be an integer"),
    ("/api/v1/runs/{run}/logs", {"after": "1e23"}, {}, "after must be an integer"),
    ("/api/v1/runs/{run}/logs", {"after": str(10**23)}, {}, "after must be at most"),
    ("/api/v1/runs/{run}/logs", {"before": str(10**23)}, {}, "before must be at most"),
    ("/api/v1/runs", {"cursor": f"{10**23}.1"}, {}, "not a cursor"),
    ("/api/v1/runs/{run}/events", {}, {"last-event-id": str(10**23)}, "Last-Event-ID"),
])
def test_out_of_range_numbers_in_queries_are_clear_errors(client, path, params, headers, words):
    api = Api(client)
    run = str(uuid.uuid4())
    api.ok([log(run, 1, "kept")])
    method = client.delete if "api_keys" in path else client.get
    resp = method(path.format(run=run), params=params, headers={**api.headers, **headers})
    assert resp.status_code == 400, resp.text
    assert resp.json()["code"] in ("invalid_request", "invalid_cursor", "bad_request")
    assert words in resp.json()["message"] and "\n" not in resp.json()["message"]
    assert api.lines(run) == ["kept"]
    assert [k["revoked_at"] for k in api.json("/api/v1/users/api_keys")["api_keys"]] == [None]

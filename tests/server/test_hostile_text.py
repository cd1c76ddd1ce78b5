"""Text that a store cannot keep as it is (NUL, lone surrogates) and names beyond Latin-1: the
same clear answer on SQLite and PostgreSQL, never a 500, nothing stored by a refused request."""

from __future__ import annotations

import re
import uuid
from urllib.parse import unquote

import pytest
from server_helpers import Api, env, log
from sqlalchemy import select

from hyperdash.server.auth import SESSION_COOKIE
from hyperdash.server.store import users
from hyperdash.server.text import checked, clean

NUL = "\x00"


def test_the_text_module_checks_and_cleans():
    assert clean("a\x00b\ud800c") == "a\ufffdb\ufffdc" and clean("fine ü") == "fine ü"
    assert checked("fine", "x") == "fine"
    for bad in ("a\x00", "\udc00"):
        with pytest.raises(Exception) as info:
            checked(bad, "the name")
        assert info.value.status == 400 and "the name holds" in info.value.message


def test_emails_with_nul_make_no_account_and_sign_in_nobody(client):
    api = Api(client)
    resp = client.post("/api/v1/users", json={"email": f"evil{NUL}@example.com", "password": "long enough"})
    assert resp.status_code == 400 and resp.json()["code"] == "invalid_email"
    assert "NUL" in resp.json()["message"]
    with client.app.state.store.read() as conn:
        assert conn.execute(select(users.c.email)).scalars().all() == [api.email]
    resp = client.post("/api/v1/sessions", json={"email": api.email + NUL, "password": api.password})
    assert resp.status_code == 401 and resp.json()["code"] == "wrong_credentials"


def test_the_dashboard_sign_in_form_with_nul(client):
    api = Api(client)
    form = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
    resp = client.post("/login", data={"email": api.email + NUL, "password": api.password, "csrf_token": token},
                       follow_redirects=False)
    assert resp.status_code == 401 and "Wrong email or password." in resp.text


@pytest.mark.parametrize("path,params", [
    ("/api/v1/runs", {"q": NUL}),
    ("/api/v1/runs", {"name": NUL}),
    ("/api/v1/runs/%00", {}),
    ("/api/v1/runs/{run}/logs", {"q": NUL}),
    ("/api/v1/runs/%00/logs", {}),
    ("/api/v1/runs/%00/logs.txt", {}),
    ("/api/v1/runs/{run}/metrics/a%00", {}),
    ("/api/v1/runs/%00/events", {}),
])
def test_queries_with_nul_are_clear_errors(api, path, params):
    run = str(uuid.uuid4())
    api.ok([env("run_started", run, {"job_name": "j"}, seq=1), log(run, 2, "line")])
    resp = api.get(path.format(run=run), **params)
    assert resp.status_code == 400, resp.text
    assert resp.json()["code"] == "invalid_text" and "NUL" in resp.json()["message"]


def test_the_run_page_of_a_nul_uuid_is_not_found(client):
    api = Api(client)
    auth = client.app.state.auth
    session, _ = auth.create_browser_session(auth.authenticate(api.email, api.password, "x").id)
    client.cookies.set(SESSION_COOKIE, session)
    try:
        resp = client.get("/runs/%00")
        assert resp.status_code == 404 and "Run not found" in resp.text
    finally:
        client.cookies.clear()


def test_labels_with_nul_are_cleaned(client):
    api = Api(client)
    made = client.post("/api/v1/users/api_keys", headers=api.headers, json={"name": f"box{NUL}1"})
    assert made.status_code == 201 and made.json()["name"] == "box\ufffd1"
    login = client.post("/api/v1/sessions", json={"email": api.email, "password": api.password,
                                                  "host": f"gpu{NUL}box"})
    assert login.status_code == 200, login.text
    names = [k["name"] for k in api.json("/api/v1/users/api_keys")["api_keys"]]
    assert names == ["signup", "box\ufffd1", "gpu\ufffdbox"]


def test_params_with_nul_are_cleaned(api):
    run = str(uuid.uuid4())
    api.ok([env("run_started", run, {"job_name": "params"}, seq=1),
            env("param", run, {"params": {f"k{NUL}ey": f"v{NUL}al", "lr": 0.1, "note": None}}, seq=2)])
    assert api.json(f"/api/v1/runs/{run}")["params"] == {"k\ufffdey": "v\ufffdal", "lr": 0.1, "note": None}


def test_an_original_log_envelope_with_a_nul_uuid_is_stored(api):
    run = str(uuid.uuid4())
    api.ok(env("run_started", run, {"job_name": "nul"}))
    resp = api.ingest(env("log", run, {"uuid": f"chunk{NUL}", "level": "INFO", "body": "kept\n"}))
    # A 503 would make the original client retry it for ever; a 400, drop the lines.
    assert resp.status_code == 200, resp.text
    assert api.lines(run) == ["kept"]


@pytest.mark.parametrize("name,fallback", [
    ("обучение 训练", None),
    ("résumé run", "resume_run.txt"),
    ("plain-name", "plain-name.txt"),
])
def test_log_download_of_any_name(api, name, fallback):
    run = str(uuid.uuid4())
    api.ok([env("run_started", run, {"job_name": name}, seq=1), log(run, 2, "line one")])
    resp = api.get(f"/api/v1/runs/{run}/logs.txt")
    assert resp.status_code == 200 and resp.text == "line one\n"
    disposition = resp.headers["content-disposition"]
    assert disposition.isascii()
    plain = re.search(r'filename="([^"]+)"', disposition).group(1)
    assert plain.isascii() and plain.endswith(".txt")
    if fallback:
        assert plain == fallback
    else:  # nothing of the name is ASCII: the run's id stands in
        assert run[:8] in plain
    encoded = re.search(r"filename\*=UTF-8''(\S+)", disposition).group(1)
    assert unquote(encoded) == f"{name}.txt"


HUGE = "a" * (10 * 1024 * 1024)  # 10 MB, within the body limit
HUGE_IN_URL = "a" * 8000  # about what a URL may carry


@pytest.mark.parametrize("method,path,kwargs,words", [
    pytest.param("post", "/api/v1/users", {"json": {"email": HUGE, "password": "s3cret-password"}},
                 "not an email address", id="signup email"),
    pytest.param("get", "/api/v1/runs", {"params": {"status": HUGE_IN_URL}}, "unknown status", id="status query"),
    pytest.param("get", f"/api/v1/runs/{HUGE_IN_URL}", {}, "no run", id="run uuid in the path"),
    pytest.param("post", "/api/v1/sdk/http", {"json": [{"type": HUGE, "timestamp": 1, "sdk_run_uuid": str(uuid.uuid4()),
                                                        "payload": {}}]}, "unknown event type", id="event type"),
    pytest.param("post", "/api/v1/notify/channels", {"json": {"kind": HUGE, "settings": {}}}, "unknown channel kind",
                 id="channel kind"),
    pytest.param("post", "/api/v1/notify/channels", {"json": {"kind": "ntfy", "settings": {HUGE: 1}}}, "no setting",
                 id="channel setting name"),
])
def test_error_replies_never_echo_what_was_sent_in_full(api, method, path, kwargs, words):
    # A 10 MB email at sign-up came back whole in the 400's message; so did other fields.
    resp = getattr(api.client, method)(path, headers=api.headers, **kwargs)
    assert 400 <= resp.status_code < 500, resp.text[:300]
    message = resp.json()["message"]
    assert len(resp.content) < 1000 and words in message and "\n" not in message, message


def test_the_sign_in_form_shows_no_more_of_a_huge_email_than_an_email_can_be(client):
    form = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
    # (a form field over 1 MB is refused before it reaches the form's code)
    resp = client.post("/login", data={"email": HUGE[:100_000], "password": "not the password", "csrf_token": token},
                       follow_redirects=False)
    assert resp.status_code == 401 and "Wrong email or password." in resp.text
    assert len(resp.content) < len(form.content) + 1000

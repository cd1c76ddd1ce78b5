"""The notification settings API on the real app, each store: channels checked before they are
stored, edited, tested against a real receiver, their deliveries listed, and no secret in any
reply or log line."""

from __future__ import annotations

import json
import logging
import threading
import time

import pytest
from server_helpers import Api
from sqlalchemy import select
from test_notify_channels import TELEGRAM_TOKEN, Answer, receiver  # noqa: F401  (the fixture)
from test_notify_outbox import FAST, outbox_rows, run_to_end, wait_for
from test_notify_webpush import Browser, verify_vapid

from hyperdash.events import now_ms
from hyperdash.server.app import use_public_url
from hyperdash.server.notify import generate_secret
from hyperdash.server.notify.keys import stored_vapid_keys
from hyperdash.server.notify.outbox import DELIVERED, FAILED, purge_outbox
from hyperdash.server.store import Store, notify_channels, notify_outbox

CHANNELS = "/api/v1/notify/channels"


@pytest.fixture
def client(make_client):
    return make_client(notify=FAST)


class Replies:
    """Every reply's text, to look for secrets in them all at the end."""

    def __init__(self, api: Api):
        self.api = api
        self.texts: list[str] = []

    def __call__(self, method: str, path: str, status: int | None = None, **kwargs):
        resp = self.api.client.request(method, path, headers=self.api.headers, **kwargs)
        self.texts.append(resp.text)
        if status is not None:
            assert resp.status_code == status, resp.text
        return resp


def stored_channels(client) -> list:
    with client.app.state.store.read() as conn:
        return conn.execute(select(notify_channels).order_by(notify_channels.c.id)).all()


SLACK = "https://hooks.slack.com/services/T0123ABCD/B0456EFGH/s3cr3tXyZtokenPART"
NTFY_TOKEN = "tk_AgQdq7mVBoFD37zQVN29RhuMzNIz2"
SMTP_PASSWORD = "hunter2-but-longer"


def test_channels_are_added_listed_edited_and_removed_without_showing_secrets(client, receiver, caplog):  # noqa: F811
    caplog.set_level(logging.DEBUG)
    call = Replies(Api(client))
    secret = generate_secret()
    hook = receiver.base + "/hooks/abcdef0123456789secretpath"
    browser = Browser()
    push = browser.subscription(receiver.base + "/push/subscriptionTOKEN0123456789")
    added = [
        call("POST", CHANNELS, 201, json={"kind": "webhook", "name": "ci", "settings": {"url": hook, "secret": secret},
                                          "events": ["failure", "stalled", "rule"], "name_filter": "train-*"}).json(),
        call("POST", CHANNELS, 201, json={"kind": "slack", "settings": {"url": SLACK}}).json(),
        call("POST", CHANNELS, 201, json={"kind": "telegram",
                                          "settings": {"token": TELEGRAM_TOKEN, "chat_id": "42"}}).json(),
        call("POST", CHANNELS, 201, json={"kind": "ntfy", "settings": {
            "url": "http://192.168.1.20:8080/my-runs", "token": NTFY_TOKEN}}).json(),
        call("POST", CHANNELS, 201, json={"kind": "email", "settings": {
            "host": "smtp.example.com", "username": "me", "password": SMTP_PASSWORD,
            "from": "hd@example.com", "to": "me@example.com"}}).json(),
        call("POST", CHANNELS, 201, json={"kind": "webpush", "name": "phone", "settings": push}).json(),
    ]
    assert [c["kind"] for c in added] == ["webhook", "slack", "telegram", "ntfy", "email", "webpush"]
    assert added[0]["events"] == ["failure", "stalled", "rule"] and added[0]["name_filter"] == "train-*"
    assert added[1]["name"] == "slack" and added[1]["events"] is None
    assert added[1]["settings"]["url"].startswith("https://hooks.slack.com/services/")

    # The same browser subscribing again updates its channel instead of adding another.
    again = call("POST", CHANNELS, 200, json={"kind": "webpush", "name": "phone 2", "settings": push}).json()
    assert again["id"] == added[-1]["id"] and again["name"] == "phone 2"

    listing = call("GET", CHANNELS, 200).json()
    assert [c["id"] for c in listing["channels"]] == [c["id"] for c in added]
    assert "stalled" in listing["default_events"] and "rule" in listing["events"]
    assert "success" not in listing["default_events"]

    one = f"{CHANNELS}/{added[0]['id']}"
    edited = call("PATCH", one, 200, json={"events": None, "enabled": False, "name": "ops"}).json()
    assert (edited["events"], edited["enabled"], edited["name"]) == (None, False, "ops")
    assert edited["name_filter"] == "train-*"
    new_settings = {"url": hook + "2", "secret": secret}
    edited = call("PATCH", one, 200, json={"name_filter": None, "settings": new_settings}).json()
    assert edited["name_filter"] is None and edited["enabled"] is False
    assert json.loads(stored_channels(client)[0].settings)["url"] == hook + "2"

    call("DELETE", f"{CHANNELS}/{added[1]['id']}", 200)
    assert len(call("GET", CHANNELS, 200).json()["channels"]) == 5
    call("DELETE", f"{CHANNELS}/{added[1]['id']}", 404)

    everything = "\n".join(call.texts) + caplog.text
    for s in (secret, "abcdef0123456789secretpath", "s3cr3tXyZtokenPART", TELEGRAM_TOKEN.partition(":")[2],
              NTFY_TOKEN, SMTP_PASSWORD, "subscriptionTOKEN0123456789", push["keys"]["auth"]):
        assert s not in everything, s


@pytest.mark.parametrize(("body", "message"), [
    ({"kind": "carrier-pigeon", "settings": {}}, "unknown channel kind"),
    ({"kind": "webhook", "settings": {"url": "ftp://example.com/x", "secret": "x" * 20}}, "https://"),
    ({"kind": "webhook", "settings": {"url": "https://example.com/x"}}, "secret is required"),
    ({"kind": "slack", "settings": {"url": "https://evil.example/services/a/b/c"}}, "hooks.slack.com"),
    ({"kind": "telegram", "settings": {"token": "not-a-token", "chat_id": "1"}}, "token"),
    ({"kind": "ntfy", "settings": {"url": "https://ntfy.sh/bad topic!"}}, "url"),
    ({"kind": "email", "settings": {"host": "smtp.example.com", "from": "nobody", "to": "a@b.co"}}, "from"),
    ({"kind": "webpush", "settings": {"endpoint": "https://push.example/x", "keys": {"p256dh": "AAAA", "auth": "x"}}},
     "p256dh"),
    ({"kind": "webhook", "settings": {"url": "https://example.com/x", "secret": "y" * 20}, "events": ["exploded"]},
     "unknown event"),
    ({"kind": "webhook", "settings": {"url": "https://example.com/x", "secret": "y" * 20}, "events": []},
     "name at least one event"),
    ({"kind": "webhook", "settings": {"url": "https://example.com/x", "secret": "y" * 20}, "name": "a\x00b"}, "NUL"),
    # A setting the kind does not take (misspelt, say) is refused, not dropped without a word.
    ({"kind": "telegram", "settings": {"token": TELEGRAM_TOKEN, "chat_id": "1", "chatid": "2"}},
     "telegram channels have no setting 'chatid': they take token, chat_id"),
    ({"kind": "ntfy", "settings": {"url": "https://ntfy.sh/topic", "priority": 5, "tokn": "tk_x"}},
     "no setting 'tokn'"),
    ({"kind": "email", "settings": {"host": "smtp.example.com", "from": "a@b.co", "to": "c@d.co", "cc": "e@f.co"}},
     "no setting 'cc'"),
    ({"kind": "webpush", "settings": {"endpoint": "https://push.example/x",
                                      "keys": {"p256dh": "AAAA", "auth": "x", "authh": "y"}}},
     "keys has no 'authh': it holds p256dh and auth"),
])
def test_a_bad_channel_is_refused_with_a_clear_message_and_nothing_stored(client, body, message):
    api = Api(client)
    resp = client.post(CHANNELS, headers=api.headers, json=body)
    assert resp.status_code == 400, resp.text
    assert message in resp.json()["message"]
    assert stored_channels(client) == []


def test_a_settings_update_replaces_what_it_names_and_keeps_the_other_secrets(client):
    call = Replies(Api(client))
    email = call("POST", CHANNELS, 201, json={"kind": "email", "settings": {
        "host": "smtp.example.com", "username": "me", "password": SMTP_PASSWORD,
        "from": "hd@example.com", "to": "me@example.com"}}).json()
    ntfy = call("POST", CHANNELS, 201, json={"kind": "ntfy", "settings": {
        "url": "https://ntfy.example/old-topic-x1", "token": NTFY_TOKEN}}).json()

    edited = call("PATCH", f"{CHANNELS}/{email['id']}", 200,
                  json={"settings_update": {"to": "you@example.com"}}).json()
    assert edited["settings"]["to"] == ["you@example.com"] and edited["settings"]["password"] == "****"
    assert json.loads(stored_channels(client)[0].settings)["password"] == SMTP_PASSWORD
    new_token = "tk_NEWq7mVBoFD37zQVN29RhuMzNIz2"
    call("PATCH", f"{CHANNELS}/{ntfy['id']}", 200, json={"settings_update": {"token": new_token}})
    assert json.loads(stored_channels(client)[1].settings) == {
        "url": "https://ntfy.example/old-topic-x1", "token": new_token, "priority": None}
    call("PATCH", f"{CHANNELS}/{ntfy['id']}", 200, json={"settings_update": {"token": None}})  # (null removes)
    assert json.loads(stored_channels(client)[1].settings)["token"] is None

    # A bad one, or both ways at once, is refused and changes nothing.
    before = stored_channels(client)
    for edit, message in (({"settings_update": {"url": "not an address"}}, "url"),
                          ({"settings_update": {"token": "tk_x"}, "settings": {"url": "https://ntfy.example/t"}},
                           "not both")):
        resp = call("PATCH", f"{CHANNELS}/{ntfy['id']}", 400, json=edit)
        assert message in resp.json()["message"]
    assert stored_channels(client) == before
    for text in call.texts:
        assert SMTP_PASSWORD not in text and NTFY_TOKEN not in text and new_token not in text


WEBHOOK_SECRET = generate_secret()
PUSH = Browser()


@pytest.mark.parametrize(("kind", "settings", "moved", "secrets"), [
    ("webhook", {"url": "https://hooks.example/in/abc123def456", "secret": WEBHOOK_SECRET},
     {"url": "https://attacker.example/in"}, {"secret": generate_secret()}),
    ("ntfy", {"url": "https://ntfy.example/old-topic-x1", "token": NTFY_TOKEN},
     {"url": "https://attacker.example/topic"}, {"token": None}),
    ("email", {"host": "smtp.example.com", "username": "me", "password": SMTP_PASSWORD, "from": "hd@example.com",
               "to": "me@example.com"},
     {"host": "attacker.example"}, {"password": "a-new-password"}),
    ("email", {"host": "smtp.example.com", "username": "me", "password": SMTP_PASSWORD, "from": "hd@example.com",
               "to": "me@example.com"},
     {"port": 2525}, {"password": SMTP_PASSWORD}),
    ("webpush", PUSH.subscription("https://push.example/send/subscriptionTOKEN0123456789"),
     {"endpoint": "https://attacker.example/push"}, {"keys": PUSH.subscription("https://x.example")["keys"]}),
])
def test_a_new_address_needs_the_channels_secrets_again(client, kind, settings, moved, secrets):
    call = Replies(Api(client))
    channel = call("POST", CHANNELS, 201, json={"kind": kind, "settings": settings}).json()
    path = f"{CHANNELS}/{channel['id']}"
    before = stored_channels(client)

    # Moved without the secrets: refused, saying which to give, and nothing changes.
    resp = call("PATCH", path, 400, json={"settings_update": moved, "name": "moved"})
    assert resp.json()["code"] == "bad_channel"
    message = resp.json()["message"]
    assert f"a new {next(iter(moved))}" in message and "given again" in message
    assert stored_channels(client) == before

    # With them: moved, and what was given is what is stored.
    call("PATCH", path, 200, json={"settings_update": {**moved, **secrets}})
    stored = json.loads(stored_channels(client)[0].settings)
    for name, value in {**moved, **secrets.get("keys", secrets)}.items():
        assert stored[name] == value

    # What does not move the channel keeps its secrets.
    call("PATCH", path, 200, json={"settings_update": {}, "name": "renamed", "events": ["failure"]})
    assert json.loads(stored_channels(client)[0].settings) == stored
    for text in call.texts:
        assert SMTP_PASSWORD not in text and NTFY_TOKEN not in text and WEBHOOK_SECRET not in text


def test_what_is_no_new_address_keeps_the_secrets(client):
    call = Replies(Api(client))
    ntfy = call("POST", CHANNELS, 201, json={"kind": "ntfy", "settings": {
        "url": "https://ntfy.example/topic-x1", "token": NTFY_TOKEN}}).json()
    telegram = call("POST", CHANNELS, 201, json={"kind": "telegram", "settings": {
        "token": TELEGRAM_TOKEN, "chat_id": "42"}}).json()
    slack = call("POST", CHANNELS, 201, json={"kind": "slack", "settings": {"url": SLACK}}).json()
    # The same address again (as a form that sends every field does), another priority, another
    # chat of the same bot (its token only ever goes to the server's Telegram address), and a
    # hook whose address is its only secret.
    call("PATCH", f"{CHANNELS}/{ntfy['id']}", 200, json={"settings_update": {
        "url": "https://ntfy.example/topic-x1/", "priority": "max"}})
    call("PATCH", f"{CHANNELS}/{telegram['id']}", 200, json={"settings_update": {"chat_id": "-1001234567890"}})
    call("PATCH", f"{CHANNELS}/{slack['id']}", 200, json={"settings_update": {"url": SLACK + "2"}})
    stored = [json.loads(row.settings) for row in stored_channels(client)]
    assert stored[0] == {"url": "https://ntfy.example/topic-x1", "token": NTFY_TOKEN, "priority": 5}
    assert stored[1] == {"token": TELEGRAM_TOKEN, "chat_id": "-1001234567890"}
    assert stored[2] == {"url": SLACK + "2"}

    # A channel without a token needs none to move.
    call("PATCH", f"{CHANNELS}/{ntfy['id']}", 200, json={"settings_update": {"token": None}})
    call("PATCH", f"{CHANNELS}/{ntfy['id']}", 200, json={"settings_update": {"url": "https://other.example/t2"}})
    assert json.loads(stored_channels(client)[0].settings)["url"] == "https://other.example/t2"


def test_a_bad_edit_changes_nothing_and_other_accounts_see_nothing(client):
    owner, other = Api(client), Api(client)
    body = {"kind": "webhook", "settings": {"url": "https://example.com/hook", "secret": generate_secret()}}
    channel = client.post(CHANNELS, headers=owner.headers, json=body).json()
    path = f"{CHANNELS}/{channel['id']}"
    before = stored_channels(client)
    for edit in ({"settings": {"url": "nope", "secret": "z" * 20}}, {"events": ["success", "nope"]},
                 {"settings_update": {"secret": "short"}}, {"settings_update": {"sceret": "z" * 20}}):
        resp = client.patch(path, headers=owner.headers, json=edit)
        assert resp.status_code == 400, resp.text
    assert stored_channels(client) == before
    assert client.get(CHANNELS, headers=other.headers).json()["channels"] == []
    for method, suffix in (("PATCH", ""), ("DELETE", ""), ("POST", "/test")):
        resp = client.request(method, path + suffix, headers=other.headers, json={"enabled": False})
        assert resp.status_code == 404, resp.text
    assert stored_channels(client) == before
    assert client.get(CHANNELS).status_code == 401


def test_testing_a_channel_gives_the_receivers_real_answer_and_a_hang_is_cut_off(make_client, receiver):  # noqa: F811
    config = FAST.__class__(**{**FAST.__dict__, "channel_options": {"timeout": (1.0, 1.0)}})
    client = make_client(notify=config)
    api = Api(client)
    secret = generate_secret()
    body = {"kind": "webhook", "settings": {"url": receiver.base + "/in/verysecretpath123", "secret": secret}}
    path = f"{CHANNELS}/{client.post(CHANNELS, headers=api.headers, json=body).json()['id']}/test"

    result = client.post(path, headers=api.headers).json()
    assert (result["outcome"], result["status"]) == ("delivered", 200)
    assert receiver.last.json()["run"]["name"] == "Hyperdash test notification"

    receiver.answers.append(Answer(403, b"bad signature for /in/verysecretpath123"))
    result = client.post(path, headers=api.headers).json()
    assert (result["outcome"], result["status"]) == ("failed", 403)
    assert "bad signature" in result["detail"] and "verysecretpath123" not in result["detail"]
    listed = client.get(CHANNELS, headers=api.headers).json()["channels"][0]
    assert listed["last_result"]["outcome"] == "failed" and "bad signature" in listed["last_result"]["detail"]

    receiver.answers.append(Answer(hang=True))
    started = time.monotonic()
    result = client.post(path, headers=api.headers).json()
    assert time.monotonic() - started < 10
    assert result["outcome"] == "retry" and "no answer within" in result["detail"]


def test_failed_deliveries_are_listed_with_the_receivers_answer(client, receiver):  # noqa: F811
    api = Api(client)
    secret = generate_secret()
    settings = {"url": receiver.base + "/gone/hookpath12345", "secret": secret}
    body = {"kind": "webhook", "name": "ops", "settings": settings}
    channel = client.post(CHANNELS, headers=api.headers, json=body).json()
    receiver.answers.append(Answer(404, b"no such hook /gone/hookpath12345"))
    run = run_to_end(api, "train-x", "failure")
    wait_for(lambda: [r.state for r in outbox_rows(client)] == [FAILED], what="giving up")
    found = client.get("/api/v1/notify/deliveries", headers=api.headers).json()["deliveries"]
    assert len(found) == 1
    d = found[0]
    assert (d["channel_id"], d["channel_name"], d["event"], d["state"], d["run_uuid"]) == (
        channel["id"], "ops", "failure", "failed", run)
    assert "no such hook" in d["detail"] and "hookpath12345" not in d["detail"]
    assert d["url"].endswith(f"/runs/{run}") and "train-x" in d["title"]
    only = client.get("/api/v1/notify/deliveries", headers=api.headers, params={"state": "delivered"}).json()
    assert only["deliveries"] == []
    assert client.get("/api/v1/notify/deliveries", headers=api.headers, params={"state": "bogus"}).status_code == 400
    assert client.get("/api/v1/notify/deliveries", headers=Api(client).headers).json()["deliveries"] == []


def test_the_vapid_keys_survive_a_restart_and_concurrent_first_starts_agree(make_client, db_url):
    stores = [Store(db_url) for _ in range(4)]
    try:
        found: list[str] = []
        barrier = threading.Barrier(len(stores))

        def first_start(store: Store) -> None:
            barrier.wait()
            found.append(stored_vapid_keys(store).application_server_key)

        threads = [threading.Thread(target=first_start, args=(s,)) for s in stores]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(found) == 4 and len(set(found)) == 1
    finally:
        for s in stores:
            s.close()
    first = make_client()
    api = Api(first)
    key = first.get("/api/v1/notify/webpush_key", headers=api.headers).json()["public_key"]
    assert key == found[0]
    first.__exit__(None, None, None)
    second = make_client()
    assert second.get("/api/v1/notify/webpush_key", headers=api.headers).json()["public_key"] == key


def test_old_finished_rows_are_purged_and_pending_ones_kept(client, receiver):  # noqa: F811
    api = Api(client)
    body = {"kind": "webhook", "settings": {"url": receiver.base + "/in", "secret": generate_secret()}}
    client.post(CHANNELS, headers=api.headers, json=body)
    run_to_end(api, "a", "failure")
    wait_for(lambda: [r.state for r in outbox_rows(client)] == [DELIVERED], what="the delivery")
    store = client.app.state.store
    store.writer.call(lambda conn: conn.execute(notify_outbox.insert().values(
        channel_id=1, key="later", kind="ended", notification="{}", state="pending", attempts=0,
        next_attempt_at=now_ms() + 10**9, created_at=0)))
    day = 86400 * 1000
    assert store.writer.call(lambda conn: purge_outbox(conn, now=now_ms(), keep_ms=day)) == 0
    assert store.writer.call(lambda conn: purge_outbox(conn, now=now_ms() + 2 * day, keep_ms=day)) == 1
    assert [r.key for r in outbox_rows(client)] == ["later"]


def test_the_settings_page_asks_to_sign_in_first(client):
    resp = client.get("/settings", follow_redirects=False)
    assert resp.status_code == 303 and resp.headers["location"] == "/login?next=%2Fsettings"


def test_test_notifications_and_the_push_subject_use_the_public_address(client, receiver):  # noqa: F811
    use_public_url(client.app, "https://hd.example.com/")
    call = Replies(Api(client))
    hook = call("POST", CHANNELS, 201, json={"kind": "webhook", "settings": {"url": receiver.base + "/hook",
                                                                   "secret": generate_secret()}}).json()
    push = call("POST", CHANNELS, 201, json={"kind": "webpush", "settings": Browser().subscription(
        receiver.base + "/push/subscriptionTOKEN0123456789")}).json()
    assert call("POST", f"{CHANNELS}/{hook['id']}/test", 200).json()["outcome"] == "delivered"
    assert json.loads(receiver.last.body)["url"] == "https://hd.example.com/runs/test"
    assert call("POST", f"{CHANNELS}/{push['id']}/test", 200).json()["outcome"] == "delivered"
    vapid = stored_vapid_keys(client.app.state.store)
    claims = verify_vapid(receiver.last.headers["authorization"], vapid, receiver.base)
    assert claims["sub"] == "https://hd.example.com"


def test_a_channel_that_would_send_everything_twice_is_refused(client):
    owner, other = Api(client), Api(client)
    hook = {"kind": "webhook", "settings": {"url": "https://example.com/hook", "secret": "s" * 24}}
    first = client.post(CHANNELS, headers=owner.headers, json=hook)
    assert first.status_code == 201, first.text
    before = stored_channels(client)
    # The same place and events, as given, with the defaults named, or with another signing secret
    # (as `hyperdash notify add` makes one each time): every notification would come twice.
    for body in (hook, {**hook, "name": "again"},
                 {**hook, "events": ["failure", "killed", "lost", "stalled"]},
                 {**hook, "settings": {**hook["settings"], "url": "https://example.com/hook "}},
                 {**hook, "settings": {**hook["settings"], "secret": "t" * 24}}):
        resp = client.post(CHANNELS, headers=owner.headers, json=body)
        assert resp.status_code == 409, resp.text
        assert resp.json()["code"] == "duplicate_channel"
        assert f"channel {first.json()['id']} (webhook)" in resp.json()["message"]
    assert stored_channels(client) == before
    # What differs in what it sends, which runs, or where, is a channel of its own; another
    # account's channel is no duplicate.
    for body in ({**hook, "events": ["failure"]}, {**hook, "name_filter": "prod*"},
                 {**hook, "settings": {**hook["settings"], "url": "https://example.com/other"}}):
        assert client.post(CHANNELS, headers=owner.headers, json=body).status_code == 201
    assert client.post(CHANNELS, headers=other.headers, json=hook).status_code == 201
    # An edit that would make one channel another's copy is refused too, and changes nothing.
    mine = client.get(CHANNELS, headers=owner.headers).json()["channels"]
    narrow = next(c for c in mine if c["events"] == ["failure"])
    before = stored_channels(client)
    resp = client.patch(f"{CHANNELS}/{narrow['id']}", headers=owner.headers, json={"events": None})
    assert resp.status_code == 409, resp.text
    assert stored_channels(client) == before
    # Editing a channel without making it a copy (its name, or itself as it is) is fine.
    for edit in ({"name": "narrow"}, {"events": ["failure"]}):
        assert client.patch(f"{CHANNELS}/{narrow['id']}", headers=owner.headers, json=edit).status_code == 200

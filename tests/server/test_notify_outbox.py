"""The outbox and its delivery worker, end to end: runs ingested through the real app on each
store, webhooks sent to a real receiver on a loopback port, and what the store then holds."""

from __future__ import annotations

import collections
import dataclasses
import logging
import re
import time
import uuid
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from server_helpers import Api, env, log
from sqlalchemy import select
from test_notify_channels import Answer, Receiver
from test_notify_webpush import SUBJECT, Browser

from hyperdash.events import now_ms
from hyperdash.server.deletion import mark_deleted
from hyperdash.server.facts import RuleFired, RunEnded, RunState
from hyperdash.server.ingest import mark_lost
from hyperdash.server.notify import LOST, Notification, VapidKeys, generate_secret, verify_signature
from hyperdash.server.notify.message import BACK
from hyperdash.server.notify.outbox import (
    COALESCED,
    DELIVERED,
    FAILED,
    PENDING,
    NotifyConfig,
    add_channel,
    claim_due,
    enqueue,
    list_channels,
)
from hyperdash.server.store import notify_channels, notify_outbox, runs, users

FAST = NotifyConfig(base_url="https://hd.example/", hold_s=0, lease_s=3, backoff_s=0.05, poll_s=0.05,
                    rate_limit=1000, channel_options={"timeout": (2.0, 5.0)})


def wait_for(condition: Callable[[], object], timeout: float = 15, what: str = "the condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def start(make_client):
    """``start(config)``: a TestClient on a new app (its worker running) on this test's store."""

    def make(config: NotifyConfig = FAST) -> TestClient:
        return make_client(notify=config)

    return make


def stop(client: TestClient) -> None:
    client.__exit__(None, None, None)


def user_id(client: TestClient, api: Api) -> int:
    with client.app.state.store.read() as conn:  # type: ignore[attr-defined]
        return int(conn.execute(select(users.c.id).where(users.c.email == api.email)).scalar_one())


def webhook(client: TestClient, api: Api, url: str, secret: str, **kw) -> int:
    uid = user_id(client, api)
    settings = {"url": url, "secret": secret}
    return client.app.state.store.writer.call(  # type: ignore[attr-defined]
        lambda conn: add_channel(conn, uid, "webhook", "hook", settings, now=now_ms(), **kw))


def outbox_rows(client: TestClient) -> list:
    with client.app.state.store.read() as conn:  # type: ignore[attr-defined]
        return conn.execute(select(notify_outbox).order_by(notify_outbox.c.id)).all()


def run_to_end(api: Api, name: str, status: str, *, lines: int = 30, minutes: float = 0.0,
               exit_code: int = 3) -> str:
    run = str(uuid.uuid4())
    began = now_ms() - int(minutes * 60_000)
    events = [env("run_started", run, {"job_name": name, "host": "gpu-7", "pid": 42}, seq=1, timestamp=began)]
    events += [log(run, i + 2, f"line {i + 1}") for i in range(lines)]
    code = 0 if status == "success" else exit_code
    events.append(env("run_ended", run, {"final_status": status, "exit_code": code, "signal": None}, seq=lines + 2))
    api.ok(events)
    return run


def test_a_failed_run_sends_one_signed_webhook(start, receiver, caplog):
    caplog.set_level(logging.DEBUG)
    client = start()
    api = Api(client)
    secret = generate_secret()
    webhook(client, api, receiver.base + "/in", secret)

    run = run_to_end(api, "train-resnet", "failure")
    wait_for(lambda: [r.state for r in outbox_rows(client)] == [DELIVERED], what="the delivery")
    assert len(receiver.requests) == 1
    req = receiver.last
    assert req.path == "/in"
    assert verify_signature(secret, req.headers["x-hyperdash-signature"], req.body)
    body = req.json()
    assert body["event"] == "run.ended"
    assert body["url"] == f"https://hd.example/runs/{run}"
    assert body["run"]["name"] == "train-resnet" and body["run"]["status"] == "failure"
    assert body["run"]["exit_code"] == 3 and body["run"]["host"] == "gpu-7"
    # The last 20 lines of output, and none before them.
    assert body["tail"].splitlines() == [f"line {i}" for i in range(11, 31)]
    # (the channel's own key for the queued notification, opaque)
    assert req.headers["idempotency-key"] == body["id"] != outbox_rows(client)[0].key
    assert re.fullmatch("[0-9a-f]{32}", body["id"])
    with client.app.state.store.read() as conn:  # type: ignore[attr-defined]
        channel = list_channels(conn, user_id(client, api))[0]
    assert channel.last_result is not None and channel.last_result["outcome"] == "delivered"
    assert secret not in caplog.text


def test_the_defaults_and_the_name_filter_choose_what_is_sent(start, receiver):
    client = start()
    api = Api(client)
    secret = generate_secret()
    webhook(client, api, receiver.base + "/defaults", secret)
    webhook(client, api, receiver.base + "/train", secret, events=["success", "failure"], name_filter="train-*")
    webhook(client, api, receiver.base + "/eval", secret, name_filter="EVAL")  # a substring, any case

    run_to_end(api, "train-short", "success", minutes=1)  # /train only: /defaults skips short successes
    run_to_end(api, "train-long", "success", minutes=6)  # /defaults (long) and /train
    run_to_end(api, "my-eval-set", "failure")  # /defaults and /eval
    run_to_end(api, "train-x", "user_canceled")  # nobody: off by default, and /train asked not for it
    last = run_to_end(api, "train-killed", "killed")  # /defaults: facts come in order, so after it...
    with client.app.state.store.read() as conn:
        uid = user_id(client, api)
        defaults_id = list_channels(conn, uid)[0].id

    def done() -> bool:
        rows = outbox_rows(client)
        return all(r.state == DELIVERED for r in rows) and any(
            r.channel_id == defaults_id and last in r.notification for r in rows)

    wait_for(done, what="every row delivered")  # ...every earlier run was considered
    sent = collections.Counter((r.path, r.json()["run"]["name"]) for r in receiver.requests)
    assert sent == collections.Counter({
        ("/train", "train-short"): 1, ("/defaults", "train-long"): 1, ("/train", "train-long"): 1,
        ("/defaults", "my-eval-set"): 1, ("/eval", "my-eval-set"): 1, ("/defaults", "train-killed"): 1,
    })


def test_an_error_then_success_is_delivered_once_and_secrets_stay_out(start, receiver, caplog):
    caplog.set_level(logging.DEBUG)
    client = start()
    api = Api(client)
    secret = generate_secret()
    # The receiver echoes the secret in its error page: it must not reach the store nor the logs.
    receiver.answers += [Answer(500, b"oops " + secret.encode()), Answer(200)]
    webhook(client, api, receiver.base + "/in", secret)
    run_to_end(api, "flaky", "failure")
    wait_for(lambda: [r.state for r in outbox_rows(client)] == [DELIVERED], what="the delivery")
    (row,) = outbox_rows(client)
    assert row.attempts == 2 and len(receiver.requests) == 2
    assert receiver.requests[0].headers["idempotency-key"] == receiver.requests[1].headers["idempotency-key"]
    assert secret not in caplog.text and "oops" in caplog.text


def test_two_accounts_runs_with_one_uuid_reach_one_receiver_under_keys_of_their_own(start, receiver):
    # The key was the run's uuid (the client's choice) with the event: two accounts whose runs
    # shared a uuid sent the same key to a receiver they shared, which dropped the second as a copy.
    receiver.answers += [Answer(503), Answer(200), Answer(200)]  # the first attempt is retried
    client = start()
    run = str(uuid.uuid4())
    secrets = {}
    for _ in range(2):
        api = Api(client)
        secret = generate_secret()
        webhook(client, api, receiver.base + "/in", secret)
        secrets[api.email] = secret
        api.ok([env("run_started", run, {"job_name": "same uuid"}, seq=1),
                env("run_ended", run, {"final_status": "failure", "exit_code": 1, "signal": None}, seq=2)])
    wait_for(lambda: [r.state for r in outbox_rows(client)] == [DELIVERED, DELIVERED], what="both delivered")
    assert len(receiver.requests) == 3

    def sender(request) -> str:  # (the account whose secret signed it)
        return next(email for email, secret in secrets.items()
                    if verify_signature(secret, request.headers["x-hyperdash-signature"], request.body))

    keys = collections.defaultdict(list)
    for request in receiver.requests:
        assert request.json()["id"] == request.headers["idempotency-key"]
        keys[sender(request)].append(request.headers["idempotency-key"])
    assert sorted(len(sent) for sent in keys.values()) == [1, 2]  # one account's was sent twice...
    assert all(len(set(sent)) == 1 for sent in keys.values())  # ...under one key
    assert len({sent[0] for sent in keys.values()}) == 2  # and the accounts' keys differ


def test_retry_after_is_honoured(start, receiver):
    client = start()
    api = Api(client)
    receiver.answers += [Answer(429, b"slow down", {"Retry-After": "1"}), Answer(200)]
    webhook(client, api, receiver.base + "/in", generate_secret())
    run_to_end(api, "busy", "failure")
    wait_for(lambda: len(receiver.requests) >= 1, what="the first attempt")
    first = time.monotonic()
    wait_for(lambda: len(receiver.requests) >= 2, what="the second attempt")
    # The backoff alone would retry after 0.05 s; the receiver asked for a second.
    assert time.monotonic() - first >= 0.9
    wait_for(lambda: [r.state for r in outbox_rows(client)] == [DELIVERED], what="the delivery")


def test_a_receiver_that_refuses_for_good_is_given_up_with_its_answer(start, receiver):
    client = start()
    api = Api(client)
    secret = generate_secret()
    receiver.answers.append(Answer(404, b"no such hook for " + secret.encode()))
    webhook(client, api, receiver.base + "/in", secret)
    run_to_end(api, "lost-hook", "failure")
    wait_for(lambda: [r.state for r in outbox_rows(client)] == [FAILED], what="giving up")
    (row,) = outbox_rows(client)
    assert "no such hook for" in row.last_detail and secret not in row.last_detail
    assert len(receiver.requests) == 1


def test_a_push_subscription_that_is_gone_is_deleted(start, receiver):
    options = {"vapid": VapidKeys.generate(), "subject": SUBJECT, "timeout": (2.0, 5.0)}
    client = start(NotifyConfig(**{**FAST.__dict__, "channel_options": options}))
    api = Api(client)
    uid = user_id(client, api)
    settings = Browser().subscription(receiver.base + "/push/abc")
    store = client.app.state.store  # type: ignore[attr-defined]
    store.writer.call(lambda conn: add_channel(conn, uid, "webpush", "phone", settings, now=now_ms()))
    receiver.answers.append(Answer(410, b"expired"))
    run_to_end(api, "pushed", "failure")

    def channels() -> list:
        with store.read() as conn:
            return list_channels(conn, uid)

    wait_for(lambda: channels() == [] and outbox_rows(client) == [], what="the channel deleted")
    assert len(receiver.requests) == 1


def test_a_restart_between_queue_and_delivery_loses_nothing(start, receiver):
    # The first server may not send (a rate limit of 0); the second, on the same store, does.
    first = start(NotifyConfig(**{**FAST.__dict__, "rate_limit": 0}))
    api = Api(first)
    webhook(first, api, receiver.base + "/in", generate_secret())
    run_to_end(api, "across-restart", "failure")
    wait_for(lambda: [r.state for r in outbox_rows(first)] == [PENDING], what="the row queued")
    stop(first)
    assert receiver.requests == []
    second = start()
    wait_for(lambda: [r.state for r in outbox_rows(second)] == [DELIVERED], what="the delivery")
    assert len(receiver.requests) == 1


def test_a_delivery_cut_short_by_a_crash_is_sent_again_after_its_lease(start, receiver):
    # The receiver hangs on the first attempt; the server stops meanwhile (as if it died with the
    # row claimed); the next server sends the row again once the lease has run out, same key.
    receiver.answers.append(Answer(hang=True))
    first = start()
    api = Api(first)
    webhook(first, api, receiver.base + "/in", generate_secret())
    run_to_end(api, "crash", "failure")
    wait_for(lambda: len(receiver.requests) == 1, what="the first attempt")
    stop(first)
    second = start()
    wait_for(lambda: [r.state for r in outbox_rows(second)] == [DELIVERED], what="the delivery")
    assert len(receiver.requests) == 2
    assert receiver.requests[0].headers["idempotency-key"] == receiver.requests[1].headers["idempotency-key"]


def test_on_sqlite_a_restart_sends_a_delivery_cut_short_at_once_not_after_its_lease(db_url, start, receiver):
    # One process holds a SQLite store: a claim found at start is a dead process's. Waiting out its
    # lease held back every notification of that channel (one in flight per channel) for minutes.
    if not db_url.startswith("sqlite"):
        pytest.skip("on PostgreSQL another live process may hold the claim: its lease is waited out")
    config = NotifyConfig(**{**FAST.__dict__, "lease_s": 600})
    receiver.answers.append(Answer(hang=True))
    first = start(config)
    api = Api(first)
    webhook(first, api, receiver.base + "/in", generate_secret())
    run_to_end(api, "cut short", "failure")
    wait_for(lambda: len(receiver.requests) == 1, what="the first attempt")
    stop(first)
    second = start(config)
    api.client = second  # (the same account, on the restarted server)
    run_to_end(api, "after the restart", "failure")
    wait_for(lambda: sorted(r.state for r in outbox_rows(second)) == [DELIVERED, DELIVERED], what="both delivered")
    keys = [request.headers["idempotency-key"] for request in receiver.requests]
    assert len(keys) == 3 and keys[0] == keys[1] != keys[2]


def test_ingest_answers_while_a_receiver_hangs(start, receiver):
    receiver.answers.append(Answer(hang=True))
    client = start(NotifyConfig(**{**FAST.__dict__, "channel_options": {"timeout": (2.0, 60.0)}}))
    api = Api(client)
    webhook(client, api, receiver.base + "/in", generate_secret())
    run_to_end(api, "hangs", "failure")
    wait_for(lambda: len(receiver.requests) == 1, what="the hanging attempt")
    began = time.monotonic()
    run = str(uuid.uuid4())
    assert api.ok([log(run, i + 1, f"x{i}") for i in range(50)])["stored"] == 50
    run_to_end(api, "hangs-too", "failure")
    assert time.monotonic() - began < 10 and not receiver.release.is_set()
    receiver.release.set()


@pytest.mark.postgres
def test_two_servers_on_one_postgres_send_each_row_once(db_url, start, receiver):
    if not db_url.startswith("postgresql"):
        pytest.skip("several server processes share one store on PostgreSQL only")
    config = NotifyConfig(**{**FAST.__dict__, "deliveries": 8})
    one, _other = start(config), start(config)  # the other's worker races this one's
    api = Api(one)
    channel = webhook(one, api, receiver.base + "/in", generate_secret())
    due = now_ms() + 500  # both workers find all 20 rows due at once

    def queue(conn) -> None:
        for i in range(20):
            n = Notification(kind=LOST, run_name=f"run {i}", run_uuid=str(uuid.uuid4()), base_url="https://x/")
            enqueue(conn, channel, None, n, now=due - 500, hold_ms=500)

    one.app.state.store.writer.call(queue)  # type: ignore[attr-defined]
    wait_for(lambda: sum(r.state == DELIVERED for r in outbox_rows(one)) == 20, what="20 deliveries")
    keys = collections.Counter(r.headers["idempotency-key"] for r in receiver.requests)
    assert len(keys) == 20 and set(keys.values()) == {1}


def test_lost_and_back_within_the_window_cancel_out(start):
    client = start(NotifyConfig(**{**FAST.__dict__, "rate_limit": 0}))  # nothing is sent here
    api = Api(client)
    channel = webhook(client, api, "https://hooks.example/in", generate_secret())
    store = client.app.state.store  # type: ignore[attr-defined]
    run = str(uuid.uuid4())
    lost = Notification(kind=LOST, run_name="flappy", run_uuid=run, base_url="https://x/", key="lost-1")
    back = Notification(kind=BACK, run_name="flappy", run_uuid=run, base_url="https://x/", key="back-1")
    now = now_ms()
    assert store.writer.call(lambda c: enqueue(c, channel, 7, lost, now=now, hold_ms=30_000))
    assert not store.writer.call(lambda c: enqueue(c, channel, 7, back, now=now, hold_ms=30_000))
    assert not store.writer.call(lambda c: enqueue(c, channel, 7, lost, now=now, hold_ms=30_000))  # once
    assert [(r.key, r.state) for r in outbox_rows(client)] == [("lost-1", COALESCED), ("back-1", COALESCED)]


def test_the_rate_limit_holds_the_rest_back(start):
    client = start(NotifyConfig(**{**FAST.__dict__, "rate_limit": 0}))  # the app's own worker sends nothing
    api = Api(client)
    channel = webhook(client, api, "https://hooks.example/in", generate_secret())
    store = client.app.state.store  # type: ignore[attr-defined]
    now = now_ms()

    def queue(conn) -> None:
        for i in range(5):
            n = Notification(kind=LOST, run_name=f"r{i}", run_uuid=str(uuid.uuid4()), base_url="https://x/")
            enqueue(conn, channel, None, n, now=now)

    store.writer.call(queue)
    later = now + 10_000  # past the second by which the app's worker keeps putting them off
    claimed = store.writer.call(lambda c: claim_due(c, now=later, lease_ms=60_000, limit=10, rate_limit=3,
                                                    rate_window_ms=60_000))
    assert len(claimed) == 3
    again = store.writer.call(lambda c: claim_due(c, now=later + 2000, lease_ms=60_000, limit=10, rate_limit=3,
                                                  rate_window_ms=60_000))
    assert again == []  # three in flight fill the window
    assert sorted(r.state for r in outbox_rows(client)) == [PENDING, PENDING, "sending", "sending", "sending"]


def test_facts_missed_by_the_outbox_are_found_by_its_rescan(start, receiver):
    client = start()
    api = Api(client)
    webhook(client, api, receiver.base + "/in", generate_secret())
    outbox = client.app.state.notify_outbox  # type: ignore[attr-defined]
    outbox.close()  # it hears nothing more: as if it had fallen behind
    run_to_end(api, "missed", "failure")
    assert outbox_rows(client) == []
    assert outbox.rescan() == 1 and outbox.rescan() == 0  # the unique key: queued once
    wait_for(lambda: len(receiver.requests) == 1, what="the delivery")



def test_a_rescan_does_not_tell_a_channel_what_it_did_not_want_when_the_run_ended(start, receiver):
    client = start()
    api = Api(client)
    channel = webhook(client, api, receiver.base + "/in", generate_secret())
    edit = f"/api/v1/notify/channels/{channel}"
    assert api.client.patch(edit, headers=api.headers, json={"enabled": False}).status_code == 200
    run_to_end(api, "while off", "failure")
    assert api.client.patch(edit, headers=api.headers, json={"name_filter": "other-*"}).status_code == 200
    run_to_end(api, "not its name", "failure")
    time.sleep(0.01)  # (the edits after the runs' last word, by the millisecond clock)
    assert api.client.patch(edit, headers=api.headers, json={"enabled": True, "name_filter": None}).status_code == 200
    outbox = client.app.state.notify_outbox  # type: ignore[attr-defined]
    assert outbox.rescan(since_ms=0) == 0  # as at a restart: neither was wanted when it ended
    assert outbox_rows(client) == []
    run_to_end(api, "now", "failure")  # what happens from now on is sent
    wait_for(lambda: len(receiver.requests) == 1, what="the delivery")
    assert [r.json()["run"]["name"] for r in receiver.requests] == ["now"]


def stored_run(client: TestClient, run_uuid: str) -> tuple[int, int, RunState]:
    """(user id, run id, the run as the store holds it) of run ``run_uuid``."""
    with client.app.state.store.read() as conn:  # type: ignore[attr-defined]
        row = conn.execute(select(runs).where(runs.c.uuid == run_uuid)).one()
    return row.user_id, row.id, RunState(**{name: getattr(row, name) for name in RunState.__struct_fields__})


def ended(client: TestClient, run_uuid: str) -> RunEnded:
    """The ``RunEnded`` fact the store told for run ``run_uuid``."""
    uid, run_id, state = stored_run(client, run_uuid)
    return RunEnded(uid, run_id, run_uuid, state.status, state.exit_code, state.signal, state)


def test_a_deleted_run_is_never_notified(start, receiver, monkeypatch):
    monkeypatch.setattr("hyperdash.server.app.TIDY_INTERVAL_S", 3600.0)  # a deleted run's rows stay
    client = start()
    api = Api(client)
    webhook(client, api, receiver.base + "/in", generate_secret())
    state = client.app.state  # type: ignore[attr-defined]
    outbox = state.notify_outbox
    outbox.close()  # it hears nothing more: as if it had fallen behind
    kept, gone = run_to_end(api, "kept", "failure"), run_to_end(api, "gone", "failure")
    silent = str(uuid.uuid4())
    api.ok([env("run_started", silent, {"job_name": "gone too"}, seq=1)])
    state.store.writer.call(lambda conn: mark_lost(conn, 1.0, state.run_cache, now_ms=now_ms() + 60_000))
    assert stored_run(client, silent)[2].status == "lost"

    # Deleted while the outbox was behind: their rows are still being purged, seen just now.
    def delete(conn):
        rows = conn.execute(select(runs).where(runs.c.uuid.in_([gone, silent]))).all()
        return mark_deleted(conn, rows, "deleted", state.run_cache)

    state.store.writer.call(delete)
    assert outbox.rescan() == 1
    # A fact told before the deletion but heard after it queues nothing either.
    outbox.on_facts([ended(client, gone)])
    kept_id = stored_run(client, kept)[1]
    assert [r.run_id for r in outbox_rows(client)] == [kept_id]
    wait_for(lambda: [r.state for r in outbox_rows(client)] == [DELIVERED], what="the delivery")
    assert [r.json()["run"]["uuid"] for r in receiver.requests] == [kept]


def test_a_notification_waiting_for_its_retry_is_not_sent_once_its_run_is_deleted(start, receiver, monkeypatch):
    monkeypatch.setattr("hyperdash.server.app.TIDY_INTERVAL_S", 3600.0)  # a deleted run's rows stay
    client = start(dataclasses.replace(FAST, backoff_s=1.0))
    api = Api(client)
    webhook(client, api, receiver.base + "/in", generate_secret())
    receiver.answers = [Answer(status=503), Answer(status=503)]  # each run's first try fails
    kept, gone = run_to_end(api, "kept", "failure"), run_to_end(api, "gone", "failure")
    wait_for(lambda: len(receiver.requests) == 2, what="the first tries")
    state = client.app.state  # type: ignore[attr-defined]

    def delete(conn):
        rows = conn.execute(select(runs).where(runs.c.uuid == gone)).all()
        return mark_deleted(conn, rows, "deleted", state.run_cache)

    state.store.writer.call(delete)
    kept_id = stored_run(client, kept)[1]
    wait_for(lambda: [r.state for r in outbox_rows(client) if r.run_id == kept_id] == [DELIVERED],
             what="the kept run's retry")
    # The deleted run's row stays unsent, well past the time its retry was due.
    left = [r for r in outbox_rows(client) if r.run_id != kept_id]
    assert [r.state for r in left] == [PENDING]
    time.sleep(max(0, left[0].next_attempt_at - now_ms()) / 1000 + 0.5)  # (the worker polls every 0.05 s)
    assert [r.state for r in outbox_rows(client) if r.run_id != kept_id] == [PENDING]
    assert sorted(r.json()["run"]["uuid"] for r in receiver.requests) == sorted([kept, kept, gone])


def test_a_fact_that_cannot_be_queued_does_not_keep_the_others_back(start, receiver, caplog):
    client = start()
    good, broken = Api(client), Api(client)
    webhook(client, good, receiver.base + "/in", generate_secret())
    uid = user_id(client, broken)
    # A channel row that cannot be read (its settings are not JSON): queueing for its account fails.
    client.app.state.store.writer.call(lambda conn: conn.execute(notify_channels.insert().values(  # type: ignore[attr-defined]
        user_id=uid, kind="webhook", name="broken", settings="{not json", enabled=True, created_at=now_ms())))
    outbox = client.app.state.notify_outbox  # type: ignore[attr-defined]
    outbox.close()  # the facts are handed over below, as one commit's
    first, second = run_to_end(broken, "broken", "failure"), run_to_end(good, "fine", "failure")
    outbox.on_facts([ended(client, first), ended(client, second)])
    assert [r.run_id for r in outbox_rows(client)] == [stored_run(client, second)[1]]
    assert "could not queue" in caplog.text and first in caplog.text
    wait_for(lambda: len(receiver.requests) == 1, what="the delivery")
    assert receiver.requests[0].json()["run"]["uuid"] == second


def test_stalled_is_sent_by_default_and_a_rule_only_to_channels_that_ask(start, receiver):
    from hyperdash.server.notify import RULE, STALLED

    client = start()
    api = Api(client)
    by_default, rules = generate_secret(), generate_secret()
    webhook(client, api, receiver.base + "/default", by_default)
    webhook(client, api, receiver.base + "/rules", rules, events=["rule"])
    run = str(uuid.uuid4())
    api.ok([env("run_started", run, {"job_name": "slow-train", "host": "gpu-2", "pid": 9}, seq=1),
            log(run, 2, "epoch 3")])
    store = client.app.state.store  # type: ignore[attr-defined]
    with store.read() as conn:
        row = conn.execute(select(runs).where(runs.c.uuid == run)).one()
    state = RunState(**{name: getattr(row, name) for name in RunState.__struct_fields__})
    subscriber = client.app.state.notify_outbox  # type: ignore[attr-defined]
    assert subscriber.consider(row.user_id, row.id, STALLED, state) == 1
    fired = RuleFired(row.user_id, row.id, run, 1, 1, "loss > 10", "loss", "12.5", 7, 3, now_ms(), now_ms(), state)
    assert subscriber.consider(row.user_id, row.id, RULE, state, rule=fired) == 1
    assert subscriber.consider(row.user_id, row.id, STALLED, state) == 0  # the same stall, once
    wait_for(lambda: [r.state for r in outbox_rows(client)] == [DELIVERED, DELIVERED], what="both deliveries")
    got = {r.path: r for r in receiver.requests}
    assert got["/default"].headers["x-hyperdash-event"] == "run.stalled"
    assert got["/default"].json()["tail"] == "epoch 3"
    assert got["/rules"].headers["x-hyperdash-event"] == "rule.fired"
    assert "loss > 10" in got["/rules"].json()["title"]
    assert (got["/rules"].json()["value"], got["/rules"].json()["step"]) == ("12.5", 7)
    assert "Rule: loss > 10 (12.5 at step 7)." in got["/rules"].json()["text"]
    assert verify_signature(rules, got["/rules"].headers["x-hyperdash-signature"], got["/rules"].body)


def test_a_receiver_that_hangs_holds_one_delivery_slot_not_all(start, receiver):
    slow = Receiver()
    try:
        slow.answers = [Answer(hang=True) for _ in range(10)]
        client = start(NotifyConfig(**{**FAST.__dict__, "deliveries": 2, "channel_options": {"timeout": (2.0, 60.0)}}))
        api = Api(client)
        webhook(client, api, slow.base + "/slow", generate_secret())
        webhook(client, api, receiver.base + "/fast", generate_secret())
        for i in range(4):
            run_to_end(api, f"run-{i}", "failure")
        # Each run's notification reaches the receiver that answers, while the other hangs on its first.
        wait_for(lambda: len(receiver.requests) == 4, what="the four deliveries to the receiver that answers")
        assert len(slow.requests) == 1
    finally:
        slow.release.set()
        slow.close()


def test_one_notification_is_queued_for_many_channels_at_once(start):
    from hyperdash.server.notify import ENDED
    from hyperdash.server.notify.outbox import enqueue_many

    client = start(NotifyConfig(**{**FAST.__dict__, "rate_limit": 0}))  # nothing is sent here
    api = Api(client)
    channels = [webhook(client, api, f"https://hooks.example/{i}", generate_secret()) for i in range(3)]
    store = client.app.state.store  # type: ignore[attr-defined]
    run = str(uuid.uuid4())

    def note(kind: str, **kw) -> Notification:
        return Notification(kind=kind, run_name="many", run_uuid=run, base_url="https://x/", **kw)

    now = now_ms()
    lost = note(LOST, key="lost-1")
    assert store.writer.call(lambda c: enqueue_many(c, channels[:2], 9, lost, now=now, hold_ms=30_000)) == 2
    assert store.writer.call(lambda c: enqueue_many(c, channels, 9, lost, now=now, hold_ms=30_000)) == 1  # once each
    back = note(BACK, key="back-1")
    assert store.writer.call(lambda c: enqueue_many(c, channels, 9, back, now=now, hold_ms=30_000)) == 0
    ended = note(ENDED, status="failure")
    assert store.writer.call(lambda c: enqueue_many(c, channels, 9, ended, now=now)) == 3
    states = collections.Counter((r.kind, r.state) for r in outbox_rows(client))
    assert states == {("lost", COALESCED): 3, ("back", COALESCED): 3, ("ended", PENDING): 3}


def test_a_held_lost_is_told_to_nobody_once_the_run_is_heard_from_or_ends(start, receiver):
    # A channel on the default events takes lost but not back: the back that undoes a held lost
    # must undo it there too, and so must the run's end.
    client = start(NotifyConfig(**{**FAST.__dict__, "hold_s": 3.0}))  # (the back must come within it)
    api = Api(client)
    webhook(client, api, receiver.base + "/in", generate_secret())  # the default events
    store = client.app.state.store  # type: ignore[attr-defined]

    def silent_for_a_while() -> None:  # (as the server's sweep finds it, past the lost timeout)
        later = now_ms() + 121_000
        store.writer.call(lambda c: mark_lost(c, 120.0, client.app.state.run_cache, now_ms=later))  # type: ignore[attr-defined]

    blip, ends = str(uuid.uuid4()), str(uuid.uuid4())
    for run in (blip, ends):
        api.ok([env("run_started", run, {"job_name": "blips", "host": "gpu-7", "pid": 42}, seq=1)])
    silent_for_a_while()
    wait_for(lambda: [r.kind for r in outbox_rows(client)] == [LOST, LOST], what="both lost, held")
    api.ok([log(blip, 2, "here again")])  # back within the hold
    api.ok([env("run_ended", ends, {"final_status": "success", "exit_code": 0}, seq=2)])  # a short run: no "finished"
    wait_for(lambda: {r.state for r in outbox_rows(client)} == {COALESCED}, what="both lost made moot")
    # A run silent past the hold is told, once; and it alone, though its hold ends after theirs.
    api.ok([env("run_ended", blip, {"final_status": "success", "exit_code": 0}, seq=3)])  # (not lost again)
    later_run = str(uuid.uuid4())
    api.ok([env("run_started", later_run, {"job_name": "gone", "host": "gpu-7", "pid": 43}, seq=1)])
    silent_for_a_while()
    wait_for(lambda: len(receiver.requests) == 1, what="the lasting silence told")
    time.sleep(0.5)
    assert [r.json()["run"]["uuid"] for r in receiver.requests] == [later_run]


def test_after_a_restart_no_run_is_lost_before_it_had_the_whole_timeout_to_reach_the_server(client, api):
    run = str(uuid.uuid4())
    api.ok([env("run_started", run, {"job_name": "outlives an outage", "host": "gpu-7", "pid": 42}, seq=1)])
    store = client.app.state.store  # type: ignore[attr-defined]
    started = now_ms()  # (the server as it comes back, long after the run was last heard)
    timeout_ms = 120_000
    quiet = store.writer.call(lambda c: mark_lost(c, 120.0, now_ms=started + timeout_ms - 1_000,
                                                  listening_since=started))
    assert quiet.facts == [] and api.json(f"/api/v1/runs/{run}")["status"] == "running"
    lost = store.writer.call(lambda c: mark_lost(c, 120.0, now_ms=started + timeout_ms + 1_000,
                                                 listening_since=started))
    assert [f.run_uuid for f in lost.facts] == [run] and api.json(f"/api/v1/runs/{run}")["status"] == "lost"


def test_the_tail_a_notification_carries_is_plain_text(start, receiver):
    client = start()
    api = Api(client)
    webhook(client, api, receiver.base + "/in", generate_secret())
    run = str(uuid.uuid4())
    api.ok([env("run_started", run, {"job_name": "coloured", "host": "gpu-7", "pid": 42}, seq=1),
            log(run, 2, "\x1b[1;32mepoch 1\x1b[0m done"),
            log(run, 3, "\r 50%|#####     \r100%|##########"),  # a bar, redrawn, as it was left
            log(run, 4, "\x1b[31mRuntimeError: \x1b]8;;https://x\x07boom\x1b]8;;\x07\x1b[0m"),
            env("run_ended", run, {"final_status": "failure", "exit_code": 1, "signal": None}, seq=5)])
    wait_for(lambda: len(receiver.requests) == 1, what="the delivery")
    assert receiver.last.json()["tail"] == "epoch 1 done\n100%|##########\nRuntimeError: boom"

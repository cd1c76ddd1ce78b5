"""A stalled run and a rule that fired become ``stalled`` and ``rule`` notifications (with the
rule in words), through the real subscriber, outbox and webhook delivery."""

from __future__ import annotations

import json
import time
import uuid

import pytest
from server_helpers import Api, env, log
from sqlalchemy import select
from test_notify_channels import Receiver
from test_notify_outbox import FAST, stored_run, user_id, wait_for

from hyperdash import events
from hyperdash.server.facts import RuleFired, RunState
from hyperdash.server.notify import generate_secret
from hyperdash.server.notify.message import RULE, STALLED
from hyperdash.server.notify.outbox import EVENTS, add_channel
from hyperdash.server.notify.subscriber import notification_for
from hyperdash.server.stalls import mark_stalled
from hyperdash.server.store import notify_outbox, rule_firings


def state(last_seen_at: int) -> RunState:
    return RunState("a-run", "train", "running", 0, None, last_seen_at, None, None, None, None, None, 9, 5)


def firing(firing_id: int, rule: str = "loss is above 10", value: str = "11.0", step: int | None = 2) -> RuleFired:
    return RuleFired(1, 1, "a-run", 1, firing_id, rule, "loss", value, step, 5, 1000, 1000, state(1000))


def test_each_stall_and_each_firing_is_a_notification_of_its_own():
    first = notification_for(STALLED, state(1000), base_url="https://hd.example")
    again = notification_for(STALLED, state(9000), base_url="https://hd.example")
    assert first.event == "run.stalled" and first.key != again.key
    fired = notification_for(RULE, state(1000), base_url="https://hd.example", rule=firing(1, "loss is above 10"))
    other = notification_for(RULE, state(1000), base_url="https://hd.example", rule=firing(2, "acc is below 0.2"))
    assert (fired.event, fired.rule) == ("rule.fired", "loss is above 10")
    assert fired.key != other.key
    # The point that fired it is told; the time is how far into the run it happened.
    assert fired.summary == "A rule fired, 1 s into it. Rule: loss is above 10 (11.0 at step 2)."
    unstepped = notification_for(RULE, state(61_000), base_url="https://hd.example", rule=firing(4, step=None))
    assert unstepped.summary == "A rule fired, 1 min 01 s into it. Rule: loss is above 10 (11.0)."
    # The firing is what counts, not when the run was last seen: a rule that fires twice in one
    # batch (or in a replayed one) is told twice, and one firing told twice is one notification.
    fired_again = notification_for(RULE, state(1000), base_url="https://hd.example", rule=firing(3, "loss is above 10"))
    assert fired_again.key != fired.key
    assert notification_for(RULE, state(1000), base_url="https://hd.example", rule=firing(1)).key == fired.key


@pytest.mark.skipif(not {"stalled", "rule"} <= set(EVENTS),
                    reason="channels cannot ask for stalled and rule notifications yet")
def test_stalled_and_rule_fired_are_queued_and_delivered(make_client):
    receiver = Receiver()
    try:
        client = make_client(notify=FAST, stall_after=60)
        api = Api(client)
        uid = user_id(client, api)
        store = client.app.state.store
        settings = {"url": receiver.base + "/in", "secret": generate_secret()}
        store.writer.call(lambda conn: add_channel(conn, uid, "webhook", "hook", settings, now=events.now_ms(),
                                                   events=["stalled", "rule"]))
        run = str(uuid.uuid4())
        api.ok([env(events.RUN_STARTED, run, {"job_name": "watched"}, seq=1),
                env(events.ALERT, run, {"metric": "loss", "nan": True}, seq=2),
                env(events.METRIC, run, {"name": "loss", "value": "NaN"}, seq=3),
                env(events.METRIC, run, {"name": "loss", "value": "NaN"}, seq=4)])
        later = events.now_ms() + 61_000
        store.writer.call(lambda conn: mark_stalled(conn, later, 60_000, client.app.state.run_cache,
                                                    heard_past_window=False))

        def rows():
            with store.read() as conn:
                return conn.execute(select(notify_outbox.c.kind, notify_outbox.c.notification)).all()

        wait_for(lambda: len(rows()) == 2, what="two notifications queued")
        by_kind = {kind: json.loads(text) for kind, text in rows()}
        assert set(by_kind) == {"rule", "stalled"}
        assert by_kind["rule"]["rule"] == "loss is NaN or infinite"
        assert by_kind["rule"]["run_uuid"] == by_kind["stalled"]["run_uuid"] == run
        wait_for(lambda: len(receiver.requests) == 2, what="both delivered")
        assert b"loss is NaN or infinite" in b"".join(r.body for r in receiver.requests)
        # A stall and a rule are about a running run: its status says so, as the API does.
        bodies = {json.loads(r.body)["event"]: json.loads(r.body) for r in receiver.requests}
        assert {event: body["run"]["status"] for event, body in bodies.items()} == {
            "run.stalled": "running", "rule.fired": "running"}
    finally:
        receiver.close()


def test_a_rule_that_fires_twice_in_one_batch_is_told_twice_and_each_firing_once(make_client):
    client = make_client(notify=FAST.__class__(**{**FAST.__dict__, "rate_limit": 0}))  # nothing is sent here
    api = Api(client)
    uid = user_id(client, api)
    store = client.app.state.store
    store.writer.call(lambda conn: add_channel(conn, uid, "webhook", "hook", {
        "url": "https://hooks.example/in", "secret": generate_secret()}, now=events.now_ms(),
        events=["rule", "failure"]))
    run = str(uuid.uuid4())
    # NaN fires the rule, 1.0 arms it again, NaN fires it again: all in one batch.
    batch = [env(events.RUN_STARTED, run, {"job_name": "watched"}, seq=1),
             env(events.ALERT, run, {"metric": "loss", "nan": True}, seq=2),
             env(events.METRIC, run, {"name": "loss", "value": "NaN"}, seq=3),
             env(events.METRIC, run, {"name": "loss", "value": 1.0}, seq=4),
             env(events.METRIC, run, {"name": "loss", "value": "NaN"}, seq=5)]
    api.ok(batch)
    api.ok(batch)  # sent twice (a retry, hyperdash sync): stored once, fired once
    api.ok([env(events.RUN_ENDED, run, {"final_status": "failure", "exit_code": 1, "signal": None}, seq=6)])

    def kinds() -> list[str]:
        with store.read() as conn:
            return conn.execute(select(notify_outbox.c.kind).order_by(notify_outbox.c.id)).scalars().all()

    wait_for(lambda: "ended" in kinds(), what="the run's end queued (after its firings)")
    assert kinds() == ["rule", "rule", "ended"]
    with store.read() as conn:
        firings = conn.execute(select(rule_firings.c.id, rule_firings.c.description)).all()
    assert len(firings) == 2
    # Each firing told again (as another server process hears it too) is still one notification.
    _, run_id, run_state = stored_run(client, run)
    for firing_id, description in firings:
        subscriber = client.app.state.notify_outbox
        again = RuleFired(uid, run_id, run_state.uuid, 1, firing_id, description, "loss", "NaN", None, 3, 0, 0,
                          run_state)
        assert subscriber.consider(uid, run_id, RULE, run_state, rule=again) == 0
    assert kinds() == ["rule", "rule", "ended"]


def test_a_stall_undone_within_the_hold_is_told_to_nobody_and_a_runs_stalls_once_an_hour(make_client):
    receiver = Receiver()
    try:
        client = make_client(notify=FAST.__class__(**{**FAST.__dict__, "hold_s": 1.0}), stall_after=60)
        api = Api(client)
        uid = user_id(client, api)
        store = client.app.state.store
        settings = {"url": receiver.base + "/in", "secret": generate_secret()}
        store.writer.call(lambda conn: add_channel(conn, uid, "webhook", "hook", settings, now=events.now_ms(),
                                                   events=["stalled"]))
        run = str(uuid.uuid4())
        api.ok([env(events.RUN_STARTED, run, {"job_name": "pauses now and then"}, seq=1)])

        def stall() -> None:  # (as the server's sweep finds it, a window's length on)
            later = events.now_ms() + 61_000
            store.writer.call(lambda conn: mark_stalled(conn, later, 60_000, client.app.state.run_cache,
                                                        heard_past_window=False))

        def told() -> list[tuple[str, str]]:
            with store.read() as conn:
                return [tuple(r) for r in conn.execute(select(notify_outbox.c.kind, notify_outbox.c.state)
                                                       .order_by(notify_outbox.c.id))]

        # The job goes on within the hold: nobody hears of that stall.
        stall()
        api.ok([log(run, 2, "evaluating done, training again")])
        wait_for(lambda: told() == [("stalled", "coalesced")], what="the stall made moot")
        time.sleep(1.5)
        assert receiver.requests == []
        # A stall that lasts is told, once.
        stall()
        wait_for(lambda: len(receiver.requests) == 1, what="the lasting stall told")
        assert json.loads(receiver.requests[0].body)["event"] == "run.stalled"
        # The job goes on, and stalls again within the hour: not told again.
        api.ok([log(run, 3, "training again")])
        stall()
        time.sleep(1.5)
        assert len(receiver.requests) == 1
        assert told() == [("stalled", "coalesced"), ("stalled", "delivered")]
    finally:
        receiver.close()

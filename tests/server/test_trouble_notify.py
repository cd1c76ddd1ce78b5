"""A stalled run and a rule that fired become ``stalled`` and ``rule`` notifications (with the
rule in words), through the real subscriber, outbox and webhook delivery."""

from __future__ import annotations

import json
import uuid

import pytest
from server_helpers import Api, env
from sqlalchemy import select
from test_notify_channels import Receiver
from test_notify_outbox import FAST, user_id, wait_for

from hyperdash import events
from hyperdash.server.facts import RunState
from hyperdash.server.notify import generate_secret
from hyperdash.server.notify.message import RULE, STALLED
from hyperdash.server.notify.outbox import EVENTS, add_channel
from hyperdash.server.notify.subscriber import notification_for
from hyperdash.server.stalls import mark_stalled
from hyperdash.server.store import notify_outbox


def state(last_seen_at: int) -> RunState:
    return RunState("a-run", "train", "running", 0, None, last_seen_at, None, None, None, None, None, 9, 5)


def test_each_stall_and_each_firing_is_a_notification_of_its_own():
    first = notification_for(STALLED, state(1000), base_url="https://hd.example")
    again = notification_for(STALLED, state(9000), base_url="https://hd.example")
    assert first.event == "run.stalled" and first.key != again.key
    fired = notification_for(RULE, state(1000), base_url="https://hd.example", rule="loss is above 10")
    other = notification_for(RULE, state(1000), base_url="https://hd.example", rule="acc is below 0.2")
    assert (fired.event, fired.rule) == ("rule.fired", "loss is above 10")
    assert fired.key != other.key


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
        store.writer.call(lambda conn: mark_stalled(conn, later, 60_000, client.app.state.run_cache))

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
    finally:
        receiver.close()

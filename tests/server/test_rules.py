"""Metric rules on the server: each kind fires once on the right point, rules of a name, rules
set before their metric exists, malformed rules refused, one account's rules are its own."""

from __future__ import annotations

import copy
import uuid

import pytest
from server_helpers import Api, env

from hyperdash import events
from hyperdash.server.facts import RuleFired


def start(api: Api, name: str = "train") -> str:
    run = str(uuid.uuid4())
    api.ok([env(events.RUN_STARTED, run, {"job_name": name}, seq=1)])
    return run


class Job:
    """One run's events, numbered as the SDK numbers them."""

    def __init__(self, api: Api, name: str = "train"):
        self.api = api
        self.run = start(api, name)
        self.seq = 1

    def send(self, type: str, payload: dict) -> None:
        self.seq += 1
        self.api.ok([env(type, self.run, payload, seq=self.seq)])

    def points(self, name: str, *values, t0: int | None = None, dt_ms: int = 1000) -> None:
        t0 = t0 if t0 is not None else events.now_ms()
        batch = []
        for k, value in enumerate(values):
            self.seq += 1
            if isinstance(value, float) and value != value or value in (float("inf"), float("-inf")):
                value = events.nonfinite_text(value)
            batch.append(env(events.METRIC, self.run, {"name": name, "value": value, "step": k,
                                                       "timestamp": t0 + k * dt_ms}, seq=self.seq))
        self.api.ok(batch)

    def rules(self) -> dict:
        return self.api.json(f"/api/v1/runs/{self.run}/rules")

    def fired(self) -> list[tuple[str, str, int | None]]:
        return [(f["description"], f["value_text"], f["step"]) for f in self.rules()["firings"]]


def add(api: Api, run: str, **spec):
    return api.client.post(f"/api/v1/runs/{run}/rules", headers=api.headers, json=spec)


def test_a_nan_rule_set_from_code_fires_once_and_again_after_recovery(api):
    job = Job(api)
    job.send(events.ALERT, {"metric": "loss", "nan": True})
    job.points("loss", 1.0, 0.5, float("nan"), float("nan"), float("inf"))
    assert job.fired() == [("loss is NaN or infinite", "NaN", 2)]
    job.points("loss", 0.4, float("-inf"))  # recovered, then broke again: a second firing
    assert [value for _, value, _ in job.fired()] == ["NaN", "-Infinity"]
    firing = job.rules()["firings"][0]
    assert firing["value"] is None and firing["metric"] == "loss"
    # the NaN points are kept (as marks) yet charts get numbers only
    assert [p["value"] for p in api.json(f"/api/v1/runs/{job.run}/metrics/loss")["points"]] == [1.0, 0.5, 0.4]


def test_threshold_rules_fire_on_crossing_once(api):
    job = Job(api)
    assert add(api, job.run, metric="loss", above=10).status_code == 201
    assert add(api, job.run, metric="acc", below=0.2).status_code == 201
    job.points("loss", 1, 11, 12, 13)
    job.points("acc", 0.5, 0.1, 0.1)
    job.points("loss", 9, 10.5)
    assert job.fired() == [("loss is above 10", "11.0", 1), ("acc is below 0.2", "0.1", 1),
                           ("loss is above 10", "10.5", 1)]


def test_no_improvement_by_points_and_by_minutes(api):
    job = Job(api)
    add(api, job.run, metric="loss", patience=3)
    add(api, job.run, metric="acc", minutes=2, mode="max")
    job.points("loss", 5, 4, 4.5, 4.2, 4.1)  # best 4 at step 1; three points without better
    assert job.fired() == [("loss has not improved (lower is better) for 3 points", "4.1", 4)]
    job.points("loss", 4.3, 4.4)  # fired already: quiet until it improves and stalls again
    assert len(job.fired()) == 1
    job.points("acc", 0.5, 0.6, 0.6, 0.6, 0.6, dt_ms=60_000)  # best at minute 1; minute 3 is 2 min on
    assert job.fired()[1] == ("acc has not improved (higher is better) for 2 min", "0.6", 3)


def test_points_spread_over_batches_are_checked_without_history(api):
    job = Job(api)
    add(api, job.run, metric="loss", patience=2)
    job.points("loss", 3)
    job.points("loss", 4)
    assert job.fired() == []
    job.points("loss", 5)
    assert len(job.fired()) == 1


def test_a_rule_for_every_run_of_a_name_and_before_the_metric_exists(api):
    resp = api.client.post("/api/v1/rules", headers=api.headers, json={"name": "nightly", "metric": "loss",
                                                                       "above": 1})
    assert resp.status_code == 201, resp.text
    rule = resp.json()
    assert (rule["scope"], rule["name"], rule["run_uuid"], rule["source"]) == ("name", "nightly", None, "api")
    first, second, other = Job(api, "nightly"), Job(api, "nightly"), Job(api, "daily")
    for job in (first, second, other):
        job.points("loss", 2)
    assert [len(j.fired()) for j in (first, second, other)] == [1, 1, 0]
    assert [r["id"] for r in first.rules()["rules"]] == [rule["id"]]
    assert api.json("/api/v1/rules", name="nightly")["rules"] == [rule]
    # a rule on a run for a metric it has not recorded yet
    late = Job(api)
    add(api, late.run, metric="val/loss", above=0)
    late.points("loss", 5)
    assert late.fired() == []
    late.points("val/loss", 1)
    assert late.fired() == [("val/loss is above 0", "1.0", 0)]


def test_a_run_rule_and_a_name_rule_that_say_the_same_fire_once(api):
    named = api.client.post("/api/v1/rules", headers=api.headers, json={"name": "twice", "metric": "loss",
                                                                        "above": 5})
    assert named.status_code == 201, named.text
    job = Job(api, "twice")
    job.send(events.ALERT, {"metric": "loss", "above": 5})  # as exp.alert() sends it
    add(api, job.run, metric="loss", below=0)  # another condition on the same metric
    assert len(job.rules()["rules"]) == 3
    job.points("loss", 6, 4, 7, -1)
    assert job.fired() == [("loss is above 5", "6.0", 0), ("loss is above 5", "7.0", 2), ("loss is below 0", "-1.0", 3)]


def test_rule_fired_fact_for_notifications_and_live(api):
    seen = []
    api.client.app.state.store.dispatcher.subscribe(seen.extend, name="test")
    job = Job(api)
    add(api, job.run, metric="loss", nan=True)
    job.points("loss", float("nan"))
    api.client.app.state.store.dispatcher.close()
    fired = [f for f in seen if isinstance(f, RuleFired)]
    assert len(fired) == 1
    assert (fired[0].rule, fired[0].value, fired[0].run.uuid) == ("loss is NaN or infinite", "NaN", job.run)


def test_the_same_rule_twice_is_kept_once_and_a_rule_can_be_deleted(api):
    job = Job(api)
    one = add(api, job.run, metric="loss", above=3).json()
    job.send(events.ALERT, {"metric": "loss", "above": 3})
    assert add(api, job.run, metric="loss", above=3).json()["id"] == one["id"]
    assert [r["id"] for r in job.rules()["rules"]] == [one["id"]]
    assert api.client.delete(f"/api/v1/rules/{one['id']}", headers=api.headers).json() == {"deleted": one["id"]}
    job.points("loss", 5)
    assert job.rules() == {"rules": [], "firings": []}
    assert api.client.delete(f"/api/v1/rules/{one['id']}", headers=api.headers).status_code == 404


@pytest.mark.parametrize("spec", [
    {"metric": "loss"},  # no kind
    {"metric": "loss", "above": 1, "below": 0},  # two kinds
    {"metric": "", "nan": True},
    {"metric": "loss", "patience": 0},
    {"metric": "loss", "minutes": -1},
    {"metric": "loss", "above": 1, "mode": "min"},
    {"metric": "loss", "patience": 3, "mode": "lowest"},
    {"metric": "loss", "above": "ten"},
    {"metric": "loss", "above": True},  # not the threshold 1
    {"metric": "loss", "below": "0.5"},
    {"metric": "loss", "patience": 2.0},
    {"metric": "loss", "nan": 1},
    {"metric": "loss", "nan": True, "colour": "red"},
])
def test_malformed_rules_are_refused_and_change_nothing(api, spec):
    job = Job(api)
    resp = add(api, job.run, **spec)
    assert resp.status_code in (400, 422), resp.text
    assert resp.json()["message"]
    resp = api.ingest([env(events.ALERT, job.run, spec, seq=job.seq + 1)])
    assert resp.status_code == 400 and resp.json()["message"].startswith("event 0: ")
    assert job.rules()["rules"] == []


def test_another_account_cannot_see_or_change_rules(client):
    alice, bob = Api(client), Api(client)
    job = Job(alice, "secret")
    rule = add(alice, job.run, metric="loss", above=1).json()
    named = client.post("/api/v1/rules", headers=alice.headers, json={"name": "secret", "metric": "x", "nan": True})
    job.points("loss", 2)
    assert bob.get(f"/api/v1/runs/{job.run}/rules").status_code == 404
    assert add(bob, job.run, metric="loss", nan=True).status_code == 404
    assert bob.client.delete(f"/api/v1/rules/{rule['id']}", headers=bob.headers).status_code == 404
    assert bob.client.delete(f"/api/v1/rules/{named.json()['id']}", headers=bob.headers).status_code == 404
    assert bob.json("/api/v1/rules")["rules"] == []
    # bob's own run of the same name is not watched by alice's rules
    mine = Job(bob, "secret")
    mine.points("x", float("nan"))
    assert mine.rules() == {"rules": [], "firings": []}
    assert len(job.rules()["rules"]) == 2 and len(job.fired()) == 1
    assert client.get(f"/api/v1/runs/{job.run}/rules").status_code == 401


def test_two_server_processes_on_one_store_share_where_a_rule_stands(make_client):
    """A run's batches may reach different server processes: each re-reads the rule's state
    (here at once, its cache's time to live set to nothing), so the count goes on across them."""
    first, second = make_client(), make_client()
    for client in (first, second):
        client.app.state.run_cache.rules.TTL_MS = -1
    api = Api(first)
    job = Job(api)
    add(api, job.run, metric="loss", patience=3)
    job.points("loss", 5, 4)  # best 4
    job.api = copy.copy(api)  # the same account, through the second process
    job.api.client = second
    job.points("loss", 4.5, 4.2)  # two without improvement, stored by the second process
    job.api = api
    job.points("loss", 4.1)  # the third: the first process must know of the other two
    assert job.fired() == [("loss has not improved (lower is better) for 3 points", "4.1", 0)]

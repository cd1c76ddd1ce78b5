"""Every documented route's real replies hold to the reply models of ``server/api.py`` (and of
the route modules beside it)."""

from __future__ import annotations

import uuid

from pydantic import BaseModel
from server_helpers import Api, env, log
from test_notify_channels import Answer, Receiver

from hyperdash import events
from hyperdash.server import api as api_module
from hyperdash.server import notify_api, share_api, trouble_api, upkeep_api
from hyperdash.server.notify import generate_secret

# The modules whose routes document their replies with models.
_MODEL_MODULES = (api_module, notify_api, trouble_api, upkeep_api, share_api)


def _model(name: str) -> type[BaseModel]:
    return next(getattr(m, name) for m in _MODEL_MODULES if hasattr(m, name))


def _documented(client) -> dict[tuple[str, str], type[BaseModel]]:
    """(method, path) -> reply model, for each route whose success reply the OpenAPI schema
    documents with a model."""
    found = {}
    for path, item in client.get("/openapi.json").json()["paths"].items():
        for method, operation in item.items():
            for status, reply in operation["responses"].items():
                schema = reply.get("content", {}).get("application/json", {}).get("schema", {})
                if status.startswith("2") and "$ref" in schema:
                    found[(method.upper(), path)] = _model(schema["$ref"].rsplit("/", 1)[1])
                elif status.startswith("2") and schema.get("title") == "IngestReply":
                    found[(method.upper(), path)] = api_module.IngestReply
    return found


def test_every_documented_reply_matches_its_model(client):
    api = Api(client)
    run = str(uuid.uuid4())
    checked: dict[tuple[str, str], int] = {}
    models = _documented(client)

    def call(method: str, route: str, path: str | None = None, status: int = 200, **kwargs):
        resp = client.request(method, path or route, **kwargs)
        assert resp.status_code == status, resp.text
        models[(method, route)].model_validate(resp.json())
        checked[(method, route)] = checked.get((method, route), 0) + 1
        return resp.json()

    headers = api.headers
    call("GET", "/api/v1/health")
    call("GET", "/api/v1/ready")
    call("POST", "/api/v1/users", status=201, json={"email": f"u{uuid.uuid4().hex[:8]}@example.com",
                                                    "password": "long enough"})
    login = call("POST", "/api/v1/sessions", json={"email": api.email, "password": api.password, "host": "box"})
    call("GET", "/api/v1/me", headers=headers)
    key = call("POST", "/api/v1/users/api_keys", status=201, headers=headers, json={"name": "laptop"})
    call("GET", "/api/v1/users/api_keys", headers=headers)
    call("DELETE", "/api/v1/users/api_keys/{key_id}", f"/api/v1/users/api_keys/{key['id']}", headers=headers)
    call("GET", "/api/v1/users/api_keys", headers=headers)  # now with a revoked key
    # Runs: empty, then one with a param, a metric, lines of both streams, and an end.
    call("GET", "/api/v1/runs", headers=headers)
    call("POST", events.INGEST_PATH, headers=headers, json=[
        env("run_started", run, {"job_name": "shapes", "host": "h", "pid": 7, "api": "monitor"}, seq=1),
        env("param", run, {"params": {"lr": 0.1, "opt": "adam", "flag": True}, "is_internal": False}, seq=2),
        env("metric", run, {"name": "loss", "value": 0.5, "timestamp": 1_700_000_000_000,
                            "is_internal": False, "step": 3}, seq=3),
        log(run, 4, "out"), log(run, 5, "err", stream="stderr"), log(run, 6, "part", partial=True),
        env("run_ended", run, {"final_status": "failure", "exit_code": 2, "signal": None}, seq=7),
    ])
    call("POST", events.INGEST_PATH, headers=headers, json=env("heartbeat", run, {}))
    # A running run with progress, asked to stop: the stop route, and an ingest reply that says so.
    going = str(uuid.uuid4())
    call("POST", events.INGEST_PATH, headers=headers, json=[
        log(going, 1, " 37%|###7      | 370/1000 [01:02<01:45,  5.95it/s]", stream="stderr", progress=True)])
    stopped = call("POST", "/api/v1/runs/{run_uuid}/stop", f"/api/v1/runs/{going}/stop", status=202,
                   headers=headers)
    assert stopped["progress"]["percent"] == 37.0 and stopped["stop"]["via"] == "api"
    told = call("POST", events.INGEST_PATH, headers=headers, json=env("heartbeat", going, {}))
    assert going in told["stop"]
    page = call("GET", "/api/v1/runs", headers=headers, params={"limit": 2})
    assert {r["uuid"] for r in page["runs"]} == {run, going}
    assert call("GET", "/api/v1/runs/{run_uuid}", f"/api/v1/runs/{run}", headers=headers)["failure"]["summary"]
    call("GET", "/api/v1/runs/{run_uuid}/logs", f"/api/v1/runs/{run}/logs", headers=headers)
    call("GET", "/api/v1/runs/{run_uuid}/metrics/{name}", f"/api/v1/runs/{run}/metrics/loss", headers=headers)
    call("GET", "/api/v1/runs/{run_uuid}/metrics/{name}", f"/api/v1/runs/{run}/metrics/none", headers=headers)
    # Notifications: a channel added, tested (its receiver fails), edited, listed, removed.
    receiver = Receiver()
    try:
        call("GET", "/api/v1/notify/channels", headers=headers)
        call("GET", "/api/v1/notify/webpush_key", headers=headers)
        added = call("POST", "/api/v1/notify/channels", status=201, headers=headers, json={
            "kind": "webhook", "name": "ci", "settings": {"url": receiver.base + "/hook", "secret": generate_secret()}})
        one = f"/api/v1/notify/channels/{added['id']}"
        receiver.answers.append(Answer(500, b"down for maintenance"))
        call("POST", "/api/v1/notify/channels/{channel_id}/test", one + "/test", headers=headers)
        call("PATCH", "/api/v1/notify/channels/{channel_id}", one, headers=headers,
             json={"events": ["failure", "stalled"], "name_filter": "train-*"})
        call("GET", "/api/v1/notify/channels", headers=headers)  # with a last result
        call("GET", "/api/v1/notify/deliveries", headers=headers)
        call("DELETE", "/api/v1/notify/channels/{channel_id}", one, headers=headers)
    finally:
        receiver.close()
    # Rules and stalls (server/trouble_api.py).
    rules = f"/api/v1/runs/{run}/rules"
    call("POST", "/api/v1/runs/{run_uuid}/rules", rules, status=201, headers=headers,
         json={"metric": "loss", "above": 0.1})
    call("POST", events.INGEST_PATH, headers=headers, json=[
        env("metric", run, {"name": "loss", "value": "NaN"}, seq=8),
        env("metric", run, {"name": "loss", "value": 0.7}, seq=9)])
    named = call("POST", "/api/v1/rules", status=201, headers=headers,
                 json={"name": "shapes", "metric": "acc", "patience": 5, "mode": "max"})
    assert len(call("GET", "/api/v1/runs/{run_uuid}/rules", rules, headers=headers)["firings"]) == 1
    call("GET", "/api/v1/rules", headers=headers)
    call("DELETE", "/api/v1/rules/{rule_id}", f"/api/v1/rules/{named['id']}", headers=headers)
    call("GET", "/api/v1/runs/{run_uuid}/stall", f"/api/v1/runs/{run}/stall", headers=headers)
    call("PUT", "/api/v1/stalls/{name}", "/api/v1/stalls/shapes", headers=headers, json={"stall_after_s": "10m"})
    call("GET", "/api/v1/stalls", headers=headers)
    call("DELETE", "/api/v1/stalls/{name}", "/api/v1/stalls/shapes", headers=headers)
    # Comparing runs (server/comparison.py).
    call("GET", "/api/v1/compare", headers=headers, params={"name": "shapes"})
    call("GET", "/api/v1/compare/series", headers=headers, params={"run": run})
    call("GET", "/api/v1/compare/export.json", headers=headers, params={"name": "shapes"})
    # Keeping tidy: archive, storage, settings, shares, then delete.
    run_path = f"/api/v1/runs/{run}"
    call("POST", "/api/v1/runs/{run_uuid}/archive", f"{run_path}/archive", headers=headers)
    call("DELETE", "/api/v1/runs/{run_uuid}/archive", f"{run_path}/archive", headers=headers)
    call("GET", "/api/v1/names/storage", headers=headers)
    call("GET", "/api/v1/users/settings", headers=headers)
    call("PUT", "/api/v1/users/settings", headers=headers, json={"keep_days": 30})
    share = call("POST", "/api/v1/runs/{run_uuid}/shares", f"{run_path}/shares", status=201, headers=headers)
    call("GET", "/api/v1/runs/{run_uuid}/shares", f"{run_path}/shares", headers=headers)
    shared = f"/api/v1/shared/{share['token']}"
    call("GET", "/api/v1/shared/{token}/me", f"{shared}/me")
    call("GET", "/api/v1/shared/{token}/runs/{run_uuid}", f"{shared}/runs/{run}")
    call("GET", "/api/v1/shared/{token}/runs/{run_uuid}/logs", f"{shared}/runs/{run}/logs")
    call("GET", "/api/v1/shared/{token}/runs/{run_uuid}/metrics/{name}", f"{shared}/runs/{run}/metrics/loss")
    call("GET", "/api/v1/shared/{token}/runs/{run_uuid}/rules", f"{shared}/runs/{run}/rules")
    call("DELETE", "/api/v1/runs/{run_uuid}/shares/{share_id}", f"{run_path}/shares/{share['id']}", headers=headers)
    call("DELETE", "/api/v1/runs/{run_uuid}", run_path, headers=headers)
    other = str(uuid.uuid4())
    call("POST", events.INGEST_PATH, headers=headers, json=[env("run_started", other, {"job_name": "again"}, seq=1)])
    call("DELETE", "/api/v1/runs", headers=headers, params={"name": "again", "force": "true"})
    call("DELETE", "/api/v1/sessions", headers={"authorization": login["access_token"]})
    assert set(checked) == set(models), f"routes without a checked reply: {set(models) - set(checked)}"


def test_error_replies_match_the_error_model(client):
    api = Api(client)
    for method, path, kwargs in [
        ("GET", "/api/v1/runs", {}),
        ("GET", f"/api/v1/runs/{uuid.uuid4()}", {"headers": api.headers}),
        ("POST", "/api/v1/users", {"json": {"email": "x"}}),
        ("POST", events.INGEST_PATH, {"headers": api.headers, "content": b"[{"}),
        ("GET", "/api/v1/nothing", {}),
    ]:
        resp = client.request(method, path, **kwargs)
        assert 400 <= resp.status_code < 500
        api_module.Error.model_validate(resp.json())

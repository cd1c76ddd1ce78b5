"""Every documented route's real replies hold to the reply models of ``server/api.py``."""

from __future__ import annotations

import uuid

from pydantic import BaseModel
from server_helpers import Api, env, log

from hyperdash import events
from hyperdash.server import api as api_module


def _documented(client) -> dict[tuple[str, str], type[BaseModel]]:
    """(method, path) -> reply model, for each route whose success reply the OpenAPI schema
    documents with a model."""
    found = {}
    for path, item in client.get("/openapi.json").json()["paths"].items():
        for method, operation in item.items():
            for status, reply in operation["responses"].items():
                schema = reply.get("content", {}).get("application/json", {}).get("schema", {})
                if status.startswith("2") and "$ref" in schema:
                    found[(method.upper(), path)] = getattr(api_module, schema["$ref"].rsplit("/", 1)[1])
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
    page = call("GET", "/api/v1/runs", headers=headers, params={"limit": 1})
    assert page["runs"][0]["uuid"] == run
    call("GET", "/api/v1/runs/{run_uuid}", f"/api/v1/runs/{run}", headers=headers)
    call("GET", "/api/v1/runs/{run_uuid}/logs", f"/api/v1/runs/{run}/logs", headers=headers)
    call("GET", "/api/v1/runs/{run_uuid}/metrics/{name}", f"/api/v1/runs/{run}/metrics/loss", headers=headers)
    call("GET", "/api/v1/runs/{run_uuid}/metrics/{name}", f"/api/v1/runs/{run}/metrics/none", headers=headers)
    call("GET", "/api/v1/compare", headers=headers, params={"name": "shapes"})
    call("GET", "/api/v1/compare/series", headers=headers, params={"run": run})
    call("GET", "/api/v1/compare/export.json", headers=headers, params={"name": "shapes"})
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

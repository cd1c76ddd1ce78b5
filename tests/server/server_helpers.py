"""Helpers for the server's tests: an account on an in-process app, envelope builders."""

from __future__ import annotations

import uuid

from fastapi.testclient import TestClient

from hyperdash import events

# What every ingest reply of ours says beside its counts: the forms of batch this server takes.
REPLY_FLAGS = {events.BLOCKS_REPLY_FIELD: True, events.ATTACHED_TEXT_REPLY_FIELD: True}


class Api:
    """One account on an in-process app, with small helpers for what tests do most."""

    def __init__(self, client: TestClient, email: str | None = None, password: str = "s3cret-password"):
        self.client = client
        self.email = email or f"user-{uuid.uuid4().hex[:10]}@example.com"
        self.password = password
        resp = client.post("/api/v1/users", json={"email": self.email, "password": password})
        assert resp.status_code == 201, resp.text
        self.api_key = resp.json()["api_key"]
        self.access_token = resp.json()["access_token"]
        self.headers = {events.AUTH_HEADER: self.api_key}

    def ingest(self, body, headers: dict | None = None):
        kwargs = {"content": body} if isinstance(body, (bytes, str)) else {"json": body}
        return self.client.post(events.INGEST_PATH, headers={**self.headers, **(headers or {})}, **kwargs)

    def ok(self, body, headers: dict | None = None) -> dict:
        resp = self.ingest(body, headers)
        assert resp.status_code == 200, resp.text
        return resp.json()

    def get(self, path: str, **params):
        return self.client.get(path, headers=self.headers, params=params)

    def json(self, path: str, **params):
        resp = self.get(path, **params)
        assert resp.status_code == 200, resp.text
        return resp.json()

    def lines(self, run_uuid: str) -> list[str]:
        return [line["text"] for line in self.json(f"/api/v1/runs/{run_uuid}/logs", limit=10000)["lines"]]


def env(type: str, run_uuid: str, payload: dict, seq: int | None = None, timestamp: int | None = None) -> dict:
    return events.envelope(type, run_uuid, payload, seq=seq, timestamp=timestamp)


def log(run_uuid: str, seq: int | None, body: str, stream: str = "stdout", **flags) -> dict:
    payload = {"uuid": str(uuid.uuid4()), "level": events.LEVEL_OF_STREAM[stream], "body": body}
    if seq is not None:
        payload["stream"] = stream
    payload.update(flags)
    return env(events.LOG, run_uuid, payload, seq=seq)

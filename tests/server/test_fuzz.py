"""Fuzzing, bounded in examples: schemathesis over the OpenAPI schema, and random ingest
envelopes (hypothesis), on SQLite and PostgreSQL. Nothing a client sends may get a 5xx."""

from __future__ import annotations

import json
import uuid

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from server_helpers import Api, env, log

from hyperdash import events

# Few examples each: the pass must take well under a minute per database.
EXAMPLES = 6
_SETTINGS = dict(deadline=None, database=None, suppress_health_check=list(HealthCheck), derandomize=False)
# Streams that never end by themselves: a fuzzed call would wait for ever.
_ENDLESS = {("GET", "/api/v1/events")}


def _operations(app):
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    return [result.ok() for result in schema.get_all_operations()]


def test_schemathesis_finds_no_server_error(client):
    api = Api(client)
    run = str(uuid.uuid4())
    api.ok([env("run_started", run, {"job_name": "fuzzed"}, seq=1), log(run, 2, "a line")])
    headers = {events.AUTH_HEADER: api.api_key}
    failures = []
    operations = [op for op in _operations(client.app) if (op.method.upper(), op.path) not in _ENDLESS]
    assert len(operations) >= 14
    for operation in operations:
        # Invalid input where there is some to make beyond a path's text (the ingest body has a
        # test of its own below; hypothesis gives up slowly on what it cannot make invalid).
        invalid = (len(operation.query) or len(operation.body)) and operation.path != events.INGEST_PATH
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE) if invalid else (GenerationMode.POSITIVE,):
            @settings(max_examples=EXAMPLES, **_SETTINGS)
            @given(case=operation.as_strategy(generation_mode=mode))
            def check(case):
                # Half of the calls name the real run, so the routes behind the lookup are reached.
                if "run_uuid" in (case.path_parameters or {}) and hash(repr(case)) % 2:
                    case.path_parameters["run_uuid"] = run
                response = case.call(headers=headers)
                if response.status_code >= 500:
                    failures.append(f"{case.method} {case.formatted_path} -> {response.status_code}: "
                                    f"{case.as_curl_command()[:300]}")

            check()
    assert failures == []


_text = st.text(max_size=40) | st.sampled_from(["", "\x00", "a\x00b", "\ud800", "训练", "x" * 300])
_scalar = st.none() | st.booleans() | st.integers(min_value=-2**70, max_value=2**70) | st.floats() | _text
_json = st.recursive(_scalar, lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(_text, inner, max_size=3), max_leaves=8)
_payload_fields = {
    "job_name": _text, "host": _text, "pid": _scalar, "api": _text,
    "uuid": _text, "level": st.sampled_from(["INFO", "ERROR", "DEBUG"]) | _text, "body": _text | _scalar,
    "stream": st.sampled_from(list(events.STREAMS)) | _text, "partial": _scalar, "progress": _scalar,
    "name": _text, "value": _scalar, "timestamp": _scalar, "is_internal": _scalar, "step": _scalar,
    "params": st.dictionaries(_text, _scalar, max_size=3) | _json,
    "final_status": st.sampled_from(list(events.FINAL_STATUSES)) | _text, "exit_code": _scalar,
    "signal": _text | _scalar,
}
_payload = st.fixed_dictionaries({}, optional=_payload_fields) | _json


def _envelopes(run: str):
    envelope = st.fixed_dictionaries(
        {},
        optional={
            "type": st.sampled_from(list(events.EVENT_TYPES)) | _text,
            "timestamp": st.integers(min_value=-1, max_value=2**64) | _scalar,
            "sdk_run_uuid": st.just(run) | st.uuids().map(str) | _text,
            "seq": st.integers(min_value=-1, max_value=2**64) | _scalar,
            "payload": _payload,
        },
    )
    return envelope | st.lists(envelope, max_size=5) | _json


# A NUL in an original client's log envelope's payload.uuid: PostgreSQL refuses to store it and
# ingest answers 503 (retried for ever by the original client).


def test_random_ingest_envelopes_get_no_server_error(client):
    api = Api(client)
    run = str(uuid.uuid4())
    api.ok(env("run_started", run, {"job_name": "random"}))
    seen = []

    @settings(max_examples=150, **_SETTINGS)
    @given(body=_envelopes(run))
    def check(body):
        resp = api.ingest(json.dumps(body))  # (NaN and lone surrogates as a careless client sends)
        if resp.status_code >= 500:
            seen.append((resp.status_code, resp.text[:200], repr(body)[:500]))
        assert resp.status_code in (200, 400, 413) or resp.status_code >= 500, resp.text

    check()
    assert seen == []
    # The store still answers for the run afterwards.
    assert api.get(f"/api/v1/runs/{run}").status_code == 200


def test_a_nul_in_a_log_chunk_id_is_no_server_error(api):
    run = str(uuid.uuid4())
    api.ok(env("run_started", run, {"job_name": "nul"}))
    resp = api.ingest(env("log", run, {"uuid": "\x00", "level": "INFO", "body": "x\n"}))
    assert resp.status_code < 500, resp.text

"""The two ways a body is checked: the one-pass path for plain log lines must give exactly the
batch that the general path gives, and leave every other body to the general path."""

from __future__ import annotations

import uuid

import orjson
import pytest

from hyperdash import events
from hyperdash.server.checks import _plain_lines_batch, check_envelopes, checked_batch, parse_body
from hyperdash.server.errors import ApiError

RUN = str(uuid.uuid4())
OTHER = str(uuid.uuid4())


def line(seq, body="a line", run=RUN, stream="stdout", **extra):
    payload = {"body": body, "stream": stream, **extra.pop("payload", {})}
    return {"type": "log", "sdk_run_uuid": run, "timestamp": 1_700_000_000_000 + seq, "seq": seq,
            "payload": payload, **extra}


def general(body: bytes):
    return check_envelopes(parse_body(body), 7, "monitor")


TAKEN = {
    "one run": [line(i) for i in range(1, 6)],
    "two runs, interleaved": [line(1), line(1, run=OTHER), line(2), line(2, run=OTHER, stream="stderr")],
    "an upper-case run uuid": [line(1, run=RUN.upper()), line(2, run=RUN)],
    "extra fields": [line(1, payload={"level": "ERROR", "uuid": "x"}, extra_field=True)],
    "partial and progress null": [line(1, payload={"partial": None, "progress": None})],
    "unicode": [line(1, body="épais 😀 \u2028 \x1b[31mred\x1b[0m")],
    "the same seq twice": [line(1), line(1)],
    "escapes without a NUL": [line(1, body='say "hi"\tto C:\\temp'), line(2, body="\\u0000 is how JSON writes a NUL")],
}

LEFT = {
    "a metric among the lines": [line(1), {"type": "metric", "sdk_run_uuid": RUN, "timestamp": 1, "seq": 2,
                                           "payload": {"name": "loss", "value": 0.5}}],
    "a line without seq": [{k: v for k, v in line(1).items() if k != "seq"}],
    "a progress line": [line(1, payload={"progress": True})],
    "a partial piece": [line(1, payload={"partial": False})],
    "a float timestamp": [{**line(1), "timestamp": 1.7e12}],
    "a NUL character": [line(1, body="a\x00b")],
    "a NUL after other escapes": [line(1, body='say "hi"'), line(2, body="a\tb\x00c")],
    "a long body": [line(1, body="x" * (events.MAX_LOG_BODY_BYTES // 2))],
    "level instead of stream": [{**line(1), "payload": {"body": "x", "level": "ERROR"}}],
    "one envelope, not an array": line(1),
    "an empty array": [],
    # bad ones: the general path says what is wrong
    "a bad run uuid": [line(1, run="not-a-uuid")],
    "seq zero": [line(0)],
    "a negative timestamp": [{**line(1), "timestamp": -1}],
    "an unknown stream": [line(1, stream="stdin")],
    "a body that is not a string": [line(1, body=42)],
    "a boolean seq": [{**line(1), "seq": True}],
}


@pytest.mark.parametrize("envelopes", TAKEN.values(), ids=TAKEN.keys())
def test_plain_lines_take_the_one_pass_path_to_the_same_batch(envelopes):
    body = orjson.dumps(envelopes)
    fast = _plain_lines_batch(body, 7, "monitor")
    assert fast is not None
    assert fast == general(body)
    assert checked_batch(body, 7, "monitor") == fast


@pytest.mark.parametrize("envelopes", LEFT.values(), ids=LEFT.keys())
def test_anything_else_is_left_to_the_general_path(envelopes):
    body = orjson.dumps(envelopes)
    assert _plain_lines_batch(body, 7, "monitor") is None
    try:
        expected = general(body)
    except ApiError as exc:
        with pytest.raises(type(exc)) as raised:
            checked_batch(body, 7, "monitor")
        assert (raised.value.code, raised.value.message) == (exc.code, exc.message)
    else:
        assert checked_batch(body, 7, "monitor") == expected


def test_bodies_that_are_not_json_are_left_to_the_general_path():
    for body in (b"", b"[", b'[{"type": "log", "sdk_run_uuid": "\xff"}]', b"[" + b"1," * 3 + b"1]"):
        assert _plain_lines_batch(body, 7, None) is None
        with pytest.raises(ApiError):
            checked_batch(body, 7, None)


def test_a_batch_over_the_count_limit_is_refused_on_either_path():
    body = orjson.dumps([line(i) for i in range(1, events.MAX_BATCH_EVENTS + 2)])
    assert _plain_lines_batch(body, 7, None) is None
    with pytest.raises(ApiError) as raised:
        checked_batch(body, 7, None)
    assert raised.value.code == "batch_too_large"

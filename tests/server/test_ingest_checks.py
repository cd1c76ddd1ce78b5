"""The two ways a body is checked: the one-pass path for plain log lines must give exactly the
batch that the general path gives, and leave every other body to the general path."""

from __future__ import annotations

import uuid

import orjson
import pytest

from hyperdash import events
from hyperdash.server.checks import (
    _attached_lines_batch,
    _plain_lines_batch,
    _split_attached,
    check_envelopes,
    checked_batch,
    parse_body,
)
from hyperdash.server.errors import ApiError

RUN = str(uuid.uuid4())
OTHER = str(uuid.uuid4())


def line(seq, body="a line", run=RUN, stream="stdout", **extra):
    payload = {"body": body, "stream": stream, **extra.pop("payload", {})}
    return {"type": "log", "sdk_run_uuid": run, "timestamp": 1_700_000_000_000 + seq, "seq": seq,
            "payload": payload, **extra}


def block(seq, texts, run=RUN, stream="stdout", **extra):
    """A block of lines: ``texts`` numbered from ``seq``."""
    return line(seq, "".join(t + "\n" for t in texts), run, stream,
                payload={"lines": len(texts), **extra.pop("payload", {})}, **extra)


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
    "a block of lines": [block(1, ["one", "", "three \u00e9"])],
    "blocks between lines, of two runs": [line(1), block(2, ["a", "b"]), block(1, ["x"], run=OTHER), line(4),
                                          block(5, ["c"], stream="stderr")],
    "a block that overlaps a line": [line(2), block(1, ["a", "b", "c"])],
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
    "a block short of a line": [line(1, body="a\nb\n", payload={"lines": 3})],
    "a block over its count": [line(1, body="a\nb\nc\n", payload={"lines": 2})],
    "a block without its last newline": [line(1, body="a\nb", payload={"lines": 2})],
    "a block of no lines": [line(1, body="", payload={"lines": 0})],
    "an empty block of one line": [line(1, body="", payload={"lines": 1})],
    "a block of one line without its newline": [line(1, body="a", payload={"lines": 1})],
    "a block of one line holding two": [line(1, body="a\nb\n", payload={"lines": 1})],
    "a block count that is not an integer": [line(1, body="a\n", payload={"lines": "1"})],
    "a block count that is a boolean": [line(1, body="a\n", payload={"lines": True})],
    "a block without seq": [{k: v for k, v in block(1, ["a"]).items() if k != "seq"}],
    "a partial block": [block(1, ["a"], payload={"partial": True})],
    "a progress block": [block(1, ["a"], payload={"progress": False})],
    "a block past the last seq": [block(2**62 - 1, ["a", "b"])],
    "a block with a NUL": [block(1, ["a", "b\x00c"])],
    "a block longer than a log body, of lines that are not": [block(1, ["x" * 1000] * 100)],
    "a block with a line longer than a log body": [block(1, ["a", "\u00e9" * (events.MAX_LOG_BODY_BYTES // 2 + 1)])],
    "a block of one line longer than a log body": [block(1, ["x" * (events.MAX_LOG_BODY_BYTES + 1)])],
    "a long body with lines null": [line(1, body="x" * (events.MAX_LOG_BODY_BYTES + 1), payload={"lines": None})],
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


@pytest.mark.parametrize("envelopes, message", [
    ([line(1, body="a\nb\n", payload={"lines": 3})], "event 0: log 'body' must hold exactly 3 lines"),
    ([line(1, body="a\nb", payload={"lines": 2})], "event 0: log 'body' must hold exactly 2 lines"),
    ([line(1), line(2, body="", payload={"lines": 0})], "event 1: log 'lines' must be an integer from 1"),
    ([{k: v for k, v in block(1, ["a"]).items() if k != "seq"}],
     "event 0: a block of lines (log 'lines') needs a 'seq'"),
    ([block(1, ["a"], payload={"partial": True})], "event 0: a block of lines (log 'lines') cannot be 'partial'"),
    ([line(1), block(2, ["a", "x" * (events.MAX_LOG_BODY_BYTES + 1), "b"])],
     "event 1: a line of a block of lines has at most 65536 bytes; split longer lines into pieces"),
    ([line(1, body="x" * (events.MAX_LOG_BODY_BYTES + 1), payload={"lines": None})],
     "event 0: a log body has at most 65536 bytes"),
], ids=["short", "no last newline", "zero", "no seq", "partial", "a line too long", "a long body, lines null"])
def test_a_bad_block_of_lines_is_refused_with_what_is_wrong(envelopes, message):
    with pytest.raises(ApiError) as raised:
        checked_batch(orjson.dumps(envelopes), 7, None)
    assert raised.value.status == 400
    assert raised.value.message.startswith(message)


@pytest.mark.parametrize(("second", "one_run"), [
    ({}, True),
    ({"seq": 7}, False),  # a line left out between the blocks
    ({"timestamp": 1_700_000_000_001}, False),  # another read of output
    ({"stream": "stderr"}, False),
], ids=["one stretch", "a gap", "another time", "another stream"])
def test_blocks_are_told_to_be_one_stretch_only_when_they_are(second, one_run):
    run = str(uuid.uuid4())

    def block(seq: int, count: int, timestamp: int = 1_700_000_000_000, stream: str = "stdout") -> dict:
        return {"type": "log", "sdk_run_uuid": run, "timestamp": timestamp, "seq": seq,
                "payload": {"stream": stream, "lines": count, "body": "x\n" * count}}

    body = orjson.dumps([block(1, 5), block(**{"seq": 6, "count": 3, **second})])
    assert checked_batch(body, 1, "monitor").parts[run].one_run is one_run


def test_a_block_counts_as_its_lines_toward_the_batch_limit_on_either_path():
    texts = ["x"] * (events.MAX_BATCH_EVENTS // 2)
    just = orjson.dumps([block(1, texts), block(len(texts) + 1, texts)])
    batch = checked_batch(just, 7, None)
    assert [line.seq for line in batch.parts[RUN].lines] == list(range(1, events.MAX_BATCH_EVENTS + 1))
    assert batch.parts[RUN].envelopes == events.MAX_BATCH_EVENTS
    over = orjson.dumps([block(1, texts), block(len(texts) + 1, texts), line(events.MAX_BATCH_EVENTS + 1)])
    # Blocks that claim more lines than a batch may hold, in a request that is all blocks and in
    # one that takes the general path (a metric first).
    metric = {"type": "metric", "sdk_run_uuid": RUN, "timestamp": 1, "seq": 1, "payload": {"name": "m", "value": 1}}
    many = [block(1 + n * events.MAX_BATCH_EVENTS, [""] * events.MAX_BATCH_EVENTS) for n in range(3)]
    for body in (over, orjson.dumps(many), orjson.dumps([metric, *many])):
        assert _plain_lines_batch(body, 7, None) is None
        with pytest.raises(ApiError) as raised:
            checked_batch(body, 7, None)
        assert raised.value.code == "batch_too_large"


def with_texts_after(envelopes) -> bytes:
    """The body of type ATTACHED_TEXT_TYPE that carries ``envelopes``: each log event's text
    (where it is one) taken out of its JSON and put after it, as bytes."""
    texts = []
    moved = []
    for env in envelopes if isinstance(envelopes, list) else [envelopes]:
        payload = env.get("payload")
        if env.get("type") == "log" and isinstance(payload, dict) and isinstance(payload.get("body"), str):
            text = payload["body"].encode()
            payload = {**{k: v for k, v in payload.items() if k != "body"}, "bytes": len(text)}
            env = {**env, "payload": payload}
            texts.append(text)
        moved.append(env)
    head = orjson.dumps(moved if isinstance(envelopes, list) else moved[0])
    return head + b"\n" + b"".join(texts)


def outcome(body: bytes, attached_text: bool):
    """The batch a body makes, or the error it gets: (status, code, message)."""
    try:
        return checked_batch(body, 7, "monitor", attached_text=attached_text)
    except ApiError as exc:
        return (exc.status, exc.code, exc.message)


@pytest.mark.parametrize("envelopes", [*TAKEN.values(), *LEFT.values()], ids=[*TAKEN, *LEFT])
def test_texts_after_the_json_make_the_same_batch_as_texts_in_it(envelopes):
    attached = with_texts_after(envelopes)
    assert outcome(attached, True) == outcome(orjson.dumps(envelopes), False)
    if envelopes in TAKEN.values() and "\x00" not in str(envelopes):
        assert _attached_lines_batch(*_split_attached(attached), 7, "monitor") is not None  # the one-pass way


def test_invalid_utf_8_after_the_json_is_replaced_as_the_sdk_would():
    texts = [b"caf\xc3\xa9 \xff", b"cut \xe2\x82", b"\xac done"]  # a euro sign cut across two blocks
    head = orjson.dumps([line(1, payload={"lines": 1}), line(2, payload={"lines": 1}), line(3, payload={"lines": 1})])
    head = head.replace(b'"body":"a line",', b"")
    head = head.replace(b'"lines":1}', b'"lines":1,"bytes":%d}', 1) % len(texts[0] + b"\n")
    head = head.replace(b'"lines":1}', b'"lines":1,"bytes":%d}', 1) % len(texts[1] + b"\n")
    head = head.replace(b'"lines":1}', b'"lines":1,"bytes":%d}', 1) % len(texts[2] + b"\n")
    body = head + b"\n" + b"".join(t + b"\n" for t in texts)
    batch = checked_batch(body, 7, None, attached_text=True)
    assert [line.text for line in batch.parts[RUN].lines] == ["café \ufffd", "cut \ufffd", "\ufffd done"]


METRIC = {"type": "metric", "sdk_run_uuid": RUN, "timestamp": 1, "seq": 9, "payload": {"name": "m", "value": 1}}


@pytest.mark.parametrize("body, message", [
    (orjson.dumps([line(1)]), "a body of type application/vnd.hyperdash.attached-text is the JSON of its events"),
    (with_texts_after([line(1, "abc")]) + b"d", "the text after the JSON holds 4 bytes, and its events take 3"),
    (with_texts_after([line(1, "abc")])[:-1], "event 0: log 'bytes' must be an integer from 0 to 2"),
    (with_texts_after([line(1, "ab")]).replace(b'"bytes":2', b'"bytes":-1'), "event 0: log 'bytes' must be an"),
    (with_texts_after([line(1, "ab")]).replace(b'"bytes":2', b'"bytes":"2"'), "event 0: log 'bytes' must be an"),
    (with_texts_after([line(1, "ab")]).replace(b'"bytes":2', b'"bytes":true'), "event 0: log 'bytes' must be an"),
    (with_texts_after([line(1, "ab")]).replace(b'"bytes":2', b'"bytes":2,"body":"x"'),
     "event 0: log 'bytes' stands in place of 'body'"),
    (with_texts_after([line(1, "ab")]).replace(b'"bytes":2', b'"bytes":2,"body":null'),
     "event 0: log 'bytes' stands in place of 'body'"),
    (with_texts_after([line(1), {**METRIC, "payload": {**METRIC["payload"], "bytes": 0}}]),
     "event 1: only a log event may carry its text after the JSON ('bytes')"),
    (with_texts_after([line(1, "a\nb\n", payload={"lines": 3})]), "event 0: log 'body' must hold exactly 3 lines"),
    (b"[{]\n", "the request body is not valid JSON"),
    (b"\n", "the request body is empty"),
], ids=["no newline", "text left over", "text short", "negative", "a string", "a boolean", "with a body",
        "with a null body", "on a metric", "a block short of a line", "bad JSON", "no JSON"])
def test_a_bad_body_with_texts_after_the_json_is_refused_with_what_is_wrong(body, message):
    with pytest.raises(ApiError) as raised:
        checked_batch(body, 7, None, attached_text=True)
    assert raised.value.status == 400
    assert raised.value.message.startswith(message)

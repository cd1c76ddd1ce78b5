"""Checking an ingest request's body: a whole request is checked before anything is stored, so
bad input changes nothing; the result is a :class:`~hyperdash.server.batch.Batch`.

Two ways lead to the same batch: most bodies are arrays of plain log lines, which msgspec
decodes and checks in one pass (:func:`_plain_lines_batch`); any other body, a bad one
included, takes the general check (:func:`check_envelopes`), which names the first bad event.
A test holds the two to the same result.

A log event whose payload has ``"lines": N`` (a block of lines, see :data:`hyperdash.events.LOG_BLOCK_BYTES`)
becomes N lines, numbered from its seq; either way, a batch holds at most
:data:`~hyperdash.events.MAX_BATCH_EVENTS` events, a block counting as its lines.

A body of :data:`~hyperdash.events.ATTACHED_TEXT_TYPE` carries its log texts as bytes after the
JSON; each event's ``"bytes": N`` is replaced by the body it names before the same two ways are
taken, so a batch is the same whichever form it came in (a test holds them to it).
"""

from __future__ import annotations

import re
import signal
from operator import itemgetter
from typing import Annotated, Any, Generic, Literal, NoReturn, TypeGuard, TypeVar, cast

import msgspec
import orjson

from .. import events as ev
from .batch import NUMBERED_FROM, Batch, Chunk, Line, Mark, Point, RunPart
from .errors import BadRequest, TooLarge
from .text import clean

__all__ = ["checked_batch", "parse_body", "check_envelopes", "MAX_TIMESTAMP_MS"]

_MAX_SEQ = NUMBERED_FROM  # (the seqs above are the server's own, see batch.NUMBERED_FROM)
_SEQ_RANGE = f"'seq' must be an integer from 1 to {_MAX_SEQ - 1}"
_INT64 = (-(2**63), 2**63 - 1)
# Timestamps: milliseconds from 1970-01-01 to the end of year 9999 (what dates can show).
MAX_TIMESTAMP_MS = 253_402_300_799_999
# Exit codes: 0..255, or minus a signal number (how Python reports a death by signal).
_EXIT_CODES = (-(2**31), 255)
# (a tuple: any JSON value can be looked up; real-time signals by both of their names)
_SIGNALS = tuple({ev.signal_name(s) for s in signal.valid_signals()}
                 | {f"SIGRTMIN+{n}" for n in range(33)} | {f"SIGRTMAX-{n}" for n in range(33)})
_RUN_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_MAX_UUID_CHARS = 128
_MAX_VALUE_CHARS = 64 * 1024
_TYPES = frozenset(ev.EVENT_TYPES)
_FINAL = tuple(ev.FINAL_STATUSES)
_LEVELS = ev.STREAM_OF_LEVEL
_BODY_FAST = ev.MAX_LOG_BODY_BYTES // 4  # characters that cannot exceed the byte limit


def parse_body(body: bytes) -> list[Any]:
    """The request's envelopes as a list (one envelope or a JSON array of them)."""
    if not body or body.isspace():  # (not strip(): that copies the whole body)
        raise BadRequest("the request body is empty; send a JSON envelope or an array of them",
                         code="invalid_json")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if "UTF-8" in str(exc):
            raise BadRequest("the request body is not valid UTF-8", code="invalid_utf8") from None
        raise BadRequest(f"the request body is not valid JSON: {exc}", code="invalid_json") from None
    if isinstance(data, dict):
        return [data]
    if not isinstance(data, list):
        raise BadRequest("the request body must be a JSON object (an envelope) or an array of them",
                         code="invalid_request")
    if len(data) > ev.MAX_BATCH_EVENTS:
        raise TooLarge(f"a batch holds at most {ev.MAX_BATCH_EVENTS} events; this one has {len(data)}",
                       code="batch_too_large")
    return data


def _fail(i: int, message: str, code: str = "invalid_event") -> NoReturn:
    raise BadRequest(f"event {i}: {message}", code=code)


def _too_large(i: int, what: str) -> NoReturn:
    raise BadRequest(f"event {i}: {what} has at most {ev.MAX_LOG_BODY_BYTES} bytes; split longer lines into "
                     f"pieces marked \"partial\"", code="log_too_large")


def _is_number(v: object) -> TypeGuard[int | float]:
    return (type(v) is int or type(v) is float) and v == v and v not in (float("inf"), float("-inf"))


def _timestamp(v: object) -> int | None:
    """``v`` as milliseconds since the epoch, or None when it is not one a date can show."""
    if type(v) is float and v == v and 0 <= v <= MAX_TIMESTAMP_MS:
        return int(v)
    if type(v) is int and 0 <= v <= MAX_TIMESTAMP_MS:
        return v
    return None


def _within(v: object, bounds: tuple[int, int]) -> bool:
    return type(v) is int and bounds[0] <= v <= bounds[1]


# The fields of the common envelope, a plain log line with a seq, read in one step each.
_ENVELOPE_FIELDS = itemgetter("type", "sdk_run_uuid", "timestamp", "seq", "payload")
_LINE_FIELDS = itemgetter("body", "stream")
# Compared with ==, so that a value that cannot be hashed is just not one of them.
_STREAM_NAMES = tuple(ev.STREAMS)


def check_envelopes(envelopes: list[Any], user_id: int, api: str | None) -> Batch:
    """Check every envelope; return them grouped by run, or raise BadRequest/TooLarge."""
    parts: dict[str, RunPart] = {}
    # A stand-in, never stored, until the first run is met (the short path needs a run first).
    part = RunPart("")
    add_line = part.lines.append
    run_uuid_of_part: object = object()  # equal to no JSON value until a run is met
    plain = 0  # lines of ``part`` taken by the short path, not yet counted in part.envelopes
    for i, env in enumerate(envelopes):
        # Most envelopes are plain lines of the same run as the one before: these take a
        # short path, every check of the long one made in as few steps as it takes. Anything
        # else (a missing field, another run, a value out of range) takes the long path.
        try:
            etype, run_uuid, ts, seq, payload = _ENVELOPE_FIELDS(env)
            body, stream = _LINE_FIELDS(payload)
        except (KeyError, TypeError):
            pass
        else:
            if (etype == ev.LOG and run_uuid == run_uuid_of_part
                    and type(ts) is int and 0 <= ts <= MAX_TIMESTAMP_MS
                    and type(seq) is int and 0 < seq < _MAX_SEQ
                    and type(body) is str and len(body) <= _BODY_FAST and "\x00" not in body
                    and stream in _STREAM_NAMES and "partial" not in payload and "progress" not in payload
                    and ev.LINES_FIELD not in payload):
                add_line(Line(seq, ts, stream, body, 0, 0))
                plain += 1
                continue
        if plain:
            part.envelopes += plain
            plain = 0
        part = _check_envelope(i, env, parts, api)
        run_uuid_of_part, add_line = env["sdk_run_uuid"], part.lines.append
    if plain:
        part.envelopes += plain
    events = sum(part.envelopes for part in parts.values())
    if events > ev.MAX_BATCH_EVENTS:  # (blocks of lines count as their lines)
        raise TooLarge(f"a batch holds at most {ev.MAX_BATCH_EVENTS} events (a block of lines counts as its "
                       f"lines); this one has {events}", code="batch_too_large")
    return Batch(user_id, api, parts)


def checked_batch(body: bytes, user_id: int, api: str | None, attached_text: bool = False) -> Batch:
    """The request body checked and grouped by run (:func:`parse_body`, then
    :func:`check_envelopes`), or BadRequest/TooLarge. With ``attached_text``, the body is of
    :data:`~hyperdash.events.ATTACHED_TEXT_TYPE`: the JSON, a newline, the log texts."""
    if attached_text:
        head, text = _split_attached(body)
        batch = _attached_lines_batch(head, text, user_id, api)
        if batch is None:
            batch = check_envelopes(_with_texts(parse_body(head), text), user_id, api)
        return batch
    batch = _plain_lines_batch(body, user_id, api)
    if batch is None:
        batch = check_envelopes(parse_body(body), user_id, api)
    return batch


def _split_attached(body: bytes) -> tuple[bytes, memoryview]:
    """The JSON of a body with attached text, and the text after it."""
    cut = body.find(b"\n")
    if cut < 0:
        raise BadRequest(f"a body of type {ev.ATTACHED_TEXT_TYPE} is the JSON of its events on one line, a "
                         "newline, then their texts; this one has no newline", code="invalid_request")
    return body[:cut], memoryview(body)[cut + 1:]


def _decoded(text: memoryview) -> str:
    return str(text, "utf-8", "replace")


def _with_texts(envelopes: list[Any], text: memoryview) -> list[Any]:
    """``envelopes`` with each log event's ``"bytes": N`` replaced by the ``"body"`` that the next
    N bytes of ``text`` hold; every byte of it must be taken."""
    field = ev.TEXT_BYTES_FIELD
    offset = 0
    for i, env in enumerate(envelopes):
        payload = env.get("payload") if type(env) is dict else None
        if type(payload) is not dict or field not in payload:
            continue
        size = payload.pop(field)
        if env.get("type") != ev.LOG:
            _fail(i, f"only a log event may carry its text after the JSON ('{field}')")
        if "body" in payload:
            _fail(i, f"log '{field}' stands in place of 'body': give one of them")
        left = len(text) - offset
        if type(size) is not int or not 0 <= size <= left:
            _fail(i, f"log '{field}' must be an integer from 0 to {left} (the bytes of text left after the JSON)")
        payload["body"] = _decoded(text[offset:offset + size])
        offset += size
    if offset != len(text):
        raise BadRequest(f"the text after the JSON holds {len(text)} bytes, and its events take {offset}",
                         code="invalid_request")
    return envelopes


# The batch most requests carry: a JSON array of plain log lines, each with its seq, none of
# them partial or progress. msgspec decodes and checks such a body in one pass, without a dict
# per envelope; any other body (or a bad one) goes the general way, which says what is wrong.
class _PlainPayload(msgspec.Struct, gc=False):  # (strings alone: no cycles to collect)
    body: Annotated[str, msgspec.Meta(max_length=_BODY_FAST)]
    stream: Literal[ev.STREAMS]  # type: ignore[valid-type]
    partial: None = None  # present and true or false: not a plain line
    progress: None = None
    lines: Annotated[int, msgspec.Meta(ge=1, le=ev.MAX_BATCH_EVENTS)] | None = None  # a block of lines


# The same with their texts after the JSON: "bytes" in place of "body".
class _AttachedPayload(msgspec.Struct, gc=False):
    bytes: Annotated[int, msgspec.Meta(ge=0, le=ev.MAX_REQUEST_BYTES)]
    stream: Literal[ev.STREAMS]  # type: ignore[valid-type]
    # present, even null: the general way says what is wrong (then the text, once read)
    body: msgspec.UnsetType = msgspec.UNSET
    partial: None = None
    progress: None = None
    lines: Annotated[int, msgspec.Meta(ge=1, le=ev.MAX_BATCH_EVENTS)] | None = None


_Payload = TypeVar("_Payload", _PlainPayload, _AttachedPayload)


class _LogEvent(msgspec.Struct, Generic[_Payload], gc=False):
    type: Literal["log"]
    sdk_run_uuid: str
    timestamp: Annotated[int, msgspec.Meta(ge=0, le=MAX_TIMESTAMP_MS)]
    seq: Annotated[int, msgspec.Meta(gt=0, lt=_MAX_SEQ)]
    payload: _Payload


_PlainLine = _LogEvent[_PlainPayload]
_PLAIN_LINES = msgspec.json.Decoder(list[_PlainLine])
_ATTACHED_LINES = msgspec.json.Decoder(list[_LogEvent[_AttachedPayload]])


def _plain_lines_batch(body: bytes, user_id: int, api: str | None) -> Batch | None:
    """The batch of a body of plain log lines alone, else None."""
    if body[:1] != b"[":
        return None
    try:
        lines = _PLAIN_LINES.decode(body)
    except (msgspec.MsgspecError, ValueError):  # (invalid UTF-8 raises UnicodeDecodeError)
        return None
    # A NUL in a line's text (JSON writes it \u0000) is cleaned on the general way. Without a
    # backslash the body holds none: one byte looked for, far faster than the texts searched.
    if b"\\" in body and "\x00" in "".join([line.payload.body for line in lines]):
        return None
    return _plain_batch(lines, user_id, api)


def _attached_lines_batch(head: bytes, text: memoryview, user_id: int, api: str | None) -> Batch | None:
    """The batch of a body of plain log lines alone whose texts follow the JSON, else None."""
    if head[:1] != b"[":
        return None
    try:
        events = _ATTACHED_LINES.decode(head)
    except (msgspec.MsgspecError, ValueError):
        return None
    # Text that is ASCII (most output) is decoded once, and each event's sliced from it.
    whole: str | None
    try:
        whole = str(text, "ascii")
    except UnicodeDecodeError:
        whole = None
    offset = 0
    for event in events:
        payload = event.payload
        if payload.body is not msgspec.UNSET or payload.lines is None and payload.bytes > _BODY_FAST:
            return None  # (bytes: no more characters)
        end = offset + payload.bytes
        # (read as a plain line's from here on)
        payload.body = whole[offset:end] if whole is not None else _decoded(text[offset:end])  # type: ignore[assignment]
        offset = end
    if offset != len(text) or "\x00" in "".join([event.payload.body for event in events]):  # type: ignore[misc]
        return None  # (a NUL is cleaned on the general way)
    return _plain_batch(events, user_id, api)  # type: ignore[arg-type]


def _plain_batch(lines: list[_PlainLine], user_id: int, api: str | None) -> Batch | None:
    """The batch of plain log lines (some of them blocks), else None."""
    if not lines or len(lines) > ev.MAX_BATCH_EVENTS:
        return None
    parts: dict[str, RunPart] = {}
    run_uuid = lines[0].sdk_run_uuid
    if all(line.sdk_run_uuid == run_uuid for line in lines):  # the usual case: one run
        groups = {run_uuid: lines}
    else:
        groups = {}
        for line in lines:
            groups.setdefault(line.sdk_run_uuid, []).append(line)
    has_blocks = any(line.payload.lines for line in lines)
    # (counted before a block is split: a batch over the limit costs no more than reading it)
    if has_blocks and sum([line.payload.lines or 1 for line in lines]) > ev.MAX_BATCH_EVENTS:
        return None
    for run_uuid, group in groups.items():
        if len(run_uuid) != 36 or not _RUN_UUID.fullmatch(run_uuid):
            return None
        part = parts[run_uuid] = RunPart(run_uuid.lower())
        if has_blocks and any(line.payload.lines for line in group):
            of_blocks = _lines_of_blocks(group)
            if of_blocks is None:
                return None
            part.lines = of_blocks
            part.one_run = _one_run(group)
        else:
            part.lines = [Line(line.seq, line.timestamp, line.payload.stream, line.payload.body, 0, 0)
                          for line in group]
        part.envelopes = len(part.lines)
    return Batch(user_id, api, parts)


def _lines_of_blocks(group: list[_PlainLine]) -> list[Line] | None:
    """The lines of plain log events some of which are blocks of lines, else None (a block
    whose body does not hold its count of lines, each ending in a newline)."""
    out: list[Line] = []
    add, extend = out.append, out.extend
    for event in group:
        payload = event.payload
        count = payload.lines
        body = payload.body
        if count is None:
            add(Line(event.seq, event.timestamp, payload.stream, body, 0, 0))
            continue
        if count == 1 and len(body) <= _BODY_FAST and body.endswith("\n") and body.find("\n") == len(body) - 1:
            # (a block of one line: output that trickles)
            add(Line(event.seq, event.timestamp, payload.stream, body[:-1], 0, 0))
            continue
        texts = _block_texts(body, count)
        if texts is None or event.seq + count > _MAX_SEQ or not _lines_fit(body, texts):
            return None
        extend(_block_lines(event.seq, event.timestamp, payload.stream, texts))
    return out


def _one_run(group: list[_PlainLine]) -> bool:
    """Whether plain log events (blocks or lines) hold one stretch of lines: each envelope's
    first seq the one after the last line of the one before, one time, one stream."""
    first = group[0]
    seq, ts, stream = first.seq, first.timestamp, first.payload.stream
    for event in group:
        if event.seq != seq or event.timestamp != ts or event.payload.stream != stream:
            return False
        seq += event.payload.lines or 1
    return True


def _block_texts(body: str, count: int) -> list[str] | None:
    """The ``count`` lines of a block's body without their newlines, or None when the body is
    not ``count`` lines that each end in a newline."""
    if not body.endswith("\n") or body.count("\n") != count:  # (before a list is made of it)
        return None
    texts = body.split("\n")
    texts.pop()
    return texts


def _lines_fit(body: str, texts: list[str]) -> bool:
    """Whether each of a block's lines (``texts``, of ``body``) is no longer than a log body
    may be (a block has no limit of its own but the request's)."""
    if len(body) <= _BODY_FAST or max(map(len, texts)) <= _BODY_FAST:
        return True
    return all(len(text.encode("utf-8", "surrogatepass")) <= ev.MAX_LOG_BODY_BYTES for text in texts)


def _block_lines(seq: int, ts: int, stream: str, texts: list[str]) -> list[Line]:
    """A block's lines, numbered from ``seq``."""
    return [Line(seq + n, ts, stream, text, 0, 0) for n, text in enumerate(texts)]


def _check_envelope(i: int, env: Any, parts: dict[str, RunPart], api: str | None) -> RunPart:
    """Check one envelope and add it to its run's part (made when new); return that part."""
    if type(env) is not dict:
        _fail(i, "an envelope must be a JSON object")
    etype = env.get("type")
    if type(etype) is not str:
        _fail(i, "'type' is missing or not a string")
    if etype not in _TYPES:
        _fail(i, f"unknown event type {etype!r}; known types: {', '.join(ev.EVENT_TYPES)}",
              code="unknown_type")
    run_uuid = env.get("sdk_run_uuid")
    part = parts.get(run_uuid) if type(run_uuid) is str else None
    if part is None:  # a run first met in this request
        if type(run_uuid) is not str or len(run_uuid) != 36 or not _RUN_UUID.fullmatch(run_uuid):
            _fail(i, "'sdk_run_uuid' must be a UUID such as \"1b4e28ba-2fa1-11d2-883f-0016d3cca427\"")
        part = parts[run_uuid] = RunPart(run_uuid.lower())
    ts = env.get("timestamp")
    if type(ts) is not int or not 0 <= ts <= MAX_TIMESTAMP_MS:
        ts = _timestamp(ts)
    if ts is None:
        _fail(i, f"'timestamp' must be an integer of milliseconds since the epoch, "
                 f"from 0 to {MAX_TIMESTAMP_MS} (the end of year 9999)")
    payload = env.get("payload")
    if type(payload) is not dict:
        if payload is None and etype == ev.HEARTBEAT:
            payload = {}
        else:
            _fail(i, "'payload' must be a JSON object")
    seq = env.get("seq")
    if seq is not None and (type(seq) is not int or not 0 < seq < _MAX_SEQ):
        _fail(i, _SEQ_RANGE)
    part.envelopes += 1

    if etype == ev.LOG:
        _check_log(i, part, seq, ts, payload, parts)
    elif etype == ev.METRIC:
        name = payload.get("name")
        if type(name) is not str or not name or len(name) > ev.MAX_NAME_CHARS:
            _fail(i, f"metric 'name' must be a string of 1 to {ev.MAX_NAME_CHARS} characters")
        value = payload.get("value")
        odd = value if type(value) is str and value in ev.NONFINITE_VALUES else None
        if odd is None and not _is_number(value):
            _fail(i, "metric 'value' must be a finite number, or one of the strings "
                     + ", ".join(ev.NONFINITE_VALUES))
        mts = _timestamp(payload.get("timestamp", ts))
        if mts is None:
            _fail(i, f"metric 'timestamp' must be an integer of milliseconds since the epoch, "
                     f"from 0 to {MAX_TIMESTAMP_MS}")
        step = payload.get("step")
        if step is not None and not _within(step, _INT64):
            _fail(i, "metric 'step' must be a 64-bit integer")
        internal = payload.get("is_internal", False)
        if type(internal) is not bool:
            _fail(i, "metric 'is_internal' must be true or false")
        if odd is not None:  # kept beside the run's marks: the metrics table holds numbers only
            _add(part, part.marks, Mark(seq, mts, ev.METRIC, {"name": clean(name), "value": odd, "step": step,
                                                             "is_internal": internal}))
        else:
            _add(part, part.points, Point(seq, mts, clean(name), float(cast(float, value)), step, int(internal)))
    elif etype == ev.PARAM:
        params = payload.get("params")
        if type(params) is not dict:
            _fail(i, "param 'params' must be a JSON object")
        for key, value in params.items():
            if len(key) > ev.MAX_NAME_CHARS:
                _fail(i, f"param names have at most {ev.MAX_NAME_CHARS} characters")
            if value is not None and type(value) not in (int, float, bool, str):
                _fail(i, f"param {key!r} must be a number, a boolean or a string")
            if type(value) is str and len(value) > _MAX_VALUE_CHARS:
                _fail(i, f"param {key!r} is longer than {_MAX_VALUE_CHARS} characters")
        internal = payload.get("is_internal", False)
        if type(internal) is not bool:
            _fail(i, "param 'is_internal' must be true or false")
        params = {clean(key): clean(value) if type(value) is str else value for key, value in params.items()}
        # (kept only when set, so the params a job records are stored as they always were)
        _add(part, part.marks, Mark(seq, ts, ev.PARAM, {"params": params, "is_internal": True} if internal
                                    else {"params": params}))
    elif etype == ev.RUN_STARTED:
        name = payload.get("job_name")
        if type(name) is not str or len(name) > ev.MAX_NAME_CHARS:
            _fail(i, f"run_started 'job_name' must be a string of at most {ev.MAX_NAME_CHARS} characters")
        host, pid, face = payload.get("host"), payload.get("pid"), payload.get("api")
        if host is not None and (type(host) is not str or len(host) > 300):
            _fail(i, "run_started 'host' must be a string")
        if pid is not None and not _within(pid, (0, _INT64[1])):
            _fail(i, "run_started 'pid' must be an integer from 0 to 2**63-1")
        if face is not None and (type(face) is not str or len(face) > 32):
            _fail(i, "run_started 'api' must be a string")
        stall_after = payload.get("stall_after")
        if stall_after is not None and (not _is_number(stall_after)
                                        or not 0 <= stall_after <= ev.MAX_STALL_AFTER_S):
            _fail(i, f"run_started 'stall_after' must be a number of seconds from 0 (off) to "
                     f"{ev.MAX_STALL_AFTER_S:g}")
        started = {"job_name": clean(name), "host": host and clean(host), "pid": pid,
                   "api": clean(face) if face else api}
        if stall_after is not None:
            started["stall_after"] = stall_after
        _add(part, part.marks, Mark(seq, ts, ev.RUN_STARTED, started))
    elif etype == ev.ALERT:
        try:
            rule = ev.check_alert(payload)
        except ValueError as exc:
            _fail(i, f"alert: {exc}")
        _add(part, part.marks, Mark(seq, ts, ev.ALERT, {**rule, "metric": clean(rule["metric"])}))
    elif etype == ev.RUN_ENDED:
        status = payload.get("final_status")
        if status not in _FINAL:
            _fail(i, f"run_ended 'final_status' must be one of {', '.join(ev.FINAL_STATUSES)}")
        code, sig = payload.get("exit_code"), payload.get("signal")
        if code is not None and not _within(code, _EXIT_CODES):
            _fail(i, "run_ended 'exit_code' must be an integer from 0 to 255, or minus a signal number")
        if sig is not None and sig not in _SIGNALS:
            _fail(i, "run_ended 'signal' must be null or a signal name such as \"SIGTERM\"")
        _add(part, part.marks, Mark(seq, ts, ev.RUN_ENDED,
                                    {"final_status": status, "exit_code": code, "signal": sig}))
    # (a heartbeat is counted among the envelopes and nothing more: it only marks the run alive)
    return part


_PointOrMark = TypeVar("_PointOrMark", Point, Mark)


def _add(part: RunPart, group: list[_PointOrMark], event: _PointOrMark) -> None:
    """Add a point or mark to ``group`` of its run, or, without a seq, to the events numbered
    when stored."""
    if event.seq is not None:
        group.append(event)
    else:
        part.unsequenced.append(event)


def _check_log(i: int, part: RunPart, seq: int | None, ts: int, payload: dict[str, Any],
               parts: dict[str, RunPart]) -> None:
    body = payload.get("body")
    if type(body) is not str:
        _fail(i, "log 'body' must be a string")
    if len(body) > _BODY_FAST and payload.get(ev.LINES_FIELD) is None and \
            len(body.encode("utf-8", "surrogatepass")) > ev.MAX_LOG_BODY_BYTES:  # (a block: each line)
        _too_large(i, "a log body")
    stream = payload.get("stream")
    if stream is None:
        level = payload.get("level", "INFO")
        stream = _LEVELS.get(level) if type(level) is str else None
        if stream is None:
            _fail(i, "log 'level' must be \"INFO\" or \"ERROR\"")
    elif stream not in _STREAM_NAMES:
        _fail(i, "log 'stream' must be \"stdout\" or \"stderr\"")
    partial = payload.get("partial")
    progress = payload.get("progress")
    if partial is None and progress is None:  # the common case
        partial = progress = 0
    else:
        partial = False if partial is None else partial
        progress = False if progress is None else progress
        if type(partial) is not bool or type(progress) is not bool:
            _fail(i, "log 'partial' and 'progress' must be true or false")
        partial, progress = int(partial), int(progress)
        part.has_progress = part.has_progress or bool(progress)
    if "\x00" in body:
        body = clean(body)
    count = payload.get(ev.LINES_FIELD)
    if count is not None:
        # (the events before this one: this one is counted in its part already)
        events_before = sum(other.envelopes for other in parts.values()) - 1
        _check_block(i, part, seq, ts, stream, body, count, partial or progress, events_before)
        return
    if seq is not None:
        part.lines.append(Line(seq, ts, stream, body, partial, progress))
        return
    # A chunk of output from an original client: cut into lines when stored (ingest._number).
    chunk_id = payload.get("uuid")
    if chunk_id is not None and (type(chunk_id) is not str or not chunk_id or len(chunk_id) > _MAX_UUID_CHARS):
        _fail(i, f"log 'uuid' must be a string of 1 to {_MAX_UUID_CHARS} characters")
    if chunk_id is not None:  # (a NUL in it is no reason to retry or drop the lines: keep them)
        chunk_id = clean(chunk_id)
    part.unsequenced.append(Chunk(ts, stream, body, partial, progress, chunk_id))


def _check_block(i: int, part: RunPart, seq: int | None, ts: int, stream: str, body: str, count: object,
                 flagged: int, events_before: int) -> None:
    """A block of lines (``"lines": count``): its lines, numbered from ``seq``, join the part.
    ``events_before``: the events of the request before this one."""
    if type(count) is not int or not 1 <= count <= ev.MAX_BATCH_EVENTS:
        _fail(i, f"log 'lines' must be an integer from 1 to {ev.MAX_BATCH_EVENTS}")
    if events_before + count > ev.MAX_BATCH_EVENTS:  # (refused before the block is split)
        raise TooLarge(f"a batch holds at most {ev.MAX_BATCH_EVENTS} events (a block of lines counts as its "
                       f"lines); this one has more", code="batch_too_large")
    if seq is None:
        _fail(i, "a block of lines (log 'lines') needs a 'seq', the seq of its first line")
    if flagged:
        _fail(i, "a block of lines (log 'lines') cannot be 'partial' or 'progress'")
    if seq + count > _MAX_SEQ:
        _fail(i, _SEQ_RANGE)
    texts = _block_texts(body, count)
    if texts is None:
        _fail(i, f"log 'body' must hold exactly {count} lines (log 'lines'), each ending in a newline")
    if not _lines_fit(body, texts):
        _too_large(i, "a line of a block of lines")
    part.lines.extend(_block_lines(seq, ts, stream, texts))
    part.envelopes += count - 1  # (the envelope itself is counted already)

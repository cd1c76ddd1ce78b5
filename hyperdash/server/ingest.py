"""Ingest: check a request's envelopes, then store them in one writer job.

A request is checked whole before anything is stored, so bad input changes nothing. Each
``(run, seq)`` is stored once; envelopes without ``seq`` (the original clients) get the next
numbers of their run. Their log bodies are chunks of output, not lines: the text after a chunk's
last newline is held per (run, stream) and joined to the next chunk of that stream (stored as a
line when the run ends), and a log envelope resent with the same ``payload.uuid`` is stored once.
Heartbeats are not stored; they only mark the run as alive. The reply counts every envelope as
either stored or duplicate.
"""

from __future__ import annotations

import re
import signal
import sqlite3
import time
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import chain
from operator import itemgetter
from typing import Annotated, Any, Literal

import msgspec
import orjson
from sqlalchemy import and_, bindparam, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from .. import events as ev
from .errors import BadRequest, TooLarge
from .store import log_envelopes, log_tails, logs, metrics, run_events, runs, streams
from .views import iso, run_json

__all__ = ["checked_batch", "parse_body", "check_envelopes", "Batch", "Stored", "RunCache", "store_batch", "mark_lost"]

_MAX_SEQ = 2**62
_INT64 = (-(2**63), 2**63 - 1)
# Timestamps: milliseconds from 1970-01-01 to the end of year 9999 (what dates can show).
MAX_TIMESTAMP_MS = 253_402_300_799_999
# Exit codes: 0..255, or minus a signal number (how Python reports a death by signal).
_EXIT_CODES = (-(2**31), 255)
_SIGNALS = tuple(s.name for s in signal.Signals)  # a tuple: any JSON value can be looked up
_RUN_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_MAX_UUID_CHARS = 128
# Output held back for want of a newline: past this many characters it is stored as a piece
# marked partial (continued by the next), so what is held stays small.
_MAX_TAIL_CHARS = ev.MAX_LINE_BYTES
_MAX_VALUE_CHARS = 64 * 1024
_TYPES = frozenset(ev.EVENT_TYPES)
_FINAL = tuple(ev.FINAL_STATUSES)
_LEVELS = ev.STREAM_OF_LEVEL
_BODY_FAST = ev.MAX_LOG_BODY_BYTES // 4  # characters that cannot exceed the byte limit


def parse_body(body: bytes) -> list:
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


@dataclass
class RunPart:
    """The checked events of one run in a request, in the order they came."""

    uuid: str
    # Events that came with a seq.
    # (seq, ts, stream, text, partial, progress)
    lines: list = field(default_factory=list)
    # (seq, ts, name, value, step, is_internal)
    points: list = field(default_factory=list)
    # (seq, ts, type, payload)
    marks: list = field(default_factory=list)
    # Events without a seq, in the order they came: (group, event) where group is "lines"
    # (event: a chunk of output (None, ts, stream, body, partial, progress, payload uuid)),
    # "points" or "marks" (event as above, its seq None).
    unsequenced: list = field(default_factory=list)
    envelopes: int = 0
    heartbeats: int = 0
    has_progress: bool = False

    def add(self, group: str, event: tuple) -> None:
        if event[0] is None:
            self.unsequenced.append((group, event))
        else:
            getattr(self, group).append(event)


@dataclass
class Batch:
    user_id: int
    api: str | None
    parts: dict[str, RunPart]


def _fail(i: int, message: str, code: str = "invalid_event"):
    raise BadRequest(f"event {i}: {message}", code=code)


def _text(value: str) -> str:
    # PostgreSQL text cannot hold NUL; keep one behaviour on every store.
    return value.replace("\x00", "\ufffd") if "\x00" in value else value


def _is_int(v) -> bool:
    return type(v) is int


def _is_number(v) -> bool:
    return (type(v) is int or type(v) is float) and v == v and v not in (float("inf"), float("-inf"))


def _timestamp(v) -> int | None:
    """``v`` as milliseconds since the epoch, or None when it is not one a date can show."""
    if type(v) is float and v == v and 0 <= v <= MAX_TIMESTAMP_MS:
        return int(v)
    if type(v) is int and 0 <= v <= MAX_TIMESTAMP_MS:
        return v
    return None


def _within(v, bounds: tuple[int, int]) -> bool:
    return type(v) is int and bounds[0] <= v <= bounds[1]


# The fields of the common envelope, a plain log line with a seq, read in one step each.
_ENVELOPE_FIELDS = itemgetter("type", "sdk_run_uuid", "timestamp", "seq", "payload")
_LINE_FIELDS = itemgetter("body", "stream")
# Compared with ==, so that a value that cannot be hashed is just not one of them.
_STREAM_NAMES = tuple(ev.STREAMS)


def check_envelopes(envelopes: list, user_id: int, api: str | None) -> Batch:
    """Check every envelope; return them grouped by run, or raise BadRequest/TooLarge."""
    parts: dict[str, RunPart] = {}
    part = add_line = None
    run_uuid_of_part = object()  # equal to no JSON value until a run is met
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
                    and stream in _STREAM_NAMES and "partial" not in payload and "progress" not in payload):
                add_line((seq, ts, stream, body, 0, 0))
                plain += 1
                continue
        if plain:
            part.envelopes += plain
            plain = 0
        part = _check_envelope(i, env, parts, api)
        run_uuid_of_part, add_line = env["sdk_run_uuid"], part.lines.append
    if plain:
        part.envelopes += plain
    return Batch(user_id, api, parts)


def checked_batch(body: bytes, user_id: int, api: str | None) -> Batch:
    """The request body checked and grouped by run (:func:`parse_body`, then
    :func:`check_envelopes`), or BadRequest/TooLarge."""
    batch = _plain_lines_batch(body, user_id, api)
    if batch is None:
        batch = check_envelopes(parse_body(body), user_id, api)
    return batch


# The batch most requests carry: a JSON array of plain log lines, each with its seq, none of
# them partial or progress. msgspec decodes and checks such a body in one pass, without a dict
# per envelope; any other body (or a bad one) goes the general way, which says what is wrong.
class _PlainPayload(msgspec.Struct, gc=False):  # (strings alone: no cycles to collect)
    body: Annotated[str, msgspec.Meta(max_length=_BODY_FAST)]
    stream: Literal[ev.STREAMS]  # type: ignore[valid-type]
    partial: None = None  # present and true or false: not a plain line
    progress: None = None


class _PlainLine(msgspec.Struct, gc=False):
    type: Literal["log"]
    sdk_run_uuid: str
    timestamp: Annotated[int, msgspec.Meta(ge=0, le=MAX_TIMESTAMP_MS)]
    seq: Annotated[int, msgspec.Meta(gt=0, lt=_MAX_SEQ)]
    payload: _PlainPayload


_PLAIN_LINES = msgspec.json.Decoder(list[_PlainLine])


def _plain_lines_batch(body: bytes, user_id: int, api: str | None) -> Batch | None:
    """The batch of a body of plain log lines alone, else None."""
    if body[:1] != b"[" or b"\\u0000" in body:  # (JSON writes a NUL in a string as \u0000)
        return None
    try:
        lines = _PLAIN_LINES.decode(body)
    except (msgspec.MsgspecError, ValueError):  # (invalid UTF-8 raises UnicodeDecodeError)
        return None
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
    for run_uuid, group in groups.items():
        if len(run_uuid) != 36 or not _RUN_UUID.fullmatch(run_uuid):
            return None
        part = parts[run_uuid] = RunPart(run_uuid.lower(), envelopes=len(group))
        part.lines = [(line.seq, line.timestamp, line.payload.stream, line.payload.body, 0, 0) for line in group]
    return Batch(user_id, api, parts)


def _check_envelope(i: int, env, parts: dict[str, RunPart], api: str | None) -> RunPart:
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
        _fail(i, "'seq' must be a positive integer")
    part.envelopes += 1

    if etype == ev.LOG:
        _check_log(i, part, seq, ts, payload)
    elif etype == ev.METRIC:
        name = payload.get("name")
        if type(name) is not str or not name or len(name) > ev.MAX_NAME_CHARS:
            _fail(i, f"metric 'name' must be a string of 1 to {ev.MAX_NAME_CHARS} characters")
        value = payload.get("value")
        if not _is_number(value):
            _fail(i, "metric 'value' must be a finite number")
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
        part.add("points", (seq, mts, _text(name), float(value), step, int(internal)))
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
        part.add("marks", (seq, ts, ev.PARAM, {"params": params}))
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
        part.add("marks", (seq, ts, ev.RUN_STARTED, {
            "job_name": _text(name), "host": host and _text(host), "pid": pid,
            "api": _text(face) if face else api,
        }))
    elif etype == ev.RUN_ENDED:
        status = payload.get("final_status")
        if status not in _FINAL:
            _fail(i, f"run_ended 'final_status' must be one of {', '.join(ev.FINAL_STATUSES)}")
        code, sig = payload.get("exit_code"), payload.get("signal")
        if code is not None and not _within(code, _EXIT_CODES):
            _fail(i, "run_ended 'exit_code' must be an integer from 0 to 255, or minus a signal number")
        if sig is not None and sig not in _SIGNALS:
            _fail(i, "run_ended 'signal' must be null or a signal name such as \"SIGTERM\"")
        part.add("marks", (seq, ts, ev.RUN_ENDED,
                           {"final_status": status, "exit_code": code, "signal": sig}))
    else:  # heartbeat
        part.heartbeats += 1
    return part


def _check_log(i: int, part: RunPart, seq, ts: int, payload: dict) -> None:
    body = payload.get("body")
    if type(body) is not str:
        _fail(i, "log 'body' must be a string")
    if len(body) > _BODY_FAST and len(body.encode("utf-8", "surrogatepass")) > ev.MAX_LOG_BODY_BYTES:
        raise BadRequest(
            f"event {i}: a log body has at most {ev.MAX_LOG_BODY_BYTES} bytes; split longer lines "
            f"into pieces marked \"partial\"", code="log_too_large",
        )
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
        body = _text(body)
    if seq is not None:
        part.lines.append((seq, ts, stream, body, partial, progress))
        return
    # A chunk of output from an original client: cut into lines when stored (see _number).
    chunk_id = payload.get("uuid")
    if chunk_id is not None and (type(chunk_id) is not str or not chunk_id or len(chunk_id) > _MAX_UUID_CHARS):
        _fail(i, f"log 'uuid' must be a string of 1 to {_MAX_UUID_CHARS} characters")
    part.add("lines", (None, ts, stream, body, partial, progress, chunk_id))


# --- storing ----------------------------------------------------------------------------------

# Rows are tuples in these orders (logs: the table's own order, so nothing is reordered).
LOG_COLUMNS = ("run_id", "seq", "stream", "text", "ts", "partial", "progress", "superseded")
METRIC_COLUMNS = ("run_id", "seq", "ts", "name", "value", "step", "is_internal")
MARK_COLUMNS = ("run_id", "seq", "ts", "type", "payload")
_INSERT_SQL: dict[tuple, tuple] = {}
_SEQ_OF = itemgetter(0)  # of a line, point or mark
_STREAM_OF = itemgetter(2)  # of a line


def _insert_many(conn: Connection, table, columns: tuple[str, ...], rows: list[tuple]) -> None:
    """``INSERT ... ON CONFLICT DO NOTHING`` of many rows, compiled once per dialect.

    SQLAlchemy's per-row parameter handling costs more than the insert itself, and these
    columns need none, so the rows go straight to the driver. On SQLite they go as multi-row
    ``VALUES`` statements: the driver's executemany gives up the GIL once per row, and taking
    it back from busy request handlers costs far more than the row."""
    dialect = conn.dialect
    key = (dialect.name, table.name, columns)
    cached = _INSERT_SQL.get(key)
    if cached is None:
        if dialect.name == "postgresql":
            stmt = postgresql.insert(table).on_conflict_do_nothing()
        elif dialect.name == "sqlite":
            stmt = sqlite.insert(table).on_conflict_do_nothing()
        else:
            stmt = table.insert()
        compiled = stmt.compile(dialect=dialect, column_keys=list(columns))
        order = tuple(compiled.positiontup) if dialect.positional else columns
        reorder = itemgetter(*(columns.index(c) for c in order)) if order != columns else None
        cached = _INSERT_SQL[key] = (compiled.string, reorder)
    sql, reorder = cached
    if reorder is not None:
        rows = [reorder(row) for row in rows]
    if dialect.name == "sqlite":
        per_statement = max(1, _SQLITE_MAX_VARIABLES // len(columns))
        for start in range(0, len(rows), per_statement):
            chunk = rows[start:start + per_statement]
            conn.exec_driver_sql(_sqlite_multirow(sql, len(columns), len(chunk)),
                                 tuple(chain.from_iterable(chunk)))
        return
    if not dialect.positional:
        rows = [dict(zip(columns, row)) for row in rows]
    conn.exec_driver_sql(sql, rows)


# Statements every batch runs, built once: building them anew costs more than running them.
_RUN_SEEN = update(runs).where(runs.c.id == bindparam("run")).values(
    last_seen_at=bindparam("seen"), max_seq=bindparam("top"))
_STREAM_NEW = streams.insert().values(
    run_id=bindparam("run"), stream=bindparam("name"), max_seq=bindparam("top"), progress_seq=bindparam("progress"))
_STREAM_SET = update(streams).where(streams.c.run_id == bindparam("run"), streams.c.stream == bindparam("name")).values(
    max_seq=bindparam("top"), progress_seq=bindparam("progress"))
_COMPILED: dict[tuple, tuple] = {}


def _execute(conn: Connection, stmt, params: dict) -> None:
    """Run a prepared statement straight through the driver (compiled once per dialect)."""
    key = (conn.dialect.name, id(stmt))
    cached = _COMPILED.get(key)
    if cached is None:
        compiled = stmt.compile(dialect=conn.dialect)
        order = tuple(compiled.positiontup) if conn.dialect.positional else None
        cached = _COMPILED[key] = (compiled.string, order)
    sql, order = cached
    conn.exec_driver_sql(sql, tuple(params[k] for k in order) if order else params)


# SQLite's limit on parameters in one statement (999 before 3.32).
_SQLITE_MAX_VARIABLES = 32766 if sqlite3.sqlite_version_info >= (3, 32, 0) else 999


@lru_cache(maxsize=64)
def _sqlite_multirow(sql: str, width: int, count: int) -> str:
    """``INSERT ... VALUES (?, ...)`` made to insert ``count`` rows at once."""
    group = "(" + ", ".join("?" * width) + ")"
    head, found, tail = sql.partition(group)
    if not found:
        raise RuntimeError(f"unexpected insert statement: {sql}")
    return head + ", ".join([group] * count) + tail


@dataclass
class Stored:
    stored: int
    duplicates: int
    # news for the live streams (see hyperdash.server.live), newsed after the commit
    news: list


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class RunCache:
    """What the writer knows of the runs it wrote lately, so that a batch needs no reads.

    Only the writer thread uses it (it is the only writer, so the cache cannot go stale) and
    it must be cleared whenever a transaction is rolled back.
    """

    MAX_RUNS = 10_000

    def __init__(self):
        self.runs: dict[tuple[int, str], dict] = {}
        self.streams: dict[tuple[int, str], tuple[int, int | None] | None] = {}

    def clear(self) -> None:
        self.runs.clear()
        self.streams.clear()

    def run(self, conn: Connection, user_id: int, run_uuid: str) -> dict | None:
        key = (user_id, run_uuid)
        run = self.runs.get(key)
        if run is None:
            row = conn.execute(select(runs).where(runs.c.user_id == user_id, runs.c.uuid == run_uuid)).first()
            if row is None:
                return None
            run = self.remember(row._asdict())
        return run

    def remember(self, run: dict) -> dict:
        if len(self.runs) >= self.MAX_RUNS:
            self.clear()
        self.runs[(run["user_id"], run["uuid"])] = run
        return run

    def stream(self, conn: Connection, run_id: int, stream: str):
        """``(max_seq, progress_seq)`` of a run's stream, or None when it has no lines yet."""
        key = (run_id, stream)
        if key not in self.streams:
            row = conn.execute(
                select(streams.c.max_seq, streams.c.progress_seq)
                .where(streams.c.run_id == run_id, streams.c.stream == stream)
            ).first()
            self.streams[key] = (row.max_seq, row.progress_seq) if row else None
        return self.streams[key]


def store_batch(conn: Connection, batch: Batch, cache: RunCache | None = None) -> Stored:
    """Store a checked batch (a writer job). The news it returns is turned into JSON later,
    and only for streams somebody follows."""
    cache = cache if cache is not None else RunCache()
    now = _now_ms()
    stored = duplicates = 0
    news: list = []
    for part in batch.parts.values():
        s, d = _store_part(conn, cache, batch, part, now, news)
        stored += s
        duplicates += d
    return Stored(stored, duplicates, news)


def _store_part(conn: Connection, cache: RunCache, batch: Batch, part: RunPart, now: int, news: list):
    user_id = batch.user_id
    run = cache.run(conn, user_id, part.uuid)
    created = run is None
    if created:
        first_ts = min((e[1] for e in chain(part.lines, part.points, part.marks,
                                             (e for _, e in part.unsequenced))), default=now)
        run = {"user_id": user_id, "uuid": part.uuid, "name": None, "status": ev.RUNNING,
               "started_at": first_ts, "ended_at": None, "last_seen_at": now, "exit_code": None,
               "signal": None, "host": None, "pid": None, "api": batch.api, "max_seq": 0}
        run["id"] = conn.execute(runs.insert().values(**run)).inserted_primary_key[0]
        cache.remember(run)
    run_id = run["id"]
    before = (run["status"], run["name"])

    # Number what came without a seq, after everything this run holds or this batch brings.
    top = max(run["max_seq"], max(map(_SEQ_OF, chain(part.lines, part.points, part.marks)), default=0))
    all_lines, all_points, all_marks = part.lines, part.points, part.marks
    resent = 0
    if part.unsequenced or any(m[2] == ev.RUN_ENDED for m in part.marks):
        all_lines, all_points, all_marks = list(part.lines), list(part.points), list(part.marks)
        top, resent = _number(conn, run_id, part, top, all_lines, all_points, all_marks)

    lines, points, marks = _drop_duplicates(conn, run_id, run["max_seq"], all_lines, all_points, all_marks)
    # Envelopes with a seq are duplicates row by row; chunks of output by their uuid.
    duplicates = (len(all_lines) + len(all_points) + len(all_marks) - len(lines) - len(points) - len(marks)
                  + resent)
    stored = part.envelopes - duplicates

    shown = _store_lines(conn, cache, run_id, lines, part.has_progress) if lines else []
    if points:
        _insert_many(conn, metrics, METRIC_COLUMNS, [(run_id, *p) for p in points])
    if marks:
        _insert_many(conn, run_events, MARK_COLUMNS,
                     [(run_id, m[0], m[1], m[2], orjson.dumps(m[3]).decode()) for m in marks])

    changes: dict[str, Any] = {"last_seen_at": now}
    if top > run["max_seq"]:
        changes["max_seq"] = top
    for _seq, ts, mtype, payload in sorted(marks, key=lambda m: m[0]):
        if mtype == ev.RUN_STARTED:
            changes.update(name=payload["job_name"], started_at=ts, host=payload["host"],
                           pid=payload["pid"])
            if payload["api"]:
                changes["api"] = payload["api"]
        elif mtype == ev.RUN_ENDED:
            changes.update(status=payload["final_status"], ended_at=ts, exit_code=payload["exit_code"],
                           signal=payload["signal"])
    if run["status"] == ev.LOST and "status" not in changes and run["ended_at"] is None:
        changes["status"] = ev.RUNNING
    if changes.keys() <= {"last_seen_at", "max_seq"}:  # most batches: a prepared statement
        _execute(conn, _RUN_SEEN, {"run": run_id, "seen": now, "top": changes.get("max_seq", run["max_seq"])})
    else:
        conn.execute(update(runs).where(runs.c.id == run_id).values(**changes))
    run.update(changes)

    status = run_json(run) if created or (run["status"], run["name"]) != before else None
    if status is not None:
        news.append((user_id, None, lambda: [(None, "run", status)]))
    if shown or points or marks or status is not None:
        news.append((user_id, part.uuid, run_news(shown, points, marks, status, run["max_seq"])))
    return stored, duplicates


def run_news(lines: list, points: list, marks: list, status: dict | None, last_seq: int):
    """Build the events of one stored batch of a run, in seq order, when someone follows it."""

    def build() -> list[tuple]:
        found = [(seq, "log", {"seq": seq, "stream": stream, "text": text, "timestamp": iso(ts),
                               "partial": bool(partial), "progress": bool(progress)})
                 for seq, ts, stream, text, partial, progress in lines]
        found += [(p[0], "metric", {"name": p[2], "value": p[3], "step": p[4], "timestamp": iso(p[1])})
                  for p in points]
        found += [(m[0], "param", m[3]) for m in marks if m[2] == ev.PARAM]
        found.sort(key=lambda item: item[0])
        if status is not None:
            found.append((last_seq, "status", status))
        return found

    return build


def _number(conn: Connection, run_id: int, part: RunPart, top: int,
            lines: list, points: list, marks: list) -> tuple[int, int]:
    """Give the events without a seq the numbers after ``top``, in the order they came, and
    cut chunks of output into lines (adding to ``lines``, ``points``, ``marks``). Returns the
    new top and how many chunks were resent copies."""
    chunk_ids = {e[6] for group, e in part.unsequenced if group == "lines" and e[6] is not None}
    seen: set[str] = set()
    if chunk_ids:
        seen.update(conn.execute(select(log_envelopes.c.uuid).where(
            log_envelopes.c.run_id == run_id, log_envelopes.c.uuid.in_(sorted(chunk_ids)))).scalars())
    held = {row.stream: (row.text, row.ts) for row in conn.execute(
        select(log_tails.c.stream, log_tails.c.text, log_tails.c.ts).where(log_tails.c.run_id == run_id))}
    tails = dict(held)
    new_ids: list[str] = []
    resent = 0

    def flush_tails() -> None:
        nonlocal top
        for stream in sorted(tails):
            top += 1
            lines.append((top, tails[stream][1], stream, tails[stream][0], 0, 0))
        tails.clear()

    for group, e in part.unsequenced:
        if group == "lines":
            _, ts, stream, body, partial, progress, chunk_id = e
            if chunk_id is not None:
                if chunk_id in seen:
                    resent += 1
                    continue
                seen.add(chunk_id)
                new_ids.append(chunk_id)
            if stream in tails:  # the start of the first line came earlier
                text, ts = tails.pop(stream)
                body = text + body
            *whole, rest = body.split("\n")
            for line in whole:
                top += 1
                lines.append((top, ts, stream, line[:-1] if line.endswith("\r") else line, partial, progress))
            if len(rest) > _MAX_TAIL_CHARS:
                top += 1
                lines.append((top, ts, stream, rest, 1, 0))
            elif rest:
                tails[stream] = (rest, ts)
            continue
        if e[2] == ev.RUN_ENDED:
            flush_tails()  # the run's last output goes before its end
        top += 1
        (points if group == "points" else marks).append((top, *e[1:]))
    if any(m[2] == ev.RUN_ENDED for m in part.marks):
        flush_tails()

    if new_ids:
        _insert_many(conn, log_envelopes, ("run_id", "uuid"), [(run_id, u) for u in new_ids])
    if tails != held:
        conn.execute(delete(log_tails).where(log_tails.c.run_id == run_id))
        if tails:
            _insert_many(conn, log_tails, ("run_id", "stream", "text", "ts"),
                         [(run_id, stream, text, ts) for stream, (text, ts) in tails.items()])
    return top, resent


def _drop_duplicates(conn: Connection, run_id: int, max_seq: int, *groups: list):
    """The events of ``groups`` (lines, points, marks) not yet stored (nor repeated earlier in
    the same batch)."""
    seqs = list(map(_SEQ_OF, chain.from_iterable(groups)))
    if not seqs:
        return [], [], []
    low = min(seqs)
    if low > max_seq and len(set(seqs)) == len(seqs):
        return groups
    seen: set[int] = set()
    if low <= max_seq:
        high = max(seqs)
        for table in (logs, metrics, run_events):
            seen.update(conn.execute(
                select(table.c.seq).where(table.c.run_id == run_id, table.c.seq.between(low, high))
            ).scalars())
    result = []
    for group in groups:
        kept = []
        for e in group:
            if e[0] not in seen:
                seen.add(e[0])
                kept.append(e)
        result.append(kept)
    return result


def _store_lines(conn: Connection, cache: RunCache, run_id: int, lines: list, has_progress: bool) -> list[tuple]:
    """Insert ``lines``, marking each progress line that a later line of its stream replaced
    as superseded (in this batch or already stored). Returns the lines to show, as they came."""
    if not has_progress:
        # No progress line in the batch: only a stored one can be replaced.
        tops: dict[str, int] = {}
        if len(set(map(_STREAM_OF, lines))) == 1:  # the usual case, done without a loop
            tops[lines[0][2]] = max(map(_SEQ_OF, lines))
        else:
            for line in lines:
                if line[0] > tops.get(line[2], 0):
                    tops[line[2]] = line[0]
        for stream, top in tops.items():
            _advance_stream(conn, cache, run_id, stream, top)
        if conn.dialect.name == "sqlite":
            _insert_plain_lines_sqlite(conn, run_id, lines)
        else:
            _insert_many(conn, logs, LOG_COLUMNS, [(run_id, seq, stream, text, ts, partial, progress, 0)
                                                   for seq, ts, stream, text, partial, progress in lines])
        return lines
    rows = [(run_id, seq, stream, text, ts, partial, progress, 0)
            for seq, ts, stream, text, partial, progress in lines]
    found: dict[str, list[int]] = {}  # stream -> indexes of its rows
    for k, line in enumerate(lines):
        found.setdefault(line[2], []).append(k)
    for stream, indexes in found.items():
        state = cache.stream(conn, run_id, stream)
        max_seq, progress_seq = state if state else (0, None)
        indexes.sort(key=lambda k: rows[k][1])
        live = None  # the index of the current progress line, when it is in this batch
        for k in indexes:
            seq, progress = rows[k][1], rows[k][6]
            if seq < max_seq:
                if progress:  # a late copy of a line already replaced
                    rows[k] = _superseded(rows[k])
                continue
            if progress_seq is not None:
                if live is not None:
                    rows[live] = _superseded(rows[live])
                else:
                    conn.execute(update(logs).where(and_(logs.c.run_id == run_id, logs.c.seq == progress_seq))
                                 .values(superseded=1, text=""))
            max_seq = seq
            progress_seq, live = (seq, k) if progress else (None, None)
        _save_stream(conn, cache, run_id, stream, state, (max_seq, progress_seq))
    _insert_many(conn, logs, LOG_COLUMNS, rows)
    return [line for line, row in zip(lines, rows) if not row[7]]


# Plain lines of one run on SQLite: the run's id bound once as ?1, each line's tuple as it is
# (no row built per line: at ingest rates that copying costs as much as the insert).
_PLAIN_LINE_COLUMNS = ("run_id", "seq", "ts", "stream", "text", "partial", "progress", "superseded")
_PLAIN_LINE_VALUES = "(?1, ?, ?, ?, ?, ?, ?, 0)"
_PLAIN_LINES_PER_STATEMENT = (_SQLITE_MAX_VARIABLES - 1) // 6


@lru_cache(maxsize=64)
def _sqlite_plain_lines_sql(count: int) -> str:
    columns = ", ".join(_PLAIN_LINE_COLUMNS)
    return (f"INSERT INTO {logs.name} ({columns}) VALUES "
            + ", ".join([_PLAIN_LINE_VALUES] * count) + " ON CONFLICT DO NOTHING")


def _insert_plain_lines_sqlite(conn: Connection, run_id: int, lines: list) -> None:
    for start in range(0, len(lines), _PLAIN_LINES_PER_STATEMENT):
        chunk = lines[start:start + _PLAIN_LINES_PER_STATEMENT]
        conn.exec_driver_sql(_sqlite_plain_lines_sql(len(chunk)), (run_id, *chain.from_iterable(chunk)))


def _advance_stream(conn: Connection, cache: RunCache, run_id: int, stream: str, top: int) -> None:
    """Lines up to seq ``top`` (none of them progress) arrived on a stream."""
    state = cache.stream(conn, run_id, stream)
    max_seq, progress_seq = state if state else (0, None)
    if progress_seq is not None and top > progress_seq:
        conn.execute(update(logs).where(and_(logs.c.run_id == run_id, logs.c.seq == progress_seq))
                     .values(superseded=1, text=""))
        progress_seq = None
    _save_stream(conn, cache, run_id, stream, state, (max(max_seq, top), progress_seq))


def _save_stream(conn: Connection, cache: RunCache, run_id: int, stream: str, old, new: tuple) -> None:
    params = {"run": run_id, "name": stream, "top": new[0], "progress": new[1]}
    if old is None:
        _execute(conn, _STREAM_NEW, params)
    elif new != old:
        _execute(conn, _STREAM_SET, params)
    cache.streams[(run_id, stream)] = new


def _superseded(row: tuple) -> tuple:
    return (*row[:3], "", *row[4:7], 1)  # nobody will read its text again


def mark_lost(conn: Connection, timeout_s: float, cache: RunCache | None = None,
              now_ms: int | None = None) -> Stored:
    """Mark running runs silent for longer than ``timeout_s`` as lost (as of ``now_ms``,
    default now); what to news."""
    cutoff = (_now_ms() if now_ms is None else now_ms) - int(timeout_s * 1000)
    rows = conn.execute(
        select(runs).where(runs.c.status == ev.RUNNING, runs.c.last_seen_at < cutoff)
    ).all()
    news = []
    for row in rows:
        conn.execute(update(runs).where(runs.c.id == row.id, runs.c.status == ev.RUNNING)
                     .values(status=ev.LOST))
        run = row._asdict()
        run["status"] = ev.LOST
        if cache is not None and (row.user_id, row.uuid) in cache.runs:
            cache.runs[(row.user_id, row.uuid)]["status"] = ev.LOST
        data = run_json(run)
        news.append((run["user_id"], None, lambda data=data: [(None, "run", data)]))
        news.append((run["user_id"], run["uuid"], run_news([], [], [], data, run["max_seq"])))
    return Stored(0, 0, news)

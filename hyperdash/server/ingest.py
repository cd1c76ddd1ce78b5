"""Storing a checked batch (a writer job), and the sweep that marks silent runs lost.

Each ``(run, seq)`` is stored once; events without ``seq`` (the original clients) get the next
numbers of their run in a range of the server's own, above every seq a sender may send. Their
log bodies are chunks of output, not lines: the text after a chunk's last newline is held per
(run, stream) and joined to the next chunk of that stream (stored as a line when the run ends),
and a chunk resent with the same ``payload.uuid`` is stored once.
Heartbeats are not stored; they only mark the run as alive. A replay (a spool uploaded after
its process ended, see :data:`hyperdash.events.REPLAY_HEADER`) is stored like any batch but is
no sign of life: it neither moves the run's ``last_seen_at`` nor brings a lost run back (its
``run_ended`` still ends the run). The reply counts every envelope as either stored or
duplicate. What was stored is announced after the commit as facts (:mod:`hyperdash.server.facts`);
checking the request is :mod:`hyperdash.server.checks`' job. Each run's part also moves the run's
last progress, clearing a stall (:mod:`hyperdash.server.stalls`), and has its points checked
against the metric rules that watch it (:mod:`hyperdash.server.rules`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from itertools import chain
from operator import attrgetter
from typing import Any, TypeVar

import orjson
from msgspec.structs import replace
from sqlalchemy import and_, bindparam, delete, select, tuple_, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from .. import events as ev
from .batch import NUMBERED_FROM, Batch, Chunk, Line, Mark, Point, RunPart
from .deletion import deleted_among, is_deleted, not_deleted
from .dialect import LOG_COLUMNS, byte_length, execute, insert_ignoring, insert_lines, insert_many, skip_locked
from .facts import (
    Fact,
    LinesStored,
    Param,
    ParamsStored,
    PointsStored,
    ProgressChanged,
    RunBack,
    RunCreated,
    RunEnded,
    RunLost,
    RunResumed,
    RunStarted,
    RunState,
)
from .progress import track as track_progress
from .rules import RuleCache, check_points, rules_from_marks
from .stop import pending as stop_pending
from .store import count_odd_points, log_envelopes, log_tails, logs, metrics, run_events, runs, streams
from .summary import failure_of

__all__ = ["Stored", "RunCache", "BatchJob", "store_batch", "mark_lost"]

log = logging.getLogger("hyperdash.server")

# Output held back for want of a newline: past this many characters it is stored as a piece
# marked partial (continued by the next), so what is held stays small.
_MAX_TAIL_CHARS = ev.MAX_LINE_BYTES
METRIC_COLUMNS = ("run_id", "seq", "ts", "name", "value", "step", "is_internal")
MARK_COLUMNS = ("run_id", "seq", "ts", "type", "payload")
_SEQ_OF = attrgetter("seq")  # of a line, point or mark
_STREAM_OF = attrgetter("stream")  # of a line
_TEXT_OF = attrgetter("text")  # of a line
_RUN_STATE_FIELDS = RunState.__struct_fields__

# A row of the ``runs`` table as the writer holds it (its columns by name).
RunRow = dict[str, Any]
# What a batch adds to a run's counters: (lines, bytes of their text); negative where it
# replaced more than it brings.
Counted = tuple[int, int]
# Of a run's stream: (max_seq, progress_seq), the highest line seq stored and the seq of its
# live progress line if any.
StreamState = tuple[int, int | None]

# Statements every batch runs, built once (see dialect.execute).
_RUN_SEEN = update(runs).where(runs.c.id == bindparam("run")).values(
    last_seen_at=bindparam("seen"), max_seq=bindparam("top"), last_progress_at=bindparam("progress_at"),
    line_count=runs.c.line_count + bindparam("lines"), log_bytes=runs.c.log_bytes + bindparam("bytes"),
    point_count=runs.c.point_count + bindparam("points"))
_STREAM_NEW = streams.insert().values(
    run_id=bindparam("run"), stream=bindparam("name"), max_seq=bindparam("top"), progress_seq=bindparam("progress"))
_STREAM_SET = update(streams).where(streams.c.run_id == bindparam("run"), streams.c.stream == bindparam("name")).values(
    max_seq=bindparam("top"), progress_seq=bindparam("progress"))


@dataclass
class Stored:
    """A writer job's result: the reply's counts, and the facts announced after the commit.
    ``gone``: the uuid of a deleted run the batch was for (then nothing was stored)."""

    stored: int
    duplicates: int
    facts: list[Fact]
    # run uuid -> the stop asked of it (server/stop.py), for the reply to tell the job
    stop: dict[str, dict[str, Any]] = field(default_factory=dict)
    gone: str | None = None


class RunCache:
    """What the writer knows of the runs it writes, so that a batch needs few reads.

    Only the writer thread uses it, and it must be cleared whenever a transaction is rolled back.
    With one writing process (``shared=False``: SQLite) the cache is the truth across
    transactions, and a batch needs no reads. Where several processes write (``shared=True``:
    PostgreSQL) any of them may have changed a run since: :meth:`begin` (the writer's ``before``
    hook) forgets everything at the start of each transaction and reads, under row locks taken
    in one order, the runs that the transaction's batches write; a run's status, its numbering
    and its progress lines then follow from what the store holds, and a run written through
    two processes at once has its batches stored one after the other.
    """

    MAX_RUNS = 10_000

    def __init__(self, shared: bool = False) -> None:
        self.shared = shared
        self.runs: dict[tuple[int, str], RunRow] = {}
        self.streams: dict[tuple[int, str], StreamState | None] = {}
        self.rules = RuleCache()
        # This process's hints about runs, by run id (where a progress bar was, when its progress
        # was last told): kept across transactions even where the rows are not, for they are
        # never the truth, only what saves work or announcements.
        self.hints: dict[int, dict[str, Any]] = {}

    def clear(self) -> None:
        self.runs.clear()
        self.streams.clear()
        self.rules.clear()

    def hints_of(self, run_id: int) -> dict[str, Any]:
        """The hints kept about run ``run_id`` (a dict to read and update)."""
        if run_id not in self.hints and len(self.hints) >= self.MAX_RUNS:
            self.hints.clear()  # (hints lost cost a repeated announcement at most)
        return self.hints.setdefault(run_id, {})

    def begin(self, conn: Connection, jobs: list) -> None:
        """At the start of a transaction (several writers): read and lock the runs that the
        :class:`BatchJob` among ``jobs`` write, in (account, uuid) order, so that two processes
        locking some of the same runs cannot deadlock."""
        self.runs.clear()
        self.streams.clear()
        # (where each rule stands may have moved in another process; the rules themselves are
        # read again once their time in the cache is up)
        self.rules.forget_states()
        keys = sorted({(job.batch.user_id, part.uuid) for job in jobs if isinstance(job, BatchJob)
                       for part in job.batch.parts.values()})
        for start in range(0, len(keys), 1000):
            # (a deleted run's row stays until its purge ends: left out, its batches meet the tombstone)
            locked = [row._asdict() for row in conn.execute(
                select(runs).where(tuple_(runs.c.user_id, runs.c.uuid).in_(keys[start:start + 1000]), not_deleted())
                .order_by(runs.c.user_id, runs.c.uuid).with_for_update(of=runs))]
            # A lock waited for while another process tombstoned the run: the locking statement's
            # recheck saw the row anew but not the tombstone committed with it; a new one does.
            gone = deleted_among(conn, [(run["user_id"], run["uuid"]) for run in locked])
            for run in locked:
                if (run["user_id"], run["uuid"]) not in gone:
                    self.remember(run)

    def run(self, conn: Connection, user_id: int, run_uuid: str) -> RunRow | None:
        key = (user_id, run_uuid)
        run = self.runs.get(key)
        if run is None:
            query = select(runs).where(runs.c.user_id == user_id, runs.c.uuid == run_uuid)
            row = conn.execute(query.with_for_update() if self.shared else query).first()
            if row is None:
                return None
            run = self.remember(row._asdict())
        return run

    def remember(self, run: RunRow) -> RunRow:
        if len(self.runs) >= self.MAX_RUNS:
            self.clear()
        self.runs[(run["user_id"], run["uuid"])] = run
        return run

    def stream(self, conn: Connection, run_id: int, stream: str) -> StreamState | None:
        """``(max_seq, progress_seq)`` of a run's stream, or None when it has no lines yet."""
        key = (run_id, stream)
        if key not in self.streams:
            row = conn.execute(
                select(streams.c.max_seq, streams.c.progress_seq)
                .where(streams.c.run_id == run_id, streams.c.stream == stream)
            ).first()
            self.streams[key] = (row.max_seq, row.progress_seq) if row else None
        return self.streams[key]


class BatchJob:
    """The writer job that stores ``batch`` (its runs are what :meth:`RunCache.begin` locks)."""

    __slots__ = ("batch", "cache")

    def __init__(self, batch: Batch, cache: RunCache):
        self.batch = batch
        self.cache = cache

    def __call__(self, conn: Connection) -> Stored:
        return store_batch(conn, self.batch, self.cache)


def store_batch(conn: Connection, batch: Batch, cache: RunCache | None = None) -> Stored:
    """Store a checked batch (a writer job)."""
    cache = cache if cache is not None else RunCache()
    for part in batch.parts.values():  # a deleted run's uuid is refused, never a new run
        if (batch.user_id, part.uuid) not in cache.runs and is_deleted(conn, batch.user_id, part.uuid):
            return Stored(0, 0, [], gone=part.uuid)
    now = ev.now_ms()
    stored = duplicates = 0
    facts: list[Fact] = []
    stop: dict[str, dict[str, Any]] = {}
    for part in batch.parts.values():
        s, d = _store_part(conn, cache, batch, part, now, facts)
        stored += s
        duplicates += d
        run = cache.runs.get((batch.user_id, part.uuid))
        asked = stop_pending(conn, run, now, fresh=cache.shared) if run is not None and not batch.replay else None
        if asked is not None:
            stop[part.uuid] = asked
    return Stored(stored, duplicates, facts, stop)


def _store_part(conn: Connection, cache: RunCache, batch: Batch, part: RunPart, now: int,
                facts: list[Fact]) -> tuple[int, int]:
    """Store one run's part of a batch, adding its facts to ``facts``; (stored, duplicates)."""
    user_id = batch.user_id
    run = cache.run(conn, user_id, part.uuid)
    created = False
    if run is None:
        times = [e.ts for e in chain(part.lines, part.points, part.marks, part.unsequenced)]
        first_ts = min(times, default=now)
        # A run first heard of through a replay (its process is gone: a spool uploaded later) was
        # last heard of when its last event was recorded, not now: no sign of life.
        seen = min(max(times, default=now), now) if batch.replay else now
        new = {"user_id": user_id, "uuid": part.uuid, "name": None, "status": ev.RUNNING,
               "started_at": first_ts, "ended_at": None, "last_seen_at": seen, "exit_code": None,
               "signal": None, "host": None, "pid": None, "api": batch.api, "max_seq": 0,
               "last_progress_at": seen, "stall_after_ms": None, "stalled_since": None, "archived_at": None}
        # (another process may create the same run meanwhile: then its row is the run)
        run_id = conn.execute(insert_ignoring(conn, runs).values(**new).returning(runs.c.id)).scalar()
        if run_id is None:
            run = cache.run(conn, user_id, part.uuid)
            assert run is not None  # (the row that stopped the insert)
        else:
            created = True
            run = cache.remember({**new, "id": run_id})
    run_id = run["id"]

    # (the seqs, taken once: _drop_duplicates needs them too unless events are numbered and added)
    seqs: list[int] = list(map(_SEQ_OF, chain(part.lines, part.points, part.marks)))
    top = max(run["max_seq"], max(seqs, default=0))
    all_lines, all_points, all_marks = part.lines, part.points, part.marks
    resent = 0
    numbered = bool(part.unsequenced) or any(m.type == ev.RUN_ENDED for m in part.marks)
    if numbered:
        all_lines, all_points, all_marks = list(part.lines), list(part.points), list(part.marks)
        # Number what came without a seq after the server's own numbers of this run, above any
        # seq a sender may send (see batch.NUMBERED_FROM): a run with both loses neither.
        start = max(run["max_seq"], NUMBERED_FROM)
        last, resent = _number(conn, run_id, part, start, all_lines, all_points, all_marks)
        top = last if last > start else top

    lines, points, marks = _drop_duplicates(conn, run_id, run["max_seq"], all_lines, all_points, all_marks,
                                            None if numbered else seqs)
    # Envelopes with a seq are duplicates row by row; chunks of output by their uuid.
    duplicates = (len(all_lines) + len(all_points) + len(all_marks) - len(lines) - len(points) - len(marks)
                  + resent)
    stored = part.envelopes - duplicates

    # (``lines is part.lines``: none dropped as a duplicate, none numbered here, the stretch whole)
    shown, counted = _store_lines(conn, cache, run_id, lines, part.has_progress,
                                  part.one_run and lines is part.lines) if lines else ([], (0, 0))
    if points:
        insert_many(conn, metrics, METRIC_COLUMNS,
                    [(run_id, p.seq, p.ts, p.name, p.value, p.step, p.is_internal) for p in points])
    odd = [m for m in marks if m.type == ev.METRIC]  # NaN and infinite points
    if marks:
        insert_many(conn, run_events, MARK_COLUMNS,
                    [(run_id, m.seq, m.ts, m.type, orjson.dumps(m.payload).decode()) for m in marks])
    if odd:
        count_odd_points(conn, run_id, [(m.seq, m.ts, m.payload) for m in odd if m.seq is not None])  # (all are)

    # (a replay leaves last_seen_at as it was, through the same statement)
    changes: dict[str, Any] = {"last_seen_at": run["last_seen_at"] if batch.replay else now}
    # Progress (server/stalls.py): anything the job recorded of its own; not heartbeats, not
    # internal metrics or params (the SDK's bookkeeping).
    progress = not batch.replay and bool(lines or any(not m.payload.get("is_internal") for m in marks)
                                         or any(not p.is_internal for p in points))
    changes["last_progress_at"] = now if progress else run["last_progress_at"]
    resumed = progress and run["stalled_since"] is not None
    if resumed:
        changes["stalled_since"] = None
    if top > run["max_seq"]:
        changes["max_seq"] = top
    started = ended = None  # the latest run_started and run_ended marks stored
    for mark in sorted(marks, key=_SEQ_OF):
        payload = mark.payload
        if mark.type == ev.RUN_STARTED:
            started = mark
            changes.update(name=payload["job_name"], started_at=mark.ts, host=payload["host"],
                           pid=payload["pid"])
            if payload["api"]:
                changes["api"] = payload["api"]
            if payload.get("stall_after") is not None:
                changes["stall_after_ms"] = int(payload["stall_after"] * 1000)
        elif mark.type == ev.RUN_ENDED:
            ended = mark
            changes.update(status=payload["final_status"], ended_at=mark.ts, exit_code=payload["exit_code"],
                           signal=payload["signal"])
    if ended is not None:
        changes.update(failure_of(conn, run_id, ended.payload))  # (its lines are stored above)
    back = (run["status"] == ev.LOST and "status" not in changes and run["ended_at"] is None
            and not batch.replay)
    if back:
        changes["status"] = ev.RUNNING
    # What the run holds, counted as it is stored (a name's storage needs no scan of its lines).
    counts = {"lines": counted[0], "bytes": counted[1], "points": len(points)}
    if changes.keys() <= {"last_seen_at", "max_seq", "last_progress_at"}:  # most batches: a prepared statement
        execute(conn, _RUN_SEEN, {"run": run_id, "seen": changes["last_seen_at"],
                                  "top": changes.get("max_seq", run["max_seq"]),
                                  "progress_at": changes["last_progress_at"], **counts})
    else:
        conn.execute(update(runs).where(runs.c.id == run_id).values(
            **changes, line_count=runs.c.line_count + counts["lines"], log_bytes=runs.c.log_bytes + counts["bytes"],
            point_count=runs.c.point_count + counts["points"]))
    run.update(changes)
    moved = bool(lines or points or marks) and _track_progress(conn, run, cache.hints_of(run_id), shown,
                                                                   part.has_progress, points, marks, now)

    about = (user_id, run_id, part.uuid)
    # The run as it stands now, when it was created or its state changed.
    state = _state(run) if created or back or started is not None or ended is not None else None
    if created and state is not None:
        facts.append(RunCreated(*about, state))
    if shown:
        facts.append(LinesStored(*about, tuple(shown)))
    if points or odd:
        facts.append(PointsStored(*about, tuple(points), tuple(odd)))
    params = tuple(Param(m.seq, m.ts, m.payload["params"])
                   for m in marks if m.type == ev.PARAM and m.seq is not None)  # (all numbered by now)
    if params:
        facts.append(ParamsStored(*about, params))
    if moved and state is None:  # (a change of state tells the progress too)
        facts.append(ProgressChanged(*about, _state(run)))
    if state is not None:
        if started is not None:
            facts.append(RunStarted(*about, state))
        if ended is not None:
            payload = ended.payload
            facts.append(RunEnded(*about, payload["final_status"], payload["exit_code"], payload["signal"], state))
        if back:
            facts.append(RunBack(*about, state))
    if resumed and ended is None:
        facts.append(RunResumed(*about, _state(run)))
    # Metric rules (server/rules.py): those the job set, then every point checked against them.
    if any(m.type == ev.ALERT for m in marks):
        rules_from_marks(conn, cache.rules, user_id, run_id, [m for m in marks if m.type == ev.ALERT], now)
    if points or odd:
        facts += check_points(conn, cache.rules, user_id, run_id, part.uuid, _state(run), points, odd, now)
    return stored, duplicates


def _track_progress(conn: Connection, run: RunRow, hints: dict[str, Any], lines: list[Line], has_progress: bool,
                    points: list[Point], marks: list[Mark], now: int) -> bool:
    """:func:`~hyperdash.server.progress.track`, which never fails the batch: progress is a
    hint, and what the job sent is stored whatever its lines look like. (A failing database
    still fails the batch, which is then retried.)"""
    try:
        return track_progress(conn, run, hints, lines, has_progress, points, marks, now)
    except SQLAlchemyError:
        raise
    except Exception:
        log.exception("reading the progress of run %s failed", run["uuid"])
        return False


def _text_bytes(lines: list[Line]) -> int:
    """The UTF-8 size of the lines' text, measured on their text joined (one pass in C rather
    than one step of Python a line; most text is ASCII: its length is its size)."""
    text = "".join(map(_TEXT_OF, lines))
    return len(text) if text.isascii() else len(text.encode("utf-8", "replace"))


def _state(run: RunRow) -> RunState:
    fields: dict[str, Any] = {name: run.get(name) for name in _RUN_STATE_FIELDS}  # (new columns may be missing)
    return RunState(**fields)


def _number(conn: Connection, run_id: int, part: RunPart, top: int,
            lines: list[Line], points: list[Point], marks: list[Mark]) -> tuple[int, int]:
    """Give the events without a seq the numbers after ``top``, in the order they came, and
    cut chunks of output into lines (adding to ``lines``, ``points``, ``marks``). Returns the
    new top and how many chunks were resent copies."""
    chunk_ids = {e.chunk_id for e in part.unsequenced if type(e) is Chunk and e.chunk_id is not None}
    seen: set[str] = set()
    if chunk_ids:
        seen.update(conn.execute(select(log_envelopes.c.uuid).where(
            log_envelopes.c.run_id == run_id, log_envelopes.c.uuid.in_(sorted(chunk_ids)))).scalars())
    held = {row.stream: (row.text, row.ts) for row in conn.execute(
        select(log_tails.c.stream, log_tails.c.text, log_tails.c.ts).where(log_tails.c.run_id == run_id))}
    tails = dict(held)  # stream -> (text, ts) of its unfinished line
    new_ids: list[str] = []
    resent = 0

    def flush_tails() -> None:
        nonlocal top
        for stream in sorted(tails):
            top += 1
            text, ts = tails[stream]
            lines.append(Line(top, ts, stream, text, 0, 0))
        tails.clear()

    for e in part.unsequenced:
        if isinstance(e, Chunk):
            if e.chunk_id is not None:
                if e.chunk_id in seen:
                    resent += 1
                    continue
                seen.add(e.chunk_id)
                new_ids.append(e.chunk_id)
            ts, stream, body = e.ts, e.stream, e.body
            if stream in tails:  # the start of the first line came earlier
                text, ts = tails.pop(stream)
                body = text + body
            *whole, rest = body.split("\n")
            for line in whole:
                top += 1
                lines.append(Line(top, ts, stream, line[:-1] if line.endswith("\r") else line,
                                  e.partial, e.progress))
            if len(rest) > _MAX_TAIL_CHARS:
                top += 1
                lines.append(Line(top, ts, stream, rest, 1, 0))
            elif rest:
                tails[stream] = (rest, ts)
            continue
        if isinstance(e, Point):
            top += 1
            points.append(replace(e, seq=top))
            continue
        if e.type == ev.RUN_ENDED:
            flush_tails()  # the run's last output goes before its end
        top += 1
        marks.append(replace(e, seq=top))
    if any(m.type == ev.RUN_ENDED for m in part.marks):
        flush_tails()

    if new_ids:
        insert_many(conn, log_envelopes, ("run_id", "uuid"), [(run_id, u) for u in new_ids])
    if tails != held:
        conn.execute(delete(log_tails).where(log_tails.c.run_id == run_id))
        if tails:
            insert_many(conn, log_tails, ("run_id", "stream", "text", "ts"),
                        [(run_id, stream, text, ts) for stream, (text, ts) in tails.items()])
    return top, resent


def _drop_duplicates(conn: Connection, run_id: int, max_seq: int, lines: list[Line], points: list[Point],
                     marks: list[Mark], seqs: list[int] | None = None) -> tuple[list[Line], list[Point], list[Mark]]:
    """The lines, points and marks (all numbered) not yet stored (nor repeated earlier in the
    same batch). ``seqs``: their seqs in that order, when the caller has them already."""
    if seqs is None:
        seqs = list(map(_SEQ_OF, chain(lines, points, marks)))
    if not seqs:
        return [], [], []
    low = min(seqs)
    if low > max_seq and len(set(seqs)) == len(seqs):
        return lines, points, marks
    seen: set[int | None] = set()
    if low <= max_seq:
        high = max(seqs)
        for table in (logs, metrics, run_events):
            seen.update(conn.execute(
                select(table.c.seq).where(table.c.run_id == run_id, table.c.seq.between(low, high))
            ).scalars())
    return _unseen(lines, seen), _unseen(points, seen), _unseen(marks, seen)


_Event = TypeVar("_Event", Line, Point, Mark)


def _unseen(group: list[_Event], seen: set[int | None]) -> list[_Event]:
    """The events of ``group`` whose seq is not in ``seen``, which gets theirs."""
    kept = []
    for e in group:
        if e.seq not in seen:
            seen.add(e.seq)
            kept.append(e)
    return kept


def _store_lines(conn: Connection, cache: RunCache, run_id: int, lines: list[Line],
                 has_progress: bool, one_run: bool = False) -> tuple[list[Line], Counted]:
    """Insert ``lines``, marking each progress line that a later line of its stream replaced
    as superseded (in this batch or already stored). Returns the lines to announce, as they came:
    those to show, and each erased bar (kept superseded, yet told so that live views drop it);
    and what the run's counters gain: a superseded line counts neither as a line nor its text
    (a bar redrawn a thousand times is one line), so a line replacing a stored one takes that
    one's count back. ``one_run``: the lines are one stretch (see :class:`RunPart`)."""
    taken_lines = taken_bytes = 0  # what replaced stored lines gave back
    if not has_progress:
        # No progress line in the batch: only a stored one can be replaced.
        tops: dict[str, int] = {}
        if one_run:  # (one stream, its last line the highest: known, not looked for)
            tops[lines[0].stream] = lines[-1].seq
        elif len(set(map(_STREAM_OF, lines))) == 1:  # the usual case, done without a loop
            tops[lines[0].stream] = max(map(_SEQ_OF, lines))
        else:
            for line in lines:
                if line.seq > tops.get(line.stream, 0):
                    tops[line.stream] = line.seq
        for stream, top in tops.items():
            taken = _advance_stream(conn, cache, run_id, stream, top)
            taken_lines, taken_bytes = taken_lines + taken[0], taken_bytes + taken[1]
        insert_lines(conn, logs, run_id, lines, one_run)
        return lines, (len(lines) - taken_lines, _text_bytes(lines) - taken_bytes)
    superseded: set[int] = set()  # indexes of lines replaced by a later line of their stream
    erased: set[int] = set()  # indexes of erased bars: stored superseded, still announced
    found: dict[str, list[int]] = {}  # stream -> indexes of its lines
    for k, line in enumerate(lines):
        found.setdefault(line.stream, []).append(k)
    for stream, indexes in found.items():
        state = cache.stream(conn, run_id, stream)
        max_seq, progress_seq = state if state else (0, None)
        indexes.sort(key=lambda k: lines[k].seq)
        live = None  # the index of the current progress line, when it is in this batch
        for k in indexes:
            line = lines[k]
            if line.seq < max_seq:
                if line.progress:  # a late copy of a line already replaced
                    superseded.add(k)
                continue
            if progress_seq is not None:
                if live is not None:
                    superseded.add(live)
                else:
                    taken = _supersede_stored(conn, run_id, progress_seq)
                    taken_lines, taken_bytes = taken_lines + taken[0], taken_bytes + taken[1]
            max_seq = line.seq
            if line.progress and not line.text:
                # An erased bar (tqdm's leave=False): it replaces the last state and leaves
                # nothing to show itself; a page open meanwhile is told, to remove the bar.
                superseded.add(k)
                erased.add(k)
                progress_seq, live = None, None
            else:
                progress_seq, live = (line.seq, k) if line.progress else (None, None)
        _save_stream(conn, cache, run_id, stream, state, (max_seq, progress_seq))
    # A superseded line is kept (so a resent copy is still a duplicate) without its text:
    # nobody will read it again.
    insert_many(conn, logs, LOG_COLUMNS, [
        (run_id, line.seq, line.stream, "" if k in superseded else line.text, line.ts, line.partial,
         line.progress, int(k in superseded))
        for k, line in enumerate(lines)])
    kept = [line for k, line in enumerate(lines) if k not in superseded]
    return ([line for k, line in enumerate(lines) if k not in superseded or k in erased],
            (len(kept) - taken_lines, _text_bytes(kept) - taken_bytes))


def _supersede_stored(conn: Connection, run_id: int, seq: int) -> Counted:
    """Mark the stored progress line ``seq`` superseded, its text dropped; what that takes from
    the run's counters: one line and its text's size (none when it was superseded already)."""
    where = and_(logs.c.run_id == run_id, logs.c.seq == seq, logs.c.superseded == 0)
    size = conn.execute(select(byte_length(conn, logs.c.text)).where(where)).scalar()
    if size is None:
        return 0, 0
    conn.execute(update(logs).where(where).values(superseded=1, text=""))
    return 1, size


def _advance_stream(conn: Connection, cache: RunCache, run_id: int, stream: str, top: int) -> Counted:
    """Lines up to seq ``top`` (none of them progress) arrived on a stream; what the progress
    line they replaced takes from the run's counters."""
    state = cache.stream(conn, run_id, stream)
    max_seq, progress_seq = state if state else (0, None)
    taken: Counted = (0, 0)
    if progress_seq is not None and top > progress_seq:
        taken = _supersede_stored(conn, run_id, progress_seq)
        progress_seq = None
    _save_stream(conn, cache, run_id, stream, state, (max(max_seq, top), progress_seq))
    return taken


def _save_stream(conn: Connection, cache: RunCache, run_id: int, stream: str, old: StreamState | None,
                 new: StreamState) -> None:
    params = {"run": run_id, "name": stream, "top": new[0], "progress": new[1]}
    if old is None:
        execute(conn, _STREAM_NEW, params)
    elif new != old:
        execute(conn, _STREAM_SET, params)
    cache.streams[(run_id, stream)] = new


def mark_lost(conn: Connection, timeout_s: float, cache: RunCache | None = None,
              now_ms: int | None = None, listening_since: int | None = None) -> Stored:
    """Mark running runs silent for longer than ``timeout_s`` as lost (as of ``now_ms``,
    default now); a writer job that announces a ``RunLost`` for each. ``listening_since``: when
    this server started; a run is lost only once it was silent that long while the server could
    hear it (after a restart, its jobs get the whole timeout to reach the server again)."""
    cutoff = (ev.now_ms() if now_ms is None else now_ms) - int(timeout_s * 1000)
    if listening_since is not None and listening_since > cutoff:
        return Stored(0, 0, [])
    # (a run another process is storing a batch of right now is locked, and passed over: alive)
    rows = conn.execute(skip_locked(conn, select(runs).where(
        runs.c.status == ev.RUNNING, runs.c.last_seen_at < cutoff, not_deleted()).order_by(runs.c.id))).all()
    facts: list[Fact] = []
    for row in rows:
        conn.execute(update(runs).where(runs.c.id == row.id, runs.c.status == ev.RUNNING)
                     .values(status=ev.LOST))
        run = row._asdict()
        run["status"] = ev.LOST
        if cache is not None and (row.user_id, row.uuid) in cache.runs:
            cache.runs[(row.user_id, row.uuid)]["status"] = ev.LOST
        facts.append(RunLost(row.user_id, row.id, row.uuid, _state(run)))
    return Stored(0, 0, facts)

"""Sending a spool's events to the server: batches, retries with backoff, heartbeats.

:class:`SpoolSender` turns spool records into envelopes and sends them, one batch a call,
moving the spool's acknowledged cursor; it is shared by the live :class:`Shipper` thread of a
run and by :mod:`hyperdash.uploader`.

The shipper sends what is new as soon as it is told (:meth:`Shipper.nudge`) while no request is
in flight: a line printed by a quiet job is on the server within one round trip. Whatever
arrives while a request is in flight, or within ``send_interval`` of the last request's start,
goes in the next request, together: a flood of output costs no more requests than a fixed
timer would. It retries with exponential backoff and jitter (honouring ``Retry-After``), keeps
events waiting through a 401 until the key source yields a working key, and sends a heartbeat
after ``heartbeat_interval`` seconds without traffic. Nothing it meets ever reaches the job:
each kind of problem becomes one warning line.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from json.encoder import encode_basestring as _quote
from typing import TYPE_CHECKING, Any, NamedTuple

from . import errors, framing
from .events import (
    ATTACHED_TEXT_REPLY_FIELD,
    ATTACHED_TEXT_TYPE,
    BLOCKS_REPLY_FIELD,
    HEARTBEAT,
    LEVEL_OF_STREAM,
    LINES_FIELD,
    LOG,
    LOG_BLOCK_BYTES,
    MAX_BATCH_EVENTS,
    MAX_REQUEST_BYTES,
    TEXT_BYTES_FIELD,
    envelope,
)
from .spool import EVENT, Record, Spool

if TYPE_CHECKING:
    from .transport import Transport

__all__ = ["Attached", "Backoff", "SpoolSender", "Shipper", "encoded_events", "jittered"]

DEFAULT_BATCH_EVENTS = 2000
DEFAULT_BATCH_BYTES = 1 << 20
# Until the server's first reply says whether it takes blocks of lines, a batch holds at most
# this many events (an uploader's first batch would be a big one, one envelope a line).
PROBE_EVENTS = 100
# At exit, and in the uploader, batches as large as the server takes: fewer round trips.
BIG_BATCH_BYTES = MAX_REQUEST_BYTES // 4


class Attached(NamedTuple):
    """An envelope whose log text travels as raw bytes after the batch's JSON (it carries
    ``"bytes": N`` in place of ``"body"``; see :data:`hyperdash.events.ATTACHED_TEXT_TYPE`)."""

    envelope: str
    text: bytes


Fragment = str | Attached  # one event's envelope, as JSON text, its text attached or not


def encoded_events(record: Record, run_uuid: str, after_seq: int = 0, limit: int | None = None,
                   blocks: bool = False, attach: bool = False) -> tuple[list[Fragment], int]:
    """The JSON envelopes, as text, of one spool record's events whose seq is above
    ``after_seq`` (at most ``limit`` events), and how many events they carry. With ``blocks``,
    whole lines go as blocks of lines (:data:`hyperdash.events.LOG_BLOCK_BYTES` at most), so a
    flood of output costs a few envelopes, not one per line, and with ``attach`` as well, their
    text goes as bytes after the JSON (:class:`Attached`), unquoted; else log lines are written
    one per envelope straight into a template, which costs a quarter of the CPU that building
    and encoding a dict for each line would. Raises ``ValueError`` for an event that JSON
    cannot carry (a NaN from an older spool)."""
    if record.last_seq <= after_seq:
        return [], 0
    if record.kind == EVENT:
        event = json.loads(record.blob)
        env = envelope(event["type"], run_uuid, event["payload"], seq=record.first_seq, timestamp=record.timestamp)
        return [json.dumps(env, ensure_ascii=False, separators=(",", ":"), allow_nan=False)], 1
    skip = max(0, after_seq - record.first_seq + 1)
    stream = record.stream or "stdout"
    flag = {framing.PARTIAL: ',"partial":true', framing.PROGRESS: ',"progress":true'}.get(record.kind, "")
    head = (f'{{"type":"{LOG}","timestamp":{int(record.timestamp)},"sdk_run_uuid":{_quote(run_uuid)},'
            f'"payload":{{"level":"{LEVEL_OF_STREAM[stream]}","stream":"{stream}"{flag},')
    if blocks and record.kind == framing.LINES:
        if attach:
            return _attached_block(record, head, skip, limit)
        return _blocks(record.blob, head, record.first_seq + skip, _after_lines(record.blob, skip), limit)
    # a newline byte is never part of a longer UTF-8 sequence: decoding the whole blob at once
    # gives the same text as decoding each line
    text = record.blob.decode("utf-8", "replace")
    lines = text.split("\n")[:-1] if record.kind == framing.LINES else [text]
    stop = len(lines) if limit is None else min(len(lines), skip + limit)
    first = record.first_seq
    fragments: list[Fragment] = [f'{head}"body":{_quote(lines[i])}}},"seq":{first + i}}}' for i in range(skip, stop)]
    return fragments, len(fragments)


def _after_lines(blob: bytes, count: int, start: int = 0) -> int:
    """The offset just past the ``count``-th newline of ``blob`` from ``start`` (there are as
    many). A batch that ends inside a record has the next one skip thousands of lines: they are
    counted in C a window at a time, and only the window that holds the last one is split."""
    end = len(blob)
    while count > 0:
        stop = min(end, start + _SKIP_WINDOW)
        found = blob.count(b"\n", start, stop)
        if found >= count:
            return stop - len(blob[start:stop].split(b"\n", count)[count])
        if stop == end:
            return end  # (fewer than ``count``: never, but never loop)
        count -= found
        start = stop
    return start


_SKIP_WINDOW = 64 * 1024


def _blocks(blob: bytes, head: str, seq: int, start: int, limit: int | None) -> tuple[list[Fragment], int]:
    """Envelopes of blocks of the whole lines of ``blob`` from offset ``start`` (at most ``limit``
    lines), cut at newlines every :data:`LOG_BLOCK_BYTES` or sooner, the first line taking
    ``seq``; and how many lines they carry."""
    fragments: list[Fragment] = []
    end = len(blob)
    left = end if limit is None else limit  # (a line has a byte at least: no more than ``end``)
    first = seq
    while start < end and left > 0:
        stop = blob.rfind(b"\n", start, start + LOG_BLOCK_BYTES) + 1 if start + LOG_BLOCK_BYTES < end else end
        if stop <= start:  # (framing cuts lines shorter than a block: never, but stay whole)
            stop = blob.index(b"\n", start) + 1
        count = blob.count(b"\n", start, stop)
        if count > left:
            stop, count = _after_lines(blob, left, start), left
        text = blob[start:stop].decode("utf-8", "replace")
        fragments.append(f'{head}"body":{_quote(text)},"{LINES_FIELD}":{count}}},"seq":{seq}}}')
        seq += count
        left -= count
        start = stop
    return fragments, seq - first


def _attached_block(record: Record, head: str, skip: int, limit: int | None) -> tuple[list[Fragment], int]:
    """The record's lines after the first ``skip`` (at most ``limit``) as one block, its text
    attached: a text that travels as it is needs no cutting, and the record's header counts its
    lines already."""
    blob = record.blob
    start = _after_lines(blob, skip)
    stop, count = len(blob), record.event_count - skip
    if limit is not None and limit < count:
        stop, count = _after_lines(blob, limit, start), limit
    text = blob if start == 0 and stop == len(blob) else blob[start:stop]
    seq = record.first_seq + skip
    return [Attached(f'{head}"{TEXT_BYTES_FIELD}":{len(text)},"{LINES_FIELD}":{count}}},"seq":{seq}}}', text)], count


def _body(fragments: list[Fragment]) -> tuple[bytes, str]:
    """The request body of ``fragments``, and its content type."""
    texts = [fragment.text for fragment in fragments if type(fragment) is Attached]
    envelopes = [fragment.envelope if type(fragment) is Attached else fragment for fragment in fragments] \
        if texts else fragments
    head = ("[" + ",".join(envelopes) + "]").encode("utf-8", "surrogatepass")  # type: ignore[arg-type]
    if not texts:
        return head, "application/json"
    return b"".join([head, b"\n", *texts]), ATTACHED_TEXT_TYPE


def jittered(delay: float) -> float:
    """A wait of between half ``delay`` and ``delay``, at random: those who failed together do
    not try again together."""
    import random  # (here: the module and what it imports are no cost of a run's or an uploader's start)

    return delay / 2 + random.uniform(0, delay / 2)


class Backoff:
    """Exponential backoff, jittered (:func:`jittered`): ``base``, doubling up to ``cap`` seconds."""

    def __init__(self, base: float = 0.5, cap: float = 30.0):
        self.base, self.cap, self.failures = base, cap, 0

    def next_delay(self) -> float:
        delay = min(self.cap, self.base * 2.0**self.failures)
        if delay < self.cap:  # counting on past the cap would overflow, after a thousand failures
            self.failures += 1
        return jittered(delay)

    def reset(self) -> None:
        self.failures = 0


class _SendAgain(Exception):
    """The batch was not stored, for a reason that its next encoding avoids."""


class SpoolSender:
    """Sends a spool's unacknowledged events in batches through a transport.

    ``send_batch()`` sends the next batch and returns how many events it carried (0: nothing
    left, or a batch refused in a form that the next one avoids: ``pending()`` tells); it raises
    :mod:`hyperdash.errors` exceptions and then leaves the cursor where it was, so the same
    events go again. A batch the server calls malformed (400, 422) is halved until the one bad
    event is found, which is dropped (``on_dropped`` is told why); a batch with its texts after
    the JSON is first sent again as JSON, and so is everything after it. Once the
    server says the run was deleted (410), every event of the spool is dropped unsent, now and
    later: ``gone`` holds that answer, and ``on_gone`` is told once.
    """

    def __init__(
        self,
        spool: Spool,
        transport: Transport,
        run_uuid: str,
        api: str,
        batch_events: int = DEFAULT_BATCH_EVENTS,
        batch_bytes: int = DEFAULT_BATCH_BYTES,
        on_dropped: Callable[[errors.APIError], None] | None = None,
        on_reply: Callable[[dict[str, Any]], None] | None = None,
        on_gone: Callable[[errors.RunDeleted], None] | None = None,
    ):
        self.spool = spool
        self.transport = transport
        self.run_uuid = run_uuid
        self.api = api
        self.batch_events = min(batch_events, MAX_BATCH_EVENTS)
        self.batch_bytes = batch_bytes
        self.on_dropped = on_dropped
        self.on_reply = on_reply  # told every reply of the server (a stop asked of the run)
        self.on_gone = on_gone
        self.gone: errors.RunDeleted | None = None
        # whether the server takes blocks of lines: None until a reply has said (until then a
        # batch holds at most PROBE_EVENTS events, one line each)
        self.blocks: bool | None = None
        # whether it takes log texts as bytes after the JSON (ATTACHED_TEXT_TYPE), as its last
        # reply said (unless this sender saw it refused)
        self.attach = False
        self._attach_refused = False
        # set (by freeze) once the spool is no longer this sender's: its owner closes it, or
        # another process may own it
        self.frozen = False
        # held while the spool is read or its cursor moved, never while a request is in flight
        self._spool_lock = threading.Lock()
        self._torn_end: int | None = None

    @property
    def acked_seq(self) -> int:
        return self.spool.acked_seq

    def pending(self) -> bool:
        """Whether the spool holds events beyond the acknowledged cursor (a record torn by a
        crash at the end of the spool does not count)."""
        end = self.spool.end_offset
        return self.spool.cursor_offset < end and end != self._torn_end

    def use_big_batches(self) -> None:
        """Send as much per request as the server takes (at exit and when uploading later,
        round trips cost more than the job's CPU)."""
        self.batch_events = MAX_BATCH_EVENTS
        self.batch_bytes = max(self.batch_bytes, BIG_BATCH_BYTES)

    def freeze(self) -> None:
        """Stop reading the spool and moving its cursor, for good. Once this returns, this
        sender touches the spool no more (its owner may close it, another process take it
        over); it waits for a read of the spool in progress, never for a request in flight."""
        with self._spool_lock:
            self.frozen = True

    def send_batch(self) -> int:
        with self._spool_lock:
            if self.frozen:
                return 0
            fragments, count, offset, last_seq = self._next_batch()
            if not fragments:
                if offset != self.spool.cursor_offset:
                    self.spool.save_cursor(offset, max(last_seq, self.spool.acked_seq))
                return 0
        if self.gone is None:  # (a deleted run's events are passed over, as if sent)
            had_blocks = self.blocks and count > len(fragments)
            try:
                self._send(fragments, count)
            except _SendAgain:
                return 0  # (nothing stored, the cursor stays: the same events go again, as JSON)
            if had_blocks and not self.blocks:
                # A server that no longer takes blocks (one put back in place of ours) took each
                # for one line: the same events go again, a line each, for the rest to be stored.
                return count
        with self._spool_lock:
            if not self.frozen:
                self.spool.save_cursor(offset, last_seq)
        return count

    def _next_batch(self) -> tuple[list[Fragment], int, int, int]:
        """The next envelopes (JSON text, some with their text attached), how many events they
        carry, the offset of the first record not wholly in them, and their last seq."""
        acked = self.spool.acked_seq
        offset = self.spool.cursor_offset
        batch: list[Fragment] = []
        count = 0
        last_seq = acked
        end = self.spool.end_offset
        whole = False
        most = self.batch_events if self.blocks is not None else min(self.batch_events, PROBE_EVENTS)
        for record in self.spool.records(offset, self.batch_bytes):
            whole = True
            room = most - count
            if room <= 0:
                break
            after = max(acked, last_seq)
            try:
                part, carried = encoded_events(record, self.run_uuid, after, room, bool(self.blocks), self.attach)
                last_seq = max(after, record.first_seq - 1) + carried
            except ValueError as exc:  # an event JSON cannot carry: the server could not take it
                part, carried, last_seq = [], 0, max(after, record.last_seq)
                self._drop(errors.APIError(400, "invalid_json", f"an event cannot be sent as JSON: {exc}"))
            batch.extend(part)
            count += carried
            if record.last_seq > last_seq:
                break  # this record goes on in the next batch
            offset = record.end
        if not whole:
            self._torn_end = end  # nothing whole left to read
        return batch, count, offset, last_seq

    def heard(self, reply: dict[str, Any]) -> None:
        """Pass a reply of the server on to ``on_reply``."""
        if self.on_reply is not None:
            self.on_reply(reply)

    def run_deleted(self, exc: errors.RunDeleted) -> None:
        """The server deleted the run: drop its events from now on (``on_gone`` is told once)."""
        if self.gone is None:
            self.gone = exc
            if self.on_gone is not None:
                self.on_gone(exc)

    def _drop(self, exc: errors.APIError) -> None:
        if self.on_dropped is not None:
            self.on_dropped(exc)

    def _send(self, fragments: list[Fragment], count: int) -> None:
        """Send envelopes carrying ``count`` events; halve a batch the server refuses."""
        body, content_type = _body(fragments)
        try:
            reply = self.transport.send_events(body, self.api, content_type)
        except errors.RunDeleted as exc:
            self.run_deleted(exc)
        except errors.APIError as exc:
            if content_type == ATTACHED_TEXT_TYPE and exc.status in (400, 415, 422):
                # A server that does not read text after the JSON (one put back in place of
                # ours, or something between that refuses the type): none of it was stored.
                # The same events go again as JSON, which says which event is bad if one is, and
                # so does everything this sender sends from now on.
                self.attach = False
                self._attach_refused = True
                raise _SendAgain from None
            if exc.status not in (400, 413, 422):
                raise
            if exc.status == 413 and count > 1:  # (one block of many lines too: cut smaller next)
                self.batch_events = max(1, min(self.batch_events, count) // 2)
            if len(fragments) == 1:
                if exc.status == 413:
                    raise
                self._drop(exc)  # the one malformed envelope: the others go on
                return
            half = len(fragments) // 2
            self._send(fragments[:half], count // 2)
            self._send(fragments[half:], count - count // 2)
        else:
            self.blocks = reply.get(BLOCKS_REPLY_FIELD) is True
            self.attach = self.blocks and reply.get(ATTACHED_TEXT_REPLY_FIELD) is True and not self._attach_refused
            self.heard(reply)


class Shipper(threading.Thread):
    """The background thread that sends a live run's spool (see the module's docstring).

    ``flush_interval`` is how often it wakes without being nudged (``on_tick``, heartbeats);
    ``send_interval`` the least time between the starts of two requests, ``flood_interval``
    after a full batch (a flood: fewer, fuller requests). ``clock``
    (``time.monotonic`` by default) decides when a retry or a heartbeat is due; tests pass one
    they move by hand."""

    def __init__(
        self,
        sender: SpoolSender,
        *,
        warn: Callable[[str, str], None],
        on_tick: Callable[[], None] | None = None,
        key_refresh_seconds: float = 300.0,
        flush_interval: float = 0.5,
        send_interval: float = 0.05,
        flood_interval: float = 0.1,
        heartbeat_interval: float = 5.0,
        first_send_delay: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        super().__init__(name="hyperdash-shipper", daemon=True)
        self.sender = sender
        self.warn = warn
        self.on_tick = on_tick
        self.key_refresh_seconds = key_refresh_seconds
        self.flush_interval = flush_interval
        self.send_interval = send_interval
        self.flood_interval = flood_interval
        self.heartbeat_interval = heartbeat_interval
        self.last_error: errors.HyperdashError | None = None
        self._clock = clock
        self._wake = threading.Event()
        # True while the thread waits with nothing to send: the next nudge wakes it
        self._idle = False
        self._closing = False
        self._abandoned = False
        self._closed = False  # close() returned: the run has said its last word, the thread none
        self._backoff = Backoff(cap=10.0)
        # The first send waits a moment: a short job sends everything once, at exit, and a
        # long one does not pay for the HTTP client's import while it starts up.
        self._retry_at = clock() + first_send_delay
        self._last_contact = clock()
        self._next_tick = 0.0
        self._last_send = float("-inf")  # time.monotonic() when the last request started
        self._last_took = 0.0  # and how long it took
        self._last_full = False  # and whether it carried a full batch (output floods in)

    @property
    def retry_at(self) -> float:
        """The ``clock`` time before which nothing is sent (after a failure: the backoff or the
        server's ``Retry-After``)."""
        return self._retry_at

    # -- control --------------------------------------------------------------------------
    def nudge(self) -> None:
        """New events are in the spool: send them now if the thread is idle (else they go with
        the next request). Costs one attribute test while the thread is busy."""
        if self._idle:
            self._idle = False
            self._wake.set()

    def close(self, timeout: float) -> None:
        """Send what is left for at most ``timeout`` seconds, in batches as large as the
        server takes, then stop. Once this returns the thread neither reads the spool (which
        may be closed now) nor warns; a request still in flight ends unheard."""
        if timeout <= 0:
            self._abandoned = True  # not even one try: the backlog goes to another process
            self.sender.freeze()
            self._closed = True
            self._wake.set()
            return
        self.sender.use_big_batches()
        self._retry_at = 0.0  # one more try now, whatever the backoff said; a failure ends it
        self._closing = True
        self._wake.set()
        try:
            if self.is_alive():
                self.join(timeout)  # (Ctrl-C ends the wait, as the timeout would)
        finally:
            # a request may still be in flight; its answer must no longer move the cursor, and
            # the thread must no longer read the spool, which the run closes now
            self._abandoned = True
            self.sender.freeze()
            self._closed = True

    # -- the thread -----------------------------------------------------------------------
    def run(self) -> None:
        while not self._abandoned:
            if not self._closing:
                self._wait()
            if time.monotonic() >= self._next_tick:
                self._next_tick = time.monotonic() + self.flush_interval
                if self.on_tick is not None:
                    self._guard(self.on_tick)
            now = self._clock()
            if now < self._retry_at:
                if self._closing:
                    time.sleep(min(self._retry_at - now, 0.05))
                continue
            if self.sender.pending():
                self._guard(self._send_backlog)
            elif self._closing:
                return
            elif now - self._last_contact >= self.heartbeat_interval and self.sender.gone is None:
                self._guard(self._heartbeat)

    def _wait(self) -> None:
        """Until something is to be sent and may be, or the next tick is due."""
        now = time.monotonic()
        tick = max(0.0, self._next_tick - now)
        if self._clock() < self._retry_at:
            # in backoff, or before the first send: only the clock can make a send due
            self._wake.wait(min(tick, self.flush_interval))
            self._wake.clear()
            return
        # Requests start send_interval apart at least (flood_interval after a full batch), and
        # three times as long apart as the last one took, so that a flood is sent with at most
        # a quarter of one CPU and the job keeps the rest; what comes meanwhile goes together.
        least = self.flood_interval if self._last_full else self.send_interval
        gap = self._last_send + max(least, min(4 * self._last_took, 1.0)) - now
        if gap > 0 and self.sender.pending():
            self._wake.wait(min(gap, tick))
            self._wake.clear()
            return
        self._wake.clear()
        self._idle = True
        # (a nudge between the flag and this test is seen here: the events are in the spool)
        if not self.sender.pending():
            self._wake.wait(tick)
        self._idle = False
        self._wake.clear()
        # A line after a quiet spell goes at once; lines that keep coming (a training loop's
        # line a step) go together, one request per send_interval at most.
        gap = self._last_send + self.send_interval - time.monotonic()
        if gap > 0 and not self._closing and self.sender.pending():
            self._wake.wait(min(gap, tick))
            self._wake.clear()

    def _send_backlog(self) -> None:
        """One batch; more at once only while closing, or while the events wait in bounded
        memory (where waiting would lose some)."""
        self._guard(self.sender.transport.warm_up)  # the HTTP client's import is no request's time
        while self.sender.pending() and not self._abandoned:
            started = self._last_send = time.monotonic()
            sent = self._attempt(self.sender.send_batch)
            self._last_took = time.monotonic() - started
            self._last_full = sent == self.sender.batch_events
            if self._clock() < self._retry_at or not (self._closing or not self.sender.spool.on_disk):
                return

    def _heartbeat(self) -> None:
        env = envelope(HEARTBEAT, self.sender.run_uuid, {})
        self._attempt(lambda: self.sender.heard(self.sender.transport.send_events([env], self.sender.api)))

    def _attempt(self, send: Callable[[], Any]) -> Any:
        """``send()``'s result; None when it failed (the failure is handled here)."""
        try:
            result = send()
        except errors.RunDeleted as exc:  # (a heartbeat's answer): final, nothing to retry
            self.sender.run_deleted(exc)
            self._last_contact = self._clock()
        except errors.AuthenticationError as exc:
            self._failed(exc, max(1.0, min(self.key_refresh_seconds, 60.0)))
            problem = f"the server refused the API key (401: {exc.message})" if exc.status else exc.message
            self._say("auth", f"{problem}; events wait in the spool until a valid API key is found")
        except errors.RateLimited as exc:
            self._failed(exc, exc.retry_after if exc.retry_after is not None else self._backoff.next_delay())
        except errors.ServerError as exc:
            self._failed(exc, exc.retry_after if exc.retry_after is not None else self._backoff.next_delay())
            self._say("server", f"{exc}; events wait in the spool and will be sent again")
        except errors.ServerUnreachable as exc:
            self._failed(exc, self._backoff.next_delay())
            self._say("unreachable", f"{exc}; events wait in the spool and will be sent when it answers")
        except errors.TransportError as exc:
            self._failed(exc, self._backoff.next_delay())
            self._say("transport", f"{exc}; events wait in the spool")
        else:
            self._backoff.reset()
            self.last_error = None
            self._last_contact = self._clock()
            return result
        return None

    def _failed(self, exc: errors.HyperdashError, delay: float) -> None:
        self.last_error = exc
        if self._closing:
            # the last try failed: what is left goes to the uploader, no need to hold the exit
            self._abandoned = True
        self._retry_at = self._clock() + delay
        self._last_contact = self._clock()

    def _say(self, key: str, message: str) -> None:
        if not self._closed:  # (after the run's last line, what the thread met is for nobody)
            self.warn(key, message)

    def _guard(self, step: Callable[[], None]) -> None:
        try:
            step()
        except Exception as exc:  # a bug of ours must never stop sending or reach the job
            self._say("internal", f"internal error while sending: {exc!r}")
            self._retry_at = self._clock() + self._backoff.next_delay()

"""The one thread that writes to the store.

Every write goes through :class:`Writer`: one thread that takes whatever jobs are waiting, runs
them in one transaction (a group commit) and only then answers them, so a reply means "on
disk". After each commit it hands the facts the committed jobs stored to ``announce`` (the
store's :class:`~hyperdash.server.announce.Dispatcher`); where other processes share the database,
``relay`` sends them to those inside the transaction (:mod:`hyperdash.server.relay`).

The queue is bounded: a job submitted with a ``size`` (ingest gives its body's) is refused with
:class:`~hyperdash.server.errors.Unavailable` (503, ``Retry-After``) while the jobs waiting hold
more than ``max_queued_bytes``, so a database slower than the senders makes them wait and retry
rather than the server's memory grow.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as WaitedTooLong
from typing import Any

from sqlalchemy.engine import Connection, Engine

from .errors import DATABASE_DOWN, Unavailable

__all__ = ["Writer", "Job", "DEFAULT_MAX_QUEUED_BYTES", "BUSY_RETRY_AFTER_S", "Failures"]

log = logging.getLogger("hyperdash.server")

Job = Callable[[Connection], Any]

# What the jobs waiting for the writer may hold, at most: several seconds of the fastest ingest.
DEFAULT_MAX_QUEUED_BYTES = 256 * 1024 * 1024
# What a refused sender is told to wait (seconds): the queue drains within a few group commits.
BUSY_RETRY_AFTER_S = 1
# While something keeps failing (the database is down), how often it is said again (seconds).
FAILING_REMINDER_S = 60.0


class Failures:
    """The log of one thing that may fail again and again while the database is out of reach:
    the first failure with its traceback, then one line a minute while they go on, and one when
    it works again; not a traceback at each try (several a second would flood the log)."""

    def __init__(self, what: str):
        self.what = what
        self._since: float | None = None
        self._said_at = 0.0

    def failed(self, exc: BaseException) -> None:
        """Note a failure (call it in the ``except`` block)."""
        now = time.monotonic()
        if self._since is None:
            log.exception("%s failed", self.what)
            self._since = self._said_at = now
        elif now - self._said_at >= FAILING_REMINDER_S:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            log.error("%s still failing, for %.0f s: %s", self.what, now - self._since, reason)
            self._said_at = now

    def worked(self) -> None:
        """Note a success: said once after failures."""
        if self._since is not None:
            log.warning("%s works again, after failing for %.0f s", self.what, time.monotonic() - self._since)
            self._since = None


class Writer:
    """The one thread that writes. ``submit(job)`` returns a Future answered after the commit.

    A job is ``job(conn) -> result``. Jobs waiting together are committed together; if that
    transaction fails, each of them is retried alone, so one failing job cannot take the others
    down with it. A result with a ``facts`` attribute (a list of
    :class:`~hyperdash.server.facts.Fact`) has them announced: after each commit, the facts of
    its jobs, in job order, go to ``announce`` in one call on the writer thread (which must
    return at once: :meth:`Dispatcher.publish <hyperdash.server.announce.Dispatcher.publish>`
    does). ``on_rollback`` is called after any transaction that failed (so caches of what was
    written can be dropped). ``relay(conn, facts)``, when set, is called inside each transaction
    with the facts its jobs stored (before the commit, so that they are sent if and only if it
    commits). ``before(conn, jobs)``, when set, is called at the start of each transaction with
    the jobs it will run (to lock what they write, in one order, where several processes write).
    ``unreachable_at`` is when (milliseconds since the epoch) a transaction last failed because
    the database could not be reached or written (None: never), for what must not count the time
    the store was away as silence.
    """

    def __init__(self, engine: Engine, max_group: int = 256,
                 announce: Callable[[Sequence[Any]], None] | None = None,
                 on_rollback: Callable[[], None] | None = None,
                 max_queued_bytes: int = DEFAULT_MAX_QUEUED_BYTES):
        self.engine = engine
        self.announce = announce
        self.on_rollback = on_rollback
        self.relay: Callable[[Connection, list], None] | None = None
        self.before: Callable[[Connection, list[Job]], None] | None = None
        self.max_group = max_group
        self.max_queued_bytes = max_queued_bytes
        self._queued_bytes = 0  # the sizes of the jobs waiting (those submitted with one)
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._stopped = False
        self._lock = threading.Lock()
        self._periodic: list[list] = []  # [interval, next due (monotonic), job, Failures]
        self.unreachable_at: int | None = None
        self._thread = threading.Thread(target=self._loop, name="hyperdash-writer", daemon=True)
        self._thread.start()

    def submit(self, job: Job, size: int | None = None, alone: bool = False) -> Future:
        """Queue ``job``; a Future answered after its commit. With ``size`` (its bytes, roughly)
        it is refused (the Future fails with Unavailable) while the queue is full, unless the
        queue is empty (so a job bigger than the bound still goes, alone). ``alone``: in a
        transaction of its own, never grouped with others (a job that locks rows in an order of
        its own, which other jobs' rows in the same transaction would upset)."""
        fut: Future = Future()
        with self._lock:  # so that no job lands behind the stop mark
            if self._stopped:
                fut.set_exception(Unavailable("the server is shutting down"))
                return fut
            if size is not None:
                if self._queued_bytes and self._queued_bytes + size > self.max_queued_bytes:
                    fut.set_exception(Unavailable("the server is busy storing other batches; retry shortly",
                                                  retry_after=BUSY_RETRY_AFTER_S))
                    return fut
                self._queued_bytes += size
            self._queue.put((job, fut, size, alone))
        return fut

    @property
    def queued_bytes(self) -> int:
        """The sizes of the jobs waiting (those submitted with one)."""
        return self._queued_bytes

    def _taken(self, item: tuple) -> None:
        """A job left the queue: its size no longer counts."""
        if item[2] is not None:
            with self._lock:
                self._queued_bytes -= item[2]

    def call(self, job: Job, timeout: float | None = 60, alone: bool = False) -> Any:
        """Run ``job`` on the writer and wait for its result (for synchronous callers);
        ``alone`` as :meth:`submit` takes it. Past ``timeout`` (the database does not answer,
        and the jobs ahead of this one wait for it too), :class:`Unavailable`; the job is then
        dropped, unless it has begun."""
        future = self.submit(job, alone=alone)
        try:
            return future.result(timeout)
        except WaitedTooLong:
            future.cancel()
            raise Unavailable("the database did not answer in time; try again shortly",
                              retry_after=BUSY_RETRY_AFTER_S) from None

    def every(self, interval: float, job: Job) -> None:
        """Run ``job`` on the writer about every ``interval`` seconds (its own transaction)."""
        self._periodic.append([interval, time.monotonic() + interval, job, Failures("periodic store job")])
        with self._lock:
            if not self._stopped:  # wake the loop, which may be waiting without a timeout, to count it
                self._queue.put(())

    def stop(self, timeout: float = 30) -> None:
        """Finish every job already submitted, then stop."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            self._queue.put(None)
        self._thread.join(timeout)

    def _loop(self) -> None:
        conn = self.engine.connect()
        try:
            while True:
                wait = self._next_periodic_wait()
                try:
                    item = self._queue.get(timeout=wait)
                except queue.Empty:
                    item = ()
                if item == ():
                    self._run_periodic(conn)
                    continue
                group: list[tuple] = []
                alone: list[tuple] = []
                done = item is None
                if not done:
                    self._taken(item)
                    (alone if item[3] else group).append(item[:2])
                while len(group) + len(alone) < self.max_group:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is None:
                        done = True
                        continue
                    if item == ():  # (a wake-up: the periodic jobs run after the group)
                        continue
                    self._taken(item)
                    (alone if item[3] else group).append(item[:2])
                if group:
                    self._run_group(conn, group)
                for job in alone:
                    self._run_group(conn, [job])
                if done and self._queue.empty():
                    return
                self._run_periodic(conn)
        finally:
            conn.close()

    def _next_periodic_wait(self) -> float | None:
        if not self._periodic:
            return None
        return max(0.0, min(p[1] for p in self._periodic) - time.monotonic())

    def _run_periodic(self, conn: Connection) -> None:
        now = time.monotonic()
        for entry in self._periodic:
            if entry[1] <= now:
                entry[1] = now + entry[0]
                try:
                    with conn.begin():
                        result = entry[2](conn)
                        self._relay(conn, [result])
                except Exception as exc:
                    self._rolled_back(exc)
                    entry[3].failed(exc)
                else:
                    entry[3].worked()
                    self._committed([result])

    def _run_group(self, conn: Connection, group: list) -> None:
        # (a job whose caller gave up waiting, or whose request went away, is not run)
        group = [(job, fut) for job, fut in group if fut.set_running_or_notify_cancel()]
        if not group:
            return
        try:
            with conn.begin():
                if self.before is not None:
                    self.before(conn, [job for job, _ in group])
                results = [job(conn) for job, _ in group]
                self._relay(conn, results)
        except Exception as exc:
            self._rolled_back(exc)
            if len(group) == 1:
                group[0][1].set_exception(exc)
                return
            for job, fut in group:
                try:
                    with conn.begin():
                        if self.before is not None:
                            self.before(conn, [job])
                        result = job(conn)
                        self._relay(conn, [result])
                except Exception as job_exc:
                    self._rolled_back(job_exc)
                    fut.set_exception(job_exc)
                else:
                    self._committed([result])
                    fut.set_result(result)
            return
        self._committed(results)
        for (_, fut), result in zip(group, results, strict=True):
            fut.set_result(result)

    def _rolled_back(self, exc: Exception) -> None:
        if isinstance(exc, DATABASE_DOWN):
            self.unreachable_at = time.time_ns() // 1_000_000
        if self.on_rollback is not None:
            self.on_rollback()

    def _relay(self, conn: Connection, results: list) -> None:
        """Hand the facts of the jobs of this transaction to ``relay`` (before the commit)."""
        if self.relay is not None:
            facts = _facts(results)
            if facts:
                self.relay(conn, facts)

    def _committed(self, results: list) -> None:
        """Announce the facts of the jobs of one commit."""
        if self.announce is None:
            return
        facts = _facts(results)
        if facts:
            try:
                self.announce(facts)
            except Exception:  # announcing must never cost a commit its reply
                log.exception("announcing a commit's facts failed")



def _facts(results: list) -> list:
    """The facts of the jobs' results, in job order."""
    return [fact for result in results for fact in getattr(result, "facts", ())]

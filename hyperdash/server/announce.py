"""The store's announcements: after each commit the writer hands the facts it stored
(:mod:`hyperdash.server.facts`) to a :class:`Dispatcher`, which delivers them to every
subscriber off the writer thread.

A reaction to what happened (the live streams, the notification outbox, trouble detection) is
a subscriber, in a module of its own::

    def on_facts(facts: tuple[Fact, ...]) -> None:   # called on the subscriber's own thread
        for fact in facts:
            if isinstance(fact, RunEnded):
                ...

    store.dispatcher.subscribe(on_facts, name="outbox")

Each subscriber has a thread and a bounded queue of its own, so the writer never waits on a
subscriber, and a slow or failing one holds up or breaks neither the writer nor the others. A
subscriber gets every commit's facts in commit order, one tuple per commit (shared with the
other subscribers, and as frozen as the facts in it). An exception it raises is logged, and the
next commit's facts come as usual. When it falls ``max_pending`` commits behind, the newer
commits' facts are dropped for it (counted in :attr:`Subscription.dropped`) and, once it has
caught up with what was queued, ``on_overflow(count)`` tells it how many commits it missed, so
it can read what it needs from the store.

Only this process's own commits are announced here; facts are plain data
(:func:`hyperdash.server.facts.to_json`), so they can travel to another process as they are.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Sequence

from .facts import Fact

__all__ = ["Dispatcher", "Subscription", "DEFAULT_MAX_PENDING"]

log = logging.getLogger("hyperdash.server")

DEFAULT_MAX_PENDING = 10_000
_STOP = object()


class Subscription:
    """One subscriber: its callback, its queue and its thread (made by :meth:`Dispatcher.subscribe`)."""

    def __init__(self, callback: Callable[[tuple[Fact, ...]], None], name: str, max_pending: int,
                 on_overflow: Callable[[int], None] | None):
        self.callback = callback
        self.name = name
        self.on_overflow = on_overflow
        self.dropped = 0  # commits whose facts were not delivered because the queue was full
        self._missed = 0  # of those, the ones not yet reported to on_overflow
        self._lock = threading.Lock()
        self._queue: queue.Queue = queue.Queue(max_pending)
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name=f"hyperdash-announce-{name}", daemon=True)
        self._thread.start()

    def _offer(self, facts: tuple[Fact, ...]) -> None:
        """Queue ``facts`` for delivery, never waiting (the writer's thread calls this)."""
        try:
            self._queue.put_nowait(facts)
        except queue.Full:
            with self._lock:
                if not self._missed:
                    log.warning("subscriber %r is %d commits behind: dropping facts for it",
                                self.name, self._queue.maxsize)
                self.dropped += 1
                self._missed += 1

    def _loop(self) -> None:
        while True:
            facts = self._queue.get()
            if facts is _STOP:
                return
            try:
                self.callback(facts)
            except Exception:
                log.exception("subscriber %r failed on %d facts", self.name, len(facts))
            if self._missed and self._queue.empty():
                with self._lock:
                    missed, self._missed = self._missed, 0
                if self.on_overflow is not None:
                    try:
                        self.on_overflow(missed)
                    except Exception:
                        log.exception("subscriber %r failed on an overflow", self.name)

    def close(self, timeout: float | None = 10) -> None:
        """Deliver what is queued, then stop (waits at most ``timeout`` seconds)."""
        if self._closed:
            return
        self._closed = True
        try:
            self._queue.put(_STOP, timeout=timeout)
        except queue.Full:  # a subscriber stuck for good: leave its (daemon) thread be
            return
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)


class Dispatcher:
    """Delivers each commit's facts to every subscriber, each on a thread of its own."""

    def __init__(self) -> None:
        self._subscriptions: tuple[Subscription, ...] = ()
        self._lock = threading.Lock()
        self._closed = False

    def subscribe(self, callback: Callable[[tuple[Fact, ...]], None], *, name: str,
                  max_pending: int = DEFAULT_MAX_PENDING,
                  on_overflow: Callable[[int], None] | None = None) -> Subscription:
        """Call ``callback(facts)`` on a new thread with every later commit's facts, in commit
        order. ``name`` names the thread and the log lines about it."""
        if max_pending < 1:
            raise ValueError("max_pending must be at least 1")
        sub = Subscription(callback, name, max_pending, on_overflow)
        with self._lock:
            if self._closed:
                sub.close()
                raise RuntimeError("the dispatcher is closed")
            self._subscriptions += (sub,)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """Stop delivering to ``sub`` (what is queued for it is still delivered)."""
        with self._lock:
            self._subscriptions = tuple(s for s in self._subscriptions if s is not sub)
        sub.close()

    def publish(self, facts: Sequence[Fact]) -> None:
        """Hand one commit's facts to every subscriber; returns at once (safe from any thread)."""
        if not facts:
            return
        facts = tuple(facts)
        for sub in self._subscriptions:  # (a tuple, replaced whole: no lock needed to read it)
            sub._offer(facts)

    def close(self, timeout: float = 10) -> None:
        """Deliver what is queued to every subscriber, then stop their threads."""
        with self._lock:
            self._closed = True
            subs, self._subscriptions = self._subscriptions, ()
        for sub in subs:
            sub.close(timeout)

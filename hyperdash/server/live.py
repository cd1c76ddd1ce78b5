"""Live fan-out: what the store announced, pushed to the server-sent event streams following it.

The :class:`Hub` subscribes to every process's commits, ``store.everywhere`` (on SQLite the
store's dispatcher, :mod:`hyperdash.server.announce`; on PostgreSQL the relay of
:mod:`hyperdash.server.relay`, so a line stored through another server process shows too, in
commit order): it gets each commit's facts on its subscription's thread and hands them to the
event loop, where
they become the streams' JSON, and only for streams somebody follows. A run's stream gets its
``log``, ``metric`` and ``param`` events (and ``alert`` when a rule fired) in seq order within
each commit, commit after commit (an older batch stored late comes late), then a
``status`` with the run when the run was created or its state changed (stalled or resumed too);
the account's stream gets a ``run`` event then (and a ``deleted`` one with the uuid of a run
deleted, whose own streams end). A
follower that falls too far behind is dropped; its browser reconnects with ``Last-Event-ID``
and reads what it missed from the store.
"""

from __future__ import annotations

import asyncio

import orjson
from msgspec.structs import asdict

from .facts import RUN_FACTS, Fact, LinesStored, ParamsStored, PointsStored, RuleFired, RunDeleted
from .rules import firing_of_fact
from .views import iso, point_json, run_json

__all__ = ["Hub", "sse"]

_QUEUE_ITEMS = 2000


def sse(event: str, data, event_id: int | None = None) -> bytes:
    """One server-sent event."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: ".encode() + orjson.dumps(data) + b"\n\n"


class Subscription:
    def __init__(self, hub: Hub, key):
        self.hub = hub
        self.key = key
        self.queue: asyncio.Queue = asyncio.Queue(_QUEUE_ITEMS)
        self.overflowed = False

    async def get(self, timeout: float):
        """The next list of events, [] on timeout, or None when the stream must end."""
        if self.overflowed or self.hub.closed:
            return None
        try:
            return await asyncio.wait_for(self.queue.get(), timeout)
        except asyncio.TimeoutError:
            return []

    def close(self) -> None:
        subs = self.hub._subs.get(self.key)
        if subs is not None:
            subs.discard(self)
            if not subs:
                self.hub._subs.pop(self.key, None)


class Hub:
    """Who follows what, on one event loop."""

    def __init__(self):
        self._subs: dict[tuple, set[Subscription]] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        self.closed = False

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.closed = False

    def subscribe(self, user_id: int, run_uuid: str | None) -> Subscription:
        """Follow a run (or, with ``run_uuid=None``, the account's runs). Call on the loop."""
        sub = Subscription(self, (user_id, run_uuid))
        self._subs.setdefault(sub.key, set()).add(sub)
        return sub

    def on_facts(self, facts: tuple[Fact, ...]) -> None:
        """The dispatcher's callback: one commit's facts, handed to the loop (from any thread)."""
        self._call_soon(self._deliver, facts)

    def on_overflow(self, missed: int) -> None:
        """The dispatcher dropped facts for the hub: end every stream, so that each browser
        reconnects and reads what it missed from the store."""
        self._call_soon(self._end_all)

    def _call_soon(self, callback, *args) -> None:
        if self.loop is not None and not self.closed:
            try:
                self.loop.call_soon_threadsafe(callback, *args)
            except RuntimeError:  # the loop is closed: nobody is listening any more
                pass

    def _deliver(self, facts: tuple[Fact, ...]) -> None:
        by_run: dict[tuple, list[Fact]] = {}
        for fact in facts:
            by_run.setdefault((fact.user_id, fact.run_uuid), []).append(fact)
        for (user_id, run_uuid), run_facts in by_run.items():
            account = self._subs.get((user_id, None))
            followers = self._subs.get((user_id, run_uuid))
            if not account and not followers:
                continue
            if any(isinstance(f, RunDeleted) for f in run_facts):
                # Gone: the account's pages drop it, and its own streams end (a reconnection finds no run).
                if account:
                    _push(account, [(None, "deleted", {"uuid": run_uuid})])
                for sub in list(followers or ()):
                    _end(sub)
                continue
            # The run's state after the commit, when the run was created or changed.
            state = next((f.run for f in reversed(run_facts) if isinstance(f, RUN_FACTS)), None)
            status = run_json(asdict(state)) if state is not None else None
            if account and status is not None:
                _push(account, [(None, "run", status)])
            if followers:
                events = _run_events(run_facts)
                if state is not None:
                    events.append((state.max_seq, "status", status))
                if events:
                    _push(followers, events)

    def close(self) -> None:
        """End every stream (server shutdown); safe from any thread."""
        self.closed = True
        if self.loop is not None:
            try:
                self.loop.call_soon_threadsafe(self._wake_all)
            except RuntimeError:
                pass

    def _wake_all(self) -> None:
        for subs in list(self._subs.values()):
            for sub in list(subs):
                _wake(sub)

    def _end_all(self) -> None:
        for subs in list(self._subs.values()):
            for sub in list(subs):
                _end(sub)


def _run_events(facts: list[Fact]) -> list[tuple]:
    """The events of a run's stream, as (seq, event name, data), in seq order."""
    found: list[tuple] = []
    for fact in facts:
        if isinstance(fact, LinesStored):
            found += [(line.seq, "log", {"seq": line.seq, "stream": line.stream, "text": line.text,
                                         "timestamp": iso(line.ts), "partial": bool(line.partial),
                                         "progress": bool(line.progress)})
                      for line in fact.lines]
        elif isinstance(fact, PointsStored):
            found += [(p.seq, "metric", point_json(p.name, p.value, p.step, p.ts, p.is_internal))
                      for p in fact.points]
            found += [(m.seq, "metric", point_json(m.payload["name"], m.payload["value"], m.payload["step"], m.ts,
                                                   m.payload["is_internal"]))
                      for m in fact.nonfinite]
        elif isinstance(fact, ParamsStored):
            found += [(p.seq, "param", {"params": p.params}) for p in fact.params]
        elif isinstance(fact, RuleFired):  # after its point (the sort is stable)
            found.append((fact.seq, "alert", firing_of_fact(fact)))
    found.sort(key=lambda item: item[0])
    return found


def _push(subs: set[Subscription], events: list[tuple]) -> None:
    for sub in list(subs):
        try:
            sub.queue.put_nowait(events)
        except asyncio.QueueFull:
            _end(sub)


def _end(sub: Subscription) -> None:
    """Drop a follower: its stream ends, and its browser reconnects to read the store."""
    sub.overflowed = True
    sub.close()
    _wake(sub)


def _wake(sub: Subscription) -> None:
    # Make a waiting get() return so the stream notices it must end.
    while True:
        try:
            sub.queue.put_nowait(None)
            return
        except asyncio.QueueFull:
            sub.queue.get_nowait()

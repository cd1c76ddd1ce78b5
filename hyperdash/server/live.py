"""Live fan-out: what the writer committed, pushed to the server-sent event streams following it.

The writer hands each committed batch's news to :meth:`Hub.publish` from its own thread; the
news is turned into JSON on the event loop, and only for streams somebody follows. A follower
that falls too far behind is dropped; its browser reconnects with ``Last-Event-ID`` and reads
what it missed from the store.
"""

from __future__ import annotations

import asyncio
from typing import Callable, Iterable

import orjson

__all__ = ["Hub", "News", "sse"]

# (user_id, run uuid or None for the account's stream, build) where build() gives the events
# as (seq or None, event name, data).
News = tuple[int, "str | None", Callable[[], list[tuple]]]

_QUEUE_ITEMS = 2000


def sse(event: str, data, event_id: int | None = None) -> bytes:
    """One server-sent event."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: ".encode() + orjson.dumps(data) + b"\n\n"


class Subscription:
    def __init__(self, hub: "Hub", key):
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

    def publish(self, news: Iterable[News]) -> None:
        """Hand over committed news; safe from any thread."""
        news = list(news)
        if news and self.loop is not None and not self.closed:
            try:
                self.loop.call_soon_threadsafe(self._deliver, news)
            except RuntimeError:  # the loop is closed: nobody is listening any more
                pass

    def _deliver(self, news: list[News]) -> None:
        for user_id, run_uuid, build in news:
            subs = self._subs.get((user_id, run_uuid))
            if not subs:
                continue
            events = build()
            for sub in list(subs):
                try:
                    sub.queue.put_nowait(events)
                except asyncio.QueueFull:
                    sub.overflowed = True
                    sub.close()
                    _wake(sub)

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


def _wake(sub: Subscription) -> None:
    # Make a waiting get() return so the stream notices it must end.
    while True:
        try:
            sub.queue.put_nowait(None)
            return
        except asyncio.QueueFull:
            sub.queue.get_nowait()

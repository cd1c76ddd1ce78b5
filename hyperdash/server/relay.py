"""Facts and signals between the server processes that share one PostgreSQL database.

Every process announces its own commits on its store's dispatcher
(:mod:`hyperdash.server.announce`). Where several processes share the database, what one of
them committed must reach the others too: the live streams of a browser attached to process A
show the lines a job sent through process B. The :class:`Relay` carries them with PostgreSQL's
``LISTEN``/``NOTIFY``:

- inside each transaction that stores facts, the writer calls :meth:`Relay.publish`, which
  sends them with ``NOTIFY`` (sent at the commit, and not at all when the transaction rolls
  back). A notification carries at most 8,000 bytes: bigger facts go into the ``relay_facts``
  table in the same transaction and the notification carries the row's id;
- one thread per process listens on its own connection and hands every process's facts, its
  own included, to the relay's subscribers, in the order the transactions committed (which
  PostgreSQL guarantees for notifications), so a run's events arrive in seq order whichever
  process stored them;
- :meth:`Relay.signal` sends a bare name (``"keys"``: an API key was revoked) to the callbacks
  registered with :meth:`Relay.on_signal` in every process.

A subscriber asks for every process's facts with ``store.everywhere.subscribe(...)`` (the live
:class:`~hyperdash.server.live.Hub` does); one that must react once per fact, such as the
notification outbox, subscribes to ``store.dispatcher``, its own process's commits only. If the
listening connection is lost, it is opened again, and each subscriber's ``on_overflow`` and each
signal's callback is called, since notifications sent meanwhile are gone: they read what they
need from the store.

Notifications are scoped to the schema the store uses (its channel's name is derived from the
database and schema), so installations that share a PostgreSQL server in different schemas do
not hear each other.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Sequence

from sqlalchemy import Table, delete, select
from sqlalchemy.engine import Connection, Engine

from ..events import now_ms
from .announce import DEFAULT_MAX_PENDING, Dispatcher, Subscription
from .facts import Fact, from_json, to_json
from .writer import Failures

__all__ = ["Relay", "NOTIFY_LIMIT", "KEEP_FACTS_S"]

log = logging.getLogger("hyperdash.server")

# PostgreSQL refuses a notification's payload from 8,000 bytes on; ours keep a margin.
NOTIFY_LIMIT = 7900
# How long a relayed row of big facts is kept (every listener has read it within milliseconds).
KEEP_FACTS_S = 600.0
_RECONNECT_S = (0.1, 5.0)  # the first and the longest wait before listening again


class Relay:
    """``LISTEN``/``NOTIFY`` between the processes sharing the PostgreSQL database of ``engine``
    (``table``: the store's ``relay_facts``, for facts too big for a notification).

    ``subscribe`` is :meth:`Dispatcher.subscribe <hyperdash.server.announce.Dispatcher.subscribe>`
    for every process's commits. :meth:`start` listens (and returns once it does); :meth:`close`
    stops."""

    def __init__(self, engine: Engine, table: Table):
        self.engine = engine
        self.table = table
        self.dispatcher = Dispatcher()
        self._subscriptions: list[Subscription] = []
        self._signals: dict[str, list[Callable[[], None]]] = {}
        self._stop = threading.Event()
        self._listening = threading.Event()
        self._thread: threading.Thread | None = None
        with engine.connect() as conn:
            where = conn.exec_driver_sql("SELECT current_database() || '.' || current_schema()").scalar_one()
        self.channel = "hyperdash_" + hashlib.sha256(str(where).encode()).hexdigest()[:16]

    # --- sending (inside a writer transaction) --------------------------------------------------
    def publish(self, conn: Connection, facts: Sequence[Fact]) -> None:
        """Send ``facts`` to every process (this one included) when ``conn``'s transaction commits."""
        if not facts:
            return
        body = to_json(list(facts)).decode()
        if len(body.encode()) + 1 <= NOTIFY_LIMIT:
            self._notify(conn, "F" + body)
            return
        row_id = conn.execute(self.table.insert().values(created_at=now_ms(), body=body)
                              .returning(self.table.c.id)).scalar_one()
        self._notify(conn, f"R{row_id}")

    def signal(self, conn: Connection, name: str) -> None:
        """Call the callbacks of ``name`` in every process when ``conn``'s transaction commits."""
        self._notify(conn, "S" + name)

    def _notify(self, conn: Connection, payload: str) -> None:
        conn.exec_driver_sql("SELECT pg_notify(%(channel)s, %(payload)s)",
                             {"channel": self.channel, "payload": payload})

    def forget_old(self, conn: Connection) -> int:
        """Delete big facts relayed over ``KEEP_FACTS_S`` ago (a sweep); how many."""
        cutoff = now_ms() - int(KEEP_FACTS_S * 1000)
        return conn.execute(delete(self.table).where(self.table.c.created_at < cutoff)).rowcount

    # --- receiving ------------------------------------------------------------------------------
    def subscribe(self, callback: Callable[[tuple[Fact, ...]], None], *, name: str,
                  max_pending: int = DEFAULT_MAX_PENDING,
                  on_overflow: Callable[[int], None] | None = None) -> Subscription:
        """Call ``callback(facts)`` with every process's commits, in commit order (on a thread
        of the subscriber's own); ``on_overflow`` also when notifications may have been missed."""
        sub = self.dispatcher.subscribe(callback, name=name, max_pending=max_pending, on_overflow=on_overflow)
        self._subscriptions.append(sub)
        return sub

    def on_signal(self, name: str, callback: Callable[[], None]) -> None:
        """Call ``callback()`` (on the listening thread: it must return at once) whenever any
        process sends the signal ``name``, and whenever signals may have been missed."""
        self._signals.setdefault(name, []).append(callback)

    def start(self, timeout: float = 30) -> None:
        """Listen on a thread of its own; returns once listening (RuntimeError if it cannot)."""
        self._thread = threading.Thread(target=self._loop, name="hyperdash-relay", daemon=True)
        self._thread.start()
        if not self._listening.wait(timeout):
            self.close()
            raise RuntimeError("could not listen for the other server processes' notifications")

    def close(self, timeout: float = 10) -> None:
        """Stop listening, then deliver what was received to the subscribers and stop them."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.dispatcher.close()

    def _loop(self) -> None:
        wait = _RECONNECT_S[0]
        first = True
        failures = Failures("listening to the other server processes")
        while not self._stop.is_set():
            raw = None
            try:
                raw = self.engine.raw_connection()
                pg = raw.driver_connection
                assert pg is not None  # (a connection just checked out)
                pg.autocommit = True  # notifications arrive between transactions
                pg.execute(f'LISTEN "{self.channel}"')
                self._listening.set()
                failures.worked()
                if not first:
                    self._missed()
                first, wait = False, _RECONNECT_S[0]
                while not self._stop.is_set():
                    for note in pg.notifies(timeout=0.5, stop_after=1000):
                        self._received(note.payload)
            except Exception as exc:
                if self._stop.is_set():
                    return
                failures.failed(exc)
                self._stop.wait(wait)
                wait = min(wait * 2, _RECONNECT_S[1])
            finally:
                if raw is not None:
                    raw.invalidate()  # closed, not handed back to the pool still listening

    def _received(self, payload: str) -> None:
        kind, rest = payload[:1], payload[1:]
        if kind == "F":
            self.dispatcher.publish(from_json(rest))
        elif kind == "R":
            # (read on another connection: the listening one is busy waiting for notifications)
            with self.engine.connect() as conn:
                body = conn.execute(select(self.table.c.body).where(self.table.c.id == int(rest))).scalar()
            if body is None:  # (deleted after KEEP_FACTS_S: this listener was that far behind)
                self._missed()
            else:
                self.dispatcher.publish(from_json(body))
        elif kind == "S":
            for callback in self._signals.get(rest, ()):
                _call(callback)

    def _missed(self) -> None:
        """Notifications may have been lost (the connection was): tell everyone to read the store."""
        for sub in self._subscriptions:
            if sub.on_overflow is not None:
                _call(sub.on_overflow, 0)
        for callbacks in self._signals.values():
            for callback in callbacks:
                _call(callback)


def _call(callback, *args) -> None:
    try:
        callback(*args)
    except Exception:
        log.exception("a relay callback failed")

"""From what the store announces to rows in the outbox.

An :class:`OutboxSubscriber` listens to the store's announcements on a thread of its own (never
the writer's, so ingest never waits on it). For each run that ended, went silent or came back,
it builds a :class:`~hyperdash.server.notify.Notification` (the run's name, status, duration,
exit code or signal, host, the last lines of output and the link to the run) and queues it,
through the writer, for every enabled channel of the run's account that asks for it.

Nothing is lost when the subscriber falls behind: the dispatcher then drops facts for it and says
so (``on_overflow``), and the subscriber looks in the store for the runs that ended or went
silent since its last such scan (at most a day back; deleted runs are passed over, as they are
whenever something would be queued for them) and queues what is missing; the unique
(channel, key) of each row makes that a no-op for what was queued already. The same scan runs at
startup over the last ``rescan_s``, for facts committed just before a crash. What a scan cannot
see: a run that went silent and came back meanwhile (its ``back`` is off by default anyway), and
a rescanned run's ``back``.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from sqlalchemy import and_, or_, select

from ...events import FINAL_STATUSES, now_ms
from ...events import LOST as LOST_STATUS
from ...plaintext import plain_line
from ..deletion import is_deleted, not_deleted
from ..errors import Unavailable
from ..facts import Fact, RuleFired, RunBack, RunEnded, RunLost, RunResumed, RunStalled, RunState
from ..queries import log_lines
from ..store import Store, runs
from .message import BACK, ENDED, LOST, RULE, STALLED, Notification
from .outbox import ChannelRow, NotifyConfig, enabled_channels, enqueue_many, moot_held, wants

__all__ = ["OutboxSubscriber", "notification_for"]

log = logging.getLogger("hyperdash.server.notify")

# An overflow's scan looks back at most this far (a day of dropped facts is beyond any backlog).
MAX_RESCAN_MS = 24 * 3600 * 1000
# Clocks of the commit and of this thread differ by the time a fact waits in the queue.
_MARGIN_MS = 60 * 1000


def notification_for(kind: str, run: RunState, *, base_url: str, tail: str = "",
                     rule: RuleFired | None = None) -> Notification:
    """The notification about ``run`` (as it stands after the event) for ``kind``; for
    :data:`RULE`, ``rule`` is the firing."""
    end = run.ended_at if kind == ENDED and run.ended_at is not None else run.last_seen_at
    key = ""
    if kind == RULE:
        # One per firing: a rule may fire, re-arm and fire again within one batch (or in a
        # replayed one, which leaves last_seen_at as it was); a firing told twice is one.
        if rule is None:
            raise ValueError("a rule's notification needs the firing")
        key = hashlib.sha256(f"{kind}\0{run.uuid}\0{rule.firing_id}".encode()).hexdigest()[:32]
    elif kind in (LOST, BACK, STALLED):
        # A run may go silent (or stall) many times: each time is its own.
        key = hashlib.sha256(f"{kind}\0{run.uuid}\0{run.last_seen_at}".encode()).hexdigest()[:32]
    return Notification(
        kind=kind, run_name=run.name or "", run_uuid=run.uuid, base_url=base_url,
        status=run.status if kind == ENDED else None, run_status=run.status,
        duration_s=max(0, end - run.started_at) / 1000,
        exit_code=run.exit_code, signal=run.signal, host=run.host, tail=tail, key=key,
        rule=rule.rule if rule else None, value=rule.value if rule else None, step=rule.step if rule else None,
    )


def _tail_text(lines: list[dict[str, Any]]) -> str:
    """The last lines as plain text, as a person reads them in a mail or on a phone: colours
    and other terminal codes gone, a progress bar its last state, an erased one no line."""
    texts = []
    for line in lines:
        plain = plain_line(line["text"], redrawn=bool(line.get("progress")))
        if plain is not None:
            texts.append(plain if line["partial"] else plain + "\n")
    return "".join(texts).rstrip("\n")


class OutboxSubscriber:
    """Queues a notification per interested channel for each run that ends, is lost or is back.

    ``wake`` is called after rows were queued (the delivery worker's nudge)."""

    def __init__(self, store: Store, config: NotifyConfig, wake: Callable[[], None] | None = None):
        self.store = store
        self.config = config
        self.wake = wake
        self._scanned_to = now_ms() - int(config.rescan_s * 1000)
        self.subscription = store.dispatcher.subscribe(self.on_facts, name="outbox", on_overflow=self.on_overflow)

    def on_facts(self, facts: Iterable[Fact]) -> None:
        for fact in facts:
            # Each fact on its own: one that fails (a bad channel row, the writer busy past its
            # timeout) must not keep the others of the commit from being queued.
            try:
                self.on_fact(fact)
            except Exception:
                log.exception("the notification outbox could not queue %r", fact)

    def on_fact(self, fact: Fact) -> None:
        if isinstance(fact, RunEnded):
            self.consider(fact.user_id, fact.run_id, ENDED, fact.run)
            self.moot(fact.run_id, (LOST, STALLED), "the run ended")
        elif isinstance(fact, RunLost):
            self.consider(fact.user_id, fact.run_id, LOST, fact.run)
        elif isinstance(fact, RunBack):
            self.consider(fact.user_id, fact.run_id, BACK, fact.run)
            self.moot(fact.run_id, (LOST,), "the run was heard from again")
        elif isinstance(fact, RunStalled):
            self.consider(fact.user_id, fact.run_id, STALLED, fact.run)
        elif isinstance(fact, RunResumed):
            self.moot(fact.run_id, (STALLED,), "the run made progress again")
        elif isinstance(fact, RuleFired):
            self.consider(fact.user_id, fact.run_id, RULE, fact.run, rule=fact)

    def moot(self, run_id: int, kinds: tuple[str, ...], why: str) -> None:
        """Nobody is told of the run's held ``kinds`` (see :func:`moot_held`)."""
        try:
            self.store.writer.call(lambda conn: moot_held(conn, run_id, kinds, why))
        except Unavailable:  # shutting down: the held rows are sent, as at a moment later
            pass

    def on_overflow(self, missed: int) -> None:
        log.warning("the notification outbox missed %d commits; looking for runs that ended since", missed)
        self.rescan()

    def consider(self, user_id: int, run_id: int, kind: str, run: RunState, *,
                 created_by: int | None = None, rule: RuleFired | None = None) -> int:
        """Queue the notification for every channel that wants it; how many were queued.
        ``created_by``: only channels made, and last changed, by then (a rescan must not tell a
        new channel of older runs, nor one enabled or refiltered since of what it did not
        want). ``rule``: the firing, for :data:`RULE`. Nothing is queued for a deleted run."""
        n = notification_for(kind, run, base_url=self.config.base_url, rule=rule)
        with self.store.read() as conn:
            targets: list[ChannelRow] = [
                c for c in enabled_channels(conn, user_id)
                if wants(c, n, long_run_s=self.config.long_run_s)
                and (created_by is None or c.changed_at <= created_by)
            ]
            if not targets:
                return 0
            n = replace(n, tail=_tail_text(log_lines(conn, run_id, tail=self.config.tail_lines)))
        now = now_ms()
        hold_ms = int(self.config.hold_s * 1000)
        try:
            queued = self.store.writer.call(
                lambda c: 0 if is_deleted(c, user_id, run.uuid)  # (deleted while this fact waited)
                else enqueue_many(c, [ch.id for ch in targets], run_id, n, now=now, hold_ms=hold_ms,
                                  stall_repeat_ms=int(self.config.stall_repeat_s * 1000)))
        except Unavailable:  # shutting down: the next start's scan queues it
            log.info("not queued, the server is stopping: %s of run %s", n.event, run.uuid)
            return 0
        if queued and self.wake is not None:
            self.wake()
        return int(queued)

    def rescan(self, since_ms: int | None = None) -> int:
        """Queue what is missing for runs that ended or went silent since ``since_ms`` (default:
        this subscriber's last scan, at most a day back); how many rows were queued."""
        started = now_ms()
        since = max(since_ms if since_ms is not None else self._scanned_to - _MARGIN_MS, started - MAX_RESCAN_MS)
        lost_since = since - int(self.config.lost_timeout_s * 1000) - _MARGIN_MS
        with self.store.read() as conn:
            # (a deleted run's last_seen_at is its deletion's time, while its rows are purged)
            rows = conn.execute(select(runs).where(or_(
                and_(runs.c.status.in_(FINAL_STATUSES), runs.c.last_seen_at >= since),
                and_(runs.c.status == LOST_STATUS, runs.c.last_seen_at >= lost_since),
            ), not_deleted()).order_by(runs.c.id)).all()
        queued = 0
        fields = RunState.__struct_fields__
        for row in rows:
            run = RunState(**{name: getattr(row, name) for name in fields})
            kind = LOST if row.status == LOST_STATUS else ENDED
            queued += self.consider(row.user_id, row.id, kind, run, created_by=row.last_seen_at)
        self._scanned_to = started
        return queued

    def close(self) -> None:
        self.store.dispatcher.unsubscribe(self.subscription)

"""The delivery worker: sends what the outbox holds, at least once, from any server process.

One thread per server process claims due rows under a lease (through the store's writer: on
SQLite the one writer makes each claim alone; on PostgreSQL ``FOR UPDATE SKIP LOCKED`` lets
several processes on one database share the queue, each row going to one of them), hands each
to a small pool that calls :meth:`~hyperdash.server.notify.Channel.deliver`, and marks the row
by the result:

- delivered: done;
- retry: again after the receiver's ``Retry-After``, else after a backoff that doubles per
  attempt; given up (``failed``) after ``max_attempts`` or ``give_up_after_s``, the receiver's
  last answer kept in ``last_detail``;
- failed: given up at once (the receiver refused it for good);
- gone: the push subscription no longer exists; the channel is deleted.

A process that dies between the claim and the mark leaves the row ``sending``; when its lease
runs out another worker sends it again, with the same idempotency key, so receivers can drop the
copy. On SQLite, where one process holds the store, a worker starting takes such rows back at
once: a claim it finds is a dead process's, and waiting out its lease would hold back every
later notification of that channel (one in flight per channel). Details are the channel's own,
with its secrets scrubbed; nothing here logs settings.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ...events import now_ms
from ..errors import Unavailable
from ..store import Store
from ..writer import Failures
from . import make_channel
from .delivery import Outcome
from .outbox import (
    Claimed,
    NotifyConfig,
    claim_due,
    delete_channel,
    mark_delivered,
    mark_failed,
    mark_retry,
    release_claims,
    set_last_result,
)
from .settings import SettingsError

__all__ = ["DeliveryWorker"]

log = logging.getLogger("hyperdash.server.notify")


class DeliveryWorker:
    """Claims due outbox rows and delivers them until :meth:`stop`. :meth:`wake` makes it look now."""

    def __init__(self, store: Store, config: NotifyConfig):
        self.store = store
        self.config = config
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._free = config.deliveries
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(config.deliveries, thread_name_prefix="hyperdash-notify")
        self._thread = threading.Thread(target=self._loop, name="hyperdash-notify-worker", daemon=True)

    def start(self) -> None:
        """Start the worker's thread (once: an app whose lifespan is entered again keeps it)."""
        with self._lock:
            if self._thread.ident is not None:
                return
            if not self.store.shared:
                released = self.store.writer.call(lambda conn: release_claims(conn, now=now_ms()))
                if released:
                    log.info("%d notifications claimed before a restart are sent again", released)
            self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 10) -> None:
        """Stop claiming; wait up to ``timeout`` for deliveries under way (a row not marked by
        then is sent again when its lease runs out)."""
        self._stopping.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _loop(self) -> None:
        failures = Failures("claiming notifications")
        while not self._stopping.is_set():
            try:
                claimed = self.claim()
            except Unavailable:
                return
            except Exception as exc:
                failures.failed(exc)
                claimed = []
            else:
                failures.worked()
            for claim in claimed:
                self._pool.submit(self._deliver, claim)
            if not claimed or not self._has_free_slot():
                self._wake.wait(self.config.poll_s)
                self._wake.clear()

    def _has_free_slot(self) -> bool:
        with self._lock:
            return self._free > 0

    def claim(self) -> list[Claimed]:
        """Claim as many due rows as there are free delivery slots."""
        with self._lock:
            free = self._free
        if free <= 0:
            return []
        cfg = self.config
        claimed: list[Claimed] = self.store.writer.call(lambda conn: claim_due(
            conn, now=now_ms(), lease_ms=int(cfg.lease_s * 1000), limit=free, rate_limit=cfg.rate_limit,
            rate_window_ms=int(cfg.rate_window_s * 1000), in_flight_limit=cfg.in_flight_per_channel))
        with self._lock:
            self._free -= len(claimed)
        return claimed

    def _deliver(self, claim: Claimed) -> None:
        try:
            self._deliver_one(claim)
        except Unavailable:
            pass  # shutting down: the lease runs out and the row is sent again
        except Exception:
            log.exception("delivering notification %s failed", claim.notification.key)
        finally:
            with self._lock:
                self._free += 1
            self._wake.set()

    def _deliver_one(self, claim: Claimed) -> None:
        cfg = self.config
        try:
            channel = make_channel(claim.channel.kind, claim.channel.settings, **cfg.channel_options)
        except SettingsError as exc:
            detail = f"the channel's settings are unusable: {exc}"
            self.store.writer.call(lambda conn: self._mark(conn, claim, Outcome.FAILED, detail, None))
            return
        result = channel.deliver(claim.notification)
        now = now_ms()
        next_at: int | None = None
        outcome = result.outcome
        if outcome is Outcome.RETRY:
            delay = result.retry_after_s
            if delay is None:
                delay = min(cfg.max_backoff_s, cfg.backoff_s * 2 ** (claim.attempts - 1))
            next_at = now + int(max(0.0, delay) * 1000)
            if claim.attempts >= cfg.max_attempts or next_at - claim.created_at > cfg.give_up_after_s * 1000:
                outcome = Outcome.FAILED
        self.store.writer.call(lambda conn: self._mark(conn, claim, outcome, result.detail, next_at))

    @staticmethod
    def _mark(conn: Any, claim: Claimed, outcome: Outcome, detail: str, next_at: int | None) -> None:
        now = now_ms()
        if outcome is Outcome.GONE:
            delete_channel(conn, claim.channel.id)
            return
        if outcome is Outcome.DELIVERED:
            mark_delivered(conn, claim, now=now, detail=detail)
        elif outcome is Outcome.RETRY and next_at is not None:
            mark_retry(conn, claim, next_attempt_at=next_at, detail=detail)
        else:
            mark_failed(conn, claim, detail=detail)
        set_last_result(conn, claim.channel.id, {"at": now, "outcome": outcome.value, "detail": detail})

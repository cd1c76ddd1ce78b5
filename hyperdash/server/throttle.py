"""Slowing down password guessing: per client address, per account, and overall.

Wrong passwords are counted three ways, each with a few free tries and then an exponentially
growing wait (capped at ``MAX_DELAY`` seconds):

- per account and address (``PAIR_FREE``): a person who mistypes a password;
- per client address (``CLIENT_FREE``): one machine trying many accounts;
- per account (``ACCOUNT_FREE``): many machines trying one account.

The counts live in the store's ``login_failures`` table, so that every server process on one
database counts the same tries (``--workers 4`` gives a guesser no more of them than one
process would); a key there is a SHA-256 digest of the email or the address, not the text. A count is forgotten
``FORGET_SECONDS`` after its last failure, and pruned from the table a while later. A right
password clears the count of its account and address pair and of its account, never that of
the address (an attacker with an account of their own must not reset the count of the address
they guess from).

Overall, each process hears at most ``OVERALL_BURST`` wrong passwords at once and
``OVERALL_RATE`` a second after that (a token bucket, in memory: it guards the process's CPU,
which verifying passwords takes): a botnet that has many addresses and guesses many accounts
is slowed too.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections.abc import Callable

from sqlalchemy import case, delete, select

from .dialect import skip_locked, upsert
from .errors import Throttled
from .store import Store, login_failures

__all__ = ["Throttle", "PAIR_FREE", "CLIENT_FREE", "ACCOUNT_FREE", "OVERALL_BURST", "OVERALL_RATE",
           "MAX_DELAY", "FORGET_SECONDS"]

PAIR_FREE = 3
CLIENT_FREE = 10
ACCOUNT_FREE = 10
OVERALL_BURST = 300
OVERALL_RATE = 10.0
MAX_DELAY = 300
FORGET_SECONDS = 3600
PRUNE_INTERVAL = 60  # seconds between a process's deletions of the counts forgotten
PRUNE_ROWS = 10_000  # the most a deletion takes at once (a short transaction)


def delay(failures: int, free: int) -> float:
    """Seconds to wait after the last of ``failures`` wrong passwords, ``free`` of them free."""
    return 0 if failures < free else min(2 ** (failures - free), MAX_DELAY)


class Throttle:
    """Counts of wrong passwords in ``store``; ``check`` before verifying one,
    ``failed``/``succeeded`` after. ``clock`` gives seconds since the epoch (every process on
    the database reads the same)."""

    def __init__(self, store: Store, clock: Callable[[], float] = time.time):
        self.store = store
        self._table = login_failures
        self._clock = clock
        self._lock = threading.Lock()  # (the overall bucket)
        self._tokens = float(OVERALL_BURST)
        self._filled_at = clock()
        self._pruned_at = float("-inf")

    @staticmethod
    def _keys(email: str, client: str) -> dict[str, int]:
        """Each count's key (a digest) and its free tries: the pair, the address, the account."""
        def key(*parts: str) -> str:
            return hashlib.sha256("\0".join(parts).encode("utf-8", "surrogatepass")).hexdigest()

        return {key("pair", email, client): PAIR_FREE, key("client", client): CLIENT_FREE,
                key("account", email): ACCOUNT_FREE}

    def check(self, email: str, client: str) -> None:
        """Raise :class:`Throttled` when any count (or the overall bucket) says wait."""
        now = self._clock()
        keys = self._keys(email, client)
        table = self._table
        with self.store.read() as conn:
            rows = conn.execute(select(table.c.key, table.c.failures, table.c.last_at)
                                .where(table.c.key.in_(list(keys)))).all()
        # At most MAX_DELAY, and none for a count still within its free tries: a count written by
        # a process whose clock runs ahead, or read a moment later, makes no one wait longer.
        wait = min(MAX_DELAY, max((last_at + delay(failures, keys[key]) - now for key, failures, last_at in rows
                                   if now - last_at <= FORGET_SECONDS and failures >= keys[key]), default=0.0))
        with self._lock:
            self._refill(now)
            if self._tokens < 1:
                wait = max(wait, (1 - self._tokens) / OVERALL_RATE)
        if wait > 0:
            seconds = math.ceil(wait)
            raise Throttled(f"too many wrong passwords; try again in {seconds} s", retry_after=seconds)

    def failed(self, email: str, client: str) -> None:
        """Count a wrong password for this account from this address."""
        now = self._clock()
        with self._lock:
            self._refill(now)
            self._tokens -= 1
        table = self._table
        forgotten = now - FORGET_SECONDS
        prune = now - self._pruned_at >= PRUNE_INTERVAL
        if prune:
            self._pruned_at = now

        def count(conn):
            # (one statement a key: two processes counting the same key at once both count; the
            # keys in one order everywhere, so that two such transactions never wait on each other)
            for key in sorted(self._keys(email, client)):
                conn.execute(upsert(conn, table, ("key",), {"key": key, "failures": 1, "last_at": now}, update={
                    "failures": case((table.c.last_at < forgotten, 1), else_=table.c.failures + 1),
                    "last_at": now}))

        def forget(conn):
            # A transaction of its own, passing over the rows another one holds (a count being
            # made again): it never waits on a transaction that waits on it.
            old = skip_locked(conn, select(table.c.key).where(table.c.last_at < forgotten).limit(PRUNE_ROWS))
            conn.execute(delete(table).where(table.c.key.in_(old)))

        # (where processes share the database, each in a transaction of its own: grouped with
        # another's, its rows would be locked in an order of no one's choosing, which another
        # process could meet in the reverse; SQLite's one writing process locks no rows)
        alone = self.store.shared
        self.store.writer.call(count, alone=alone)
        if prune:
            self.store.writer.call(forget, alone=alone)

    def succeeded(self, email: str, client: str) -> None:
        """A right password: forget the account's counts (not the address's)."""
        pair, _, account = self._keys(email, client)
        table = self._table
        self.store.writer.call(lambda conn: conn.execute(delete(table).where(table.c.key.in_(sorted([pair, account])))),
                               alone=self.store.shared)

    def _refill(self, now: float) -> None:
        self._tokens = min(float(OVERALL_BURST), self._tokens + max(0.0, now - self._filled_at) * OVERALL_RATE)
        self._filled_at = now

"""Slowing down password guessing: per client address, per account, and overall.

Wrong passwords are counted three ways, each with a few free tries and then an exponentially
growing wait (capped at ``MAX_DELAY`` seconds):

- per account and address (``PAIR_FREE``): a person who mistypes a password;
- per client address (``CLIENT_FREE``): one machine trying many accounts;
- per account (``ACCOUNT_FREE``): many machines trying one account.

Overall, at most ``OVERALL_BURST`` wrong passwords are heard at once and ``OVERALL_RATE`` a second
after that (a token bucket): a botnet that has many addresses and guesses many accounts is slowed
too. The counts live in this process's memory (as a throttle may: losing them on a restart
costs an attacker more than it gains), bounded in size; a count is forgotten ``FORGET_SECONDS``
after its last failure. A right password clears the count of its account and address pair
and of its account, never that of the address (an attacker with an account of their own must
not reset the count of the address they guess from).
"""

from __future__ import annotations

import math
import threading
import time

from .errors import Throttled

__all__ = ["Throttle", "PAIR_FREE", "CLIENT_FREE", "ACCOUNT_FREE", "OVERALL_BURST", "OVERALL_RATE",
           "MAX_DELAY", "FORGET_SECONDS"]

PAIR_FREE = 3
CLIENT_FREE = 10
ACCOUNT_FREE = 10
OVERALL_BURST = 300
OVERALL_RATE = 10.0
MAX_DELAY = 300
FORGET_SECONDS = 3600
_MAX_ENTRIES = 100_000  # bound the memory an attacker can make us use


class Throttle:
    """Counts of wrong passwords; ``check`` before verifying one, ``failed``/``succeeded`` after."""

    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self._lock = threading.Lock()
        # key -> (failures, time of the last one, time until which the key waits)
        self._counts: dict[tuple, tuple[int, float, float]] = {}
        self._tokens = float(OVERALL_BURST)
        self._filled_at = clock()

    @staticmethod
    def _keys(email: str, client: str) -> tuple[tuple, ...]:
        return (("pair", email, client), ("client", client), ("account", email))

    def check(self, email: str, client: str) -> None:
        """Raise :class:`Throttled` when any count (or the overall bucket) says wait."""
        now = self._clock()
        with self._lock:
            wait = max((self._counts.get(key, (0, 0.0, 0.0))[2] - now for key in self._keys(email, client)),
                       default=0.0)
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
            if len(self._counts) > _MAX_ENTRIES:
                self._counts.clear()
            for key, free in zip(self._keys(email, client), (PAIR_FREE, CLIENT_FREE, ACCOUNT_FREE), strict=True):
                count, last, _ = self._counts.get(key, (0, 0.0, 0.0))
                if now - last > FORGET_SECONDS:
                    count = 0
                count += 1
                delay = 0 if count < free else min(2 ** (count - free), MAX_DELAY)
                self._counts[key] = (count, now, now + delay)

    def succeeded(self, email: str, client: str) -> None:
        """A right password: forget the account's counts (not the address's)."""
        with self._lock:
            self._counts.pop(("pair", email, client), None)
            self._counts.pop(("account", email), None)

    def _refill(self, now: float) -> None:
        self._tokens = min(float(OVERALL_BURST), self._tokens + (now - self._filled_at) * OVERALL_RATE)
        self._filled_at = now

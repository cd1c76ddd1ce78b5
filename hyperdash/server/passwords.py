"""Password hashing: salted scrypt, with a bound on how many hashes run at once.

scrypt costs about 50 ms of CPU and 16 MiB of memory a hash, on purpose. A flood of sign-ins must
not take every core (and the memory) from ingest, so at most ``HASH_CONCURRENCY`` hashes run at
the same time; a caller that waits longer than ``HASH_WAIT_SECONDS`` for a turn is told to come
back (:class:`~hyperdash.server.errors.Throttled`) instead of piling up.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
from functools import lru_cache

from .errors import Throttled

__all__ = ["hash_password", "verify_password", "verify_unknown", "HASH_CONCURRENCY", "HASH_WAIT_SECONDS",
           "MIN_PASSWORD_CHARS", "MAX_PASSWORD_CHARS"]

MIN_PASSWORD_CHARS = 8
MAX_PASSWORD_CHARS = 1024
# scrypt: about 50 ms and 16 MiB per hash.
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}
# Half the cores (at least one, at most four): the rest stay free for ingest and queries.
HASH_CONCURRENCY = max(1, min(4, (os.cpu_count() or 2) // 2))
HASH_WAIT_SECONDS = 5.0
_turns = threading.BoundedSemaphore(HASH_CONCURRENCY)


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, dklen: int) -> bytes:
    if not _turns.acquire(timeout=HASH_WAIT_SECONDS):
        raise Throttled("the server is busy checking other passwords; try again in a few seconds",
                        retry_after=2)
    try:
        return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=dklen)
    finally:
        _turns.release()


def hash_password(password: str) -> str:
    """``scrypt$n$r$p$salt$key`` for a new password (raises Throttled when too busy)."""
    salt = secrets.token_bytes(16)
    key = _scrypt(password, salt, dklen=32, **_SCRYPT)
    return f"scrypt${_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}${salt.hex()}${key.hex()}"


def verify_password(password: str, stored: str | None) -> bool:
    """Whether ``password`` matches the ``stored`` hash (None: an account without a password)."""
    if not stored:
        return False
    try:
        _, n, r, p, salt, key = stored.split("$")
        got = _scrypt(password, bytes.fromhex(salt), int(n), int(r), int(p), len(key) // 2)
    except (ValueError, UnicodeEncodeError):
        return False
    return hmac.compare_digest(got.hex(), key)


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return hash_password(secrets.token_urlsafe(16))


def verify_unknown(password: str) -> None:
    """Spend as long as a check against a real account, so a wrong email is not told apart."""
    verify_password(password, _dummy_hash())

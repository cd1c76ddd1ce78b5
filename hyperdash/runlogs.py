"""The plain-text copies of runs' output, ``<home>/logs/<name>/<name>_<time>.log``, and their
pruning: copies older than ``HYPERDASH_LOG_MAX_DAYS`` days (30 by default) are deleted, then the
oldest ones while all of them together take more than ``HYPERDASH_LOG_MAX_MB`` megabytes (1000
by default). 0 turns a limit off. The copy a run is writing is never deleted.
"""

from __future__ import annotations

import time
from pathlib import Path

from . import config

__all__ = ["logs_dir", "prune", "max_bytes", "max_age_seconds"]

DEFAULT_MAX_MB = 1000.0
DEFAULT_MAX_DAYS = 30.0


def logs_dir() -> Path:
    """The folder of every run's plain-text log."""
    return config.home_dir() / "logs"


def max_bytes() -> float:
    """``HYPERDASH_LOG_MAX_MB`` in bytes (0: no limit)."""
    return config.env_float("HYPERDASH_LOG_MAX_MB", DEFAULT_MAX_MB) * 1_000_000


def max_age_seconds() -> float:
    """``HYPERDASH_LOG_MAX_DAYS`` in seconds (0: no limit)."""
    return config.env_float("HYPERDASH_LOG_MAX_DAYS", DEFAULT_MAX_DAYS) * 86400


def prune(keep: set[Path] | frozenset[Path] = frozenset(), now: float | None = None) -> list[Path]:
    """Delete the run logs past the limits (never those in ``keep``); the paths deleted."""
    now = time.time() if now is None else now
    logs = []
    for path in logs_dir().glob("*/*.log"):
        try:
            stat = path.stat()
        except OSError:
            continue
        logs.append((stat.st_mtime, stat.st_size, path))
    logs.sort()  # oldest first
    age, limit = max_age_seconds(), max_bytes()
    total = sum(size for _, size, _ in logs)
    deleted = []
    for mtime, size, path in logs:
        too_old = age > 0 and now - mtime > age
        too_much = limit > 0 and total > limit
        if not (too_old or too_much) or path in keep:
            continue
        try:
            path.unlink()
        except OSError:
            continue
        total -= size
        deleted.append(path)
        try:
            path.parent.rmdir()  # the last log of that name: its folder goes too
        except OSError:
            pass
    return deleted

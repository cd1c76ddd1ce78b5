"""The plain-text copies of runs' output under <home>/logs are pruned by age and by total size."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

JOB = """
from hyperdash import monitor

@monitor("pruning")
def job():
    print("a line")

job()
"""


def old_log(home: Path, name: str, stem: str, size: int, age_days: float) -> Path:
    folder = home / "logs" / name
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stem}.log"
    path.write_bytes(b"x" * size)
    when = time.time() - age_days * 86400
    os.utime(path, (when, when))
    return path


def this_runs_log(done) -> Path:
    return Path(re.search(r"the log of this run is at (.+)", done.stderr.decode()).group(1))


def test_logs_older_than_the_age_limit_are_deleted(run_job, sdk_env, hyperdash_home):
    stale = old_log(hyperdash_home, "old", "old_1", 100, age_days=31)
    recent = old_log(hyperdash_home, "recent", "recent_1", 100, age_days=29)
    done = run_job(JOB)
    assert done.returncode == 0, done.stderr
    assert not stale.exists() and not stale.parent.exists()
    assert recent.exists() and this_runs_log(done).exists()
    shorter = old_log(hyperdash_home, "recent", "recent_2", 100, age_days=2)
    done = run_job(JOB, env=sdk_env(HYPERDASH_LOG_MAX_DAYS="1"))
    assert not recent.exists() and not shorter.exists() and this_runs_log(done).exists()


def test_the_oldest_logs_go_past_the_size_limit(run_job, sdk_env, hyperdash_home):
    logs = [old_log(hyperdash_home, "big", f"big_{i}", 6000, age_days=3 - i) for i in range(3)]
    done = run_job(JOB, env=sdk_env(HYPERDASH_LOG_MAX_MB="0.01"))  # 10,000 bytes in all
    assert done.returncode == 0, done.stderr
    assert [path.exists() for path in logs] == [False, False, True]
    assert this_runs_log(done).exists()  # the log being written is never deleted


def test_zero_turns_the_limits_off(run_job, sdk_env, hyperdash_home):
    logs = [old_log(hyperdash_home, "kept", f"kept_{i}", 6000, age_days=400) for i in range(3)]
    done = run_job(JOB, env=sdk_env(HYPERDASH_LOG_MAX_MB="0", HYPERDASH_LOG_MAX_DAYS="0"))
    assert done.returncode == 0, done.stderr
    assert all(path.exists() for path in logs)

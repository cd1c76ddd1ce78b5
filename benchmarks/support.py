"""What the benchmarks share: a real server on a loopback port, timed child processes, figures.

- :func:`free_port`, :func:`start_server` (a ``hyperdash server`` process and its URL) and
  :func:`stop_server`, for benchmarks that talk HTTP themselves;
- :func:`reporting_server`: a server with an account and the environment of a job that reports
  to it, for benchmarks that run monitored jobs;
- :func:`as_installed`: the environment of jobs that import hyperdash as an installed package does;
- :func:`measured`: wall and CPU seconds of one child process;
- :func:`uploader_cpu`: waits for the detached uploaders a job started, and what they cost;
  :func:`wait_for_uploaders` only waits;
- :func:`cpu_seconds`: the CPU a process (a server) has used so far;
- :func:`load_average` and :func:`ratio_line`, to print figures the same way everywhere.
"""

from __future__ import annotations

import fcntl
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import requests

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.conftest import Account, ServerProcess, free_port  # noqa: E402  (the suite's real-server harness)

__all__ = ["REPO", "free_port", "start_server", "stop_server", "as_installed", "reporting_server", "measured",
           "load_average", "ratio_line", "uploader_cpu", "wait_for_uploaders", "cpu_seconds"]


def start_server(home: Path, *args: str, db_url: str | None = None,
                 timeout: float = 60.0) -> tuple[subprocess.Popen, str]:
    """A ``hyperdash server`` on a loopback port, its database ``db_url`` (by default a SQLite
    file in ``home``) and its output in ``home/server.log``, once it answers; its process and
    URL. ``args`` go on its command line."""
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = dict(os.environ, HYPERDASH_HOME=str(home), PYTHONPATH=str(REPO))
    env.pop("FORWARDED_ALLOW_IPS", None)
    with open(home / "server.log", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hyperdash", "server", "--host", "127.0.0.1", "--port", str(port),
             "--db", db_url or f"sqlite:///{home / 'bench.db'}", *args],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            if requests.get(url + "/api/v1/health", timeout=1).ok:
                return proc, url
        except requests.RequestException:  # not up yet (a loaded machine answers late)
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("the server did not start: " + (home / "server.log").read_text()[-2000:])


def stop_server(proc: subprocess.Popen) -> None:
    """Stop a server :func:`start_server` started."""
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def as_installed(env: dict[str, str], workdir: Path) -> dict[str, str]:
    """``env`` for jobs that import hyperdash as an installed package does: from cached bytecode,
    compiled here once and kept under ``workdir`` (the source tree stays clean), and with
    Python's default buffering (``PYTHONUNBUFFERED`` removed: a benchmark that wants it sets it
    per case, and says so)."""
    env = dict(env)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.pop("PYTHONUNBUFFERED", None)
    env["PYTHONPYCACHEPREFIX"] = str(workdir / "pycache")
    subprocess.run([sys.executable, "-c", "import hyperdash.monitor, hyperdash.uploader, hyperdash.cli, "
                    "hyperdash.transport, requests, numpy, tqdm"], env=env, check=True)
    return env


def reporting_server(workdir: Path, sdk: Path = REPO) -> tuple[ServerProcess, Account, dict[str, str]]:
    """A server, an account on it, and the environment of a job that reports to it as that
    account, importing hyperdash from ``sdk`` (another checkout, for a baseline) as an installed
    package does (:func:`as_installed`); ``workdir`` becomes the current folder, the jobs' too.
    The environment is the caller's otherwise: a benchmark sets buffering and the like per
    case, and says so."""
    # the jobs run in ``workdir``: ``python -c`` puts the current folder first on the path, and
    # the hyperdash of the checkout the benchmark was started in would hide ``sdk``'s
    os.chdir(workdir)
    server = ServerProcess(db_url=f"sqlite:///{workdir / 'server' / 'db.sqlite'}", home=workdir / "server").start()
    account = server.signup()
    home = workdir / "client"
    home.mkdir(exist_ok=True)
    env = account.sdk_env(home)
    env["PYTHONPATH"] = str(sdk) + os.pathsep + str(REPO)
    env = as_installed(env, workdir)
    # and what a monitored job and `hyperdash run` import once they run (the standard library's
    # modules too, whose bytecode goes under the same folder): else a benchmark's first round
    # would compile them
    for warm_up in ([sys.executable, "-c", "from hyperdash import monitor; monitor('warm-up')(print)('warm')"],
                    [sys.executable, "-m", "hyperdash", "run", "-n", "warm-up", "--", sys.executable, "-c", "pass"]):
        subprocess.run(warm_up, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return server, account, env


def measured(argv: Sequence[str], env: dict[str, str], stdout: int | IO[Any] | None = subprocess.DEVNULL,
             stderr: int | IO[Any] | None = subprocess.DEVNULL, **popen: Any) -> tuple[float, float]:
    """Run ``argv`` to its end: its wall seconds (spawn to exit) and CPU seconds (user +
    system, its children included). Raises when it fails. (Not its peak memory: on Linux a
    child's ``ru_maxrss`` is at least the RSS its parent had when it forked; a job reads its
    own ``VmHWM``, as ``memory.py`` has it do.)"""
    start = time.perf_counter()
    proc = subprocess.Popen(list(argv), stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL, env=env, **popen)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"the benchmark's job {argv[:3]} failed with {proc.returncode}")
    return wall, usage.ru_utime + usage.ru_stime


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, as ``uptime`` shows them."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def ratio_line(what: str, plain: Sequence[float], monitored: Sequence[float]) -> str:
    """``what``'s median ratio monitored/plain over paired rounds, the middle half of the
    rounds' ratios, and the ratio of the best times."""
    ratios = sorted(m / p for m, p in zip(monitored, plain, strict=True))
    median = statistics.median(ratios)
    quartiles = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [median, median, median]
    best = min(monitored) / min(plain)
    return (f"{what}: median ratio {median:.3f}x ({100 * (median - 1):+.1f}%; middle half of the "
            f"rounds {quartiles[0]:.3f}x to {quartiles[2]:.3f}x; {len(ratios)} rounds), "
            f"best/best {best:.3f}x")


def uploader_cpu(home: Path, seen: int) -> tuple[float, int]:
    """Once the detached uploaders working in Hyperdash home ``home`` are done (no spool left,
    the uploader lock free): the CPU seconds of those that reported after the first ``seen``
    reports in its uploader log, and how many reports there are now."""
    deadline = time.monotonic() + 120
    spools = home / "spool"
    while spools.is_dir() and any(spools.iterdir()):
        if time.monotonic() > deadline:
            raise RuntimeError(f"spools still wait in {spools} after two minutes")
        time.sleep(0.05)
    wait_for_uploaders(home, deadline - time.monotonic())
    log = home / "logs" / "uploader.log"
    reports = re.findall(r"done in [\d.]+s, ([\d.]+)s of CPU", log.read_text()) if log.exists() else []
    return sum(float(cpu) for cpu in reports[seen:]), len(reports)


def wait_for_uploaders(home: Path, timeout: float = 120) -> None:
    """Until no detached uploader works in Hyperdash home ``home`` (the uploader lock is free),
    and a moment more: it writes its report just after letting go of the lock."""
    deadline = time.monotonic() + timeout
    lock = os.open(home / "uploader.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"an uploader is still running after {timeout:.0f} s") from None
                time.sleep(0.05)
    finally:
        os.close(lock)
    time.sleep(0.2)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux), to tell our cost from the machine's load."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

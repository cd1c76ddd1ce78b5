"""Print storm: 200,000 lines of 80 characters to /dev/null under ``@monitor`` against plain
Python, whole process, exit included, with a real server up.

Each round runs the plain script and the monitored one as fresh interpreters (stdout to
/dev/null) and times them from spawn to exit; the figure is the ratio of the best times (the
machine's noise only ever adds time), the median ratio is printed too. After each monitored
round it waits until the server holds every line, once and in order (a backlog left at exit is
sent by the detached uploader), so that rounds do not overlap, and says how long that took.

    python benchmarks/print_storm.py [--lines 200000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.conftest import ServerProcess  # noqa: E402  (the project's real-server harness)

PLAIN = """
line = "x" * 79
for i in range({lines}):
    print(line)
"""

MONITORED = """
from hyperdash import monitor

line = "x" * 79

@monitor({name!r})
def storm():
    for i in range({lines}):
        print(line)

storm()
"""


def measured(code: str, env: dict[str, str], stderr: bool = False) -> tuple[float, float, int]:
    """``python -c code`` with stdout (and with ``stderr``, stderr) to /dev/null: its wall
    seconds, CPU seconds (user + system) and peak RSS in KiB."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, env=env,
                            stderr=subprocess.DEVNULL if stderr else None)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"the benchmark's job failed with {proc.returncode}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss


def timed(code: str, env: dict[str, str], stderr: bool = False) -> float:
    """Wall seconds of :func:`measured`."""
    return measured(code, env, stderr)[0]


def wait_for_run_status(account, name: str, status: str, timeout: float = 300.0) -> dict:
    """The run called ``name`` once it has ``status`` (its backlog is on the server then)."""
    return account.wait_for_run(name, status=status, timeout=timeout)


def as_installed(env: dict[str, str], workdir: Path) -> dict[str, str]:
    """``env`` for jobs that import hyperdash as an installed package does: from cached
    bytecode (kept under ``workdir``, so the source tree stays clean), stdout block-buffered as
    Python makes it when it is not a terminal. Warms the cache once."""
    env = dict(env)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.pop("PYTHONUNBUFFERED", None)
    env["PYTHONPYCACHEPREFIX"] = str(workdir / "pycache")
    subprocess.run([sys.executable, "-c", "import hyperdash.monitor, hyperdash.uploader, numpy, tqdm"],
                   env=env, check=True)
    return env


def start_server(workdir: Path) -> tuple[ServerProcess, dict[str, str]]:
    """A real server on a loopback port, an account on it, and the environment of a job that
    reports to it."""
    server = ServerProcess(db_url=f"sqlite:///{workdir / 'server' / 'db.sqlite'}", home=workdir / "server").start()
    account = server.signup()
    home = workdir / "client"
    home.mkdir()
    return server, account, as_installed(account.sdk_env(home), workdir)


def wait_for_all_lines(account, name: str, lines: int, timeout: float = 300.0) -> float:
    """Seconds until the server holds run ``name``'s ``lines`` lines, each once, in order."""
    start = time.perf_counter()
    run = wait_for_run_status(account, name, "success", timeout)  # run_ended is the last event
    expected = run["last_seq"]
    got = account.logs(run["uuid"])
    seqs = [line["seq"] for line in got]
    assert len(got) == lines, f"{len(got)} lines on the server, expected {lines} (last_seq {expected})"
    assert seqs == sorted(seqs) and len(set(seqs)) == lines, "lines out of order or repeated"
    assert all(line["text"] == "x" * 79 for line in got), "a line arrived damaged"
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server, account, env = start_server(Path(tmp))
        try:
            plain, monitored, plain_cpu, monitored_cpu, upload = [], [], [], [], []
            for round_ in range(args.rounds):
                wall, cpu, _ = measured(PLAIN.format(lines=args.lines), env)
                plain.append(wall)
                plain_cpu.append(cpu)
                name = f"storm {round_}"
                wall, cpu, _ = measured(MONITORED.format(lines=args.lines, name=name), env, stderr=True)
                monitored.append(wall)
                monitored_cpu.append(cpu)
                upload.append(wait_for_all_lines(account, name, args.lines))
                print(f"round {round_}: plain {plain[-1]:.3f}s  monitored {monitored[-1]:.3f}s  "
                      f"all {args.lines} lines on the server {upload[-1]:.1f}s after exit", flush=True)
        finally:
            server.stop()
    ratio_best = min(monitored) / min(plain)
    ratio_median = statistics.median(m / p for m, p in zip(monitored, plain, strict=True))
    print(f"plain best {min(plain):.3f}s, monitored best {min(monitored):.3f}s")
    print(f"ratio (best/best): {ratio_best:.2f}x  (median of rounds: {ratio_median:.2f}x; target <= 1.5x)")
    print(f"CPU time of the job process (user+system, best): plain {min(plain_cpu):.3f}s, "
          f"monitored {min(monitored_cpu):.3f}s, ratio {min(monitored_cpu) / min(plain_cpu):.2f}x")
    print(f"every line on the server in every round; upload after exit took {statistics.median(upload):.1f}s (median)")


if __name__ == "__main__":
    main()

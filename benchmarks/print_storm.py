"""Print storm: 200,000 lines of 80 characters, monitored against plain Python, whole process
(exit included), with a real server up, in each case a user has.

Cases (``--cases`` picks some; all by default):

- face: ``monitor`` (``@monitor`` in the script) or ``run`` (``hyperdash run python -c ...``);
- buffering: ``buffered`` (Python's default: block-buffered to a file or a pipe, line-buffered to
  a terminal) or ``unbuffered`` (``python -u``, which is what ``PYTHONUNBUFFERED=1`` does: every
  line is one write). ``hyperdash run`` makes a Python child writing to a pipe unbuffered
  itself, so that lines arrive as printed: its ``buffered`` case is what users of it get. Two
  more cases, ``run-kept-file`` and ``run-kept-pipe``, measure the opt-out the README gives for
  print-heavy commands: ``PYTHONUNBUFFERED`` set empty, so that the child keeps Python's buffering
  (to a terminal Python is line-buffered either way: no ``kept`` case there);
- destination of stdout: ``file`` (a file on disk), ``pipe`` (read by this process as fast as it
  comes) or ``pty`` (a terminal this process reads; stderr goes there too, as in a terminal).
  Elsewhere stderr goes to /dev/null.

Each round runs the plain job and the monitored one as fresh interpreters, alternating which
goes first, and times them from spawn to exit; after each monitored round it waits until the
server holds every line, once and in order, and until any uploader the job started is done.
Per case it prints the median of the rounds' ratios (wall, and CPU: the job's, its children's
and that of the detached uploader it started, from the uploader's own account in its log),
their spread, and how long after exit the last line was on the server.

    python benchmarks/print_storm.py [--lines 200000] [--rounds 5] [--cases monitor-unbuffered-file,...]
"""

from __future__ import annotations

import argparse
import itertools
import os
import pty
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from support import REPO, Account, load_average, measured, ratio_line, reporting_server, uploader_cpu  # noqa: E402

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

FACES = ("monitor", "run")
BUFFERING = ("buffered", "unbuffered")
DESTINATIONS = ("file", "pipe", "pty")
ALL_CASES = ["-".join(case) for case in itertools.product(FACES, BUFFERING, DESTINATIONS)] + [
    "run-kept-file", "run-kept-pipe"]


def _drain(fd: int) -> None:
    """Read ``fd`` until its writers are gone, as a terminal or a reader of a pipe does."""
    try:
        while os.read(fd, 1 << 16):
            pass
    except OSError:  # a pty's master reads EIO once the job has gone
        pass
    finally:
        os.close(fd)


def run_job(argv: list[str], env: dict[str, str], destination: str, workdir: Path) -> tuple[float, float]:
    """Wall and CPU seconds of ``argv`` with its stdout to ``destination``."""
    if destination == "file":
        with open(workdir / "out.txt", "wb") as out:
            return measured(argv, env, stdout=out)
    if destination == "pipe":
        read_fd, write_fd = os.pipe()
    else:
        read_fd, write_fd = pty.openpty()
    reader = threading.Thread(target=_drain, args=(read_fd,))
    reader.start()
    try:
        return measured(argv, env, stdout=write_fd, stderr=write_fd if destination == "pty" else subprocess.DEVNULL)
    finally:
        os.close(write_fd)
        reader.join()


def wait_for_all_lines(account: Account, name: str, lines: int, timeout: float = 300.0) -> float:
    """Seconds until run ``name`` is over on the server (its last event, ``run_ended``, is
    stored: every line before it is too); then checks that it holds the ``lines`` lines, each
    once, in order."""
    start = time.perf_counter()
    run = account.wait_for_run(name, status="success", timeout=timeout)
    took = time.perf_counter() - start
    got = account.logs(run["uuid"])
    seqs = [line["seq"] for line in got]
    assert len(got) == lines, f"{len(got)} lines on the server, expected {lines} (last_seq {run['last_seq']})"
    assert seqs == sorted(seqs) and len(set(seqs)) == lines, "lines out of order or repeated"
    assert all(line["text"] == "x" * 79 for line in got), "a line arrived damaged"
    return took


def median_ratio(monitored: list[float], plain: list[float]) -> float:
    return statistics.median(m / p for m, p in zip(monitored, plain, strict=True))


def case_env(env: dict[str, str], buffering: str) -> dict[str, str]:
    """The jobs' environment in a case: ``kept`` sets ``PYTHONUNBUFFERED`` empty (Python's
    default buffering, which ``hyperdash run`` then leaves as it is)."""
    return {**env, "PYTHONUNBUFFERED": ""} if buffering == "kept" else env


def commands(face: str, buffering: str, lines: int, name: str) -> tuple[list[str], list[str]]:
    """The plain job's command line and the monitored one's."""
    python = [sys.executable] + (["-u"] if buffering == "unbuffered" else [])
    plain = [*python, "-c", PLAIN.format(lines=lines)]
    if face == "monitor":
        return plain, [*python, "-c", MONITORED.format(lines=lines, name=name)]
    return plain, [sys.executable, "-m", "hyperdash", "run", "-n", name, "--", *plain]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--cases", default=",".join(ALL_CASES), help="comma-separated, of " + ", ".join(ALL_CASES))
    parser.add_argument("--sdk", type=Path, default=REPO,
                        help="the checkout whose hyperdash the jobs import (another one: a baseline)")
    args = parser.parse_args()
    cases = [case for case in args.cases.split(",") if case]
    unknown = sorted(set(cases) - set(ALL_CASES))
    if unknown:
        parser.error(f"unknown cases {', '.join(unknown)}; the cases are {', '.join(ALL_CASES)}")
    print(f"{args.lines} lines, {args.rounds} rounds per case, hyperdash from {args.sdk}; "
          f"load average before: {load_average()}", flush=True)
    summary = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        server, account, env = reporting_server(workdir, args.sdk)
        home = Path(env["HYPERDASH_HOME"])
        reports = 0
        try:
            for case in cases:
                face, buffering, destination = case.split("-")
                walls: dict[str, list[float]] = {"plain": [], "monitored": []}
                cpus: dict[str, list[float]] = {"plain": [], "monitored": []}
                after_exit = []
                for round_ in range(args.rounds):
                    name = f"storm {case} {round_}"
                    plain, monitored = commands(face, buffering, args.lines, name)
                    pair = [("plain", plain), ("monitored", monitored)]
                    for kind, argv in pair if round_ % 2 == 0 else pair[::-1]:
                        wall, cpu = run_job(argv, case_env(env, buffering), destination, workdir)
                        if kind == "monitored":
                            after_exit.append(wait_for_all_lines(account, name, args.lines))
                            uploader, reports = uploader_cpu(home, reports)
                            cpu += uploader
                        walls[kind].append(wall)
                        cpus[kind].append(cpu)
                    print(f"  {case} round {round_}: plain {walls['plain'][-1]:.3f}s ({cpus['plain'][-1]:.3f}s CPU)"
                          f"  monitored {walls['monitored'][-1]:.3f}s ({cpus['monitored'][-1]:.3f}s CPU with "
                          f"any uploader)  every line on the server {after_exit[-1]:.1f}s after exit", flush=True)
                print(ratio_line(f"{case}, wall", walls["plain"], walls["monitored"]) + "  [target <= 1.2x]")
                print(ratio_line(f"{case}, CPU (job + uploader)", cpus["plain"], cpus["monitored"])
                      + "  [target <= 1.5x]", flush=True)
                summary.append((case, statistics.median(walls["plain"]), statistics.median(walls["monitored"]),
                                median_ratio(walls["monitored"], walls["plain"]),
                                median_ratio(cpus["monitored"], cpus["plain"]), statistics.median(after_exit)))
        finally:
            server.stop()
    print(f"\nsummary (medians of {args.rounds} paired rounds; load average after: {load_average()})")
    print(f"{'case':28} {'plain s':>8} {'monitored s':>12} {'wall ratio':>10} {'CPU ratio':>10} "
          f"{'on server after exit s':>23}")
    for case, plain_wall, monitored_wall, wall_ratio, cpu_ratio, after in summary:
        print(f"{case:28} {plain_wall:8.3f} {monitored_wall:12.3f} {wall_ratio:9.2f}x {cpu_ratio:9.2f}x {after:23.1f}")
    print("every line reached the server, once and in order, in every round")


if __name__ == "__main__":
    main()

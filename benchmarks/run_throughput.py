"""Throughput of ``hyperdash run``: a child floods stdout, against the same child piped into cat.

The child writes 2,000,000 lines of 100 characters as fast as it can. The figure is the time
until ``hyperdash run -n NAME child`` exits (its stdout to /dev/null) against the time of
``child | cat > /dev/null``, both measured in this run (best of ``--rounds`` each; the monitored
run is timed once per round, and only the last one is checked). Target: hyperdash keeps at least
half the throughput of the plain pipe (ratio of times at most 2).

Afterwards, ``hyperdash sync`` sends whatever the exit left in the spool (if the background
uploader has not taken it already), and the script checks that every line of the last run is on
the server exactly once, in order.

    python benchmarks/run_throughput.py [--lines 2000000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from conftest import ServerProcess, free_port  # noqa: E402  (the test suite's real-server helper)

LINE_CHARS = 100

# Lines "%010d" + 90 dots: 100 characters and a newline, written in blocks of 10,000.
CHILD = """
import sys
count = int(sys.argv[1])
write = sys.stdout.buffer.write
tail = b"." * 90 + b"\\n"
for start in range(0, count, 10000):
    write(b"".join(b"%010d" % i + tail for i in range(start, min(start + 10000, count))))
"""


def expected_text(index: int) -> str:
    return f"{index:010d}" + "." * (LINE_CHARS - 10)


def timed(start) -> float:
    """Seconds from calling ``start()`` until every process it returned has exited."""
    started = time.perf_counter()
    procs = start()
    for proc in procs:
        proc.wait()
    elapsed = time.perf_counter() - started
    for proc in procs:
        if proc.returncode != 0:
            raise SystemExit(f"{proc.args!r} exited with {proc.returncode}")
    return elapsed


def plain_pipe(child: list[str]) -> list[subprocess.Popen]:
    writer = subprocess.Popen(child, stdout=subprocess.PIPE)
    reader = subprocess.Popen(["cat"], stdin=writer.stdout, stdout=subprocess.DEVNULL)
    writer.stdout.close()
    return [writer, reader]


def monitored(child: list[str], env: dict, name: str) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-m", "hyperdash", "run", "-n", name, *child],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)]


def wait_until_stored(account, run_name: str, lines: int, timeout: float) -> dict:
    run = account.wait_for_run(run_name, "success", timeout=timeout)
    account.wait_for(lambda: account.run(run["uuid"])["last_seq"] >= lines + 2, timeout=timeout, interval=1)
    return run


def check_server(account, run_name: str, lines: int, env: dict, timeout: float) -> None:
    started = time.perf_counter()
    sync = subprocess.run([sys.executable, "-m", "hyperdash", "sync"], capture_output=True, text=True, env=env)
    print(f"hyperdash sync: {(sync.stdout + sync.stderr).strip()}", flush=True)
    run = wait_until_stored(account, run_name, lines, timeout)
    stored_at = time.perf_counter()
    seen, after, last_seq = 0, 0, 0
    while True:
        resp = account.get(f"/api/v1/runs/{run['uuid']}/logs", params={"after": after, "limit": 10000})
        resp.raise_for_status()
        page = resp.json()["lines"]
        if not page:
            break
        for line in page:
            if line["seq"] <= last_seq or line["text"] != expected_text(seen):
                raise SystemExit(f"line {seen}: got seq {line['seq']} {line['text'][:20]!r}...")
            last_seq = line["seq"]
            seen += 1
        after = page[-1]["seq"]
    if seen != lines:
        raise SystemExit(f"the server holds {seen} lines of {lines}")
    print(f"server check: all {seen:,} lines stored once, in order "
          f"(stored {stored_at - started:.1f}s after exit, read back in {time.perf_counter() - stored_at:.1f}s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=2_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--upload-timeout", type=float, default=600.0,
                        help="seconds to wait for the server to hold every line")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="hd-bench-") as tmp:
        tmp = Path(tmp)
        server = ServerProcess(db_url=f"sqlite:///{tmp / 'server' / 'bench.db'}", home=tmp / "server").start()
        try:
            account = server.signup()
            env = account.sdk_env(tmp / "client")
            child = [sys.executable, "-c", CHILD, str(args.lines)]
            megabytes = args.lines * (LINE_CHARS + 1) / 1e6
            # For the record, where the time goes: the same run with no server to send to
            # (capture, framing and the spool alone; the background uploader gives up at once).
            offline = dict(env, HYPERDASH_SERVER=f"http://127.0.0.1:{free_port()}",
                           HYPERDASH_UPLOADER_PATIENCE="0", HYPERDASH_HOME=str(tmp / "offline"))
            plain, hyperdash, alone = [], [], []
            for round_ in range(args.rounds):
                plain.append(timed(partial(plain_pipe, child)))
                alone.append(timed(partial(monitored, child, offline, "offline")))
                time.sleep(1)  # the offline run's uploader gives up and lets go of its files
                shutil.rmtree(tmp / "offline", ignore_errors=True)
                hyperdash.append(timed(partial(monitored, child, env, f"throughput {round_}")))
                print(f"round {round_ + 1}: plain pipe {plain[-1]:.2f}s, hyperdash run {hyperdash[-1]:.2f}s "
                      f"(no server: {alone[-1]:.2f}s)", flush=True)
                if round_ < args.rounds - 1:  # let the upload finish: each round starts on a quiet machine
                    wait_until_stored(account, f"throughput {round_}", args.lines, args.upload_timeout)
            best_plain, best_hd = min(plain), min(hyperdash)
            print(f"{args.lines:,} lines ({megabytes:.0f} MB), best of {args.rounds}")
            print(f"plain pipe (cmd | cat > /dev/null): {best_plain:.2f}s  {megabytes / best_plain:.0f} MB/s")
            print(f"hyperdash run:                      {best_hd:.2f}s  {megabytes / best_hd:.0f} MB/s")
            print(f"hyperdash run, no server:           {min(alone):.2f}s  {megabytes / min(alone):.0f} MB/s")
            ratio = best_plain / best_hd
            verdict = "meets" if ratio >= 0.5 else "MISSES"
            print(f"throughput ratio (hyperdash / plain): {ratio:.2f}  ({verdict} the target of at least 0.5)")
            check_server(account, f"throughput {args.rounds - 1}", args.lines, env, args.upload_timeout)
        finally:
            server.stop()


if __name__ == "__main__":
    main()

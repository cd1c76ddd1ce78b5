"""Print to visible: how long a line printed by a monitored job takes to reach a live stream
attached to its run (the run page's server-sent events), and how many requests a flood costs.

The job (``@monitor``, stdout unbuffered with ``PYTHONUNBUFFERED=1``, to /dev/null: a buffered
line is not written anywhere until Python flushes it, for any reader) waits until this process
has attached to its run's stream, then prints ``--lines`` lines, each stamped with the time it
was printed, at random gaps averaging ``--interval`` seconds. Latency is the time the line
arrives on the stream minus its stamp (one machine, one clock): the whole path, SDK (capture,
spool, shipper), HTTP, server (ingest, commit, live fan-out) and the stream. The run's first
second is not measured: its first send waits a second by design (a short job sends once, at
exit).

Then the job floods its output for ``--flood`` seconds, as fast as it can print, and says how
many ingest requests its run made meanwhile (it counts the calls of its transport), against the
lines printed.

    python benchmarks/latency.py [--lines 300] [--interval 0.05] [--flood 3] [--sdk OTHER_CHECKOUT]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))

from support import REPO, load_average, reporting_server, uploader_cpu  # noqa: E402

from hyperdash.events import AUTH_HEADER  # noqa: E402

JOB = """
import os, random, time
from hyperdash import monitor

@monitor({name!r})
def job(exp):
    with open({uuid_file!r} + ".tmp", "w") as f:
        f.write(exp.run_uuid)
    os.rename({uuid_file!r} + ".tmp", {uuid_file!r})
    waited = time.monotonic()
    while not os.path.exists({go_file!r}):
        if time.monotonic() - waited > 120:
            raise SystemExit("nobody attached to the run's stream")
        time.sleep(0.005)
    rng = random.Random(0)
    for i in range({lines}):
        print(f"line {{i}} {{time.time():.6f}}")
        time.sleep(rng.uniform(0, 2 * {interval}))
    time.sleep(0.5)
    # (the run's transport, reached through private names: a benchmark's look inside)
    transport = exp._run._shipper.sender.transport
    calls = [0]
    send = transport.send_events

    def counted(*args, **kwargs):
        calls[0] += 1
        return send(*args, **kwargs)

    transport.send_events = counted
    started = time.monotonic()
    printed = 0
    while time.monotonic() - started < {flood}:
        for _ in range(100):
            print("flood", printed)
            printed += 1
    elapsed = time.monotonic() - started
    with open({report_file!r}, "w") as f:
        f.write(f"{{calls[0]}} {{printed}} {{elapsed}}")

job()
"""


def follow(url: str, key: str, run_uuid: str, arrivals: dict[int, tuple[float, float]], attached: threading.Event,
           done: threading.Event, lines: int) -> None:
    """Read the run's stream; note when each stamped line arrives."""
    with requests.get(f"{url}/api/v1/runs/{run_uuid}/events", headers={AUTH_HEADER: key}, stream=True,
                      timeout=(10, 60)) as resp:
        resp.raise_for_status()
        attached.set()
        event = None
        for raw in resp.iter_lines(chunk_size=1):
            now = time.time()
            line = raw.decode()
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event == "log":
                text = json.loads(line[6:]).get("text", "")
                if text.startswith("line "):
                    _, index, stamp = text.split()
                    arrivals[int(index)] = (float(stamp), now)
                    if len(arrivals) == lines:
                        done.set()
                        return


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=300)
    parser.add_argument("--interval", type=float, default=0.05)
    parser.add_argument("--flood", type=float, default=3.0)
    parser.add_argument("--sdk", type=Path, default=REPO,
                        help="the checkout whose hyperdash the job imports (another one: a baseline)")
    args = parser.parse_args()
    print(f"hyperdash from {args.sdk}; load average before: {load_average()}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        server, account, env = reporting_server(workdir, args.sdk)
        env["PYTHONUNBUFFERED"] = "1"
        uuid_file, go_file, report_file = (str(workdir / name) for name in ("uuid", "go", "report"))
        code = JOB.format(name="latency", uuid_file=uuid_file, go_file=go_file, report_file=report_file,
                          lines=args.lines, interval=args.interval, flood=args.flood)
        arrivals: dict[int, tuple[float, float]] = {}
        started = time.monotonic()
        job = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL,
                               stdin=subprocess.DEVNULL)
        try:
            deadline = started + 60
            while not Path(uuid_file).exists():
                if job.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("the job did not start")
                time.sleep(0.01)
            run_uuid = Path(uuid_file).read_text()
            account.wait_for_run("latency", timeout=60)  # on the server once its first send is in
            attached, done = threading.Event(), threading.Event()
            reader = threading.Thread(target=follow, daemon=True, args=(
                server.url, account.api_key, run_uuid, arrivals, attached, done, args.lines))
            reader.start()
            if not attached.wait(30):
                raise SystemExit("could not attach to the run's stream")
            time.sleep(max(0.0, 1.2 - (time.monotonic() - started)))  # past the run's first second
            Path(go_file).touch()
            if job.wait(300) != 0:
                raise SystemExit(f"the job failed with {job.returncode}")
            done.wait(30)
            calls, printed, elapsed = Path(report_file).read_text().split()
        finally:
            if job.poll() is None:
                job.kill()
                job.wait()
            uploader_cpu(Path(env["HYPERDASH_HOME"]), 0)  # (it writes into this folder until it is done)
            server.stop()
    missing = args.lines - len(arrivals)
    if missing:
        raise SystemExit(f"{missing} of {args.lines} lines never reached the live stream")
    latencies = sorted(1000 * (seen - stamp) for stamp, seen in arrivals.values())
    p50 = statistics.median(latencies)
    p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
    print(f"{args.lines} lines at random gaps averaging {1000 * args.interval:.0f} ms, each on the live stream: "
          f"print to visible p50 {p50:.1f} ms, p90 {latencies[int(0.9 * len(latencies))]:.1f} ms, "
          f"p99 {p99:.1f} ms, max {latencies[-1]:.1f} ms  [targets p50 <= 50 ms, p99 <= 200 ms]")
    worst = sorted(arrivals, key=lambda i: arrivals[i][0] - arrivals[i][1])[:5]
    print("slowest lines (index: ms): " + ", ".join(
        f"{i}: {1000 * (arrivals[i][1] - arrivals[i][0]):.0f}" for i in worst))
    rate = int(calls) / float(elapsed)
    print(f"flood: {int(printed)} lines in {float(elapsed):.1f}s, {calls} ingest requests "
          f"({rate:.1f} per second); load average after: {load_average()}")


if __name__ == "__main__":
    main()

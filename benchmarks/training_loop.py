"""A training-like loop under ``@monitor`` against plain Python: each step does about 2 ms of
numpy work and prints one line, with a tqdm bar on stderr, reporting to a real server.

Each round runs the plain script and the monitored one as fresh interpreters (stdout and stderr
to /dev/null), one after the other, and times them from spawn to exit. Two figures:

- whole run: wall time from spawn to exit, monitored / plain (start-up, import and the flush at
  exit included);
- steady state: the time per step once the loop is under way (from the step a tenth of the way
  in to the last), measured inside each job, monitored / plain; and the CPU time the monitor's
  own threads (pump, shipper) spent, per step, which other load on the machine barely moves.

Prints the median of the rounds' ratios (the headline: the two runs of a round are taken back to
back, so a drift in the machine's speed, which on a shared two-core machine is often larger than
the monitor's cost, touches both), their spread, and the ratio of the best times. Many short
rounds beat a few long ones for this; a first pair of short jobs warms the machine up and is not
counted. Targets: at most 2% slower, and the monitor's threads at most 1% of the job's CPU.

Both buffering cases run (``--buffering`` picks one): ``unbuffered`` (``PYTHONUNBUFFERED=1``, as
in Docker images, SLURM scripts and ``python -u``: every line reaches the monitor alone) and
``buffered`` (Python's default to a file: lines gather in 8 KiB blocks). tqdm writes to stderr,
which Python flushes at every write either way.

    python benchmarks/training_loop.py [--steps 2000] [--rounds 8] [--buffering unbuffered,buffered]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from support import REPO, load_average, measured, ratio_line, reporting_server  # noqa: E402

BODY = """
import json, os, threading, time
import numpy as np
from tqdm import tqdm

rng = np.random.default_rng(0)
a = rng.standard_normal((192, 192))
b = rng.standard_normal((192, 192))

def step_work():
    # about 2 ms on one core of the machine the figures were taken on
    c = a
    for _ in range({repeats}):
        c = np.tanh(c @ b / 192.0)
    return float(c.mean())

def thread_cpu():
    # schedstat: nanoseconds on a CPU; stat's user and system times count whole clock ticks
    # (10 ms), too coarse for threads that run a few tens of milliseconds in all
    ticks = os.sysconf("SC_CLK_TCK")
    out = {{}}
    for thread in threading.enumerate():
        task = f"/proc/self/task/{{thread.native_id}}"
        try:
            with open(task + "/schedstat") as f:
                seconds = int(f.read().split()[0]) / 1e9
        except OSError:
            try:
                with open(task + "/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            seconds = (int(fields[11]) + int(fields[12])) / ticks
        out[thread.name] = out.get(thread.name, 0.0) + seconds
    return out

def train(exp=None):
    warm = {steps} // 10
    for step in tqdm(range({steps})):
        if step == warm:
            started = time.perf_counter()
        loss = step_work()
        print(f"step {{step}} loss {{loss:.6f}}")
    per_step = (time.perf_counter() - started) / ({steps} - warm)
    with open({report!r}, "w") as f:
        json.dump({{"per_step": per_step, "threads": thread_cpu()}}, f)
"""

PLAIN = BODY + "\ntrain()\n"
MONITORED = "from hyperdash import monitor\n" + BODY + "\nmonitor({name!r})(train)()\n"
CALIBRATE = BODY + """
start = time.perf_counter()
for _ in range(200):
    step_work()
print((time.perf_counter() - start) / 200)
"""


def calibrate() -> int:
    """Matrix products per step for about 2 ms of work."""
    out = subprocess.run([sys.executable, "-c", CALIBRATE.format(repeats=1, steps=0, report="")],
                         capture_output=True, text=True, check=True).stdout
    return max(1, round(0.002 / float(out)))


def job(code: str, env: dict[str, str], report: Path) -> tuple[float, float, dict]:
    """Wall seconds, CPU seconds and the job's own report of one run of ``code`` (stdout and
    stderr to /dev/null)."""
    wall, cpu = measured([sys.executable, "-c", code], env)
    return wall, cpu, json.loads(report.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--buffering", default="unbuffered,buffered")
    parser.add_argument("--sdk", type=Path, default=REPO,
                        help="the checkout whose hyperdash the jobs import (another one: a baseline)")
    args = parser.parse_args()
    repeats = calibrate()
    print(f"hyperdash from {args.sdk}; load average before: {load_average()}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        server, account, env = reporting_server(Path(tmp), args.sdk)
        env["OMP_NUM_THREADS"] = env["OPENBLAS_NUM_THREADS"] = env["MKL_NUM_THREADS"] = "1"
        try:
            for buffering in args.buffering.split(","):
                case_env = dict(env, PYTHONUNBUFFERED="1") if buffering == "unbuffered" else env
                rounds(account, case_env, buffering, repeats, args.steps, args.rounds, Path(tmp))
        finally:
            server.stop()


def rounds(account, env: dict[str, str], buffering: str, repeats: int, steps: int, count: int, tmp: Path) -> None:
    """The paired rounds of one buffering case, and their figures."""
    walls: dict[str, list[float]] = {"plain": [], "monitored": []}
    cpus: dict[str, list[float]] = {"plain": [], "monitored": []}
    per_step: dict[str, list[float]] = {"plain": [], "monitored": []}
    threads: list[dict[str, float]] = []
    report = tmp / "report.json"
    # One pair first, not counted: the first jobs after start-up run at a speed the machine does
    # not keep.
    warm = f"warm-up {buffering}"
    for code in (PLAIN, MONITORED):
        job(code.format(repeats=repeats, steps=steps // 5, report=str(report), name=warm), env, report)
    account.wait_for_run(warm, status="success", timeout=300)
    for round_ in range(count):
        name = f"training {buffering} {round_}"
        codes = {"plain": PLAIN.format(repeats=repeats, steps=steps, report=str(report)),
                 "monitored": MONITORED.format(repeats=repeats, steps=steps, report=str(report), name=name)}
        # alternate which goes first, so that a drift in the machine's load evens out
        order = list(codes.items()) if round_ % 2 == 0 else list(codes.items())[::-1]
        for kind, code in order:
            wall, cpu, got = job(code, env, report)
            walls[kind].append(wall)
            cpus[kind].append(cpu)
            per_step[kind].append(got["per_step"])
            if kind == "monitored":
                threads.append({k: v for k, v in got["threads"].items() if k.startswith("hyperdash")})
        run = account.wait_for_run(name, status="success", timeout=300)
        printed = [line["text"] for line in account.logs(run["uuid"]) if line["stream"] == "stdout"]
        assert len(printed) == steps and printed[-1].startswith(f"step {steps - 1} "), \
            f"{len(printed)} of {steps} lines on the server"
        print(f"  {buffering} round {round_}: plain {walls['plain'][-1]:.2f}s ({cpus['plain'][-1]:.2f}s CPU)  "
              f"monitored {walls['monitored'][-1]:.2f}s ({cpus['monitored'][-1]:.2f}s CPU)  monitor threads: "
              + ", ".join(f"{k} {v:.3f}s" for k, v in sorted(threads[-1].items())), flush=True)
    print(f"{buffering}: {steps} steps of ~2 ms ({repeats} matrix products each) + one print + a tqdm bar; "
          f"every line on the server; load average after: {load_average()}")
    print("  " + ratio_line("whole run (spawn to exit)", walls["plain"], walls["monitored"]) + "  [target <= +2%]")
    print("  " + ratio_line("steady state (time per step)", per_step["plain"], per_step["monitored"]))
    print("  " + ratio_line("CPU time of the job process (user+system)", cpus["plain"], cpus["monitored"]))
    # The monitor's own work, from its threads' CPU time: noise from other load barely moves it.
    share = statistics.median(sum(t.values()) / cpu for t, cpu in zip(threads, cpus["monitored"], strict=True))
    own = statistics.median(sum(t.values()) for t in threads) / steps
    print(f"  the monitor's threads: {100 * share:.2f}% of the job's CPU (median of rounds; target <= 1%), "
          f"{1e3 * own:.4f} ms of CPU per step", flush=True)


if __name__ == "__main__":
    main()

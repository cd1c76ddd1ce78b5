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
counted. Target: at most 3% slower.

    python benchmarks/training_loop.py [--steps 5000] [--rounds 8]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from print_storm import measured, start_server, wait_for_run_status  # noqa: E402

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
    ticks = os.sysconf("SC_CLK_TCK")
    out = {{}}
    for thread in threading.enumerate():
        try:
            with open(f"/proc/self/task/{{thread.native_id}}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[thread.name] = out.get(thread.name, 0.0) + (int(fields[11]) + int(fields[12])) / ticks
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
    """Wall seconds, CPU seconds and the job's own report of one run of ``code``."""
    wall, cpu, _ = measured(code, env, stderr=True)
    return wall, cpu, json.loads(report.read_text())


def ratio_line(what: str, plain: list[float], monitored: list[float]) -> str:
    ratios = sorted(m / p for m, p in zip(monitored, plain, strict=True))
    median = statistics.median(ratios)
    quartiles = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [median, median, median]
    best = min(monitored) / min(plain)
    return (f"{what}: median ratio {median:.3f}x ({100 * (median - 1):+.1f}%; middle half of the "
            f"rounds {quartiles[0]:.3f}x to {quartiles[2]:.3f}x), best/best {best:.3f}x ({100 * (best - 1):+.1f}%)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args()
    repeats = calibrate()
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    walls: dict[str, list[float]] = {"plain": [], "monitored": []}
    cpus: dict[str, list[float]] = {"plain": [], "monitored": []}
    steps: dict[str, list[float]] = {"plain": [], "monitored": []}
    threads: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        server, account, env = start_server(Path(tmp))
        env["OMP_NUM_THREADS"] = env["OPENBLAS_NUM_THREADS"] = env["MKL_NUM_THREADS"] = "1"
        # what the monitor imports lazily is compiled once here, as for an installed package,
        # not in the first monitored round
        subprocess.run([sys.executable, "-c", "import requests, hyperdash.transport, hyperdash.shipper"],
                       env=env, check=True)
        report = Path(tmp) / "report.json"
        try:
            # One pair first, not counted: the first jobs after start-up run at a speed the
            # machine does not keep.
            warm = {"plain": PLAIN, "monitored": MONITORED}
            for code in warm.values():
                job(code.format(repeats=repeats, steps=args.steps // 5, report=str(report), name="warm-up"),
                    env, report)
            wait_for_run_status(account, "warm-up", "success")
            for round_ in range(args.rounds):
                name = f"training {round_}"
                codes = {"plain": PLAIN.format(repeats=repeats, steps=args.steps, report=str(report)),
                         "monitored": MONITORED.format(repeats=repeats, steps=args.steps, report=str(report),
                                                       name=name)}
                # alternate which goes first, so that a drift in the machine's load evens out
                order = list(codes.items()) if round_ % 2 == 0 else list(codes.items())[::-1]
                for kind, code in order:
                    wall, cpu, got = job(code, env, report)
                    walls[kind].append(wall)
                    cpus[kind].append(cpu)
                    steps[kind].append(got["per_step"])
                    if kind == "monitored":
                        threads.append({k: v for k, v in got["threads"].items() if k.startswith("hyperdash")})
                wait_for_run_status(account, name, "success")
                print(f"round {round_}: plain {walls['plain'][-1]:.2f}s ({cpus['plain'][-1]:.2f}s CPU, "
                      f"{1e3 * steps['plain'][-1]:.3f} ms/step)  monitored {walls['monitored'][-1]:.2f}s "
                      f"({cpus['monitored'][-1]:.2f}s CPU, {1e3 * steps['monitored'][-1]:.3f} ms/step)  "
                      f"monitor threads CPU: "
                      + ", ".join(f"{k} {v:.3f}s" for k, v in sorted(threads[-1].items())), flush=True)
        finally:
            server.stop()
    print(f"{args.steps} steps of ~2 ms ({repeats} matrix products each) + one print + a tqdm bar; "
          f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(ratio_line("whole run (spawn to exit)", walls["plain"], walls["monitored"]) + "  [target <= +3%]")
    print(ratio_line("steady state (time per step)", steps["plain"], steps["monitored"]))
    print(ratio_line("CPU time of the job process (user+system)", cpus["plain"], cpus["monitored"]))
    # The monitor's own work, from its threads' CPU time: noise from other load barely moves it.
    own = statistics.median(sum(t.values()) for t in threads) / args.steps
    print(f"the monitor's threads: {1e3 * own:.4f} ms of CPU per step (median of rounds), "
          f"{100 * own / statistics.median(steps['plain']):.1f}% of a plain step")


if __name__ == "__main__":
    main()

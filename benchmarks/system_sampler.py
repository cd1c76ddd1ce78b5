"""The system metrics sampler's cost: the CPU time of its thread against the wall time of the
run, and the job's CPU time against the same job without the sampler, reporting to a real server.

Each round runs the same job twice as fresh interpreters, one after the other (which first
alternates): an ``Experiment`` with ``system_metrics=False`` (the baseline) and one sampling
every ``--interval`` seconds. The job does numpy work in its main thread for ``--seconds`` and
has a child process, so the sampler reads a process tree. The work is a fixed number of steps
(as many as a first, uncounted job does in ``--seconds``), so that the job's CPU time differs
between the two by what sampling costs, and by the machine's noise. The sampled job reports its sampler
thread's CPU time (``SystemSampler.cpu_seconds``) and the sample count, and every sample is checked
to have arrived on the server.

Figures, medians of the rounds:

- the sampler thread's CPU time per sample once under way (its clock: ``time.thread_time``),
  and its share of one core at the default interval of 10 s (the headline; target: at most
  0.5% of one core);
- the sampler thread's CPU time over the whole run (its start-up, which imports psutil and
  looks for NVML, included) against the run's wall time, at the interval measured;
- the job process's CPU time, sampled minus baseline, per second of wall time (everything the
  sampling costs, the sending of its points included; noisier, as other load moves it).

    python benchmarks/system_sampler.py [--seconds 10] [--interval 1] [--rounds 5]
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

from support import measured, reporting_server  # noqa: E402

DEFAULT_INTERVAL = 10.0
TARGET = 0.5  # % of one core

JOB = """
import json, subprocess, sys, time
import numpy as np
from hyperdash import Experiment

exp = Experiment({name!r}, capture_io=False, echo=False, {options})
sampler = exp._sampler
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
rng = np.random.default_rng(0)
a = rng.standard_normal((128, 128))
start = time.perf_counter()
first = None  # the sampler's CPU time and samples once its start-up (imports) is behind it
steps = 0
# A fixed amount of work ({steps} steps), or for {seconds} s when no count is given.
while (steps < {steps}) if {steps} else (time.perf_counter() - start < {seconds}):
    a = np.tanh(a @ a.T / 128.0)
    steps += 1
    if first is None and sampler is not None and sampler.samples >= 2:
        first = (sampler.cpu_seconds, sampler.samples)
wall = time.perf_counter() - start
report = {{"wall": wall, "samples": 0, "steps": steps}}
if sampler is not None:
    report.update(samples=sampler.samples, thread_cpu=sampler.cpu_seconds,
                  steady=(sampler.cpu_seconds - first[0]) / (sampler.samples - first[1]))
child.kill()
child.wait()
exp.end()
with open({report!r}, "w") as f:
    json.dump(report, f)
"""


def median_line(what: str, values: list[float], unit: str) -> str:
    quartiles = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
    return (f"{what}: median {statistics.median(values):.4f}{unit} "
            f"(middle half of the rounds {quartiles[0]:.4f} to {quartiles[2]:.4f})")


def count_samples(account, name: str) -> int:
    """Samples of run ``name`` that arrived on the server (one memory reading each)."""
    run = account.wait_for_run(name, status="success", timeout=300)
    points = account.get(f"/api/v1/runs/{run['uuid']}/metrics/sys/host/memory_percent").json()["points"]
    return len(points)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    per_sample: list[float] = []
    thread_share: list[float] = []
    extra_cpu: list[float] = []
    ratios: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        server, account, env = reporting_server(Path(tmp))
        env["OMP_NUM_THREADS"] = env["OPENBLAS_NUM_THREADS"] = env["MKL_NUM_THREADS"] = "1"
        # compiled once here, as for an installed package, not in the first round
        subprocess.run([sys.executable, "-c", "import numpy, psutil, requests, hyperdash.sysmetrics, "
                        "hyperdash.transport, hyperdash.shipper"], env=env, check=True)
        report = Path(tmp) / "report.json"
        try:
            measured([sys.executable, "-c", JOB.format(name="warm-up", options="system_metrics=False",
                                                       seconds=args.seconds, steps=0, report=str(report))], env)
            steps = json.loads(report.read_text())["steps"]
            print(f"{steps} steps of numpy work a job (what {args.seconds:g} s held in a warm-up job)", flush=True)
            for round_ in range(args.rounds):
                jobs = {
                    "baseline": JOB.format(name=f"baseline {round_}", options="system_metrics=False",
                                           seconds=args.seconds, steps=steps, report=str(report)),
                    "sampled": JOB.format(name=f"sampled {round_}",
                                          options=f"system_metrics_interval={args.interval}",
                                          seconds=args.seconds, steps=steps, report=str(report)),
                }
                order = list(jobs) if round_ % 2 == 0 else list(jobs)[::-1]
                got: dict[str, dict] = {}
                for kind in order:
                    _, cpu = measured([sys.executable, "-c", jobs[kind]], env)
                    got[kind] = {**json.loads(report.read_text()), "cpu": cpu}
                sampled, baseline = got["sampled"], got["baseline"]
                arrived = count_samples(account, f"sampled {round_}")
                assert arrived == sampled["samples"] >= 3, \
                    f"{arrived} samples on the server, {sampled['samples']} taken"
                assert count_samples(account, f"baseline {round_}") == 0, "the baseline sampled"
                per_sample.append(sampled["steady"])
                thread_share.append(100 * sampled["thread_cpu"] / sampled["wall"])
                extra_cpu.append(100 * ((sampled["cpu"] - baseline["cpu"]) / sampled["wall"]))
                ratios.append(sampled["cpu"] / baseline["cpu"])
                print(f"round {round_}: {sampled['samples']} samples (all on the server), sampler thread "
                      f"{sampled['thread_cpu']:.3f}s CPU over {sampled['wall']:.1f}s "
                      f"({1e3 * sampled['steady']:.2f} ms a sample once under way); job CPU sampled "
                      f"{sampled['cpu']:.2f}s, baseline {baseline['cpu']:.2f}s", flush=True)
        finally:
            server.stop()
    cost = statistics.median(per_sample)
    at_default = 100 * cost / DEFAULT_INTERVAL
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(median_line("sampler thread CPU per sample, once under way", [1e3 * c for c in per_sample], " ms"))
    print(median_line(f"sampler thread CPU (start-up included) / wall at a {args.interval:g} s interval",
                      thread_share, "% of one core"))
    print(median_line("job process CPU, sampled minus baseline, / wall", extra_cpu, "% of one core"))
    print(median_line("job process CPU, sampled / baseline", ratios, "x"))
    print(f"at the default {DEFAULT_INTERVAL:g} s interval: {at_default:.4f}% of one core "
          f"(ratio to the target {at_default / TARGET:.3f}; target <= {TARGET}%)")
    if at_default > TARGET:
        sys.exit(f"the sampler costs {at_default:.3f}% of one core, over the target of {TARGET}%")


if __name__ == "__main__":
    main()

"""The benchmarks run: each script starts (its imports of the shared support module hold), and the
print storm and the memory benchmark go through a small load end to end. Their figures are not
looked at here: speed targets live in the benchmarks themselves, never in timed tests."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
SCRIPTS = sorted(path.name for path in BENCHMARKS.glob("*.py") if path.name != "support.py")


def bench(script: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)  # (each script finds the repository and its support module itself)
    return subprocess.run([sys.executable, str(BENCHMARKS / script), *args], capture_output=True, text=True,
                          timeout=timeout, env=env, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("script", SCRIPTS)
def test_each_benchmark_starts(script):
    result = bench(script, "--help", timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: "), result.stdout


@pytest.mark.slow
def test_the_print_storm_checks_every_line_in_each_buffering(tmp_path):
    cases = "monitor-buffered-file,run-unbuffered-pipe,run-kept-file,run-kept-pipe"
    result = bench("print_storm.py", "--lines", "3000", "--rounds", "1", "--cases", cases, timeout=240)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = result.stdout.split("\nsummary")[1]
    assert [line.split()[0] for line in summary.splitlines()[2:-1]] == cases.split(","), summary
    assert summary.rstrip().endswith("every line reached the server, once and in order, in every round")


def test_the_print_storm_refuses_an_unknown_case():
    result = bench("print_storm.py", "--cases", "run-kept-pty", timeout=60)
    assert result.returncode == 2
    assert "unknown cases run-kept-pty" in result.stderr


@pytest.mark.slow
def test_the_memory_benchmark_runs_with_its_server_down():
    result = bench("memory.py", "--megabytes", "4", timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "4 MiB of output" in result.stdout, result.stdout
    # each job's own peak: the monitored one, which imports and runs more, uses more (a figure
    # taken from the parent's side would be the benchmark's own size for both)
    plain, monitored = map(float, re.search(r"peak RSS: plain ([\d.]+) MB, monitored ([\d.]+) MB",
                                            result.stdout).groups())
    assert 5 < plain < monitored < plain + 50, result.stdout

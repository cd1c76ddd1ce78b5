"""Import cost: ``import hyperdash`` against a bare interpreter, both as fresh processes.

The interpreters import from cached bytecode, as an installed package does. Also times
``from hyperdash import monitor`` (what a monitored script imports) and checks that
neither imports the server or ``requests`` (the HTTP client is imported by the first send),
nor the system metrics sampler, psutil, NVML, the framework integrations or any framework.

``--against REF`` also times ``import hyperdash`` from the tree of the git revision REF (for
example ``main``), interleaved with the others, and prints the difference (target: within 5 ms).

    python benchmarks/import_time.py [--rounds 30] [--against main]
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
sys.path.insert(0, str(Path(__file__).resolve().parent))

from support import as_installed  # noqa: E402

CASES = {
    "bare interpreter": "pass",
    "import hyperdash": "import hyperdash",
    "from hyperdash import monitor": "from hyperdash import monitor",
}

CHECK = """
import sys
from hyperdash import monitor, Experiment
heavy = sorted(m for m in sys.modules if m.startswith((
    "hyperdash.server", "requests", "urllib3", "IPython", "hyperdash.sysmetrics", "hyperdash.integrations",
    "hyperdash.tensorboard", "psutil", "pynvml", "keras", "torch", "lightning", "pytorch_lightning",
    "transformers", "xgboost", "tensorboard")))
print(",".join(heavy))
"""


def wall(code: str, env: dict[str, str], cwd: Path = REPO) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, cwd=cwd, env=env)
    return time.perf_counter() - start


def tree_of(ref: str, folder: Path) -> Path:
    """The ``hyperdash`` package of the git revision ``ref``, extracted under ``folder``."""
    folder.mkdir()
    archive = subprocess.run(["git", "archive", ref, "hyperdash"], cwd=REPO, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--against", metavar="REF", default=None,
                        help="also time `import hyperdash` from this git revision's tree")
    args = parser.parse_args()
    tmp = tempfile.TemporaryDirectory()
    env = as_installed(dict(os.environ, PYTHONPATH=str(REPO)), Path(tmp.name))
    cases = {name: (code, env, REPO) for name, code in CASES.items()}
    if args.against:
        base = tree_of(args.against, Path(tmp.name) / "base")
        base_env = dict(env, PYTHONPATH=str(base))
        subprocess.run([sys.executable, "-c", "import hyperdash.monitor"], cwd=base, env=base_env, check=True)
        cases[f"import hyperdash ({args.against})"] = ("import hyperdash", base_env, base)
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.rounds):
        for name, (code, case_env, cwd) in cases.items():  # interleaved: load changes hit every case alike
            times[name].append(wall(code, case_env, cwd))
    bare_best, bare_median = min(times["bare interpreter"]), statistics.median(times["bare interpreter"])
    for name, samples in times.items():
        print(f"{name:32s} best {min(samples) * 1000:6.1f} ms   median {statistics.median(samples) * 1000:6.1f} ms"
              f"   (+{(min(samples) - bare_best) * 1000:5.1f} ms best, "
              f"+{(statistics.median(samples) - bare_median) * 1000:5.1f} ms median)")
    extra = min(times["import hyperdash"]) - bare_best
    print(f"import hyperdash costs {extra * 1000:.1f} ms over a bare interpreter "
          f"(ratio {min(times['import hyperdash']) / bare_best:.2f}x; target <= 50 ms)")
    if args.against:
        base_times = times[f"import hyperdash ({args.against})"]
        best = (min(times["import hyperdash"]) - min(base_times)) * 1000
        median = (statistics.median(times["import hyperdash"]) - statistics.median(base_times)) * 1000
        print(f"import hyperdash against {args.against}: {best:+.1f} ms best, {median:+.1f} ms median "
              f"(ratio {min(times['import hyperdash']) / min(base_times):.3f}x; target within 5 ms)")
    heavy = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, cwd=REPO,
                           check=True, env=env)
    tmp.cleanup()
    print("modules of the server, requests, IPython, the sampler, psutil, NVML, the integrations or a "
          f"framework imported by `from hyperdash import monitor, Experiment`: {heavy.stdout.strip() or 'none'}")


if __name__ == "__main__":
    main()

"""Import cost: ``import hyperdash`` against a bare interpreter, both as fresh processes.

The interpreters import from cached bytecode, as an installed package does. Also times
``from hyperdash import monitor`` (what a monitored script imports) and checks that
neither imports the server or ``requests`` (the HTTP client is imported by the first send).

    python benchmarks/import_time.py [--rounds 30]
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

from print_storm import as_installed  # noqa: E402

CASES = {
    "bare interpreter": "pass",
    "import hyperdash": "import hyperdash",
    "from hyperdash import monitor": "from hyperdash import monitor",
}

CHECK = """
import sys
from hyperdash import monitor, Experiment
heavy = sorted(m for m in sys.modules if m.startswith(("hyperdash.server", "requests", "urllib3", "IPython")))
print(",".join(heavy))
"""


def wall(code: str, env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, env=env)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    tmp = tempfile.TemporaryDirectory()
    env = as_installed(dict(os.environ, PYTHONPATH=str(REPO)), Path(tmp.name))
    times: dict[str, list[float]] = {name: [] for name in CASES}
    for _ in range(args.rounds):
        for name, code in CASES.items():  # interleaved, so load changes hit every case alike
            times[name].append(wall(code, env))
    bare_best, bare_median = min(times["bare interpreter"]), statistics.median(times["bare interpreter"])
    for name, samples in times.items():
        print(f"{name:32s} best {min(samples) * 1000:6.1f} ms   median {statistics.median(samples) * 1000:6.1f} ms"
              f"   (+{(min(samples) - bare_best) * 1000:5.1f} ms best, "
              f"+{(statistics.median(samples) - bare_median) * 1000:5.1f} ms median)")
    extra = min(times["import hyperdash"]) - bare_best
    print(f"import hyperdash costs {extra * 1000:.1f} ms over a bare interpreter "
          f"(ratio {min(times['import hyperdash']) / bare_best:.2f}x; target <= 50 ms)")
    heavy = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, cwd=REPO,
                           check=True, env=env)
    tmp.cleanup()
    print("modules of the server, requests or IPython imported by `from hyperdash import monitor, "
          f"Experiment`: {heavy.stdout.strip() or 'none'}")


if __name__ == "__main__":
    main()

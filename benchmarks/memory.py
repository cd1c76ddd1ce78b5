"""Memory: 1 GB of output under ``@monitor`` with the server down, against plain Python.

The job writes its output in 1 MiB blocks of 80-character lines to stdout (/dev/null). With no
server to take them, every event waits in the spool on disk; memory must stay flat. Prints the
peak RSS of each process and the difference (target: at most 50 MB above plain).

    python benchmarks/memory.py [--megabytes 1024]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from support import as_installed, free_port, measured, wait_for_uploaders  # noqa: E402

# Each job says its own peak RSS (VmHWM, of its own memory since its exec): a child's ru_maxrss
# would be at least the RSS this process had when it forked it. Registered first, it is
# written last, after what hyperdash does at exit.
PEAK = """
import atexit

def _peak():
    with open("/proc/self/status") as status:
        kib = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
    with open({path!r}, "w") as out:
        out.write(kib)

atexit.register(_peak)
"""

BODY = """
import sys
block = ("y" * 79 + "\\n") * (1024 * 1024 // 80)

def flood():
    for _ in range({megabytes}):
        sys.stdout.write(block)
"""

PLAIN = PEAK + BODY + "\nflood()\n"
MONITORED = PEAK + "from hyperdash import monitor\n" + BODY + "\nmonitor('flood')(flood)()\n"


def run(code: str, megabytes: int, env: dict[str, str], peak: Path) -> tuple[float, int]:
    """The job's wall seconds and its peak RSS in KiB, as it said it (into ``peak``)."""
    wall, _ = measured([sys.executable, "-c", code.format(megabytes=megabytes, path=str(peak))], env)
    return wall, int(peak.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--megabytes", type=int, default=1024)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        env = as_installed(dict(os.environ, HYPERDASH_HOME=str(home), HYPERDASH_API_KEY="unused",
                                HYPERDASH_SERVER=f"http://127.0.0.1:{free_port()}",  # nobody listens there
                                HYPERDASH_UPLOADER_PATIENCE="0"), Path(tmp))
        plain_wall, plain_rss = run(PLAIN, args.megabytes, env, Path(tmp) / "plain-peak")
        mon_wall, mon_rss = run(MONITORED, args.megabytes, env, Path(tmp) / "monitored-peak")
        # (the uploader the job started gives up at once: its server is down; the folder goes after it)
        wait_for_uploaders(home)
        spooled = sum(f.stat().st_size for f in (home / "spool").rglob("events"))
        logged = sum(f.stat().st_size for f in (home / "logs").rglob("*.log") if f.name != "uploader.log")
        shutil.rmtree(home, ignore_errors=True)
    print(f"{args.megabytes} MiB of output; plain {plain_wall:.1f}s, monitored {mon_wall:.1f}s "
          f"(spool on disk {spooled / 2**20:.0f} MiB, local log {logged / 2**20:.0f} MiB)")
    print(f"peak RSS: plain {plain_rss / 1024:.1f} MB, monitored {mon_rss / 1024:.1f} MB, "
          f"difference {(mon_rss - plain_rss) / 1024:+.1f} MB (target <= +50 MB)")


if __name__ == "__main__":
    main()

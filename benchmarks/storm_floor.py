"""Print storm floor: the least CPU any monitor keeping Hyperdash's invariants spends on a
buffered print storm, against plain Python's, measured in the same run.

A buffered storm (200,000 lines of 80 characters, stdout to a file) costs plain Python little:
its 16 MB leave in 8 KiB writes. A monitor that keeps every line (invariant 3: each reaches a
spool on disk before it is sent) and lets the job exit at once (invariant 5: the server needs far
longer to store 200,000 lines than the job took to print them, so what is unsent at exit goes on
in another process) must at least:

- write the 16 MB a second time, to its spool: the CPU of writing them to a new file, measured
  around that write alone;
- start a second interpreter (``python -S``, importing ``json`` for the server's replies and
  ``socket``) that sends the spool's bytes over a loopback socket with ``sendfile``, which
  copies nothing through Python. A sink thread here reads them; its CPU, like a server's, is
  not counted.

The plain job and the hand-over are fresh processes, timed from spawn to exit (user and system
CPU); the figures are medians of ``--rounds``. The floor is plain's CPU plus both costs, printed
as a ratio of plain's beside the 1.5x target of the storm's CPU; nothing that reads output,
frames lines, counts them or speaks HTTP is in it. ``print_storm.py`` measures what the SDK
spends. A new file's pages cost more when the kernel must first reclaim page cache (after much
writing on the machine): the spool write, about 4 ms on a quiet machine, then costs several
times that, and each round's line shows it.

    python benchmarks/storm_floor.py [--lines 200000] [--rounds 9]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from support import load_average, measured  # noqa: E402

PLAIN = """
line = "x" * 79
for i in range({lines}):
    print(line)
"""
WRITE = ("import resource; data = b'x' * 79 + b'\\n'; data *= {lines}; out = open({path!r}, 'xb'); "
         "before = resource.getrusage(resource.RUSAGE_SELF); out.write(data); out.close(); "
         "after = resource.getrusage(resource.RUSAGE_SELF); "
         "print(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)")
HAND_OVER = ("import json, socket; s = socket.create_connection(('127.0.0.1', {port})); "
             "s.sendfile(open({path!r}, 'rb')); s.close()")


def _sink(server: socket.socket) -> None:
    """Read whatever each connection sends until it closes, as a server would, and drop it."""
    while True:
        conn, _ = server.accept()
        with conn:
            while conn.recv(1 << 20):
                pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    python = sys.executable
    # Python's own defaults: buffered output (no PYTHONUNBUFFERED), whatever this shell sets
    env = {name: value for name, value in os.environ.items() if not name.startswith("PYTHON")}
    server = socket.create_server(("127.0.0.1", 0))
    threading.Thread(target=_sink, args=(server,), daemon=True).start()
    port = server.getsockname()[1]
    cpu: dict[str, list[float]] = {"plain": [], "spool write": [], "hand-over": []}
    print(f"{args.lines} lines, {args.rounds} rounds; load average before: {load_average()}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        spool = workdir / "spool"
        with open(spool, "wb") as out:
            out.write((b"x" * 79 + b"\n") * args.lines)
        for round_ in range(args.rounds):
            with open(workdir / "out.txt", "wb") as out:
                cpu["plain"].append(measured([python, "-c", PLAIN.format(lines=args.lines)], env, stdout=out)[1])
            fresh = workdir / f"spool-{round_}"  # (a new file, as a run's spool is)
            wrote = subprocess.run([python, "-S", "-c", WRITE.format(lines=args.lines, path=str(fresh))], env=env,
                                   capture_output=True, text=True, check=True)
            cpu["spool write"].append(float(wrote.stdout))
            fresh.unlink()
            cpu["hand-over"].append(
                measured([python, "-S", "-c", HAND_OVER.format(port=port, path=str(spool))], env)[1])
            print(f"  round {round_}: " + ", ".join(f"{k} {v[-1] * 1000:.1f} ms" for k, v in cpu.items()), flush=True)
    plain, spool_write, hand_over = (statistics.median(cpu[k]) for k in ("plain", "spool write", "hand-over"))
    floor = plain + spool_write + hand_over
    print(f"\nmedians of {args.rounds} rounds (CPU; load average after: {load_average()})")
    print(f"plain storm, stdout to a file      {plain * 1000:7.1f} ms")
    print(f"writing the output to a spool     +{spool_write * 1000:7.1f} ms")
    print(f"handing it over: a second process +{hand_over * 1000:7.1f} ms")
    print(f"floor                              {floor * 1000:7.1f} ms = {floor / plain:.2f}x plain's CPU"
          f"  [the storm's CPU target: <= 1.5x, {plain * 1.5 * 1000:.1f} ms]")


if __name__ == "__main__":
    main()

"""What several benchmarks need: a free loopback port and a real ``hyperdash server`` on it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(home: Path, *args: str) -> tuple[subprocess.Popen, str]:
    """``hyperdash server ARGS`` on 127.0.0.1 with a fresh SQLite store under ``home`` (its
    output in ``home/server.log``): (process, its URL)."""
    port = free_port()
    env = dict(os.environ, HYPERDASH_HOME=str(home), PYTHONPATH=str(REPO))
    env.pop("FORWARDED_ALLOW_IPS", None)
    with open(home / "server.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hyperdash", "server", "--host", "127.0.0.1", "--port", str(port),
             "--db", f"sqlite:///{home / 'bench.db'}", *args],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if requests.get(url + "/api/v1/health", timeout=1).ok:
                return proc, url
        except requests.RequestException:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("the server did not start: " + (home / "server.log").read_text()[-2000:])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux), to tell our cost from the machine's load."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

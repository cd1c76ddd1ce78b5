"""Ingest under a flood of wrong-password logins, against ingest alone, in the same run.

Starts ``hyperdash server`` on a loopback port with a fresh SQLite store, signs up, and in each
round posts a batch of log lines every ``--interval`` seconds, first alone (the baseline), then while
``--flooders`` threads post wrong-password logins as fast as the server answers, each from a
new forwarded address and for a new email (the loopback is a trusted proxy by default, so the
flood looks like a botnet that no per-address or per-account count can hold). Prints the median
and 99th-percentile batch latency of both, their ratio (median of the rounds), what the flood
got back, and checks that every line arrived. Bounded: each phase stops after ``--seconds``.

    python benchmarks/login_flood.py [--batches 100] [--batch 200] [--interval 0.05] [--flooders 16] [--rounds 3]
"""

from __future__ import annotations

import argparse
import collections
import http.client
import itertools
import json
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import orjson
import requests

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from support import start_server, stop_server  # noqa: E402  (benchmarks/, the script's folder)

from hyperdash import events  # noqa: E402


def ingest_phase(port: int, key: str, batches: int, size: int, interval: float,
                 seconds: float) -> tuple[list[float], str, int]:
    """Post a batch of one new run every ``interval`` seconds (as a busy job's shipper does):
    (latencies, run uuid, lines sent)."""
    run = str(uuid.uuid4())
    ts = events.now_ms()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"content-type": "application/json", events.AUTH_HEADER: key}
    latencies, sent = [], 0
    deadline = time.monotonic() + seconds
    next_at = time.monotonic()
    for b in range(batches):
        if time.monotonic() > deadline:
            break
        time.sleep(max(0.0, next_at - time.monotonic()))
        next_at += interval
        body = orjson.dumps([{"type": "log", "timestamp": ts, "sdk_run_uuid": run, "seq": b * size + i + 1,
                              "payload": {"uuid": f"{b}.{i}", "level": "INFO", "stream": "stdout",
                                          "body": f"batch {b} line {i}: loss=0.{i:04d}"}}
                             for i in range(size)])
        start = time.perf_counter()
        conn.request("POST", events.INGEST_PATH, body=body, headers=headers)
        resp = conn.getresponse()
        reply = resp.read()
        latencies.append(time.perf_counter() - start)
        if resp.status != 200:
            raise SystemExit(f"ingest failed: {resp.status} {reply[:200]!r}")
        sent += size
    conn.close()
    return latencies, run, sent


def flood(port: int, stop: threading.Event, counter: itertools.count, replies: collections.Counter) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    while not stop.is_set():
        n = next(counter)
        body = json.dumps({"email": f"guess{n}@example.com", "password": "not the password"})
        conn.request("POST", "/api/v1/sessions", body=body, headers={
            "content-type": "application/json", "x-forwarded-for": f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"})
        resp = conn.getresponse()
        resp.read()
        replies[resp.status] += 1
    conn.close()


def quantiles(latencies: list[float]) -> tuple[float, float]:
    ordered = sorted(latencies)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=100)
    parser.add_argument("--interval", type=float, default=0.05, help="seconds between batches")
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--flooders", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=30.0, help="the most a phase may take")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_server(Path(tmp))
        port = int(url.rsplit(":", 1)[1])
        try:
            owner = {"email": "bench@example.com", "password": "a long password"}
            key = requests.post(url + "/api/v1/users", json=owner, timeout=30).json()["api_key"]
            counter = itertools.count(1)
            replies: collections.Counter = collections.Counter()
            alone_all, flood_all, ratios, runs = [], [], [], []
            for _ in range(args.rounds):
                alone, run, sent = ingest_phase(port, key, args.batches, args.batch, args.interval, args.seconds)
                runs.append((run, sent))
                stop = threading.Event()
                threads = [threading.Thread(target=flood, args=(port, stop, counter, replies), daemon=True)
                           for _ in range(args.flooders)]
                for thread in threads:
                    thread.start()
                time.sleep(1.0)  # let the flood reach full strength before measuring
                flooded, run, sent = ingest_phase(port, key, args.batches, args.batch, args.interval, args.seconds)
                runs.append((run, sent))
                stop.set()
                for thread in threads:
                    thread.join(30)
                alone_all += alone
                flood_all += flooded
                ratios.append(quantiles(flooded)[1] / quantiles(alone)[1])
            for run, sent in runs:
                stored = requests.get(f"{url}/api/v1/runs/{run}", headers={events.AUTH_HEADER: key},
                                      timeout=30).json()["last_seq"]
                if stored != sent:
                    raise SystemExit(f"run {run}: {stored} of {sent} lines arrived")
        finally:
            stop_server(proc)

    (a_med, a_p99), (f_med, f_p99) = quantiles(alone_all), quantiles(flood_all)
    print(f"ingest alone:        median {a_med * 1000:7.1f} ms, p99 {a_p99 * 1000:7.1f} ms "
          f"({len(alone_all)} batches of {args.batch} lines)")
    print(f"ingest during flood: median {f_med * 1000:7.1f} ms, p99 {f_p99 * 1000:7.1f} ms "
          f"({len(flood_all)} batches; {args.flooders} flooders)")
    print(f"flood replies: {dict(sorted(replies.items()))}")
    print(f"p99 ratio flood/alone: {statistics.median(ratios):.2f} (median of {args.rounds} rounds: "
          + ", ".join(f"{r:.2f}" for r in ratios) + ")")
    print(f"all {sum(s for _, s in runs)} lines arrived")


if __name__ == "__main__":
    main()

"""A team's load on several server processes sharing one PostgreSQL: many runs streaming at once,
each followed live through ANOTHER process than the one its lines are sent to.

For each setup (one process on SQLite, the baseline; then 1, 2 and 4 ``hyperdash server``
processes on one fresh PostgreSQL schema, each on its own port), ``--runs`` runs each send
``--rate`` lines a second for ``--seconds`` seconds, in sequenced batches every ``--interval``
seconds, run k's through process k mod N, and run k's live event stream is attached to process
(k + 1) mod N (with one process: that process). A refused batch (503) is sent again after its
``Retry-After``, as the SDK does. Printed per setup:

- lines sent, stored (counted in the database), lost (sent, not stored: must be 0), and
  duplicated or missing on the live streams (must be 0);
- p50 and p99 of the time from a batch's send to each of its lines' arrival on the live stream;
- the servers' CPU time per stored line (all processes together), and the load average;

then the ratios against one PostgreSQL process (the scaling ratio) and against SQLite.

    python benchmarks/team_load.py [--runs 100] [--rate 100] [--seconds 60] [--interval 0.5]
                                   [--setups sqlite-1,pg-1,pg-2,pg-4]
"""

from __future__ import annotations

import argparse
import http.client
import os
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import orjson
import requests

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from hyperdash import events  # noqa: E402

sys.path.insert(0, str(REPO / "benchmarks"))
from support import cpu_seconds, start_server, stop_server  # noqa: E402

PG_URL = os.environ.get("HYPERDASH_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


@dataclass
class Run:
    """One run: where it sends, where it is followed, what was sent when, what arrived."""

    uuid: str
    send_to: str
    follow_on: str
    sent_at: dict[int, float] = field(default_factory=dict)  # seq -> perf_counter at send
    arrived: dict[int, int] = field(default_factory=dict)  # seq -> times it arrived
    latencies: list[float] = field(default_factory=list)
    ready: threading.Event = field(default_factory=threading.Event)


def follow(run: Run, api_key: str, stop: threading.Event) -> None:
    """Read the run's live stream; note each log line's arrival."""
    host, port = run.follow_on.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=120)
    conn.request("GET", f"/api/v1/runs/{run.uuid}/events", headers={events.AUTH_HEADER: api_key})
    resp = conn.getresponse()
    name = None
    run.ready.set()
    try:
        while not stop.is_set():
            raw = resp.readline()
            if not raw:
                return
            if raw.startswith(b"event: "):
                name = raw[7:].strip()
            elif raw.startswith(b"data: ") and name == b"log":
                now = time.perf_counter()
                seq = orjson.loads(raw[6:])["seq"]
                count = run.arrived.get(seq, 0)
                run.arrived[seq] = count + 1
                sent = run.sent_at.get(seq)
                if count == 0 and sent is not None:
                    run.latencies.append(now - sent)
    except (OSError, http.client.HTTPException):
        return
    finally:
        conn.close()


def send(runs: list[Run], api_key: str, rate: int, seconds: float, interval: float, counts: dict) -> None:
    """Send each run's lines, a batch every ``interval`` seconds, on one connection per process."""
    per_batch = max(1, round(rate * interval))
    conns: dict[str, http.client.HTTPConnection] = {}
    headers = {"content-type": "application/json", events.AUTH_HEADER: api_key, events.API_HEADER: "cli_run"}
    start = time.perf_counter()
    ticks = int(seconds / interval)
    seqs = {run.uuid: 1 for run in runs}  # (seq 1: run_started)
    for tick in range(ticks):
        due = start + tick * interval
        wait = due - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        for run in runs:
            first = seqs[run.uuid] + 1
            seqs[run.uuid] += per_batch
            ts = events.now_ms()
            body = orjson.dumps([{"type": "log", "timestamp": ts, "sdk_run_uuid": run.uuid, "seq": seq,
                                  "payload": {"uuid": f"{run.uuid}-{seq}", "level": "INFO", "stream": "stdout",
                                              "body": f"step {seq}: loss=0.{seq:06d} ok"}}
                                 for seq in range(first, first + per_batch)])
            sent = time.perf_counter()
            for seq in range(first, first + per_batch):
                run.sent_at[seq] = sent
            while True:
                conn = conns.get(run.send_to)
                if conn is None:
                    host, port = run.send_to.removeprefix("http://").split(":")
                    conn = conns[run.send_to] = http.client.HTTPConnection(host, int(port), timeout=120)
                try:
                    conn.request("POST", events.INGEST_PATH, body=body, headers=headers)
                    resp = conn.getresponse()
                    resp.read()
                except (OSError, http.client.HTTPException):
                    conn.close()
                    conns.pop(run.send_to, None)
                    counts["errors"] += 1
                    continue
                if resp.status == 503:
                    counts["busy"] += 1
                    time.sleep(float(resp.headers.get("retry-after") or 1))
                    continue
                if resp.status != 200:
                    raise RuntimeError(f"ingest answered {resp.status}")
                counts["sent"] += per_batch
                break
    for conn in conns.values():
        conn.close()


def run_together(threads: list[threading.Thread]) -> float:
    """Start the threads, wait for them all; the seconds it took."""
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started


def stored_lines(db_url: str) -> int:
    if db_url.startswith("sqlite"):
        with sqlite3.connect(db_url.removeprefix("sqlite:///")) as conn:
            return conn.execute("SELECT count(*) FROM logs").fetchone()[0]
    import psycopg

    with psycopg.connect(db_url) as conn:
        return conn.execute("SELECT count(*) FROM logs").fetchone()[0]


def bench(setup: str, args, workdir: Path) -> dict:
    kind, count = setup.split("-")
    processes = int(count)
    schema = None
    if kind == "sqlite":
        db_url = f"sqlite:///{workdir / setup / 'hd.db'}"
        (workdir / setup).mkdir()
    else:
        import psycopg

        schema = f"hd_bench_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
        sep = "&" if "?" in PG_URL else "?"
        db_url = f"{PG_URL}{sep}options={quote(f'-csearch_path={schema}')}"
    servers = []
    try:
        for k in range(processes):
            servers.append(start_server(workdir / setup / f"home-{k}", db_url=db_url))
        urls = [url for _, url in servers]
        api_key = requests.post(urls[0] + "/api/v1/users", json={
            "email": "bench@example.com", "password": "benchmark-password"}, timeout=30).json()["api_key"]
        runs = [Run(str(uuid.uuid4()), urls[k % processes], urls[(k + 1) % processes]) for k in range(args.runs)]
        # Each run exists before its stream attaches (a stream follows a run the server knows).
        for run in runs:
            requests.post(run.send_to + events.INGEST_PATH, headers={events.AUTH_HEADER: api_key}, timeout=30,
                          json=[events.envelope(events.RUN_STARTED, run.uuid, {
                              "job_name": f"load-{run.uuid[:4]}", "host": "bench", "pid": 1, "api": "cli_run"},
                              seq=1)]).raise_for_status()
        stop = threading.Event()
        readers = [threading.Thread(target=follow, args=(run, api_key, stop), daemon=True) for run in runs]
        for reader in readers:
            reader.start()
        for run in runs:
            run.ready.wait(30)
        time.sleep(0.5)
        counts = {"sent": 0, "busy": 0, "errors": 0}
        groups = [runs[k::args.senders] for k in range(args.senders)]
        senders = [threading.Thread(target=send, args=(g, api_key, args.rate, args.seconds, args.interval, counts))
                   for g in groups]
        cpu_before = sum(cpu_seconds(proc.pid) for proc, _ in servers)
        elapsed = run_together(senders)
        # The last lines' way to the streams.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(len(r.arrived) < len(r.sent_at) for r in runs):
            time.sleep(0.1)
        cpu = sum(cpu_seconds(proc.pid) for proc, _ in servers) - cpu_before
        stop.set()
        stored = stored_lines(db_url)
        latencies = sorted(x for r in runs for x in r.latencies)
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] if latencies else float("nan")
        duplicated = sum(c - 1 for r in runs for c in r.arrived.values() if c > 1)
        missing = sum(1 for r in runs for seq in r.sent_at if seq not in r.arrived)
        return {
            "setup": setup, "sent": counts["sent"], "stored": stored, "lost": counts["sent"] - stored,
            "duplicated": duplicated, "missing_live": missing, "busy_503": counts["busy"],
            "rate": stored / elapsed, "p50_ms": 1000 * statistics.median(latencies) if latencies else float("nan"),
            "p99_ms": 1000 * p99,
            "cpu_us_per_line": 1e6 * cpu / stored if stored else float("nan"), "load": os.getloadavg()[0],
        }
    finally:
        for proc, _ in servers:
            stop_server(proc)
        if schema is not None:
            import psycopg

            with psycopg.connect(PG_URL, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--rate", type=int, default=100, help="lines a second per run")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between a run's batches")
    parser.add_argument("--senders", type=int, default=4, help="client threads sending")
    parser.add_argument("--setups", default="sqlite-1,pg-1,pg-2,pg-4")
    args = parser.parse_args()
    setups = args.setups.split(",")
    print(f"{args.runs} runs x {args.rate} lines/s for {args.seconds:g} s, a batch every {args.interval:g} s; "
          f"{os.cpu_count()} cores", flush=True)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for setup in setups:
            result = bench(setup, args, Path(tmp))
            results.append(result)
            print(f"{setup:9} sent {result['sent']:>8} stored {result['stored']:>8} lost {result['lost']} "
                  f"duplicated {result['duplicated']} missing-live {result['missing_live']} "
                  f"503s {result['busy_503']}  {result['rate']:8.0f} lines/s  "
                  f"p50 {result['p50_ms']:7.1f} ms  p99 {result['p99_ms']:7.1f} ms  "
                  f"CPU {result['cpu_us_per_line']:6.1f} us/line  load {result['load']:.1f}", flush=True)
    by_setup = {r["setup"]: r for r in results}
    for base in ("pg-1", "sqlite-1"):
        if base not in by_setup:
            continue
        for r in results:
            if r["setup"] != base:
                b = by_setup[base]
                print(f"{r['setup']} / {base}: stored lines/s x{r['rate'] / b['rate']:.2f}, "
                      f"p50 x{r['p50_ms'] / b['p50_ms']:.2f}, p99 x{r['p99_ms'] / b['p99_ms']:.2f}, "
                      f"CPU per line x{r['cpu_us_per_line'] / b['cpu_us_per_line']:.2f}")
    bad = [r["setup"] for r in results if r["lost"] or r["duplicated"] or r["missing_live"]]
    if bad:
        raise SystemExit(f"lines lost or duplicated in: {', '.join(bad)}")


if __name__ == "__main__":
    main()

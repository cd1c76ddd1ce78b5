"""Ingest throughput: 16 runs at once posting batches of 500 log lines to a real server.

Starts ``hyperdash server`` on a loopback port with a fresh SQLite store, signs up, and has 16
client threads each post a fixed number of pre-encoded batches for its own run, in each of three
forms (``--forms``): ``lines``, an envelope a line (what clients that send one line per event
send); ``blocks``, blocks of lines in the JSON, cut as the SDK cuts them for a server that takes
blocks but not texts after the JSON; and ``attached``, the SDK's form for a server that takes
both: a block a read of output, its text as bytes after the JSON. Prints lines
stored per second and the 99th-percentile batch latency, then the baseline measured in the same
run: the same rows inserted straight into SQLite (same schema, same pragmas, one transaction per
batch; the faster of executemany and one multi-row INSERT), and the ratio of the two. It also
prints the server's CPU time per line, a figure that the machine's other load disturbs less.
Each round measures both on fresh databases; the figures are the best of the rounds (noise only
ever slows a run down), and the median of the rounds' ratios is printed beside them.

    python benchmarks/ingest.py [--runs 16] [--batch 500] [--batches 40] [--rounds 3]
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
from pathlib import Path

import orjson
import requests

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from support import cpu_seconds, start_server, stop_server  # noqa: E402  (benchmarks/, the script's folder)

from hyperdash import events, framing  # noqa: E402
from hyperdash.server.store import Store  # noqa: E402
from hyperdash.shipper import _body, encoded_events  # noqa: E402
from hyperdash.spool import Record  # noqa: E402


def text_of(b: int, i: int, seq: int) -> str:
    return f"epoch {b} step {i}: loss=0.{seq:06d} acc=0.{(seq * 7) % 1000:03d} ok"


def make_batches(run_uuid: str, batches: int, size: int, form: str) -> list[tuple[bytes, str]]:
    """Pre-encoded bodies and their content types, so the clients spend their time sending, not
    encoding. ``form``: ``lines`` (an envelope a line, as the original clients' successors and
    older SDKs send), ``blocks`` (blocks of lines in the JSON) or ``attached`` (their texts after
    the JSON), each as the SDK sends output to a server that takes that form."""
    ts = events.now_ms()
    bodies = []
    for b in range(batches):
        if form == "lines":
            envs = [{"type": "log", "timestamp": ts + seq, "sdk_run_uuid": run_uuid, "seq": seq,
                     "payload": {"uuid": str(seq), "level": "INFO", "stream": "stdout", "body": text_of(b, i, seq)}}
                    for i, seq in enumerate(range(b * size + 1, (b + 1) * size + 1))]
            bodies.append((orjson.dumps(envs), "application/json"))
        else:  # cut by the SDK's own code, from the spool record a read of this output makes
            blob = "".join(text_of(b, i, b * size + i + 1) + "\n" for i in range(size)).encode()
            record = Record(0, len(blob), framing.LINES, "stdout", b * size + 1, size, ts + b * size, blob)
            fragments, _ = encoded_events(record, run_uuid, blocks=True, attach=form == "attached")
            bodies.append(_body(fragments))
    return bodies


def post_all(port: int, api_key: str, bodies: list[tuple[bytes, str]], latencies: list[float], errors: list) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {events.AUTH_HEADER: api_key, events.API_HEADER: "cli_run"}
    try:
        for body, content_type in bodies:
            start = time.perf_counter()
            conn.request("POST", events.INGEST_PATH, body=body, headers={**headers, "content-type": content_type})
            resp = conn.getresponse()
            reply = resp.read()
            latencies.append(time.perf_counter() - start)
            if resp.status != 200:
                errors.append(f"{resp.status} {reply[:200]!r}")
                return
    finally:
        conn.close()


def bench_server(runs: int, batches: int, size: int, workdir: Path, form: str) -> tuple[float, float, int]:
    proc, url = start_server(workdir / "server-home")
    port = int(url.rsplit(":", 1)[1])
    try:
        api_key = requests.post(url + "/api/v1/users", json={
            "email": "bench@example.com", "password": "benchmark-password"}, timeout=10).json()["api_key"]
        run_ids = [str(uuid.uuid4()) for _ in range(runs)]
        work = [make_batches(r, batches, size, form) for r in run_ids]
        latencies: list[float] = []
        errors: list = []
        threads = [threading.Thread(target=post_all, args=(port, api_key, w, latencies, errors)) for w in work]
        cpu_before = cpu_seconds(proc.pid)
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - start
        cpu = cpu_seconds(proc.pid) - cpu_before
        if errors:
            raise RuntimeError(f"ingest failed: {errors[0]}")
        # Check the count the server holds, so the figure is of lines stored, not sent.
        stored = 0
        for r in run_ids:
            run = requests.get(f"{url}/api/v1/runs/{r}", headers={events.AUTH_HEADER: api_key}, timeout=30).json()
            stored += run["last_seq"]
        latencies.sort()
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
        print(f"(server process CPU while ingesting: {cpu / stored * 1e6:.1f} us per line; "
              f"machine load average {os.getloadavg()[0]:.1f})")
        return stored / elapsed, p99, stored
    finally:
        stop_server(proc)


def bench_raw_sqlite(runs: int, batches: int, size: int, workdir: Path) -> dict[str, float]:
    """The same rows straight into SQLite: the schema the server makes, one transaction a
    batch, inserted two ways (the driver's executemany, and one multi-row INSERT a batch), run
    after run; and, for comparison only, the multi-row way with the runs' batches taken in turn,
    as the server receives them (slower: the index is written in 16 places, not at its end)."""
    ts = events.now_ms()
    rows_of_batch = []
    for r in range(runs):
        for b in range(batches):
            rows_of_batch.append([
                (r + 1, b * size + i + 1, "stdout",
                 f"epoch {b} step {i}: loss=0.{b * size + i + 1:06d} acc=0.{((b * size + i + 1) * 7) % 1000:03d} ok",
                 ts + b * size + i, 0, 0, 0)
                for i in range(size)
            ])
    columns = "(run_id, seq, stream, text, ts, partial, progress, superseded)"
    one = "(?, ?, ?, ?, ?, ?, ?, ?)"
    rates = {}
    in_turn = [rows_of_batch[r * batches + b] for b in range(batches) for r in range(runs)]
    for method in ("executemany", "multi-row", "multi-row in turn"):
        path = workdir / f"raw-{method}.db"
        Store(f"sqlite:///{path}").close()  # the same tables and indexes
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        start = time.perf_counter()
        for rows in in_turn if method.endswith("in turn") else rows_of_batch:
            conn.execute("BEGIN")
            if method == "executemany":
                conn.executemany(f"INSERT INTO logs {columns} VALUES {one} ON CONFLICT DO NOTHING", rows)
            else:
                conn.execute(f"INSERT INTO logs {columns} VALUES {', '.join([one] * len(rows))} "
                             "ON CONFLICT DO NOTHING", [v for row in rows for v in row])
            conn.execute("COMMIT")
        rates[method] = runs * batches * size / (time.perf_counter() - start)
        conn.close()
    return rates


FORMS = ("lines", "blocks", "attached")
# The baseline the ratio is taken against: the faster of these (the rows run after run).
HEADLINE_RAW = ("executemany", "multi-row")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=16)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--batches", type=int, default=40, help="batches per run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--forms", default=",".join(FORMS),
                        help="comma-separated: lines (an envelope a line), blocks (blocks of lines), attached "
                             "(blocks whose texts follow the JSON: the SDK's form)")
    args = parser.parse_args()
    forms = [f for f in args.forms.split(",") if f]
    if not forms or set(forms) - set(FORMS):
        parser.error(f"--forms takes some of {', '.join(FORMS)}")
    expected = args.runs * args.batches * args.batch
    results: dict[str, list] = {form: [] for form in forms}  # per round: (server rate, p99, stored, raws)
    with tempfile.TemporaryDirectory(prefix="hyperdash-bench-") as tmp:
        for round_ in range(args.rounds):
            workdir = Path(tmp) / f"round-{round_}"
            workdir.mkdir()
            raws = bench_raw_sqlite(args.runs, args.batches, args.batch, workdir)
            for form in forms:
                rate, p99, stored = bench_server(args.runs, args.batches, args.batch, workdir / form, form)
                results[form].append((rate, p99, stored, raws))
                print(f"round {round_}, {form}: server {rate:,.0f} lines/s (p99 {p99 * 1000:.1f} ms), raw "
                      + ", ".join(f"{m} {r:,.0f}/s" for m, r in raws.items())
                      + f", ratio {rate / max(raws[m] for m in HEADLINE_RAW):.2f}", flush=True)
    every = [r for rounds in results.values() for r in rounds]
    raws = {m: max(r[3][m] for r in every) for m in every[0][3]}
    raw = max(raws[m] for m in HEADLINE_RAW)
    print(f"raw SQLite    : {raw:12,.0f} lines/s   (same rows and schema, a commit per batch; the faster of "
          + ", ".join(f"{m} {raws[m]:,.0f}/s" for m in HEADLINE_RAW) + f"; best of {args.rounds} rounds; "
          f"the runs' batches in turn, as the server gets them: {raws['multi-row in turn']:,.0f}/s)")
    for form, rounds in results.items():
        rate, p99, stored, _ = max(rounds, key=lambda r: r[0])
        median_ratio = statistics.median(r[0] / max(r[3][m] for m in HEADLINE_RAW) for r in rounds)
        print(f"server, {form:8}: {rate:12,.0f} lines/s   p99 batch latency {p99 * 1000:7.1f} ms   "
              f"({stored:,} of {expected:,} lines stored; {args.runs} runs x {args.batches} batches of {args.batch}; "
              f"best of {args.rounds} rounds)")
        print(f"  ratio       : {rate / raw:12.2f}   best against best of the faster raw insert; "
              + ", ".join(f"{rate / r:.2f} against {m}" for m, r in raws.items())
              + f"; median of the rounds' ratios {median_ratio:.2f}   (targets: >= 100,000 lines/s and >= 0.5)")
    if any(r[2] != expected for r in every):
        sys.exit("not every line was stored")


if __name__ == "__main__":
    main()

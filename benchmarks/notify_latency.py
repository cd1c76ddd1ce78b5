"""Notifications under load: how soon a run's end reaches a webhook, and what channels cost ingest.

Starts ``hyperdash server`` on a loopback port with a fresh SQLite store and a webhook receiver
on another, then, in the same run:

1. Latency. While ``--loaders`` threads post batches of log lines as fast as the server takes
   them (a heavy log stream), ``--samples`` runs end one after another, each a failure that a
   webhook channel wants. For each: the time from sending its ``run_ended`` (the server commits
   it before answering, so this counts the commit too: an upper bound) to the receiver getting
   the notification. Prints p50 and p99.
2. Ingest throughput with 10 webhook channels configured against none. Two accounts, one with 10
   channels (all events) and one with none, take turns, ``--rounds`` times each: ``--clients``
   threads post ``--batches`` batches of ``--batch`` lines, ending their run and starting another
   every ``--per-run`` batches, so that each end queues (and sends) 10 notifications. Prints the
   median lines per second of each, and their ratio (the target: within 5%).

Every notification is checked to have arrived, and every line to have been stored.

    python benchmarks/notify_latency.py [--samples 40] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import orjson
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from support import cpu_seconds, start_server  # noqa: E402  (benchmarks/, the script's folder)

from hyperdash import events  # noqa: E402

SECRET = "whsec_benchmark-secret-0123456789abcdef"
LATENCY_CHANNELS = 5  # the per-channel rate limit (20 a minute) must not hold the samples back


class Receiver:
    """A webhook receiver that notes when each run's notification arrived (time.monotonic)."""

    def __init__(self):
        self.arrived: dict[str, float] = {}
        self.count = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                now = time.monotonic()
                run = json.loads(body)["run"]["uuid"]
                with receiver.lock:
                    receiver.arrived.setdefault(run, now)
                    receiver.count += 1
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


class Account:
    def __init__(self, url: str):
        self.url = url
        self.session = requests.Session()
        resp = self.session.post(url + "/api/v1/users", json={
            "email": f"bench-{uuid.uuid4().hex[:10]}@example.com", "password": "benchmark password"}, timeout=30)
        resp.raise_for_status()
        self.session.headers[events.AUTH_HEADER] = resp.json()["api_key"]

    def add_webhook(self, hook: str, **options) -> None:
        body = {"kind": "webhook", "settings": {"url": hook, "secret": SECRET}, **options}
        self.session.post(self.url + "/api/v1/notify/channels", json=body, timeout=30).raise_for_status()

    def post(self, envelopes: list[dict] | bytes, session: requests.Session | None = None) -> None:
        data = envelopes if isinstance(envelopes, bytes) else orjson.dumps(envelopes)
        resp = (session or self.session).post(self.url + events.INGEST_PATH, data=data, timeout=120, headers={
            "content-type": "application/json", events.AUTH_HEADER: self.session.headers[events.AUTH_HEADER]})
        resp.raise_for_status()

    def stored_lines(self, run: str) -> int:
        resp = self.session.get(f"{self.url}/api/v1/runs/{run}", timeout=30)
        resp.raise_for_status()
        return int(resp.json()["last_seq"])


class Run:
    """One run's envelopes, numbered as the SDK numbers them."""

    def __init__(self, name: str):
        self.uuid = str(uuid.uuid4())
        self.seq = 0
        self.name = name

    def envelope(self, type: str, payload: dict) -> dict:
        self.seq += 1
        return events.envelope(type, self.uuid, payload, seq=self.seq)

    def start(self) -> list[dict]:
        return [self.envelope(events.RUN_STARTED, {"job_name": self.name, "host": "bench", "pid": 1})]

    def lines(self, count: int) -> bytes:
        return orjson.dumps([self.envelope(events.LOG, {
            "uuid": str(self.seq + 1), "level": "INFO", "stream": "stdout",
            "body": f"step {self.seq}: loss=0.{self.seq:06d} acc=0.{(self.seq * 7) % 1000:03d} ok"})
            for _ in range(count)])

    def end(self) -> list[dict]:
        return [self.envelope(events.RUN_ENDED, {"final_status": "failure", "exit_code": 1, "signal": None})]


def load(account: Account, stop: threading.Event, batch: int, runs: list[Run]) -> None:
    """Post batches of lines for one run until ``stop``."""
    run = Run("load")
    runs.append(run)
    session = requests.Session()
    account.post(run.start(), session)
    while not stop.is_set():
        account.post(run.lines(batch), session)


def latency(url: str, receiver: Receiver, args) -> list[float]:
    account = Account(url)
    for k in range(LATENCY_CHANNELS):
        account.add_webhook(receiver.url + f"/latency/{k}", name_filter=f"lat{k}-")
    noise = Account(url)
    stop = threading.Event()
    load_runs: list[Run] = []
    loaders = [threading.Thread(target=load, args=(noise, stop, args.batch, load_runs)) for _ in range(args.loaders)]
    for t in loaders:
        t.start()
    time.sleep(1.0)  # the stream under way
    sent: dict[str, float] = {}
    try:
        for i in range(args.samples):
            run = Run(f"lat{i % LATENCY_CHANNELS}-{i}")
            account.post(run.start())
            sent[run.uuid] = time.monotonic()
            account.post(run.end())
            time.sleep(args.gap)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not all(r in receiver.arrived for r in sent):
            time.sleep(0.05)
    finally:
        stop.set()
        for t in loaders:
            t.join()
    missing = [r for r in sent if r not in receiver.arrived]
    if missing:
        raise SystemExit(f"{len(missing)} of {len(sent)} notifications never arrived")
    for run in load_runs:
        assert noise.stored_lines(run.uuid) == run.seq, "a line of the heavy stream went missing"
    return sorted(receiver.arrived[r] - t for r, t in sent.items())


def throughput(account: Account, args, pid: int) -> tuple[float, float, list[str]]:
    """``--clients`` threads posting: (lines per second, the server's CPU µs per line, ended runs)."""
    ended: list[str] = []
    lock = threading.Lock()

    def client() -> None:
        session = requests.Session()
        run = None
        for b in range(args.batches):
            if b % args.per_run == 0:
                if run is not None:
                    account.post(run.end(), session)
                    with lock:
                        ended.append(run.uuid)
                run = Run(f"tp-{uuid.uuid4().hex[:6]}")
                account.post(run.start(), session)
            account.post(run.lines(args.batch), session)
        assert run is not None
        account.post(run.end(), session)
        with lock:
            ended.append(run.uuid)

    threads = [threading.Thread(target=client) for _ in range(args.clients)]
    cpu = cpu_seconds(pid)
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - began
    cpu = cpu_seconds(pid) - cpu
    lines = args.clients * args.batches * args.batch
    return lines / seconds, cpu / lines * 1e6, ended


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=40)
    parser.add_argument("--gap", type=float, default=0.25, help="seconds between two runs' ends")
    parser.add_argument("--loaders", type=int, default=4)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--batches", type=int, default=12)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--per-run", type=int, default=6, help="batches per run (a run of 3000 lines)")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    receiver = Receiver()
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_server(Path(tmp), "--public-url", "https://hd.example.org")
        try:
            waits = latency(url, receiver, args)
            print(f"run end -> webhook, {len(waits)} runs under a heavy log stream ({args.loaders} loaders): "
                  f"p50 {percentile(waits, 50) * 1000:.0f} ms, p99 {percentile(waits, 99) * 1000:.0f} ms, "
                  f"max {waits[-1] * 1000:.0f} ms")

            with_channels, without = Account(url), Account(url)
            for k in range(10):
                with_channels.add_webhook(receiver.url + f"/tp/{k}", events=list(
                    ("success", "failure", "killed", "user_canceled", "lost", "back", "stalled", "rule")))
            rates: dict[str, list[float]] = {"none": [], "10 channels": []}
            cpus: dict[str, list[float]] = {"none": [], "10 channels": []}
            ratios, cpu_ratios = [], []
            ended_with: list[str] = []
            for r in range(args.rounds):
                if r % 2:  # each goes first in every other round, so that neither gets the calmer start
                    rate, cpu, ended = throughput(with_channels, args, proc.pid)
                    base, base_cpu, _ = throughput(without, args, proc.pid)
                else:
                    base, base_cpu, _ = throughput(without, args, proc.pid)
                    rate, cpu, ended = throughput(with_channels, args, proc.pid)
                rates["none"].append(base)
                rates["10 channels"].append(rate)
                cpus["none"].append(base_cpu)
                cpus["10 channels"].append(cpu)
                ratios.append(rate / base)
                cpu_ratios.append(cpu / base_cpu)
                ended_with.extend(ended)
            for name, values in rates.items():
                print(f"ingest with {name:>11}: median {statistics.median(values):,.0f} lines/s, "
                      f"server CPU {statistics.median(cpus[name]):.1f} µs/line "
                      f"(rounds: {', '.join(f'{v:,.0f}' for v in values)})")
            print(f"ratio 10 channels / none: throughput {statistics.median(ratios):.3f} (target >= 0.95), "
                  f"server CPU per line {statistics.median(cpu_ratios):.3f} (medians of {args.rounds} rounds' ratios)")
            # Every end queued 10 notifications; the rate limit spreads them out, but they are queued.
            time.sleep(1.0)
            print(f"notifications received during the run: {receiver.count}; "
                  f"runs ended with 10 channels: {len(ended_with)}")
        finally:
            proc.terminate()
            proc.wait(30)


if __name__ == "__main__":
    main()

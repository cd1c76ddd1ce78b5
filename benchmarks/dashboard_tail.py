"""Time to the first log line on a run's page: a run of 1,000,000 lines against one of 100.

Starts ``hyperdash server`` on a loopback port with a fresh SQLite store, signs up, and sends
both runs through the real ingest endpoint in batches of at most 10,000 lines (bounded: it gives
up if ingest takes longer than ``--ingest-limit`` seconds). Then, in headless Chromium, it opens
each run's page in turn, ``--rounds`` times after one warm-up round, and times each from the
start of the navigation until the first log line is on screen. The figure is the ratio of the
median times, big run over small run (target: at most 2). The page's own mark (``performance``
entry ``hyperdash:first-log-line``, when the rows were put in the page) is printed beside it.

    python benchmarks/dashboard_tail.py [--lines 1000000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import orjson
import requests

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from support import start_server, stop_server  # noqa: E402  (benchmarks/, the script's folder)

from hyperdash import events  # noqa: E402

CHROMIUM = os.environ.get("HYPERDASH_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking"]
FIRST_LINE = "#log-rows .line"


def send_run(session: requests.Session, url: str, api_key: str, name: str, lines: int,
             batch: int, deadline: float) -> str:
    """A run of ``lines`` stdout lines (plus its start and end), batch by batch; its uuid."""
    run_uuid = str(uuid.uuid4())
    ts = events.now_ms()
    headers = {events.AUTH_HEADER: api_key, "content-type": "application/json"}

    def post(envelopes: list) -> None:
        if time.monotonic() > deadline:
            raise SystemExit("ingest took longer than the limit; giving up")
        resp = session.post(url + events.INGEST_PATH, data=orjson.dumps(envelopes), headers=headers,
                            timeout=120)
        if resp.status_code != 200:
            raise SystemExit(f"ingest failed: {resp.status_code} {resp.text[:300]}")

    post([events.envelope(events.RUN_STARTED, run_uuid, {"job_name": name, "host": "bench"}, seq=1,
                          timestamp=ts)])
    for start in range(0, lines, batch):
        post([
            {"type": events.LOG, "timestamp": ts + i, "sdk_run_uuid": run_uuid, "seq": i + 2,
             "payload": {"uuid": str(i), "level": "INFO", "stream": "stdout",
                         "body": f"epoch {i // 10000} step {i}: loss=0.{i:07d} \x1b[32mok\x1b[0m"}}
            for i in range(start, min(start + batch, lines))
        ])
    post([events.envelope(events.RUN_ENDED, run_uuid, {"final_status": "success", "exit_code": 0},
                          seq=lines + 2, timestamp=ts + lines + 1)])
    return run_uuid


def sign_in(page, url: str, email: str, password: str) -> None:
    page.goto(url + "/login")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", password)
    with page.expect_navigation():
        page.click("button[type=submit]")


def time_first_line(context, url: str) -> tuple[float, float, int]:
    """(seconds from navigation start to the first line on screen, the page's own mark in
    seconds, rows in the page)."""
    page = context.new_page()
    try:
        started = time.perf_counter()
        page.goto(url, wait_until="commit")
        page.locator(FIRST_LINE).first.wait_for(state="visible", timeout=60_000)
        elapsed = time.perf_counter() - started
        mark = page.evaluate(
            "performance.getEntriesByName('hyperdash:first-log-line').map(e => e.startTime)[0]")
        rows = page.locator(FIRST_LINE).count()
        return elapsed, mark / 1000, rows
    finally:
        page.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=1_000_000, help="lines of the big run")
    parser.add_argument("--small", type=int, default=100, help="lines of the small run")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--batch", type=int, default=10_000, help="lines per ingest request")
    parser.add_argument("--ingest-limit", type=float, default=600.0, help="seconds")
    args = parser.parse_args()
    if not 1 <= args.batch <= events.MAX_BATCH_EVENTS:
        raise SystemExit(f"--batch must be between 1 and {events.MAX_BATCH_EVENTS}")

    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="hyperdash-bench-") as tmp:
        home = Path(tmp)
        proc, url = start_server(home)
        try:
            session = requests.Session()
            email, password = "bench@example.com", "benchmark password"
            api_key = session.post(url + "/api/v1/users", json={"email": email, "password": password},
                                   timeout=30).json()["api_key"]
            started = time.monotonic()
            deadline = started + args.ingest_limit
            small = send_run(session, url, api_key, "small", args.small, args.batch, deadline)
            big = send_run(session, url, api_key, "big", args.lines, args.batch, deadline)
            took = time.monotonic() - started
            print(f"ingested {args.lines + args.small:,} lines in {took:.1f} s "
                  f"({(args.lines + args.small) / took:,.0f} lines/s)")

            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                context = browser.new_context(viewport={"width": 1280, "height": 800})
                sign_in(context.new_page(), url, email, password)
                times: dict[str, list[tuple[float, float, int]]] = {"small": [], "big": []}
                for round_no in range(args.rounds + 1):
                    for label, run_uuid in (("small", small), ("big", big)):
                        result = time_first_line(context, f"{url}/runs/{run_uuid}")
                        if round_no:  # round 0 warms the browser's cache and the server
                            times[label].append(result)
                browser.close()
        finally:
            stop_server(proc)

    medians = {}
    for label, lines in (("small", args.small), ("big", args.lines)):
        walls = [t[0] for t in times[label]]
        marks = [t[1] for t in times[label]]
        medians[label] = (statistics.median(walls), statistics.median(marks))
        print(f"{label:>5} run, {lines:>9,} lines: first line shown after "
              f"{medians[label][0] * 1000:6.1f} ms median (min {min(walls) * 1000:.1f}, "
              f"max {max(walls) * 1000:.1f}); page mark {medians[label][1] * 1000:6.1f} ms; "
              f"rows in the page {times[label][-1][2]}")
    ratio = medians["big"][0] / medians["small"][0]
    mark_ratio = medians["big"][1] / medians["small"][1]
    print(f"ratio big/small: {ratio:.2f}x (page mark: {mark_ratio:.2f}x); target <= 2x: "
          f"{'met' if ratio <= 2 else 'NOT met'}")


if __name__ == "__main__":
    main()

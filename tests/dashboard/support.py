"""What the dashboard tests share: feeding runs to the real server through its ingest endpoint,
signing in through the real form, and the browser's settings."""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

from hyperdash import events as ev

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "dashboard"
CHROMIUM = os.environ.get("HYPERDASH_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking"]
PHONE = {"width": 375, "height": 667}
DESKTOP = {"width": 1280, "height": 800}
# A touch phone (Playwright's "Pixel 7"): a coarse pointer, so the pages' touch rules apply.
TOUCH_PHONE = {"viewport": {"width": 412, "height": 839}, "device_scale_factor": 2.625,
               "is_mobile": True, "has_touch": True}
ROWS = "#log-rows .line"


class RunFeed:
    """One run of an account, sent to the server the way the SDK sends it: sequenced batches."""

    def __init__(self, account, name: str | None = "train", *, host: str = "gpu-box-1",
                 start: bool = True, api: str = "cli_run"):
        self.account = account
        self.uuid = str(uuid.uuid4())
        self.seq = 0
        self.api = api
        if start:
            self.send([self.event(ev.RUN_STARTED, {"job_name": name, "host": host, "pid": 4242, "api": api})])

    def event(self, type: str, payload: dict, timestamp: int | None = None) -> dict:
        self.seq += 1
        return ev.envelope(type, self.uuid, payload, seq=self.seq, timestamp=timestamp)

    def line(self, text: str, stream: str = ev.STDOUT, **flags) -> dict:
        payload = {"uuid": str(uuid.uuid4()), "level": ev.LEVEL_OF_STREAM[stream], "body": text,
                   "stream": stream, **flags}
        return self.event(ev.LOG, payload)

    def send(self, envelopes: list[dict]) -> dict:
        server = self.account.server
        resp = server.session.post(
            server.url + ev.INGEST_PATH, json=envelopes, timeout=60,
            headers={ev.AUTH_HEADER: self.account.api_key, ev.API_HEADER: self.api},
        )
        assert resp.status_code == 200, resp.text
        return resp.json()

    def log(self, *texts: str, stream: str = ev.STDOUT, **flags) -> None:
        self.send([self.line(text, stream, **flags) for text in texts])

    def heartbeat(self) -> None:
        """A sign of life, and nothing more, as the SDK sends one when it has nothing else."""
        self.send([ev.envelope(ev.HEARTBEAT, self.uuid, {})])

    def lines(self, count: int, template: str = "line {i}", batch: int = 5000) -> None:
        """``count`` stdout lines, in batches."""
        for start in range(0, count, batch):
            stop = min(start + batch, count)
            self.send([self.line(template.format(i=i)) for i in range(start, stop)])

    def params(self, **values) -> None:
        self.send([self.event(ev.PARAM, {"params": values, "is_internal": False})])

    def metric(self, name: str, value: float, step: int | None = None) -> None:
        self.send([self.event(ev.METRIC, {"name": name, "value": value, "timestamp": ev.now_ms(),
                                          "is_internal": False, "step": step})])

    def end(self, status: str = ev.SUCCESS, exit_code: int | None = 0, signal: str | None = None) -> None:
        self.send([self.event(ev.RUN_ENDED, {"final_status": status, "exit_code": exit_code,
                                             "signal": signal})])


def sign_in(page, account, next_path: str = "/") -> None:
    """Sign in through the sign-in form, as a person would."""
    page.goto(account.server.url + "/login?next=" + next_path)
    page.fill("input[name=email]", account.email)
    page.fill("input[name=password]", account.password)
    with page.expect_navigation():
        page.click("button[type=submit]")


def wait_until(page, expression: str, timeout: float = 10.0):
    """Poll a JavaScript expression until it is truthy; its value. (Playwright's own
    wait_for_function evaluates strings in the page, which the pages' CSP rightly forbids.)"""
    deadline = time.monotonic() + timeout
    while True:
        value = page.evaluate(expression)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{expression} still false after {timeout}s")
        time.sleep(0.05)


def open_run(open_page, account, feed: RunFeed, viewport=DESKTOP, **options):
    """A signed-in page on ``feed``'s run, once its log is on screen."""
    page = open_page(viewport, **options)
    sign_in(page, account, f"/runs/{feed.uuid}")
    assert page.url.endswith(f"/runs/{feed.uuid}")
    # The page is live once its first lines (or "No output yet") are on screen.
    page.wait_for_selector(f"{ROWS}, #log-bottom:not([hidden])")
    return page


def row_texts(page) -> list[str]:
    return page.locator(f"{ROWS} .text").all_inner_texts()


def scroll_log_until(page, text: str, *, to_top: bool, pages: int = 30) -> None:
    """Scroll the log to its top (or bottom) until a row holds ``text``: each scroll to an edge
    loads one more page there, awaited before the next."""
    edge = "firstElementChild" if to_top else "lastElementChild"
    edge_row = f"document.querySelector('#log-rows').{edge}?.textContent"
    for _ in range(pages):
        if page.locator(ROWS, has_text=text).count():
            return
        before = page.evaluate(edge_row)
        page.locator("#log").evaluate("el => el.scrollTop = 0" if to_top else "el => el.scrollTop = el.scrollHeight")
        wait_until(page, f"{edge_row} !== {json.dumps(before)}")
    raise AssertionError(f"no row holds {text!r} after {pages} pages")

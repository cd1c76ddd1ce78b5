"""Progress, where a run went wrong, and Stop, in Chromium, with real jobs: a tqdm loop and
exp.iter in the runs list and the run page; a failed run's page opened at its traceback; Stop on
a phone-sized page ending a `hyperdash run` job and an @monitor job; a traceback's carets under
the code they point at at every width, its rows highlighted however often they are made again."""

from __future__ import annotations

import calendar
import re
import subprocess
import sys
import textwrap
import time
import uuid

import pytest

from hyperdash import events as ev

from .support import (
    DESKTOP,
    PHONE,
    ROWS,
    TOUCH_PHONE,
    RunFeed,
    open_run,
    row_texts,
    scroll_log_until,
    sign_in,
    wait_until,
)

HYPERDASH = [sys.executable, "-m", "hyperdash"]

TQDM_LOOP = """
import time
from tqdm import tqdm
print("ready", flush=True)
for i in tqdm(range(400), mininterval=0.2):
    time.sleep(0.1)
"""

ITER_LOOP = """
import time
from hyperdash import Experiment
with Experiment({name!r}) as exp:
    print("ready", flush=True)
    for i in exp.iter(400, log=False):
        time.sleep(0.1)
"""

FAILS = """
import atexit, sys
for i in range(300):
    print("step", i)
atexit.register(lambda: [print("cleaning up", i) for i in range(80)])
def divide(a, b):
    return a / b
divide(1, 0)
"""

# Fails in a line longer than a laptop's log is wide: Python (3.11 and later) marks the failing
# expression with a row of carets under it.
FAILS_IN_A_LONG_LINE = """
from hyperdash import monitor

@monitor({name!r})
def train():
    print("config: " + " ".join("option_%d=value" % i for i in range(30)))
    config = dict(gradient_accumulation_steps_per_optimizer_update_on_every_device=0)
    running_loss_over_the_whole_epoch_summed_over_every_batch_of_the_training_set = 12.5
    return running_loss_over_the_whole_epoch_summed_over_every_batch_of_the_training_set / config["gradient_accumulation_steps_per_optimizer_update_on_every_device"] * 2.0 + 1.0

train()
"""  # noqa: E501 (the failing line is that long on purpose)

MONITORED = """
import time
from hyperdash import monitor

@monitor({name!r})
def train():
    print("ready", flush=True)
    time.sleep(120)

train()
"""

WAITS = """
import time
print("ready", flush=True)
time.sleep(120)
"""


def _job(account, home, tmp_path, code: str, name: str, *, run: bool = True) -> tuple[subprocess.Popen, str]:
    """Start a real job (under `hyperdash run`, or a Python script that monitors itself); once
    it has said "ready", its process and run uuid."""
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(code))
    argv = [*HYPERDASH, "run", "-n", name, sys.executable, str(path)] if run else [sys.executable, str(path)]
    proc = subprocess.Popen(argv, env=account.sdk_env(home), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    found = account.wait_for_run(name, "running", timeout=30)
    account.wait_for(lambda: any(line["text"] == "ready" for line in account.logs(found["uuid"])), timeout=30)
    return proc, found["uuid"]


def _end(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
    proc.communicate(timeout=30)


def _seconds(text: str) -> float:
    """ "1m 05s left" -> 65."""
    total = 0.0
    for amount, unit in re.findall(r"(\d+)([dhms])", text.split("left")[0]):
        total += int(amount) * {"d": 86400, "h": 3600, "m": 60, "s": 1}[unit]
    return total


def _check_progress(page, account, run_uuid: str, selector: str) -> None:
    """The page shows the run's percent and time left as the server has them (which move
    while this looks: it reads the server before and after the page)."""
    wait_until(page, f"(document.querySelector({selector!r} + ' .progress-text') || {{}}).textContent"
                     f"?.includes('left')", timeout=30)
    for _ in range(20):
        before = account.run(run_uuid)["progress"]
        shown = page.locator(f"{selector} .progress-text").inner_text()
        bar = page.locator(f"{selector} [role=progressbar]").get_attribute("aria-valuenow")
        after = account.run(run_uuid)["progress"]
        percent = int(shown.split("%")[0])
        if int(before["percent"]) <= percent <= int(after["percent"]) and bar == str(percent):
            break
        time.sleep(0.2)
    else:
        raise AssertionError(f"the page shows {shown!r}, the server {before} then {after}")
    assert 0 < percent < 100
    # Time left: the server's ETA counted down since its update (a second of slack each way
    # for the countdown's tick, and for the updates that came between the reads). Early in a
    # loop the ETA can rise as well as fall between two updates: the page shows one of them.
    left = _seconds(shown)
    now = time.time()

    def left_of(progress):
        at = calendar.timegm(time.strptime(progress["updated_at"][:19], "%Y-%m-%dT%H:%M:%S"))
        return max(0.0, progress["eta_s"] - (now - at))

    low, high = sorted((left_of(before), left_of(after)))
    assert low - 2.5 <= left <= high + 2.5, (shown, before, after)
    # And that ETA is tqdm's (or for exp.iter, derived from the pace): steps left over the rate.
    assert abs(after["eta_s"] - (after["total"] - after["done"]) / after["rate"]) <= max(3.0, after["eta_s"] * 0.2)


def test_a_tqdm_loop_shows_its_percent_and_time_left(open_page, account, hyperdash_home, tmp_path):
    name = f"tqdm-{uuid.uuid4().hex[:6]}"
    proc, run_uuid = _job(account, hyperdash_home, tmp_path, TQDM_LOOP, name)
    try:
        account.wait_for(lambda: account.run(run_uuid)["progress"], timeout=30)
        phone = open_page(PHONE)
        sign_in(phone, account, "/")
        _check_progress(phone, account, run_uuid, f'.run-row[data-uuid="{run_uuid}"]')
        page = open_page(DESKTOP)
        sign_in(page, account, f"/runs/{run_uuid}")
        _check_progress(page, account, run_uuid, "#run-progress")
        # Live: the percent moves on without a reload.
        first = int(page.locator("#run-progress .progress-text").inner_text().split("%")[0])
        wait_until(page, f"parseInt(document.querySelector('#run-progress .progress-text').textContent) > {first}",
                   timeout=20)
        assert account.run(run_uuid)["progress"]["source"] == "bar"
    finally:
        _end(proc)


def test_exp_iter_shows_its_percent_and_time_left(open_page, account, hyperdash_home, tmp_path):
    name = f"iter-{uuid.uuid4().hex[:6]}"
    proc, run_uuid = _job(account, hyperdash_home, tmp_path, ITER_LOOP.format(name=name), name, run=False)
    try:
        account.wait_for(lambda: (account.run(run_uuid)["progress"] or {}).get("eta_s"), timeout=30)
        page = open_page(DESKTOP)
        sign_in(page, account, "/")
        _check_progress(page, account, run_uuid, f'.run-row[data-uuid="{run_uuid}"]')
        assert account.run(run_uuid)["progress"]["source"] == "iter"
    finally:
        _end(proc)
    # A run that has ended shows no progress bar.
    account.wait_for(lambda: account.run(run_uuid)["status"] != "running", timeout=30)
    page.reload()
    page.wait_for_selector(f'.run-row[data-uuid="{run_uuid}"]')
    assert page.locator(f'.run-row[data-uuid="{run_uuid}"] .progress').count() == 0


def test_a_failed_run_opens_at_its_traceback(open_page, account, hyperdash_home, tmp_path):
    name = f"fails-{uuid.uuid4().hex[:6]}"
    path = tmp_path / "fails.py"
    path.write_text(textwrap.dedent(FAILS))
    env = account.sdk_env(hyperdash_home)
    # (one channel for both streams: the lines after the traceback stay after it)
    done = subprocess.run([*HYPERDASH, "run", "-n", name, "--merge-streams", sys.executable, str(path)], env=env,
                          capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 1
    subprocess.run([*HYPERDASH, "run", "-n", name, sys.executable, "-c",
                    "import sys; print('no config', file=sys.stderr); sys.exit(3)"],
                   env=env, capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
    subprocess.run([*HYPERDASH, "run", "-n", name, sys.executable, "-c",
                    "import os, signal; print('bye', flush=True); os.kill(os.getpid(), signal.SIGKILL)"],
                   env=env, capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
    runs = account.wait_for(lambda: len(found := account.runs(name=name)) == 3
                            and all(r["status"] != "running" for r in found) and found, timeout=30)
    failed = runs[-1]  # (newest first)
    assert failed["failure"]["summary"] == "ZeroDivisionError: division by zero"

    page = open_page(PHONE)
    sign_in(page, account, "/?name=" + name)
    page.wait_for_selector(f'.run-row[data-uuid="{failed["uuid"]}"] .failure')
    summaries = [page.locator(f'.run-row[data-uuid="{r["uuid"]}"] .failure').inner_text() for r in runs]
    assert summaries == ["killed by SIGKILL", "exit code 3", "ZeroDivisionError: division by zero"]

    page = open_page(DESKTOP)
    sign_in(page, account, f"/runs/{failed['uuid']}")
    page.wait_for_selector(f"{ROWS}.failure")
    assert page.locator("#failure-summary").inner_text() == "ZeroDivisionError: division by zero"
    marked = page.locator(f"{ROWS}.failure .text").all_inner_texts()
    assert marked[0] == "Traceback (most recent call last):"
    assert marked[-1] == "ZeroDivisionError: division by zero"
    assert any("divide(1, 0)" in text for text in marked)
    # It is where the log is open, though 80 lines came after it.
    wait_until(page, """(() => {
        const row = document.querySelector('#log-rows .line.failure');
        const box = document.getElementById('log').getBoundingClientRect();
        const r = row.getBoundingClientRect();
        return r.top >= box.top - 1 && r.bottom <= box.bottom + 1;
    })()""")
    texts = page.locator(f"{ROWS} .text").all_inner_texts()
    assert texts.index("cleaning up 79") > texts.index("ZeroDivisionError: division by zero")
    # The log scrolled to it, not the page: its header is still in view.
    assert page.evaluate("window.scrollY") == 0 and page.locator("#run-name").is_visible()
    assert page.locator("#stop").is_hidden()


TRACEBACK = [
    "Traceback (most recent call last):",
    '  File "/home/ml/train.py", line 12, in <module>',
    "    divide(1, 0)",
    '  File "/home/ml/train.py", line 6, in divide',
    "    return a / b",
    "           ~~^~~",
    "ZeroDivisionError: division by zero",
]


def _fail(feed: RunFeed) -> None:
    """The run prints a traceback, cleans up (80 lines after it) and fails."""
    feed.send([feed.line(text, ev.STDERR) for text in TRACEBACK]
              + [feed.line(f"cleaning up {i}") for i in range(80)])
    feed.end(ev.FAILURE, 1)


def _marked(page) -> list[str]:
    return page.locator(f"{ROWS}.failure .text").all_inner_texts()


def test_a_tracebacks_rows_stay_highlighted_when_they_are_fetched_again(open_page, account):
    feed = RunFeed(account, "fails after a long log")
    feed.lines(5600, "line {i:05d}")
    _fail(feed)
    page = open_run(open_page, account, feed)
    page.wait_for_selector(f"{ROWS}.failure")
    assert _marked(page) == TRACEBACK
    # Read back to the log's beginning: the page keeps 5,000 rows, the traceback's among those
    # dropped at the bottom.
    scroll_log_until(page, "line 00000", to_top=True)
    assert page.locator(ROWS, has_text="ZeroDivisionError").count() == 0
    # Scrolled down again, its rows are fetched again, still marked.
    scroll_log_until(page, "cleaning up 79", to_top=False)
    assert _marked(page) == TRACEBACK
    texts = row_texts(page)
    assert texts[texts.index(TRACEBACK[0]) - 1] == "line 05599"


def test_a_traceback_that_comes_as_the_run_ends_is_highlighted_on_the_open_page(open_page, account):
    feed = RunFeed(account, "fails while watched")
    feed.lines(20, "step {i}")
    page = open_run(open_page, account, feed)
    page.locator(ROWS, has_text="step 19").wait_for()
    # The traceback and the run's end come together: the page learns where the run failed
    # while those lines are still on their way to its rows.
    feed.send([feed.line(text, ev.STDERR) for text in TRACEBACK]
              + [feed.event(ev.RUN_ENDED, {"final_status": ev.FAILURE, "exit_code": 1, "signal": None})])
    page.locator("#failure-summary", has_text="ZeroDivisionError").wait_for()
    page.locator(ROWS, has_text="ZeroDivisionError").wait_for()
    assert _marked(page) == TRACEBACK


# How the traceback the page opened at is drawn: which code character is drawn right above the
# first "^" of its last caret row (the column of that "^" is the one it points at), and its rows
# that take more than one line.
TRACEBACK_LAYOUT = """() => {
  const rows = [...document.querySelectorAll('#log-rows .line.failure')];
  const texts = rows.map((row) => row.querySelector('.text'));
  const at = texts.findLastIndex((t) => /^ *[~^]+ *$/.test(t.textContent));
  const code = texts[at - 1].firstChild, carets = texts[at].firstChild;
  const glyph = (node, i) => {
    const range = document.createRange();
    range.setStart(node, i);
    range.setEnd(node, i + 1);
    return range.getBoundingClientRect();
  };
  const lineHeight = parseFloat(getComputedStyle(texts[at]).lineHeight);
  const column = carets.data.indexOf('^');
  const caret = glyph(carets, column);
  let above = -1;
  for (let i = 0; i < code.data.length; i++) {
    const g = glyph(code, i);
    if (Math.abs(g.left - caret.left) < 1 && Math.abs(caret.top - g.top - lineHeight) < 1) above = i;
  }
  const meant = glyph(code, column);
  return {
    pointed: code.data.slice(above, above + 8), meant: code.data.slice(column, column + 8),
    caret: [caret.left, caret.top], code: [meant.left, meant.top],
    wrapped: rows.filter((row) => row.getBoundingClientRect().height > 1.5 * lineHeight)
      .map((row) => row.querySelector('.text').textContent),
    rights: rows.map((row) => Math.round(row.getBoundingClientRect().right)),
  };
}"""


# A phone, the same phone held sideways, a laptop.
SIDEWAYS_PHONE = {**TOUCH_PHONE, "viewport": {"width": 839, "height": 412}}
SCREENS = [(TOUCH_PHONE, "light"), (TOUCH_PHONE, "dark"), (SIDEWAYS_PHONE, "light"), ({"viewport": DESKTOP}, "dark")]


@pytest.mark.skipif(sys.version_info < (3, 11), reason="Python marks the failing expression from 3.11 on")
def test_a_tracebacks_carets_stay_under_the_code_at_every_width(open_page, account, hyperdash_home, tmp_path):
    name = f"carets-{uuid.uuid4().hex[:6]}"
    path = tmp_path / "fails.py"
    path.write_text(textwrap.dedent(FAILS_IN_A_LONG_LINE.format(name=name)))
    done = subprocess.run([sys.executable, str(path)], env=account.sdk_env(hyperdash_home),
                          capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 1 and b"^" in done.stderr, done.stderr.decode()
    failed = account.wait_for_run(name, "failure", timeout=30)
    assert failed["failure"]["summary"] == "ZeroDivisionError: float division by zero"

    for screen, scheme in SCREENS:
        width = screen["viewport"]["width"]
        page = open_page(**screen, color_scheme=scheme)
        sign_in(page, account, f"/runs/{failed['uuid']}")
        page.wait_for_selector(f"{ROWS}.failure")
        layout = page.evaluate(TRACEBACK_LAYOUT)
        # The carets are under what failed (the division), each line of the traceback one row.
        assert layout["meant"].startswith("/ config")
        assert layout["pointed"] == layout["meant"], (width, scheme, layout)
        assert layout["wrapped"] == [], (width, scheme, layout)
        # Scrolled sideways, it stays one highlighted block.
        assert len(set(layout["rights"])) == 1, (width, scheme, layout)
        # The log scrolls sideways to show the rest, not the page; other lines still wrap.
        log = page.locator("#log")
        assert log.evaluate("l => l.scrollWidth > l.clientWidth"), width
        assert page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth") == 0
        config = page.locator(ROWS, has_text="config: option_0")
        wraps = "r => r.getBoundingClientRect().height > 2 * parseFloat(getComputedStyle(r).lineHeight)"
        assert config.evaluate(wraps), width
        # Not wrapped at the reader's asking, every line is one row; wrapped again, as before.
        page.locator("#wrap").click()
        assert not config.evaluate(wraps) and page.evaluate(TRACEBACK_LAYOUT)["wrapped"] == []
        page.locator("#wrap").click()
        assert config.evaluate(wraps) and page.evaluate(TRACEBACK_LAYOUT)["wrapped"] == []
        assert page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth") == 0
        page.screenshot(path=tmp_path / f"traceback-{width}-{scheme}.png")


def _stop_on_phone(open_page, account, run_uuid: str):
    page = open_page(PHONE)
    sign_in(page, account, f"/runs/{run_uuid}")
    stop = page.locator("#stop")
    stop.wait_for(state="visible")
    box = stop.bounding_box()
    assert box["x"] + box["width"] <= PHONE["width"]  # within a phone's screen
    stop.click()
    confirm = page.locator("#stop-confirm")
    assert confirm.is_visible() and "Stop this run?" in confirm.inner_text()
    page.locator("#stop-no").click()  # changed their mind: nothing asked
    assert confirm.is_hidden() and account.run(run_uuid)["stop"] is None
    stop.click()
    page.locator("#stop-yes").click()
    page.wait_for_selector("#stop-info:not([hidden])")
    assert f"Stop requested by {account.email} from the dashboard" in page.locator("#stop-info").inner_text()
    assert stop.is_hidden()
    return page


@pytest.mark.parametrize("face", ["hyperdash run", "@monitor"])
def test_stop_on_a_phone_ends_the_job(face, open_page, account, hyperdash_home, tmp_path):
    name = f"stop-{uuid.uuid4().hex[:6]}"
    under_run = face == "hyperdash run"
    code = WAITS if under_run else MONITORED.format(name=name)
    proc, run_uuid = _job(account, hyperdash_home, tmp_path, code, name, run=under_run)
    try:
        page = _stop_on_phone(open_page, account, run_uuid)
        out, err = proc.communicate(timeout=30)
        if under_run:
            assert proc.returncode == 130  # the command died of SIGINT
        else:
            assert "KeyboardInterrupt" in err.decode()
        page.wait_for_selector('#run-status [data-status="user_canceled"]', timeout=20_000)
        assert page.locator("#stop-info").inner_text().startswith(f"Stopped by {account.email} from the dashboard")
        assert account.run(run_uuid)["stop"]["via"] == "dashboard"
    finally:
        _end(proc)

"""Reading a run in real Chromium, on a phone and a desktop: the charts' x axis, the log search
as one types, long lines and progress bars on a narrow screen, and the two downloads."""

from __future__ import annotations

import pytest

from hyperdash import events as ev

from .support import ROWS, RunFeed, open_run, row_texts, sign_in, wait_until

pytestmark = pytest.mark.browser

PHONE = {"width": 390, "height": 844}
# A tqdm bar sized for a 120-column terminal.
BAR_FORMAT = "epoch 3: {pct:3d}%|{bar:<59}| {n:3d}/100 [00:{s:02d}<00:30, 14.87it/s, loss=0.4137]"


def tqdm_line(pct: int) -> str:
    return BAR_FORMAT.format(pct=pct, bar="█" * (pct * 59 // 100), n=pct, s=pct % 60)


def chart_label(page, metric: str) -> str:
    return page.locator(f".chart[data-metric='{metric}'] .chart-plot").get_attribute("aria-label")


def canvas_image(page, metric: str) -> str:
    return page.locator(f".chart[data-metric='{metric}'] canvas").evaluate("c => c.toDataURL()")


# --- charts ---------------------------------------------------------------------------------------

def test_metrics_with_steps_are_drawn_by_step_and_others_by_time_switchably(open_page, account, tmp_path):
    feed = RunFeed(account, "axes")
    for i, step in enumerate((10, 20, 30, 40, 50)):
        feed.metric("loss", 1.0 / (i + 1), step=step)
    for value in (0.5, 0.6, 0.7):
        feed.metric("epoch_acc", value)  # per epoch, no step=
    page = open_run(open_page, account, feed)
    page.locator(".chart[data-metric='epoch_acc']").wait_for()
    page.locator(".chart[data-metric='loss']").wait_for()

    assert page.locator("#chart-axis").input_value() == "auto"
    assert chart_label(page, "loss") == "loss by step: 5 points, step 10 to 50"
    assert chart_label(page, "epoch_acc").startswith("epoch_acc by time: 3 points, time ")

    page.screenshot(path=tmp_path / "desktop-charts.png")
    before = canvas_image(page, "loss")
    page.select_option("#chart-axis", "index")
    assert chart_label(page, "loss") == "loss by index: 5 points, index 0 to 4"
    assert chart_label(page, "epoch_acc") == "epoch_acc by index: 3 points, index 0 to 2"
    wait_until(page, "document.querySelector(\".chart[data-metric='loss'] canvas\").width > 100")
    assert canvas_image(page, "loss") != before, "the chart was drawn again on its new axis"

    # Step: the point's step, or its index where it has none.
    page.select_option("#chart-axis", "step")
    assert chart_label(page, "loss") == "loss by step: 5 points, step 10 to 50"
    assert chart_label(page, "epoch_acc") == "epoch_acc by step: 3 points, step 0 to 2"

    page.select_option("#chart-axis", "time")
    assert chart_label(page, "loss").startswith("loss by time: 5 points, time ")
    # Points that come live go on the axis chosen.
    feed.metric("loss", 0.1, step=60)
    wait_until(page, "document.querySelector(\".chart[data-metric='loss']\").dataset.points === '6'")
    assert chart_label(page, "loss").startswith("loss by time: 6 points")

    # The choice is remembered by this browser.
    page.reload()
    page.locator(".chart[data-metric='loss']").wait_for()
    assert page.locator("#chart-axis").input_value() == "time"
    assert chart_label(page, "loss").startswith("loss by time: 6 points")
    page.select_option("#chart-axis", "auto")
    assert chart_label(page, "loss") == "loss by step: 6 points, step 10 to 60"


# Keeps each uPlot chart the page makes in window.plots, to read its x scale (drawn on a canvas).
KEEP_PLOTS = """
Object.defineProperty(window, 'uPlot', {configurable: true, get() { return this.keptUPlot; }, set(real) {
  const kept = function (...args) { const plot = new real(...args); (window.plots ||= []).push(plot); return plot; };
  kept.prototype = real.prototype;
  this.keptUPlot = Object.assign(kept, real);
}});
"""


def test_a_metric_logged_once_is_drawn_on_a_time_axis_of_a_minute_around_it(open_page, account):
    feed = RunFeed(account, "logged once")
    feed.metric("test_accuracy", 0.91)  # once, at the end, no step=
    for value in (0.5, 0.6):
        feed.metric("epoch_acc", value)
    page = open_page()
    page.add_init_script(KEEP_PLOTS)
    sign_in(page, account, f"/runs/{feed.uuid}")
    page.locator(".chart[data-metric='test_accuracy']").wait_for()
    page.locator(".chart[data-metric='epoch_acc']").wait_for()
    wait_until(page, "(window.plots || []).length === 2")
    scales = page.evaluate("() => Object.fromEntries(window.plots.map("
                           "p => [p.series[1].label, [p.scales.x.min, p.scales.x.max, p.data[0]]]))")
    low, high, xs = scales["test_accuracy"]
    # (uPlot alone stretched an axis of one moment over a thousand days)
    assert high - low == pytest.approx(60) and low < xs[0] < high, scales
    low, high, xs = scales["epoch_acc"]
    assert [low, high] == [xs[0], xs[-1]], scales  # points at two moments span their own range


# --- search ---------------------------------------------------------------------------------------

def test_the_log_search_finds_as_one_types(open_page, account):
    feed = RunFeed(account, "typing")
    feed.lines(400, "step {i} ok")
    feed.log("step 400 Needle in the log", "step 401 another needle")
    feed.lines(100, "after {i}")
    page = open_run(open_page, account, feed)
    searches = []
    page.on("request", lambda r: "/logs?" in r.url and "q=" in r.url and searches.append(r.url))

    page.locator("#log-query").press_sequentially("needle", delay=20)  # no Enter
    page.locator("#search-status").wait_for()
    wait_until(page, "document.querySelectorAll('#log-rows .line').length === 2")
    assert row_texts(page) == ["step 400 Needle in the log", "step 401 another needle"]
    assert page.locator(f"{ROWS} mark").all_inner_texts() == ["Needle", "needle"]
    # Debounced: what was asked are the words typed so far, the last one the whole word.
    assert searches and searches[-1].endswith("q=needle")
    assert len(searches) < len("needle"), searches

    page.locator("#log-query").press_sequentially(" in", delay=20)
    wait_until(page, "document.querySelectorAll('#log-rows .line').length === 1")
    assert row_texts(page) == ["step 400 Needle in the log"]

    # Emptying the field shows the whole log again.
    page.fill("#log-query", "")
    page.locator("#search-status").wait_for(state="hidden")
    page.locator(ROWS, has_text="after 99").wait_for()
    assert "step 401 another needle" in row_texts(page)


def test_a_line_printed_right_after_a_bar_is_not_cut_off_with_it(open_page, account):
    feed = RunFeed(account, "print in a tqdm loop")
    # (a print inside a tqdm loop: on the bar's row, after its state, as the terminal got it)
    glued = tqdm_line(40) + "print epoch 1 loss=0.500"
    feed.log(tqdm_line(100), glued, "end")
    page = open_run(open_page, account, feed)
    page.locator(ROWS, has_text="end").wait_for()
    text = page.locator(ROWS, has_text="print epoch 1").locator(".text")
    # the row wraps, as the terminal's does, so the printed line is on screen, not past the cut
    assert text.evaluate("t => t.scrollWidth <= t.clientWidth"), "the printed text is cut off"
    assert page.locator(ROWS, has_text="print epoch 1").get_attribute("class").split() == ["line"]
    assert "bar" in page.locator(ROWS, has_text="100%").get_attribute("class").split()


# --- long lines on a phone ------------------------------------------------------------------------

def row_height(page, text: str) -> float:
    return page.locator(ROWS, has_text=text).evaluate("r => r.getBoundingClientRect().height")


def test_a_progress_bar_stays_one_line_on_a_phone_and_wrapping_is_the_users_choice(
        open_page, account, tmp_path):
    feed = RunFeed(account, "phone")
    long_line = "warning: " + " ".join(f"word{i}" for i in range(60))
    feed.log("short line", long_line)
    for pct in (5, 40):
        feed.log(tqdm_line(pct), stream=ev.STDERR, progress=True)
    assert len(tqdm_line(40)) == 120
    page = open_run(open_page, account, feed, viewport=PHONE)
    page.locator(ROWS, has_text="40%").wait_for()
    one_line = row_height(page, "short line")

    # Drawing, and once finished, the bar is one row, cut with an ellipsis where the screen ends.
    assert row_height(page, "epoch 3:") == one_line
    feed.log(tqdm_line(100), stream=ev.STDERR)
    page.locator(ROWS, has_text="100%").wait_for()
    assert page.locator(ROWS, has_text="epoch 3:").count() == 1
    assert row_height(page, "epoch 3:") == one_line
    bar_text = page.locator(ROWS, has_text="epoch 3:").locator(".text")
    assert bar_text.evaluate("t => getComputedStyle(t).textOverflow") == "ellipsis"
    assert bar_text.evaluate("t => t.scrollWidth > t.clientWidth"), "the bar is wider than a phone"
    assert bar_text.inner_text() == tqdm_line(100), "the text is all there, to copy"
    page.screenshot(path=tmp_path / "phone-wrapped.png")

    # Wrapping is on by default: a long ordinary line is read without scrolling sideways.
    assert page.locator("#wrap").get_attribute("aria-pressed") == "true"
    assert row_height(page, "warning:") > 3 * one_line
    log_scrolls = "(() => { const l = document.getElementById('log'); return l.scrollWidth > l.clientWidth; })()"
    assert not page.evaluate(log_scrolls)

    panel_right = "document.getElementById('log-panel').getBoundingClientRect().right"
    right = page.evaluate(panel_right)
    assert right <= PHONE["width"]

    # Turned off: each line is one row and the log scrolls sideways; the choice is remembered.
    page.click("#wrap")
    assert page.locator("#wrap").get_attribute("aria-pressed") == "false"
    assert row_height(page, "warning:") == one_line
    assert page.evaluate(log_scrolls)
    assert page.evaluate(panel_right) == right, "the log scrolls, not the page"
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    page.screenshot(path=tmp_path / "phone-unwrapped.png")
    page.reload()
    page.locator(ROWS, has_text="warning:").wait_for()
    assert page.locator("#wrap").get_attribute("aria-pressed") == "false"
    assert row_height(page, "warning:") == one_line
    page.click("#wrap")
    assert row_height(page, "warning:") > 3 * one_line


# --- downloads ------------------------------------------------------------------------------------

def download(page, link: str):
    """Click a download link as a person would: (file name the browser chose, bytes)."""
    with page.expect_download() as info:
        page.click(link)
    got = info.value
    return got.suggested_filename, open(got.path(), "rb").read()


@pytest.mark.parametrize("viewport", [PHONE, {"width": 1280, "height": 800}], ids=["phone", "desktop"])
def test_the_log_downloads_as_plain_text_and_raw(open_page, account, viewport):
    name = "обучение 训练"
    feed = RunFeed(account, name)
    feed.log("\x1b[32mgreen\x1b[0m start")
    for pct in (10, 55):
        feed.log(tqdm_line(pct), stream=ev.STDERR, progress=True)
    feed.log(tqdm_line(100), stream=ev.STDERR)
    feed.log("sent at once: 10%\rsent at once: 100%")
    feed.log("\x1b]0;a window title\x07title set")
    # A long line in pieces, an escape code cut between two of them.
    feed.log("pieces: \x1b[3", partial=True)
    feed.log("3myellow\x1b[0m end")
    # A bar that erased itself, the last thing on its stream.
    feed.log("scratch  30%|###", stream=ev.STDERR, progress=True)
    feed.log("                ", stream=ev.STDERR, progress=True)
    feed.log("done")
    page = open_run(open_page, account, feed, viewport=viewport)
    page.locator(ROWS, has_text="done").wait_for()
    assert page.locator("#download").is_visible() and page.locator("#download-raw").is_visible()

    filename, plain = download(page, "#download")
    assert filename == f"{name}.txt"
    assert b"\x1b" not in plain and b"\r" not in plain
    assert plain.decode("utf-8").split("\n") == [
        "green start", tqdm_line(100), "sent at once: 100%", "title set", "pieces: yellow end", "done", ""]

    filename, raw = download(page, "#download-raw")
    assert filename == f"{name}.log"
    text = raw.decode("utf-8")
    assert text.startswith("\x1b[32mgreen\x1b[0m start\n")
    assert "sent at once: 10%\rsent at once: 100%\n" in text
    assert "\x1b]0;a window title\x07title set\n" in text
    assert "pieces: \x1b[33myellow\x1b[0m end\n" in text
    assert tqdm_line(100) + "\n" in text and tqdm_line(55) not in text


def test_a_download_of_a_run_named_in_any_script_names_its_file(account):
    feed = RunFeed(account, "обучение 训练 / ½")
    feed.log("one line")
    server = account.server
    for query, ext in (("", "txt"), ("?raw=1", "log")):
        resp = server.session.get(f"{server.url}/api/v1/runs/{feed.uuid}/logs.txt{query}",
                                  headers={ev.AUTH_HEADER: account.api_key}, timeout=30)
        assert resp.status_code == 200, resp.text
        assert resp.text == "one line\n"
        disposition = resp.headers["content-disposition"]
        # Where nothing of the name is ASCII, the plain form names the run by its id.
        assert disposition == (f'attachment; filename="run-{feed.uuid[:8]}.{ext}"; filename*=UTF-8\'\''
                               f'%D0%BE%D0%B1%D1%83%D1%87%D0%B5%D0%BD%D0%B8%D0%B5%20%E8%AE%AD%E7%BB%83'
                               f'%20%2F%20%C2%BD.{ext}')

    feed = RunFeed(account, "Épreuve finale: 1/2")
    resp = server.session.get(f"{server.url}/api/v1/runs/{feed.uuid}/logs.txt",
                              headers={ev.AUTH_HEADER: account.api_key}, timeout=30)
    assert resp.status_code == 200 and resp.text == ""
    assert resp.headers["content-disposition"] == (
        "attachment; filename=\"Epreuve_finale_1_2.txt\"; filename*=UTF-8''%C3%89preuve%20finale%3A%201%2F2.txt")

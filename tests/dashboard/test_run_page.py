"""A run's page in real Chromium: its log live, colours, progress lines, long logs, search,
download, charts, params, the end-of-run notification, and untrusted text kept as text."""

from __future__ import annotations

import time

import pytest
import requests

from hyperdash import events as ev

from .support import ROWS, RunFeed, open_run, row_texts, scroll_log_until, sign_in, wait_until

pytestmark = pytest.mark.browser

def test_a_line_appears_on_its_page_within_two_seconds(open_page, account):
    feed = RunFeed(account, "live-lines")
    feed.log("first line")
    page = open_run(open_page, account, feed)
    assert row_texts(page) == ["first line"]

    for n in range(3):
        text = f"sent at step {n}"
        sent = time.monotonic()
        feed.log(text, stream=ev.STDERR if n == 1 else ev.STDOUT)
        left_ms = (2.0 - (time.monotonic() - sent)) * 1000
        # Playwright reads a timeout of 0 as "no timeout": a send that alone took 2 s fails here.
        assert left_ms >= 1, f"posting the line took {2000 - left_ms:.0f} ms, leaving no time to show it"
        page.locator(ROWS, has_text=text).wait_for(timeout=left_ms)
    assert row_texts(page) == ["first line", "sent at step 0", "sent at step 1", "sent at step 2"]
    streams = page.locator(ROWS).evaluate_all("rows => rows.map(r => r.classList.contains('stderr'))")
    assert streams == [False, False, True, False], "stderr lines are told apart from stdout"


def test_ansi_colours_progress_lines_and_long_line_pieces(open_page, account):
    feed = RunFeed(account, "terminal")
    feed.log("\x1b[32mgreen\x1b[0m plain \x1b[1;31mbold red\x1b[0m")
    page = open_run(open_page, account, feed)
    row = page.locator(ROWS).first
    assert row.locator(".text").inner_text() == "green plain bold red"
    assert row.locator("span.ansi-green-fg").inner_text() == "green"
    assert row.locator("span.ansi-red-fg").inner_text() == "bold red"

    # A \r progress bar is one line that updates, then becomes its finished line.
    for pct in (10, 55):
        feed.log(f"epoch 1: {pct}%|{'#' * (pct // 10)}", stream=ev.STDERR, progress=True)
        page.locator(ROWS, has_text=f"{pct}%").wait_for()
        assert page.locator(ROWS, has_text="epoch 1:").count() == 1
    feed.log("epoch 1: 100%|##########", stream=ev.STDERR)
    page.locator(ROWS, has_text="100%").wait_for()
    assert page.locator(ROWS, has_text="epoch 1:").count() == 1
    # Finished, it is no longer drawn over, but still a bar: kept on one line.
    assert page.locator(ROWS, has_text="epoch 1:").get_attribute("class").split() == ["line", "stderr", "bar"]

    # A line longer than the SDK's limit arrives in pieces: shown as the one line it is.
    feed.log("aaaa", "bbbb", partial=True)
    feed.log("cccc")
    page.locator(ROWS, has_text="cccc").wait_for()
    assert row_texts(page)[-1] == "aaaabbbbcccc"

    # A reload shows the same thing from the stored log.
    page.reload()
    page.locator(ROWS, has_text="cccc").wait_for()
    assert row_texts(page) == ["green plain bold red", "epoch 1: 100%|##########", "aaaabbbbcccc"]


def test_a_bar_that_erases_itself_goes_from_the_open_page(open_page, account):
    feed = RunFeed(account, "leave-false")
    feed.log("before the bar")
    page = open_run(open_page, account, feed)
    feed.log(" 50%|█████     |", stream=ev.STDERR, progress=True)
    page.locator(ROWS, has_text="50%").wait_for()
    assert row_texts(page) == ["before the bar", " 50%|█████     |"]

    # tqdm(leave=False) ends with an empty progress line: the bar's row goes, and no empty row comes.
    feed.log("", stream=ev.STDERR, progress=True)
    wait_until(page, f"document.querySelectorAll('{ROWS}').length === 1")
    assert row_texts(page) == ["before the bar"]
    feed.log("after the bar", stream=ev.STDERR)
    page.locator(ROWS, has_text="after the bar").wait_for()
    assert row_texts(page) == ["before the bar", "after the bar"]
    page.reload()
    page.locator(ROWS, has_text="after the bar").wait_for()
    assert row_texts(page) == ["before the bar", "after the bar"]


def needle_feed(account, name: str, before: int, after: int) -> RunFeed:
    """A run whose log is ``before`` lines ("line 000", …), "the NEEDLE", and ``after`` more
    ("next 000", …)."""
    feed = RunFeed(account, name)
    feed.lines(before, "line {i:03d}")
    feed.log("the NEEDLE")
    feed.lines(after, "next {i:03d}")
    return feed


def open_search_hit(page, query: str, hit: str) -> None:
    """Search the log for ``query`` and open the hit that holds ``hit`` in its context."""
    page.fill("#log-query", query)
    page.press("#log-query", "Enter")
    # a search's rows are hits: the log's own row with that text may still be on the page
    page.locator(f"{ROWS}.hit", has_text=hit).click()
    page.locator(f"{ROWS}.target").wait_for()


def test_a_long_log_opens_at_its_tail_and_loads_older_lines_on_scroll(open_page, account):
    feed = RunFeed(account, "long-log")
    feed.lines(3000, "line {i:05d}")
    page = open_run(open_page, account, feed)
    texts = row_texts(page)
    assert texts[-1] == "line 02999"
    assert len(texts) < 1000, "only the tail is fetched first"
    assert page.locator("#jump").is_hidden()

    scroll_log_until(page, "line 00000", to_top=True)
    texts = row_texts(page)
    assert texts == [f"line {i:05d}" for i in range(3000)], "every line once, in order"
    assert page.locator("#log-top").inner_text() == "Beginning of log"

    # Scrolled back, new lines do not yank the view: a button offers the latest.
    scrolled = page.locator("#log").evaluate("el => el.scrollTop")
    feed.log("brand new line")
    page.locator("#jump").wait_for()
    page.locator("#jump", has_text="1 new").wait_for()
    assert page.locator("#log").evaluate("el => el.scrollTop") == scrolled
    page.click("#jump")
    page.locator(ROWS, has_text="brand new line").wait_for()
    at_bottom = page.locator("#log").evaluate("el => el.scrollHeight - el.scrollTop - el.clientHeight")
    assert at_bottom <= 24
    page.locator("#jump").wait_for(state="hidden")


TOP_ROW = f"""() => {{
    const box = document.querySelector('#log').getBoundingClientRect();
    const row = document.elementFromPoint(box.left + 30, box.top + 4)?.closest('{ROWS}');
    return row ? row.querySelector('.text').textContent : null;
}}"""


def test_older_lines_load_above_the_line_being_read(open_page, account):
    feed = RunFeed(account, "read-back")
    feed.lines(3000, "line {i:05d}")
    page = open_run(open_page, account, feed)
    shown = len(row_texts(page))
    box = page.locator("#log").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    # A reader scrolls up by the wheel, a step at a time, until older lines load above.
    for _ in range(200):
        before = page.evaluate(TOP_ROW)
        page.mouse.wheel(0, -300)
        page.wait_for_timeout(60)
        if len(row_texts(page)) > shown:
            break
    else:
        raise AssertionError("no older lines loaded")
    page.wait_for_timeout(300)
    after = page.evaluate(TOP_ROW)
    # The view stays where it was read, give or take the last wheel step: not thrown to the end.
    assert abs(int(after.split()[1]) - int(before.split()[1])) <= 20, (before, after)
    assert page.locator("#log").evaluate("el => el.scrollHeight - el.scrollTop - el.clientHeight") > 1000


def test_a_long_line_cut_by_a_page_boundary_shows_as_one_row(open_page, account):
    feed = RunFeed(account, "long-line-at-the-boundary")
    feed.lines(1000, "line {i:05d}")
    pieces = [f"piece{k}-" for k in range(6)]
    feed.log(*pieces, partial=True)
    feed.log("end of the long line")
    # The first page holds the last 200 lines: the long line's last pieces, not its first.
    feed.lines(197, "after {i:03d}")
    page = open_run(open_page, account, feed)
    assert row_texts(page)[0] == "piece4-piece5-end of the long line"

    scroll_log_until(page, "line 00000", to_top=True)
    texts = row_texts(page)
    assert texts == ([f"line {i:05d}" for i in range(1000)] + ["".join(pieces) + "end of the long line"]
                     + [f"after {i:03d}" for i in range(197)])


def test_a_line_tapped_while_its_search_loads_stays_open(open_page, account):
    # Tapped before the search's answer came (the log's own row of the hit, still on screen):
    # the line opens in context, and the search answering late does not take the view back.
    feed = needle_feed(account, "tap-while-searching", 100, 20)
    page = open_run(open_page, account, feed)
    held = []
    page.route(lambda url: "q=needle" in url, lambda route: held.append(route))
    page.fill("#log-query", "needle")
    page.press("#log-query", "Enter")
    deadline = time.monotonic() + 10
    while not held:  # (the route's handler runs while this side waits on the page)
        assert time.monotonic() < deadline, "the search should be asking the server"
        page.wait_for_timeout(20)
    page.locator(ROWS, has_text="the NEEDLE").click()
    page.locator(f"{ROWS}.target", has_text="the NEEDLE").wait_for()
    with page.expect_response(lambda response: "q=needle" in response.url):
        for route in held:
            route.continue_()
    page.wait_for_timeout(100)  # (what the late answer would do is done by now: it is not awaited elsewhere)
    assert page.locator(f"{ROWS}.target", has_text="the NEEDLE").count() == 1
    assert page.locator(f"{ROWS}.hit").count() == 0
    assert "next 019" in row_texts(page)


def test_a_long_line_cut_where_newer_lines_load_shows_as_one_row(open_page, account):
    # A search hit opens with the 150 lines after it: the long line's first piece, no more.
    feed = needle_feed(account, "long-line-below", 300, 149)
    pieces = [f"piece{k}-" for k in range(6)]
    feed.log(*pieces, partial=True)
    feed.log("end of the long line")
    feed.lines(600, "after {i:03d}")
    page = open_run(open_page, account, feed)
    open_search_hit(page, "needle", "the NEEDLE")
    assert row_texts(page)[-1] == "piece0-"

    scroll_log_until(page, "after 599", to_top=False)
    texts = row_texts(page)
    whole = "".join(pieces) + "end of the long line"
    assert whole in texts and not any(t.startswith("piece") and t != whole for t in texts)
    assert texts[texts.index(whole) - 1] == "next 148" and texts[texts.index(whole) + 1] == "after 000"


def test_a_long_line_still_being_written_goes_on_in_its_row_once_the_view_reaches_the_end(open_page, account):
    feed = needle_feed(account, "long-line-live", 300, 149)
    feed.log("piece0-", "piece1-", "piece2-", partial=True)  # the job is in the middle of it
    page = open_run(open_page, account, feed)
    open_search_hit(page, "needle", "the NEEDLE")
    assert row_texts(page)[-1] == "piece0-"
    scroll_log_until(page, "piece2-", to_top=False)
    assert row_texts(page)[-1] == "piece0-piece1-piece2-"

    feed.log("piece3-", partial=True)
    feed.log("end")
    page.locator(ROWS, has_text="end").wait_for()
    assert row_texts(page)[-2:] == ["next 148", "piece0-piece1-piece2-piece3-end"]


def test_a_progress_bar_whose_row_scrolled_out_of_the_page_comes_back_when_it_goes_on(open_page, account):
    feed = RunFeed(account, "bar above a flood")
    feed.log("epoch 1: 10%", stream=ev.STDERR, progress=True)
    page = open_run(open_page, account, feed)
    # Followed live, more lines than the page keeps push the bar's row out at the top.
    for start in range(0, 5200, 1300):
        feed.lines(1300, f"line {start}+{{i}}")
        page.locator(ROWS, has_text=f"line {start}+1299").wait_for()
    assert page.locator(ROWS, has_text="epoch 1:").count() == 0
    feed.log("epoch 1: 90%", stream=ev.STDERR, progress=True)
    page.locator(ROWS, has_text="epoch 1: 90%").wait_for()
    feed.log("epoch 1: 100%", stream=ev.STDERR)
    page.locator(ROWS, has_text="epoch 1: 100%").wait_for()
    assert page.locator(ROWS, has_text="epoch 1:").count() == 1


def test_rows_dropped_from_a_long_page_come_back_whole(open_page, account):
    feed = RunFeed(account, "interleaved")
    # A long stdout line whose pieces enclose a stderr line: one row for it, one for the other.
    feed.log("a1-", partial=True)
    feed.log("between", stream=ev.STDERR)
    feed.log("a2-", partial=True)
    feed.log("a3")
    page = open_run(open_page, account, feed)
    assert row_texts(page) == ["a1-a2-a3", "between"]
    # Followed live, the page keeps 5000 rows: the last batch leaves one row too many, the long
    # line's; the stderr line, within its pieces, must leave with it.
    for start, count in ((0, 1300), (1300, 1300), (2600, 1300), (3900, 1099)):
        feed.lines(count, f"line {start}+{{i}}")
        page.locator(ROWS, has_text=f"line {start}+{count - 1}").wait_for()
    assert page.locator(ROWS, has_text="a1-").count() == 0
    scroll_log_until(page, "a1-a2-a3", to_top=True)
    assert row_texts(page)[:3] == ["a1-a2-a3", "between", "line 0+0"]


def test_rows_dropped_at_the_bottom_come_back_whole(open_page, account):
    feed = RunFeed(account, "interleaved, scrolled back")
    feed.lines(5000, "line {i:05d}")
    feed.log("a1-", partial=True)
    feed.log("between", stream=ev.STDERR)
    feed.log("a2-", partial=True)
    feed.log("a3")
    feed.lines(197, "tail {i:03d}")
    page = open_run(open_page, account, feed)
    # Ten pages back the page holds 5,198 rows: the 198 at the bottom go, the last of them the
    # long line's row, whose pieces enclose the stderr line: that line must go with it.
    scroll_log_until(page, "line 00001", to_top=True)
    assert page.locator(ROWS, has_text="a1-a2-a3").count() == 0
    scroll_log_until(page, "tail 196", to_top=False)
    texts = row_texts(page)
    start = texts.index("line 04999")
    assert texts[start:start + 4] == ["line 04999", "a1-a2-a3", "between", "tail 000"], texts[start:start + 4]


def test_search_finds_lines_and_opens_them_in_context(open_page, account):
    feed = RunFeed(account, "searchable")
    feed.lines(1200, "step {i} ok")
    feed.log("step 1200 NEEDLE found here")
    feed.lines(300, "after {i}")
    page = open_run(open_page, account, feed)

    page.fill("#log-query", "needle")
    page.press("#log-query", "Enter")
    page.locator("#search-status").wait_for()
    wait_until(page, "document.querySelectorAll('#log-rows .line').length === 1")
    assert row_texts(page) == ["step 1200 NEEDLE found here"]
    assert page.locator(f"{ROWS} mark").inner_text() == "NEEDLE"

    # A live line that matches joins the results; one that does not stays out.
    feed.log("no match", "another needle")
    page.locator(ROWS, has_text="another needle").wait_for()
    assert row_texts(page) == ["step 1200 NEEDLE found here", "another needle"]

    page.locator(ROWS, has_text="step 1200 NEEDLE").click()
    page.locator(f"{ROWS}.target").wait_for()
    assert page.locator(f"{ROWS}.target .text").inner_text() == "step 1200 NEEDLE found here"
    texts = row_texts(page)
    assert "step 1199 ok" in texts and "after 0" in texts

    page.click("#search-status button")
    page.locator("#search-status").wait_for(state="hidden")
    page.locator(ROWS, has_text="another needle").wait_for()
    assert row_texts(page)[-2:] == ["no match", "another needle"]

    # Download: the whole log as text, with the browser's own session.
    href = page.get_attribute("#download", "href")
    text = page.context.request.get(account.server.url + href).text()
    lines = text.splitlines()
    assert len(lines) == 1503
    assert lines[1200] == "step 1200 NEEDLE found here" and lines[-1] == "another needle"


def _target_texts(page) -> list[str]:
    return page.locator(f"{ROWS}.target .text").all_inner_texts()


def test_a_search_hit_stays_marked_when_its_row_is_fetched_again(open_page, account):
    feed = needle_feed(account, "hit far back", 100, 5600)
    page = open_run(open_page, account, feed)
    open_search_hit(page, "needle", "the NEEDLE")
    assert _target_texts(page) == ["the NEEDLE"]
    # Read on far down: the page keeps 5,000 rows, the hit's among those dropped at the top.
    scroll_log_until(page, "next 5599", to_top=False)
    assert page.locator(ROWS, has_text="the NEEDLE").count() == 0
    # Scrolled back up, its row is fetched again, still marked, and it alone.
    scroll_log_until(page, "line 000", to_top=True)
    assert _target_texts(page) == ["the NEEDLE"]

    # A new search leaves the line's context: nothing is marked when the hit comes back.
    page.fill("#log-query", "next 000")
    page.press("#log-query", "Enter")
    page.locator(f"{ROWS}.hit", has_text="next 000").wait_for()
    page.click("#search-status button")
    page.locator("#search-status").wait_for(state="hidden")
    scroll_log_until(page, "the NEEDLE", to_top=True)
    assert _target_texts(page) == []


def test_a_search_hit_stays_marked_when_the_rest_of_its_line_comes(open_page, account):
    feed = RunFeed(account, "hit mid-line")
    feed.lines(300, "line {i:03d}")
    feed.log("epoch 3 NEEDLE ", partial=True)  # the job is in the middle of the line
    page = open_run(open_page, account, feed)
    open_search_hit(page, "needle", "epoch 3 NEEDLE")
    assert _target_texts(page) == ["epoch 3 NEEDLE "]
    feed.log("loss 0.25", partial=True)
    feed.log(" done")
    page.locator(ROWS, has_text="loss 0.25 done").wait_for()
    assert _target_texts(page) == ["epoch 3 NEEDLE loss 0.25 done"]


def test_a_search_hit_printed_under_a_progress_bar_is_the_row_marked(open_page, account):
    # tqdm draws on stderr while the job prints on stdout: the bar's row, begun before the hit
    # and redrawn after it, is not the hit's.
    feed = RunFeed(account, "hit under a bar")
    feed.lines(50, "line {i:03d}")
    feed.log("epoch 1:  10%|#", stream=ev.STDERR, progress=True)
    feed.log("the NEEDLE")
    page = open_run(open_page, account, feed)
    open_search_hit(page, "needle", "the NEEDLE")
    feed.log("epoch 1:  20%|##", stream=ev.STDERR, progress=True)
    page.locator(ROWS, has_text="20%").wait_for()
    assert row_texts(page)[-2:] == ["epoch 1:  20%|##", "the NEEDLE"]
    assert _target_texts(page) == ["the NEEDLE"]


def test_each_metric_is_a_chart_that_draws_and_grows(open_page, account):
    feed = RunFeed(account, "charts")
    for step in range(5):
        feed.metric("loss", 1.0 / (step + 1), step=step)
    feed.params(lr=0.001, batch_size=64, optimizer="adam")
    page = open_run(open_page, account, feed)

    chart = page.locator(".chart[data-metric='loss']")
    chart.wait_for()
    assert chart.get_attribute("data-points") == "5"
    canvas = chart.locator("canvas")
    assert canvas.evaluate("c => c.width > 100 && c.height > 100")
    before = canvas.evaluate("c => c.toDataURL()")
    blank = canvas.evaluate("c => { const b = document.createElement('canvas');"
                            " b.width = c.width; b.height = c.height; return b.toDataURL(); }")
    assert before != blank, "the chart drew something"
    assert chart.locator(".latest").inner_text() == "0.2"

    for step in range(5, 10):
        feed.metric("loss", 10.0 + step, step=step)
    wait_until(page, "document.querySelector(\".chart[data-metric='loss']\").dataset.points === '10'")
    page.wait_for_timeout(100)  # the redraw happens on the next animation frame
    assert canvas.evaluate("c => c.toDataURL()") != before, "the chart grew"
    assert chart.locator(".latest").inner_text() == "19"

    feed.metric("accuracy", 0.5, step=1)
    page.locator(".chart[data-metric='accuracy']").wait_for()
    assert page.locator(".chart h3").all_inner_texts() == ["accuracy", "loss"]
    assert page.locator("#metrics-count").inner_text() == "2"

    params = page.locator("#params tr").evaluate_all(
        "rows => rows.map(r => [r.cells[0].textContent, r.cells[1].textContent])")
    assert params == [["batch_size", "64"], ["lr", "0.001"], ["optimizer", "adam"]]
    feed.params(epochs=3)
    page.locator("#params th", has_text="epochs").wait_for()


def test_a_point_that_reaches_its_chart_twice_is_kept_once(open_page, account):
    # A metric's first point opens its chart, which reads the metric's series; a point that
    # came live meanwhile is in that series too: on the index axis (a place per point) a copy
    # would show as a point more.
    feed = RunFeed(account, "copies")
    page = open_run(open_page, account, feed)
    page.select_option("#chart-axis", "index")
    read = []

    def series(route):
        if not read:
            read.append(route.request.url)
            feed.metric("loss", 0.5, step=2)
        route.continue_()

    page.route("**/metrics/loss", series)
    feed.metric("loss", 1.0, step=1)
    chart = page.locator(".chart[data-metric='loss']")
    chart.wait_for()
    page.wait_for_timeout(1000)
    assert read
    assert chart.get_attribute("data-points") == "2"
    assert chart.locator(".latest").inner_text() == "0.5"


def test_a_metric_whose_every_value_is_nan_has_a_chart_that_says_so(open_page, account):
    feed = RunFeed(account, "diverged")
    for step in range(3):
        feed.send([feed.event(ev.METRIC, {"name": "loss", "value": "NaN", "timestamp": ev.now_ms(),
                                          "is_internal": False, "step": step})])
    feed.metric("accuracy", 0.5, step=2)
    page = open_run(open_page, account, feed)

    chart = page.locator(".chart[data-metric='loss']")
    chart.wait_for()
    assert page.locator(".chart h3").all_inner_texts() == ["accuracy", "loss"]
    assert page.locator("#metrics-count").inner_text() == "2"
    assert chart.locator(".latest").inner_text() == "NaN"
    note = chart.locator(".chart-note")
    assert note.is_visible()
    assert note.inner_text() == "Every value is NaN or infinite: 3 points, the last NaN at step 2."
    assert chart.get_attribute("data-nonfinite") == "3"
    # A metric with numbers draws them and needs no such note.
    assert page.locator(".chart[data-metric='accuracy'] .chart-note").is_hidden()


def test_a_metric_that_went_nan_says_so_where_its_latest_value_is_shown(open_page, account):
    # A loss that diverged part-way: its chart draws the numbers, but its latest value is NaN,
    # not the last number (which would make a run gone wrong look fine).
    feed = RunFeed(account, "diverged later")
    for step, value in enumerate([0.9, 0.7, 0.5, "NaN", "Infinity"]):
        feed.send([feed.event(ev.METRIC, {"name": "loss", "value": value, "timestamp": ev.now_ms(),
                                          "is_internal": False, "step": step})])
        time.sleep(0.002)  # (each point its own millisecond, as a step takes)
    feed.metric("accuracy", 0.5, step=1)
    feed.metric("accuracy", 0.6, step=2)
    page = open_run(open_page, account, feed)

    chart = page.locator(".chart[data-metric='loss']")
    chart.wait_for()
    assert chart.locator(".latest").inner_text() == "Infinity"
    note = "2 points NaN or infinite, not drawn; the last Infinity at step 4."
    assert chart.locator(".chart-note").inner_text() == note
    # One whose numbers came last shows its last number, and no note.
    accuracy = page.locator(".chart[data-metric='accuracy']")
    assert accuracy.locator(".latest").inner_text() == "0.6"
    assert accuracy.locator(".chart-note").is_hidden()


def test_a_loss_going_nan_while_the_page_is_open_shows_at_once(open_page, account):
    feed = RunFeed(account, "diverging live")
    feed.metric("loss", 0.9, step=1)
    page = open_run(open_page, account, feed)
    page.locator(".chart[data-metric='loss']").wait_for()

    def shown(metric: str) -> tuple:
        """(the latest value beside the name, the note or None when hidden), once the chart is there."""
        return tuple(wait_until(page, f"""(() => {{
            const chart = document.querySelector(`.chart[data-metric="{metric}"]`);
            if (!chart) return null;
            const note = chart.querySelector('.chart-note');
            return [chart.querySelector('.latest').textContent, note.hidden ? null : note.textContent];
        }})()"""))

    def settles(metric: str, expected: tuple) -> None:
        deadline = time.monotonic() + 10
        while shown(metric) != expected and time.monotonic() < deadline:
            time.sleep(0.05)
        assert shown(metric) == expected

    def nan_point(name: str, step: int) -> None:
        feed.send([feed.event(ev.METRIC, {"name": name, "value": "NaN", "timestamp": ev.now_ms(),
                                          "is_internal": False, "step": step})])
        time.sleep(0.002)  # (each point its own millisecond, as a step takes)

    assert shown("loss") == ("0.9", None)
    nan_point("loss", 2)
    settles("loss", ("NaN", "1 point NaN or infinite, not drawn; the last NaN at step 2."))
    nan_point("loss", 3)
    settles("loss", ("NaN", "2 points NaN or infinite, not drawn; the last NaN at step 3."))
    # A metric NaN from its first point gets its chart live too.
    nan_point("grad norm", 3)
    settles("grad norm", ("NaN", "Every value is NaN or infinite: 1 point, the last NaN at step 3."))
    feed.metric("loss", 0.4, step=4)  # (recovered: its last number again, no note)
    settles("loss", ("0.4", None))


def test_status_duration_and_exit_follow_the_run(open_page, account):
    feed = RunFeed(account, "ending")
    page = open_run(open_page, account, feed)
    assert page.locator("#run-status .badge").get_attribute("data-status") == "running"
    feed.end(ev.KILLED, exit_code=None, signal="SIGTERM")
    page.locator("#run-status .badge[data-status='killed']").wait_for()
    assert page.locator("#run-status .badge").inner_text() == "Killed"
    assert page.locator("#fact-exit").inner_text() == "SIGTERM"
    assert page.locator("#fact-exit").locator("xpath=preceding-sibling::dt").inner_text().lower() == "signal"

    failed = RunFeed(account, "ending")
    failed.end(ev.FAILURE, exit_code=3)
    page.goto(account.server.url + f"/runs/{failed.uuid}")
    assert page.locator("#run-status .badge").inner_text() == "Failure"
    assert page.locator("#fact-exit").inner_text() == "3"
    assert page.locator("#fact-duration").inner_text().endswith("s")


def test_the_browser_notifies_when_an_open_run_ends(open_page, account):
    feed = RunFeed(account, "notify-me")
    page = open_run(open_page, account, feed, permissions=["notifications"])
    # Record what the page shows through the browser's Notification API.
    page.evaluate("""() => {
        window.shown = [];
        const Real = window.Notification;
        window.Notification = class extends Real {
            constructor(title, options) { super(title, options); window.shown.push([title, options.body]); }
        };
    }""")
    assert page.evaluate("Notification.permission") == "granted"
    assert page.locator("#notify").inner_text() == "Notifications on"
    feed.end(ev.FAILURE, exit_code=2)
    wait_until(page, "window.shown.length > 0")
    [[title, body]] = page.evaluate("window.shown")
    assert title == "notify-me: Failure"
    assert "exit code 2" in body


def test_where_pages_may_not_construct_notifications_the_service_worker_shows_it(open_page, account):
    feed = RunFeed(account, "on a phone")
    page = open_run(open_page, account, feed, permissions=["notifications"])
    assert page.evaluate("navigator.serviceWorker.ready.then((r) => Boolean(r.active))")
    # As on Android: the constructor refuses, only a service worker may show notifications.
    # Each call of the registration's showNotification is recorded with how the browser took it.
    # (Whether getNotifications() lists it afterwards depends on the platform's notification
    # display, which a headless browser on a server may lack; the browser's answer does not.)
    page.evaluate("""() => {
        const Real = window.Notification;
        window.Notification = class {
            static get permission() { return Real.permission; }
            static requestPermission() { return Real.requestPermission(); }
            constructor() { throw new TypeError("Illegal constructor."); }
        };
        window.shownByWorker = [];
        const show = ServiceWorkerRegistration.prototype.showNotification;
        ServiceWorkerRegistration.prototype.showNotification = function (title, options) {
            const call = { title, body: options.body, data: options.data, outcome: "pending" };
            window.shownByWorker.push(call);
            return show.call(this, title, options).then(
                () => { call.outcome = "shown"; },
                (error) => { call.outcome = String(error); throw error; });
        };
    }""")
    feed.end(ev.SUCCESS)
    page.locator("#run-status .badge[data-status='success']").wait_for()
    wait_until(page, "window.shownByWorker.length > 0 && window.shownByWorker[0].outcome !== 'pending'")
    [call] = page.evaluate("window.shownByWorker")
    assert call["outcome"] == "shown", call
    assert call["title"] == "on a phone: Success" and call["body"].startswith("Ran ")
    assert call["data"] == {"url": f"/runs/{feed.uuid}"}


def test_without_permission_nothing_is_shown_and_the_page_offers_to_ask(open_page, account):
    feed = RunFeed(account, "quiet")
    page = open_run(open_page, account, feed)
    assert page.evaluate("Notification.permission") in ("default", "denied")
    page.evaluate("""() => {
        window.shown = [];
        const Real = window.Notification;
        window.Notification = class extends Real {
            constructor(title, options) { super(title, options); window.shown.push(title); }
        };
        window.Notification.permission = Real.permission;
    }""")
    if page.evaluate("Notification.permission") == "default":
        assert page.locator("#notify").is_visible()
    feed.end(ev.SUCCESS)
    page.locator("#run-status .badge[data-status='success']").wait_for()
    assert page.evaluate("window.shown") == []
    assert page.locator("#notify").is_hidden(), "an ended run offers no notification"


XSS = [
    "<script>window.__xss = 'script'</script>",
    '<img src=x onerror="window.__xss = \'img\'">',
    '\x1b[31m<img src=x onerror="window.__xss = \'ansi\'">\x1b[0m',
    "\x1b]8;;javascript:window.__xss='link'\x07click me\x1b]8;;\x07",
]


def test_untrusted_text_stays_text(open_page, account):
    name = '<img src=x onerror="window.__xss = \'name\'">'
    feed = RunFeed(account, name, host="<b>host</b>")
    feed.params(**{"<script>window.__xss='param'</script>": '<img src=x onerror="window.__xss=\'value\'">'})
    feed.log(*XSS)
    feed.log(*XSS, stream=ev.STDERR)
    page = open_run(open_page, account, feed)
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.locator(ROWS).nth(7).wait_for()

    def assert_inert():
        assert page.evaluate("window.__xss") is None
        assert page.locator("main img, main script, #log-rows a, #params a").count() == 0
        assert dialogs == []

    expected = ["<script>window.__xss = 'script'</script>", '<img src=x onerror="window.__xss = \'img\'">',
                '<img src=x onerror="window.__xss = \'ansi\'">', "click me"]
    assert row_texts(page) == expected * 2
    assert page.locator("#run-name").inner_text() == name
    assert page.title() == name + " · Hyperdash"
    assert page.locator("#fact-host").inner_text() == "<b>host</b>"
    assert page.locator("#params th").inner_text() == "<script>window.__xss='param'</script>"
    assert page.locator("#params td").inner_text() == '<img src=x onerror="window.__xss=\'value\'">'
    assert_inert()

    feed.log(*XSS)  # live lines take the same path
    page.locator(ROWS).nth(11).wait_for()
    assert row_texts(page)[-4:] == expected
    page.fill("#log-query", "onerror")  # and so do search results, with their marks
    page.press("#log-query", "Enter")
    wait_until(page, "document.querySelectorAll('#log-rows .line mark').length === 6")
    assert_inert()

    page.goto(account.server.url + "/")
    page.locator(".group h2", has_text="onerror").wait_for()
    assert page.locator(".group h2").inner_text() == name
    assert page.locator(".run-row .host").inner_text() == "<b>host</b>"
    assert_inert()


def test_another_accounts_run_is_not_found(open_page, account, hyperdash_server):
    feed = RunFeed(account, "private-run")
    feed.log("secret output")
    other = hyperdash_server.signup()
    page = open_page()
    sign_in(page, other)
    page.goto(account.server.url + "/")
    page.wait_for_selector("#runs-empty:not([hidden])")
    assert page.locator(".run-row").count() == 0

    response = page.goto(account.server.url + f"/runs/{feed.uuid}")
    assert response.status == 404
    # as for a run not here yet (this account's page waits a while for one just started) ...
    assert page.locator("h1").inner_text() == "Waiting for this run"
    assert "private-run" not in page.content() and "secret output" not in page.content()
    # ... and once it has looked enough
    response = page.goto(account.server.url + f"/runs/{feed.uuid}?waited=10")
    assert response.status == 404
    assert page.locator("h1").inner_text() == "Run not found"
    assert "private-run" not in page.content() and "secret output" not in page.content()
    api = page.context.request
    for path in ("", "/logs?tail=10", "/logs.txt", "/metrics/loss"):
        assert api.get(account.server.url + f"/api/v1/runs/{feed.uuid}{path}").status == 404, path
    page.errors.clear()  # the 404 page is logged by the browser as a failed load


def test_the_address_a_job_prints_opens_its_run_once_it_arrives(open_page, account):
    feed = RunFeed(account, "just started", start=False)  # its first word not on the server yet
    page = open_page()
    sign_in(page, account)
    response = page.goto(account.server.url + f"/runs/{feed.uuid[:8]}")  # as `follow this run at` gives it
    assert response.status == 404
    assert page.locator("h1").inner_text() == "Waiting for this run"
    feed.send([feed.event(ev.RUN_STARTED, {"job_name": "just started", "host": "h", "pid": 1, "api": "cli_run"})])
    feed.log("first line")
    page.locator(ROWS, has_text="first line").wait_for(timeout=10_000)  # the page looked again, and found it
    assert page.url.endswith(f"/runs/{feed.uuid}?waited=" + page.url.rsplit("=", 1)[1])
    page.errors.clear()  # (the 404s are logged by the browser as failed loads)
    # an address that is no run's id is not waited for, nor one that says it waited enough
    response = page.goto(account.server.url + "/runs/no-such-run")
    assert response.status == 404 and page.locator("h1").inner_text() == "Run not found"
    for waited in ("10", "²", "9" * 5000, "-1"):
        response = page.goto(account.server.url + f"/runs/{RunFeed(account, start=False).uuid}?waited={waited}")
        assert response.status == 404 and page.locator("h1").inner_text() == "Run not found", waited
    page.errors.clear()


def test_pages_load_nothing_from_other_sites(open_page, account):
    feed = RunFeed(account, "same-origin")
    feed.metric("loss", 1.0, step=1)
    feed.log("hello")
    page = open_page()
    requested = []
    page.on("request", lambda req: requested.append(req.url))
    sign_in(page, account)
    page.goto(account.server.url + f"/runs/{feed.uuid}")
    page.locator(".chart canvas").wait_for()
    assert requested
    foreign = [url for url in requested if not url.startswith(account.server.url + "/")]
    assert foreign == []
    policy = requests.get(account.server.url + "/login", timeout=10).headers["content-security-policy"]
    assert "script-src 'self';" in policy


def test_live_updates_resume_after_the_server_restarts(open_page, server_factory):
    server = server_factory()
    account = server.signup()
    feed = RunFeed(account, "restarts")
    feed.log("before the restart")
    page = open_run(open_page, account, feed)
    runs_page = open_page()
    sign_in(runs_page, account)
    runs_page.locator(".run-row").wait_for()

    server.stop()
    server.start()
    feed.log("after the restart")
    page.locator(ROWS, has_text="after the restart").wait_for(timeout=15_000)
    assert row_texts(page) == ["before the restart", "after the restart"]
    later = RunFeed(account, "restarts")
    runs_page.locator(f".run-row[data-uuid='{later.uuid}']").wait_for(timeout=15_000)
    # While the server was away the browser logged failed connections: expected here.
    page.errors.clear()
    runs_page.errors.clear()


def test_a_silent_run_shows_as_lost_and_comes_back(open_page, server_factory):
    server = server_factory("--lost-timeout", "1")
    account = server.signup()
    feed = RunFeed(account, "goes-quiet")
    feed.log("working")
    page = open_run(open_page, account, feed)
    page.locator("#run-status .badge[data-status='lost']").wait_for()
    assert page.locator("#run-status .badge").inner_text() == "Lost"
    feed.log("back again")
    page.locator("#run-status .badge[data-status='running']").wait_for()
    # The status and the line come by separate events: wait for the row itself.
    page.locator(ROWS, has_text="back again").wait_for()
    assert row_texts(page) == ["working", "back again"]

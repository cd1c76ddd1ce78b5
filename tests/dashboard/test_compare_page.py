"""A run name's page in real Chromium, on a desktop and a phone: the runs as a table to sort,
filter and choose columns of, runs selected and their metrics overlaid (a colour per run, the
legend naming the params that differ), the charts' x axis, log scale and smoothing, the CSV
download, another account's runs kept out and untrusted text kept as text.

Screenshots go to test-artifacts/dashboard/ (ignored by git)."""

from __future__ import annotations

import csv

import pytest

from hyperdash import events as ev

from .support import DESKTOP, RunFeed, sign_in, wait_until

pytestmark = pytest.mark.browser

PHONE = {"width": 390, "height": 844}
# What the untrusted text below would make, were it ever taken for HTML.
HOSTILE_ELEMENTS = "#compare img, #compare script, #compare svg[onload], #compare b, #compare i"


def _internal(feed: RunFeed, name: str, value: float) -> None:
    feed.send([feed.event(ev.METRIC, {"name": name, "value": value, "timestamp": ev.now_ms(),
                                      "is_internal": True, "step": None})])


def _sweep(account, name: str = "sweep") -> list[RunFeed]:
    """Three runs of ``name``: lr differs, batch is the same, one ends in failure; each with a
    loss and an accuracy by step and an internal metric."""
    feeds = []
    for i, (lr, final) in enumerate(((0.1, 0.40), (0.01, 0.20), (0.001, 0.30))):
        feed = RunFeed(account, name, host=f"gpu-{i}")
        feed.params(lr=lr, batch=32)
        for step in range(1, 6):
            feed.metric("loss", final + (5 - step) * 0.1, step=step * 10)
            feed.metric("accuracy", 0.5 + step * 0.05 + i * 0.01, step=step * 10)
        _internal(feed, "hd_cpu_percent", 40.0 + i)
        feed.end(ev.FAILURE if i == 2 else ev.SUCCESS, exit_code=1 if i == 2 else 0)
        feeds.append(feed)
    return feeds


def _open(open_page, account, name: str, viewport=DESKTOP):
    page = open_page(viewport)
    sign_in(page, account, "/compare?name=" + name)
    wait_until(page, "document.getElementById('compare').dataset.ready === '1'")
    return page


def _rows(page) -> list[str]:
    return page.locator("#table-body tr").evaluate_all("rows => rows.map(r => r.dataset.uuid)")


def _column(page, key: str) -> list[str]:
    return page.locator(f"#table-body td[data-key='{key}']").all_inner_texts()


def _legend(page, metric: str) -> list[str]:
    labels = page.locator(f".overlay-chart[data-metric='{metric}'] .u-legend .u-series .u-label").all_inner_texts()
    return labels[1:]  # the first is the x axis


def test_compare_a_names_runs_on_a_desktop(open_page, account, hyperdash_server, artifacts):
    feeds = _sweep(account)
    other = hyperdash_server.signup()
    stranger = RunFeed(other, "sweep", host="not-mine")
    stranger.params(lr=99)
    stranger.metric("loss", 123.0, step=1)
    page = _open(open_page, account, "sweep")

    # Every run of the name, newest first; another account's never.
    assert _rows(page) == [f.uuid for f in reversed(feeds)]
    assert page.locator("#run-count").inner_text() == "3 runs"
    assert "not-mine" not in page.content()
    headers = page.locator("#table-head th").all_inner_texts()
    assert [t.split("\n")[0].strip(" ▲▼") for t in headers] == [
        "Started", "Status", "Duration", "Host", "batch", "lr", "accuracy (last)", "accuracy (max)",
        "loss (last)", "loss (min)"]
    assert "hd_cpu_percent" not in page.content(), "internal metrics are not job metrics"
    assert _column(page, "best:loss") == ["0.3", "0.2", "0.4"]
    assert _column(page, "status") == ["Failure", "Success", "Success"]

    # Sort by the best loss, then the other way.
    page.click("th[data-key='best:loss'] button.sort")
    assert _column(page, "best:loss") == ["0.2", "0.3", "0.4"]
    assert page.get_attribute("th[data-key='best:loss']", "aria-sort") == "ascending"
    page.click("th[data-key='best:loss'] button.sort")
    assert _column(page, "best:loss") == ["0.4", "0.3", "0.2"]
    # Best of a metric is a choice: the loss's max instead of its min.
    page.click("th[data-key='best:loss'] button.best-toggle")
    assert "loss (max)" in page.locator("th[data-key='best:loss']").inner_text()
    assert _column(page, "best:loss") == ["0.8", "0.7", "0.6"]
    page.click("th[data-key='best:loss'] button.best-toggle")

    # Filter: a column and a comparison, then text in any column.
    page.select_option("#filter-column", "param:lr")
    page.fill("#filter-text", ">= 0.01")
    wait_until(page, "document.querySelectorAll('#table-body tr').length === 2")
    assert sorted(_column(page, "param:lr")) == ["0.01", "0.1"]
    page.select_option("#filter-column", "")
    page.fill("#filter-text", "gpu-2")
    wait_until(page, "document.querySelectorAll('#table-body tr').length === 1")
    assert page.locator("#run-count").inner_text() == "1 of 3 runs"
    page.fill("#filter-text", "")
    wait_until(page, "document.querySelectorAll('#table-body tr').length === 3")

    # Select two runs: their metrics overlaid, one chart per metric, a series per run.
    page.check(f"tr[data-uuid='{feeds[0].uuid}'] input.select")
    page.check(f"tr[data-uuid='{feeds[1].uuid}'] input.select")
    wait_until(page, "document.getElementById('compare').dataset.overlay === '2'")
    charts = page.locator(".overlay-chart")
    assert charts.evaluate_all("cs => cs.map(c => c.dataset.metric)") == ["accuracy", "loss"]
    assert charts.evaluate_all("cs => cs.map(c => c.dataset.series)") == ["2", "2"]
    # The legend names the params that differ (lr), not those alike (batch).
    assert _legend(page, "loss") == ["lr=0.01", "lr=0.1"]
    assert page.locator(".overlay-chart[data-metric='loss']").get_attribute("data-axis") == "step"
    page.screenshot(path=artifacts / "compare-desktop-overlay.png", full_page=True)

    # Hovering shows each run's value at that step.
    box = page.locator(".overlay-chart[data-metric='loss'] .u-over").bounding_box()
    page.mouse.move(box["x"] + box["width"] - 2, box["y"] + box["height"] / 2)
    values = page.locator(".overlay-chart[data-metric='loss'] .u-legend .u-series .u-value").all_inner_texts()
    assert values[0] == "step 50" and values[1:] == ["0.2", "0.4"], values

    # The x axis by time since each run started, a log scale, smoothing.
    page.select_option("#overlay-axis", "time")
    assert charts.evaluate_all("cs => cs.map(c => c.dataset.axis)") == ["time", "time"]
    page.check("#chart-log")
    assert charts.evaluate_all("cs => cs.map(c => c.dataset.log)") == ["true", "true"]
    page.locator("#chart-smooth").fill("0.6")
    assert charts.evaluate_all("cs => cs.map(c => c.dataset.smooth)") == ["0.6", "0.6"]
    assert "log scale, smoothed 0.6" in page.locator(".overlay-chart[data-metric='loss'] .chart-plot") \
        .get_attribute("aria-label")
    assert _legend(page, "loss") == ["lr=0.01", "lr=0.1"], "the same runs, drawn anew"
    page.screenshot(path=artifacts / "compare-desktop-log-smoothed.png", full_page=True)

    # The choices last: a reload keeps the axis, the scale and the smoothing.
    page.reload()
    wait_until(page, "document.getElementById('compare').dataset.ready === '1'")
    assert page.locator("#overlay-axis").input_value() == "time"
    assert page.locator("#chart-log").is_checked()

    # "All runs": every run of the name overlaid.
    page.click("#select-all-runs")
    wait_until(page, "document.getElementById('compare').dataset.overlay === '2'"
               " && document.querySelector('.overlay-chart').dataset.series === '3'")
    assert _legend(page, "accuracy") == ["lr=0.001", "lr=0.01", "lr=0.1"]

    # The table as a CSV download, opened as a spreadsheet app would.
    with page.expect_download() as download:
        page.click("#export-csv")
    path = download.value.path()
    assert download.value.suggested_filename == "sweep.csv"
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["uuid"] for r in rows] == [f.uuid for f in reversed(feeds)]
    assert [r["loss (min)"] for r in rows] == ["0.3", "0.2", "0.4"]
    assert [r["param:lr"] for r in rows] == ["0.001", "0.01", "0.1"]
    with page.expect_download() as download:
        page.click("#export-json")
    assert download.value.suggested_filename == "sweep.json"


def test_on_a_phone_the_table_scrolls_sideways_with_its_first_column_kept(open_page, account, artifacts):
    feeds = _sweep(account, "phone-sweep")
    page = _open(open_page, account, "phone-sweep", PHONE)
    scroller = page.locator("#table-scroll")
    assert scroller.evaluate("s => s.scrollWidth > s.clientWidth"), "wide tables scroll, not squeeze"
    assert page.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth"), \
        "the page itself does not"
    first = page.locator(f"tr[data-uuid='{feeds[0].uuid}'] th.sticky")
    before = first.bounding_box()
    scroller.evaluate("s => { s.scrollLeft = s.scrollWidth; }")
    wait_until(page, "document.getElementById('table-scroll').scrollLeft > 50")
    after = first.bounding_box()
    assert abs(after["x"] - before["x"]) < 1, "the run's column stays in view"
    page.screenshot(path=artifacts / "compare-phone-scrolled.png")

    # Fewer columns, chosen by the user, and remembered.
    page.click("#columns-menu summary")
    for key in ("host", "duration", "last:accuracy", "last:loss", "param:batch"):
        page.uncheck(f"#columns-list input[data-key='{key}']")
    page.click("#columns-menu summary")
    headers = page.locator("#table-head th").evaluate_all("ths => ths.map(t => t.dataset.key || 'started')")
    assert headers == ["started", "status", "param:lr", "best:accuracy", "best:loss"]
    page.reload()
    wait_until(page, "document.getElementById('compare').dataset.ready === '1'")
    assert page.locator("#table-head th").count() == 5
    page.screenshot(path=artifacts / "compare-phone-columns.png")

    page.click("#select-all-runs")
    wait_until(page, "document.getElementById('compare').dataset.overlay === '2'")
    assert page.locator(".overlay-chart[data-metric='loss']").get_attribute("data-series") == "3"
    page.locator(".overlay-chart[data-metric='loss']").scroll_into_view_if_needed()
    chart = page.locator(".overlay-chart[data-metric='loss'] canvas").bounding_box()
    assert chart["width"] <= PHONE["width"] and chart["width"] > 250
    page.screenshot(path=artifacts / "compare-phone-overlay.png", full_page=True)


def test_the_page_is_linked_from_the_runs_list_and_a_runs_page(open_page, account):
    feeds = _sweep(account, "linked name/with ?&#")
    page = open_page(DESKTOP)
    sign_in(page, account, "/")
    group = page.locator(".group").filter(has_text="linked name/with ?&#")
    group.locator("a.compare-link").click()
    wait_until(page, "document.getElementById('compare') && document.getElementById('compare').dataset.ready === '1'")
    assert page.locator("#compare-name").inner_text() == "linked name/with ?&#"
    assert len(_rows(page)) == 3

    # The page of a name from a run's page.
    page.click(f"tr[data-uuid='{feeds[1].uuid}'] th a")
    page.wait_for_url(f"**/runs/{feeds[1].uuid}")
    page.click("#compare-link")
    wait_until(page, "document.getElementById('compare') && document.getElementById('compare').dataset.ready === '1'")
    assert page.locator("#compare-name").inner_text() == "linked name/with ?&#"


def test_untrusted_names_params_and_metrics_stay_text(open_page, account, artifacts):
    name = "<img src=x onerror=alert(1)>"
    feed = RunFeed(account, name, host="<b>host</b>")
    feed.params(**{"<i>p</i>": "<script>alert(2)</script>", "lr": 1})
    feed.metric("<svg onload=alert(3)>", 1.0, step=1)
    second = RunFeed(account, name)
    second.params(**{"<i>p</i>": "other", "lr": 1})
    second.metric("<svg onload=alert(3)>", 2.0, step=1)
    page = _open(open_page, account, name)
    assert page.locator("#compare-name").inner_text() == name
    assert page.locator(HOSTILE_ELEMENTS).count() == 0
    assert page.locator(f"tr[data-uuid='{feed.uuid}'] td[data-key='host']").inner_text() == "<b>host</b>"
    page.click("#select-all-runs")
    wait_until(page, "document.getElementById('compare').dataset.overlay === '1'")
    assert _legend(page, "<svg onload=alert(3)>") == ["<i>p</i>=other", "<i>p</i>=<script>alert(2)</script>"]
    assert page.locator(HOSTILE_ELEMENTS).count() == 0
    page.screenshot(path=artifacts / "compare-hostile-text.png", full_page=True)


def test_a_runs_page_charts_have_a_log_scale_smoothing_and_hover_values(open_page, account):
    feed = RunFeed(account, "run-look")
    for step in range(1, 11):
        feed.metric("loss", 10.0 / step, step=step)
    page = open_page(DESKTOP)
    sign_in(page, account, f"/runs/{feed.uuid}")
    chart = page.locator(".chart[data-metric='loss']")
    chart.locator("canvas").wait_for()
    assert chart.locator(".latest").inner_text() == "1"

    box = chart.locator(".u-over").bounding_box()
    page.mouse.move(box["x"] + 1, box["y"] + box["height"] / 2)
    assert chart.locator(".latest").inner_text() == "step 1: 10"
    page.mouse.move(0, 0)
    assert chart.locator(".latest").inner_text() == "1", "the last value again once the pointer leaves"

    page.check("#chart-log")
    assert chart.get_attribute("data-log") == "true"
    page.locator("#chart-smooth").fill("0.5")
    assert chart.get_attribute("data-smooth") == "0.5"
    chart.locator("canvas").wait_for()
    page.mouse.move(box["x"] + box["width"] - 1, box["y"] + box["height"] / 2)
    assert chart.locator(".latest").inner_text().startswith("step 10: 1 (\u2248 ")
    # Remembered for the next run's page.
    page.reload()
    page.locator(".chart[data-metric='loss'] canvas").wait_for()
    assert page.locator("#chart-log").is_checked()
    assert page.locator(".chart[data-metric='loss']").get_attribute("data-smooth") == "0.5"


def test_the_page_without_a_name_says_what_it_needs(open_page, account):
    page = open_page(DESKTOP)
    sign_in(page, account, "/compare")
    assert page.locator("h1").inner_text() == "Which runs?"
    resp = page.request.get(account.server.url + "/compare?name=")
    assert resp.status == 404
    page.errors.clear()  # the 404 page is logged by the browser as a failed load

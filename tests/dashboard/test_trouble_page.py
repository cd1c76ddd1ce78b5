"""Stalls and metric rules in real Chromium: the stalled badge, live, on the runs list and the
run's page; rules added from the page (for the run, for every run of its name), a malformed one
refused with the server's words, firings listed live and marked at their point on the chart;
the stall window of a name set from the page."""

from __future__ import annotations

import time

import pytest

from hyperdash import events as ev

from .support import PHONE, RunFeed, open_run, sign_in, wait_until

pytestmark = pytest.mark.browser


def stalling_run(account, name: str, window_s: float = 1.0) -> RunFeed:
    feed = RunFeed(account, name, start=False)
    feed.send([feed.event(ev.RUN_STARTED, {"job_name": name, "host": "gpu-box-1", "pid": 7,
                                           "stall_after": window_s})])
    return feed


def test_a_stalled_run_is_marked_live_and_clears_when_it_speaks(open_page, account, artifacts):
    feed = stalling_run(account, "stuck-loader")
    feed.log("epoch 1")
    time.sleep(1.1)
    feed.heartbeat()  # alive past its window of 1 s, with no progress: stalled
    runs = open_page(PHONE)
    sign_in(runs, account, "/?name=stuck-loader")
    row = f".run-row[data-uuid='{feed.uuid}']"
    runs.locator(f"{row} .badge.stalled").wait_for(timeout=15_000)
    runs.screenshot(path=str(artifacts / "runs-stalled-phone.png"))
    assert runs.locator(f"{row} .badge").first.get_attribute("data-status") == "running"
    page = open_run(open_page, account, feed)
    page.locator("#run-status .badge.stalled").wait_for()
    assert page.locator("#run-status .badge.stalled").inner_text() == "Stalled"
    assert page.locator("#run-status .badge").first.get_attribute("data-status") == "running"
    feed.log("epoch 2")
    page.locator("#run-status .badge.stalled").wait_for(state="detached")
    runs.locator(f"{row} .badge.stalled").wait_for(state="detached")
    assert page.locator("#run-status .badge").count() == 1
    # the page says where the run's window comes from
    assert "set by the job" in page.locator("#stall-info").inner_text()


def test_rules_from_the_page_fire_live_with_a_marker_on_the_chart(open_page, account, artifacts):
    feed = RunFeed(account, "ruled")
    for step, value in enumerate([4.0, 5.0, 6.0]):
        feed.metric("loss", value, step=step)
    page = open_run(open_page, account, feed)
    page.locator(".chart[data-metric=loss] canvas").wait_for()
    page.fill("#rule-metric", "loss")
    page.select_option("#rule-kind", "above")
    page.fill("#rule-value", "10")
    page.click("#rule-form button[type=submit]")
    page.locator("#rules li", has_text="loss is above 10").wait_for()
    assert page.locator("#rules li .scope").inner_text() == "this run"
    # malformed: the server's reason shows, nothing is added
    page.select_option("#rule-kind", "patience")
    page.fill("#rule-value", "0")
    page.click("#rule-form button[type=submit]")
    page.locator("#rule-error:not([hidden])").wait_for()
    assert "'patience' must be a whole number" in page.locator("#rule-error").inner_text()
    assert page.locator("#rules li").count() == 1
    assert [e for e in page.errors if "400" not in e] == []
    page.errors.clear()  # the browser logs the refused request's 400 as an error

    feed.metric("loss", 12.0, step=3)
    feed.metric("loss", 8.0, step=4)
    page.locator("#firings li", has_text="loss is above 10").wait_for()
    assert page.locator("#firings li .where").inner_text() == "12.0 at step 3"
    assert page.locator("#alerts-count").inner_text() == "1"
    marker = page.locator(".chart[data-metric=loss] .alert-marker")
    marker.wait_for()
    assert marker.count() == 1 and "loss is above 10" in marker.get_attribute("title")
    # at its point: step 3 of 0..4 across the plot, value 12 the top of the line
    where = marker.evaluate("""m => {
        const over = m.parentElement.getBoundingClientRect(), box = m.getBoundingClientRect();
        return [(box.left + box.width / 2 - over.left) / over.width,
                (box.top + box.height / 2 - over.top) / over.height];
    }""")
    assert abs(where[0] - 0.75) < 0.03, where
    assert where[1] < 0.15, where
    page.screenshot(path=str(artifacts / "run-alerts-desktop.png"))
    page.locator(".chart[data-metric=loss]").screenshot(path=str(artifacts / "chart-alert-marker.png"))
    # the page opened later shows the same, from the store
    again = open_run(open_page, account, feed)
    again.locator(".chart[data-metric=loss] .alert-marker").wait_for()
    assert again.locator("#firings li").count() == 1


def test_a_rule_for_every_run_of_a_name_and_a_nan_marker(open_page, account):
    first = RunFeed(account, "nightly-sweep")
    first.metric("loss", 1.0, step=0)
    page = open_run(open_page, account, first)
    page.fill("#rule-metric", "loss")
    page.select_option("#rule-kind", "nan")
    page.check("#rule-form input[name=every]")
    page.click("#rule-form button[type=submit]")
    page.locator("#rules li", has_text="loss is NaN or infinite").wait_for()
    assert page.locator("#rules li .scope").inner_text() == "every run of nightly-sweep"

    second = RunFeed(account, "nightly-sweep")
    second.metric("loss", 2.0, step=0)
    second.send([second.event(ev.METRIC, {"name": "loss", "value": "NaN", "step": 1, "is_internal": False})])
    second.metric("loss", 1.5, step=2)
    other = open_run(open_page, account, second)
    other.locator("#firings li", has_text="loss is NaN or infinite").wait_for()
    assert other.locator("#firings li .where").inner_text() == "NaN at step 1"
    other.locator(".chart[data-metric=loss] .alert-marker.nonfinite").wait_for()
    assert other.locator(".chart[data-metric=loss]").get_attribute("data-points") == "2"


def test_the_stall_window_of_a_name_is_set_from_the_page(open_page, account):
    feed = RunFeed(account, "windowed")
    page = open_run(open_page, account, feed)
    wait_until(page, "document.getElementById('stall-info').dataset.source === 'server'")
    page.fill("#stall-window", "soon")
    page.click("#stall-form button[type=submit]")
    page.locator("#stall-error:not([hidden])").wait_for()
    assert "a duration is a number" in page.locator("#stall-error").inner_text()
    assert [e for e in page.errors if "400" not in e] == []
    page.errors.clear()  # the browser logs the refused request's 400 as an error
    page.fill("#stall-window", "10m")
    page.click("#stall-form button[type=submit]")
    wait_until(page, "document.getElementById('stall-info').dataset.source === 'name'")
    assert page.locator("#stall-info").inner_text().startswith("Stalled after 10m 00s")
    assert account.get("/api/v1/stalls").json()["names"] == [{"name": "windowed", "stall_after_s": 600.0}]


def test_the_alerts_tab_on_a_phone(open_page, account, artifacts):
    feed = RunFeed(account, "phone-alerts")
    feed.send([feed.event(ev.ALERT, {"metric": "loss", "above": 1})])
    feed.metric("loss", 2.0, step=0)
    page = open_run(open_page, account, feed, viewport=PHONE)
    page.click(".tabs [data-tab=alerts]")
    page.locator("#firings li", has_text="loss is above 1").wait_for()
    assert page.locator("#log").is_hidden() and page.locator("#metrics-panel").is_hidden()
    for selector in ("#firings li", "#rules li", "#rule-form button[type=submit]", "#stall-info"):
        box = page.locator(selector).first.bounding_box()
        assert box is not None and 0 <= box["x"] and box["x"] + box["width"] <= PHONE["width"] + 0.5, selector
    assert page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth") == 0
    page.screenshot(path=str(artifacts / "run-alerts-phone.png"), full_page=True)
    page.click(".tabs [data-tab=metrics]")
    page.locator(".chart[data-metric=loss] .alert-marker").wait_for()
    assert page.locator("#alerts-panel").is_hidden()


def test_a_shared_link_shows_the_runs_alerts_to_read_on_a_phone(open_page, account):
    feed = RunFeed(account, "shared-alerts")
    feed.send([feed.event(ev.ALERT, {"metric": "loss", "above": 1})])
    feed.metric("loss", 2.0, step=0)
    made = account.server.session.post(account.server.url + f"/api/v1/runs/{feed.uuid}/shares", timeout=10,
                                       headers={ev.AUTH_HEADER: account.api_key})
    assert made.status_code == 201, made.text

    guest = open_page(PHONE, is_mobile=True, has_touch=True)  # no cookies: signed out
    guest.goto(made.json()["url"])
    guest.click(".tabs [data-tab=alerts]")
    guest.locator("#firings li", has_text="loss is above 1").wait_for()
    assert guest.locator("#alerts-count").inner_text() == "1"
    assert guest.locator("#rules li").all_inner_texts()[0].startswith("loss is above 1")
    # To read: no form to add a rule, no Delete, no stall window to set.
    for selector in ("#rule-form", "#stall-form", "#stall-info", "#rules li button"):
        assert guest.locator(selector).count() == 0, selector
    assert guest.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth") <= 0
    # A rule that fires while the page is open (again, after the metric recovered) shows live.
    feed.metric("loss", 0.5, step=1)
    feed.metric("loss", 3.0, step=2)
    guest.locator("#firings li").nth(1).wait_for()
    assert guest.locator("#alerts-count").inner_text() == "2"
    guest.click(".tabs [data-tab=metrics]")
    guest.locator(".chart[data-metric=loss] .alert-marker").first.wait_for()

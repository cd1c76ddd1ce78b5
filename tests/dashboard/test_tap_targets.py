"""On a touch screen every control is big enough to tap (about 40 px or more, a checkbox with its
label as the hit area); the desktop layout, for a mouse, stays as compact as it was."""

from __future__ import annotations

import pytest

from .support import DESKTOP, TOUCH_PHONE, RunFeed, open_run, sign_in

pytestmark = pytest.mark.browser

MIN = 40

# The box of each element a selector finds, and of the label a checkbox is tapped through.
BOXES = """(selector) => [...document.querySelectorAll(selector)]
  .filter((el) => el.getClientRects().length)
  .map((el) => {
    const r = el.getBoundingClientRect();
    const label = el.closest('label');
    const l = label ? label.getBoundingClientRect() : r;
    return {html: el.outerHTML.slice(0, 80), w: r.width, h: r.height, lw: l.width, lh: l.height};
  })"""


def small(page, selector: str, *, checkbox: bool = False) -> list[dict]:
    """The elements ``selector`` finds that are too small to tap (checkboxes: their label too)."""
    boxes = page.evaluate(BOXES, selector)
    assert boxes, f"nothing on the page for {selector}"
    if checkbox:
        return [b for b in boxes if b["w"] < 20 or b["h"] < 20 or b["lh"] < MIN or b["lw"] < MIN]
    return [b for b in boxes if b["h"] < MIN]


def assert_tappable(page, targets: dict[str, bool]) -> None:
    assert page.evaluate("matchMedia('(pointer: coarse)').matches")
    too_small = {sel: [(b["html"], b["w"], b["h"], b["lw"], b["lh"]) for b in boxes]
                 for sel, checkbox in targets.items() if (boxes := small(page, sel, checkbox=checkbox))}
    assert not too_small, too_small


def running_run(account) -> RunFeed:
    feed = RunFeed(account, "tap")
    feed.log("hello")
    feed.metric("loss", 1.0, step=1)
    return feed


def test_a_run_page_and_the_runs_list_can_be_tapped_on_a_phone(open_page, account, artifacts):
    feed = running_run(account)
    page = open_run(open_page, account, feed, **TOUCH_PHONE)
    assert_tappable(page, {
        "#settings-link": False, "#sign-out": False, "a.back": False,
        ".run-title .actions button:not([hidden])": False, "button[role=tab]": False,
    })
    page.tap("button[role=tab][data-tab=metrics]")
    page.locator("#chart-axis").wait_for()
    assert_tappable(page, {"#chart-axis": False, "#chart-log": True})
    page.screenshot(path=str(artifacts / "tap-run-metrics.png"))

    page.goto(account.server.url + "/")
    page.locator(".run-row").first.wait_for()
    assert_tappable(page, {".group-head h2 a": False, ".group-head .compare-link": False,
                           "#filter-archived": True})
    page.screenshot(path=str(artifacts / "tap-runs.png"))


def test_the_compare_and_settings_pages_can_be_tapped_on_a_phone(open_page, account, artifacts):
    running_run(account)
    page = open_page(**TOUCH_PHONE)
    sign_in(page, account, "/compare?name=tap")
    page.locator("button.best-toggle").first.wait_for()
    assert_tappable(page, {"button.sort": False, "button.best-toggle": False})
    page.screenshot(path=str(artifacts / "tap-compare.png"))

    page.goto(account.server.url + "/settings")
    page.locator("input[name=event]").first.wait_for(state="attached")
    assert_tappable(page, {"input[name=event], input[name=defaults]": True})
    page.locator(".event-choice").first.screenshot(path=str(artifacts / "tap-settings.png"))


def test_the_desktop_layout_keeps_its_sizes(open_page, account):
    feed = running_run(account)
    page = open_run(open_page, account, feed, DESKTOP)
    assert not page.evaluate("matchMedia('(pointer: coarse)').matches")
    sizes = {sel: page.evaluate(BOXES, sel)[0] for sel in ("#sign-out", "#notify", "a.back")}
    assert round(sizes["#sign-out"]["h"]) == 36 and round(sizes["#notify"]["h"]) == 32
    assert round(sizes["a.back"]["h"]) < 30
    page.goto(account.server.url + "/")
    box = page.evaluate(BOXES, "#filter-archived")[0]
    assert round(box["w"]) == 13 and round(box["h"]) == 13

"""Small controls on a phone (Chromium as a Pixel 7), and a run's end said once in the runs list:
the compare page's filter shows its whole column name and hint, the runs page's Storage link is
as wide as its word, and a killed or failed run says how it ended once.

Screenshots go to test-artifacts/dashboard/ (ignored by git)."""

from __future__ import annotations

import pytest

from hyperdash import events as ev

from .support import DESKTOP, PHONE, TOUCH_PHONE, RunFeed, sign_in, wait_until

pytestmark = pytest.mark.browser

# How much of a text its control leaves out: the text's width in the control's own font, less the
# room inside the control's padding (0 when it all shows).
CUT_OFF = """([selector, text]) => {
  const el = document.querySelector(selector);
  const style = getComputedStyle(el);
  const ctx = document.createElement('canvas').getContext('2d');
  ctx.font = `${style.fontWeight} ${style.fontSize} ${style.fontFamily}`;
  const room = el.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
  return Math.max(0, Math.ceil(ctx.measureText(text).width - room));
}"""


def test_a_killed_or_failed_run_says_how_it_ended_once(open_page, account):
    killed = RunFeed(account, "sweep")
    killed.end(ev.KILLED, exit_code=None, signal="SIGTERM")
    failed = RunFeed(account, "sweep")
    failed.end(ev.FAILURE, exit_code=2)
    raised = RunFeed(account, "sweep")
    raised.log("Traceback (most recent call last):", '  File "train.py", line 1, in <module>',
               "KeyError: 'lr'", stream=ev.STDERR)
    raised.end(ev.FAILURE, exit_code=1)
    page = open_page(**TOUCH_PHONE)
    sign_in(page, account)
    page.locator(f".run-row[data-uuid='{raised.uuid}'] .failure").wait_for()

    def row(feed: RunFeed) -> tuple[str, str]:
        found = page.locator(f".run-row[data-uuid='{feed.uuid}']")
        return found.locator(".outcome").inner_text(), found.locator(".failure").inner_text()

    assert row(killed) == ("", "killed by SIGTERM")
    assert row(failed) == ("", "exit code 2")
    # A traceback's last line is another fact than the exit code: both stay.
    assert row(raised) == ("exit 1", "KeyError: 'lr'")


def _sweep(account, name: str) -> None:
    for lr in (0.1, 0.01):
        feed = RunFeed(account, name)
        feed.params(lr=lr)
        feed.end(ev.SUCCESS)


def _compare(open_page, account, name: str, **options):
    page = open_page(**options)
    sign_in(page, account, "/compare?name=" + name)
    wait_until(page, "document.getElementById('compare').dataset.ready === '1'")
    return page


@pytest.mark.parametrize("width", [TOUCH_PHONE["viewport"]["width"], PHONE["width"]])
def test_the_compare_filter_shows_its_column_and_hint_whole_on_a_phone(open_page, account, artifacts, width):
    _sweep(account, "phone-filter")
    phone = {**TOUCH_PHONE, "viewport": {**TOUCH_PHONE["viewport"], "width": width}}
    page = _compare(open_page, account, "phone-filter", **phone)
    page.screenshot(path=str(artifacts / f"phone-compare-filter-{width}.png"))
    select, text = page.locator("#filter-column"), page.locator("#filter-text")
    assert page.evaluate(CUT_OFF, ["#filter-column", select.evaluate("s => s.selectedOptions[0].text")]) == 0
    assert page.evaluate(CUT_OFF, ["#filter-text", text.get_attribute("placeholder")]) == 0
    # Still within the screen, and still a finger's size.
    for control in (select, text, page.locator("#columns-menu summary")):
        box = control.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= width
        assert box["height"] >= 44


@pytest.mark.parametrize("width", [TOUCH_PHONE["viewport"]["width"], PHONE["width"]])
def test_the_runs_status_filter_shows_needs_attention_whole_on_a_phone(open_page, account, artifacts, width):
    RunFeed(account, "train").end(ev.FAILURE, exit_code=1)
    page = open_page(**{**TOUCH_PHONE, "viewport": {**TOUCH_PHONE["viewport"], "width": width}})
    sign_in(page, account, "/?status=attention")
    page.locator(".run-row").first.wait_for()
    page.screenshot(path=str(artifacts / f"phone-runs-attention-{width}.png"))
    assert page.evaluate(CUT_OFF, ["#filter-status", "Needs attention"]) == 0
    box = page.locator("#filter-status").bounding_box()
    assert box["x"] + box["width"] <= width


def test_the_compare_filter_keeps_one_row_on_a_desktop(open_page, account):
    _sweep(account, "desk-filter")
    page = _compare(open_page, account, "desk-filter", viewport=DESKTOP)
    tops = {round(page.locator(s).bounding_box()["y"])
            for s in ("#filter-column", "#filter-text")}
    assert len(tops) == 1
    assert page.evaluate(CUT_OFF, ["#filter-text", page.locator("#filter-text").get_attribute("placeholder")]) == 0


def test_the_storage_link_is_as_wide_as_its_word_on_a_phone(open_page, account, artifacts):
    RunFeed(account, "train").end(ev.SUCCESS)
    page = open_page(**TOUCH_PHONE)
    sign_in(page, account)
    page.locator(".run-row").first.wait_for()
    page.screenshot(path=str(artifacts / "phone-runs-head.png"))
    link = page.locator("#storage-link").bounding_box()
    heading = page.locator(".page-head h1").bounding_box()
    assert link["width"] < TOUCH_PHONE["viewport"]["width"] / 3, link
    assert abs(link["x"] - heading["x"]) <= 1, (link, heading)

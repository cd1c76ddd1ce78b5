"""Small text stays readable on a phone (12 px or more), and status badges meet WCAG AA's 4.5:1
contrast in both colour schemes."""

from __future__ import annotations

import pytest

from hyperdash import events as ev

from .support import TOUCH_PHONE, RunFeed, open_run, sign_in

pytestmark = pytest.mark.browser

FONT_SIZES = """(selector) => [...document.querySelectorAll(selector)]
  .map((el) => parseFloat(getComputedStyle(el).fontSize))"""

# Each badge's contrast: its text colour against its background, laid over the first opaque
# background behind it (the dark scheme's badge backgrounds are translucent).
CONTRASTS = """() => {
  const rgba = (s) => { const [r, g, b, a = 1] = s.match(/[\\d.]+/g).map(Number); return [r, g, b, a]; };
  const over = (top, below) => top.slice(0, 3).map((c, i) => c * top[3] + below[i] * (1 - top[3]));
  const linear = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
  const lum = (c) => { const [r, g, b] = c.map(linear); return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
  const behind = (el) => {
    const layers = [];
    for (let e = el; e; e = e.parentElement) {
      const c = rgba(getComputedStyle(e).backgroundColor);
      if (c[3] > 0) layers.push(c);
      if (c[3] === 1) break;
    }
    let color = [255, 255, 255];
    for (const layer of layers.reverse()) color = over(layer, color);
    return color;
  };
  return [...document.querySelectorAll('.badge')].map((el) => {
    const bg = behind(el);
    const fg = over(rgba(getComputedStyle(el).color), bg);
    const [hi, lo] = [lum(fg), lum(bg)].sort((a, b) => b - a);
    return [el.dataset.status, (hi + 0.05) / (lo + 0.05)];
  });
}"""


def test_a_run_pages_fact_labels_and_the_compare_tables_toggles_are_12px_on_a_phone(open_page, account):
    feed = RunFeed(account, "small-text")
    feed.metric("loss", 1.0, step=1)
    page = open_run(open_page, account, feed, **TOUCH_PHONE)
    sizes = page.evaluate(FONT_SIZES, ".facts dt")
    assert sizes and min(sizes) >= 12, sizes

    page.goto(account.server.url + "/compare?name=small-text")
    page.locator("button.best-toggle").first.wait_for()
    page.locator(".runs-table button.sort .arrow:not(:empty)").first.wait_for()
    for selector in (".runs-table button.best-toggle", ".runs-table button.sort .arrow"):
        sizes = page.evaluate(FONT_SIZES, selector)
        assert sizes and min(sizes) >= 12, (selector, sizes)


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_status_badges_have_enough_contrast(open_page, account, scheme):
    for status in (ev.SUCCESS, ev.FAILURE, ev.USER_CANCELED, ev.KILLED):
        RunFeed(account, f"ended-{status}").end(status, exit_code=None if status == ev.KILLED else 1)
    RunFeed(account, "running")
    page = open_page(color_scheme=scheme)
    sign_in(page, account, "/")
    page.locator(".badge[data-status=running]").first.wait_for()
    contrasts = dict(page.evaluate(CONTRASTS))
    assert {"running", "success", "failure"} <= contrasts.keys(), contrasts
    low = {status: round(c, 2) for status, c in contrasts.items() if c < 4.5}
    assert not low, low

"""The run page's System tab: the SDK's internal metrics (CPU, memory, GPUs) apart from the
job's, at phone and desktop sizes; screenshots go to test-artifacts/dashboard/."""

from __future__ import annotations

import pytest

from hyperdash import events as ev

from .support import DESKTOP, PHONE, RunFeed, open_run, wait_until

pytestmark = pytest.mark.browser

SYSTEM = ("sys/cpu_percent", "sys/memory_rss_mb", "sys/host/cpu_percent", "sys/gpu0/memory_percent")


def point(feed: RunFeed, name: str, value: float, *, internal: bool, step: int | None = None,
          at: int | None = None) -> dict:
    return feed.event(ev.METRIC, {"name": name, "value": value, "timestamp": at or ev.now_ms(),
                                  "is_internal": internal, "step": step})


def seed(account) -> RunFeed:
    feed = RunFeed(account, "sampled run")
    feed.log("epoch 1", "epoch 2")
    start = ev.now_ms() - 120_000
    events = [point(feed, "loss", 1 / (step + 1), internal=False, step=step) for step in range(20)]
    for i in range(12):  # a sample every 10 seconds
        at = start + i * 10_000
        events += [point(feed, "sys/cpu_percent", 80 + i, internal=True, at=at),
                   point(feed, "sys/memory_rss_mb", 900 + 10 * i, internal=True, at=at),
                   point(feed, "sys/host/cpu_percent", 40 + i, internal=True, at=at),
                   point(feed, "sys/gpu0/memory_percent", 50 + 3 * i, internal=True, at=at)]
    feed.send(events)
    return feed


def chart_names(page, panel: str) -> list[str]:
    return page.locator(f"#{panel} .chart").evaluate_all("els => els.map(e => e.dataset.metric)")


def wait_for_system_charts(page) -> None:
    """Until every system chart of :func:`seed` is drawn (each is drawn as its series comes)."""
    for name in SYSTEM:
        page.locator(f"#system-panel .chart[data-metric='{name}'] canvas").wait_for()


def overflow(page) -> int:
    return page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")


def test_system_metrics_have_their_own_tab_on_a_phone(open_page, account, artifacts):
    feed = seed(account)
    page = open_run(open_page, account, feed, PHONE, is_mobile=True, has_touch=True, device_scale_factor=2)
    tab = page.locator(".tabs [data-tab=system]")
    assert tab.is_visible()
    box, bar = tab.bounding_box(), page.locator(".tabs").bounding_box()
    assert box is not None and bar is not None and box["x"] + box["width"] <= bar["x"] + bar["width"] - 2
    wait_until(page, "document.getElementById('system-count').textContent === '4'")
    assert page.locator("#metrics-count").inner_text() == "1"

    tab.click()
    wait_for_system_charts(page)
    assert page.locator("#log").is_hidden() and page.locator("#metrics-panel").is_hidden()
    assert sorted(chart_names(page, "system-panel")) == sorted(SYSTEM)
    assert page.locator("#system-empty").is_hidden()
    # Points without steps are drawn against the clock, with the latest value shown.
    cpu = page.locator("#system-panel .chart[data-metric='sys/cpu_percent']")
    assert cpu.get_attribute("data-axis") == "time" and cpu.get_attribute("data-points") == "12"
    assert cpu.locator(".latest").inner_text() == "91"
    assert overflow(page) == 0
    page.screenshot(path=str(artifacts / "run-phone-system.png"), full_page=True)

    page.click(".tabs [data-tab=metrics]")
    page.locator("#metrics-panel .chart[data-metric=loss] canvas").wait_for()
    assert chart_names(page, "metrics-panel") == ["loss"]
    assert page.locator("#system-panel").is_hidden()

    # A GPU met later (a live point) joins the System tab, not the job's metrics.
    feed.send([point(feed, "sys/gpu0/util_percent", 97, internal=True)])
    page.click(".tabs [data-tab=system]")
    page.locator("#system-panel .chart[data-metric='sys/gpu0/util_percent']").wait_for()
    assert chart_names(page, "metrics-panel") == ["loss"]
    assert page.locator("#system-count").inner_text() == "5"


def test_system_metrics_sit_beside_the_log_on_a_desktop(open_page, account, artifacts):
    feed = seed(account)
    page = open_run(open_page, account, feed, DESKTOP)
    wait_for_system_charts(page)
    assert page.locator("#log").is_visible() and page.locator("#system-panel").is_visible()
    assert chart_names(page, "metrics-panel") == ["loss"]
    assert sorted(chart_names(page, "system-panel")) == sorted(SYSTEM)
    # A job metric that arrives live stays with the job's.
    feed.send([point(feed, "accuracy", 0.5, internal=False, step=1)])
    page.locator("#metrics-panel .chart[data-metric=accuracy]").wait_for()
    assert "accuracy" not in chart_names(page, "system-panel")
    page.locator("#system-panel").scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts / "run-desktop-system.png"))


def test_a_run_without_system_metrics_says_so(open_page, account):
    feed = RunFeed(account, "unsampled")
    feed.metric("loss", 0.5, step=1)
    page = open_run(open_page, account, feed, PHONE, is_mobile=True, has_touch=True)
    page.click(".tabs [data-tab=system]")
    assert page.locator("#system-empty").is_visible()
    assert "No system metrics" in page.locator("#system-empty").inner_text()
    assert page.locator("#system-count").inner_text() == "0"

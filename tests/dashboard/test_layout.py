"""The dashboard at phone and desktop sizes; screenshots of each page go to test-artifacts/."""

from __future__ import annotations

import math

import pytest

from hyperdash import events as ev

from .support import DESKTOP, PHONE, RunFeed, sign_in

pytestmark = pytest.mark.browser

LONG_WORD = "checkpoint_" + "x" * 240  # no place to break: it must wrap, not widen the page


def seed(account) -> RunFeed:
    """An account with a few finished runs and one lively one, returned."""
    for name, status, code, signal in [("resnet50-imagenet", ev.SUCCESS, 0, None),
                                       ("resnet50-imagenet", ev.FAILURE, 1, None),
                                       ("bert-squad", ev.KILLED, None, "SIGTERM"),
                                       ("gpt2-small", ev.USER_CANCELED, 130, None)]:
        RunFeed(account, name, host="a100-node-07.cluster.internal").end(status, code, signal)
    run = RunFeed(account, "llama-lora-" + LONG_WORD[:40], host="gpu-box-3")
    run.params(lr=0.0003, batch_size=256, optimizer="adamw", model="meta-llama/Llama-2-7b-hf",
               output_dir="/data/" + LONG_WORD)
    run.send([run.line(f"\x1b[36mepoch 1\x1b[0m step {i:4d}  loss={2 - i / 250:.4f}  "
                       f"\x1b[32mlr=3e-4\x1b[0m") for i in range(120)])
    run.log("saved to /data/" + LONG_WORD)
    run.log("\x1b[33mwarning:\x1b[0m grad norm 12.5 clipped", stream=ev.STDERR)
    run.log(" 45%|████▌     | 450/1000 [00:12<00:15, 36.1it/s]", stream=ev.STDERR, progress=True)
    run.send([run.event(ev.METRIC, {"name": name, "value": value(step), "timestamp": ev.now_ms(),
                                    "is_internal": False, "step": step})
              for step in range(60)
              for name, value in (("loss", lambda s: 2 * math.exp(-s / 20) + 0.1),
                                  ("accuracy", lambda s: 0.95 - 0.8 * math.exp(-s / 15)))])
    return run


def overflow(page) -> int:
    """How many pixels the page is wider than the window (0 when nothing sticks out). Measured
    against the page's width, not innerWidth: a phone widens its layout viewport to content that
    sticks out, and innerWidth with it."""
    return page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")


def assert_on_screen(page, selector: str) -> None:
    """Visible, and wholly inside the window's width."""
    box = page.locator(selector).first.bounding_box()
    assert box is not None and page.locator(selector).first.is_visible(), selector
    width = page.viewport_size["width"]
    assert box["x"] >= 0 and box["x"] + box["width"] <= width + 0.5, (selector, box)
    assert box["width"] > 0 and box["height"] > 0, selector


def test_phone_layout(open_page, account, artifacts):
    run = seed(account)
    page = open_page(PHONE, is_mobile=True, has_touch=True, device_scale_factor=2)
    page.goto(account.server.url + "/login")
    assert overflow(page) == 0
    for selector in ("input[name=email]", "input[name=password]", "button[type=submit]"):
        assert_on_screen(page, selector)
    page.screenshot(path=str(artifacts / "login-phone.png"))
    sign_in(page, account)
    page.locator(".group").nth(3).wait_for()
    assert overflow(page) == 0
    for selector in ("#filter-name", "#filter-status", "#sign-out", ".run-row .badge", ".run-row .started",
                     ".run-row .duration", ".run-row .host"):
        assert_on_screen(page, selector)
    page.screenshot(path=str(artifacts / "runs-phone.png"), full_page=True)

    page.click(f".run-row[data-uuid='{run.uuid}']")
    page.wait_for_url(f"**/runs/{run.uuid}")
    page.locator("#log-rows .line", has_text="45%").wait_for()
    assert overflow(page) == 0
    for selector in (".tabs", "#log-query", "#download", "#log", "#run-status .badge", "#fact-duration"):
        assert_on_screen(page, selector)
    # The log fills most of the screen below the tabs.
    assert page.locator("#log").bounding_box()["height"] >= 0.6 * PHONE["height"]
    # The lines wrap rather than widen the page.
    assert page.locator("#log").evaluate("el => el.scrollWidth <= el.clientWidth")
    # Each tab's label (with its count) fits its button, none running into the next.
    tabs = page.locator(".tabs button").evaluate_all(
        "bs => bs.map(b => [b.textContent.trim(), b.scrollWidth, b.clientWidth])")
    assert len(tabs) >= 4 and all(inner <= outer for _, inner, outer in tabs), tabs
    page.screenshot(path=str(artifacts / "run-phone.png"))

    page.click(".tabs [data-tab=metrics]")
    page.locator(".chart[data-metric=loss] canvas").wait_for()
    assert page.locator("#log").is_hidden()
    assert_on_screen(page, ".chart[data-metric=loss] canvas")
    assert overflow(page) == 0
    page.screenshot(path=str(artifacts / "run-phone-metrics.png"), full_page=True)

    page.click(".tabs [data-tab=params]")
    assert_on_screen(page, "#params")
    assert overflow(page) == 0
    assert page.locator("#params tr").count() == 5
    page.screenshot(path=str(artifacts / "run-phone-params.png"), full_page=True)

    page.click(".tabs [data-tab=log]")
    assert_on_screen(page, "#log")

    # The storage table is wider than a phone: it scrolls in its box, the page does not.
    page.goto(account.server.url + "/storage")
    page.locator("table.storage tbody tr").first.wait_for()
    assert page.locator(".table-scroll").evaluate("s => s.scrollWidth > s.clientWidth")
    assert overflow(page) == 0
    page.screenshot(path=str(artifacts / "storage-phone.png"), full_page=True)


def test_each_tab_shows_its_own_panel_alone_on_a_phone(open_page, account):
    """On a phone the run page shows one section at a time: the Alerts tab is not followed by the
    System panel, nor the System tab by the Alerts panel."""
    run = seed(account)
    page = open_page(PHONE, is_mobile=True, has_touch=True)
    sign_in(page, account, f"/runs/{run.uuid}")
    page.locator("#log-rows .line").first.wait_for()
    panels = {"log": "log-panel", "metrics": "metrics-panel", "params": "params-panel",
              "alerts": "alerts-panel", "system": "system-panel"}
    shown = {}
    for tab in panels:
        page.tap(f".tabs [data-tab={tab}]")
        shown[tab] = [panel for panel in panels.values() if page.locator(f"#{panel}").is_visible()]
    assert shown == {tab: [panel] for tab, panel in panels.items()}


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_desktop_layout(open_page, account, artifacts, scheme):
    run = seed(account)
    page = open_page(DESKTOP, color_scheme=scheme)
    sign_in(page, account)
    page.locator(".group").nth(3).wait_for()
    assert overflow(page) == 0
    page.screenshot(path=str(artifacts / f"runs-desktop-{scheme}.png"), full_page=True)

    page.goto(account.server.url + f"/runs/{run.uuid}")
    page.locator(".chart[data-metric=accuracy] canvas").wait_for()
    page.locator("#log-rows .line", has_text="45%").wait_for()
    assert overflow(page) == 0
    # Log, metrics and params side by side, no tabs.
    assert page.locator(".tabs").is_hidden()
    for selector in ("#log", "#metrics-panel", "#params-panel", "#log-query", "#download"):
        assert_on_screen(page, selector)
    log, charts = page.locator("#log").bounding_box(), page.locator("#metrics-panel").bounding_box()
    assert log["x"] + log["width"] <= charts["x"]
    # The whole log box fits in the window, so its newest line is in sight.
    assert log["y"] + log["height"] <= DESKTOP["height"]
    page.screenshot(path=str(artifacts / f"run-desktop-{scheme}.png"))

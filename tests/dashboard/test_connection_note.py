"""A live page says when its event stream is down ("Reconnecting…"), so that data that stopped
coming never looks live, and says nothing once the stream is back (with what it missed)."""

from __future__ import annotations

import pytest

from .support import ROWS, RunFeed, open_run, row_texts, sign_in, wait_until

pytestmark = pytest.mark.browser

NOTE = "document.getElementById('stream-note')"
SHOWN = f"{NOTE} && {NOTE}.textContent === 'Reconnecting…' && {NOTE}.getBoundingClientRect().height > 0"
GONE = f"!{NOTE} || ({NOTE}.textContent === '' && {NOTE}.getBoundingClientRect().height === 0)"


def assert_quiet_while_connected(page) -> None:
    page.wait_for_timeout(2500)  # past the first connection's grace
    assert page.evaluate(GONE), page.evaluate(f"{NOTE} && {NOTE}.outerHTML")


def test_a_run_page_says_it_is_reconnecting_while_offline(open_page, account, artifacts):
    feed = RunFeed(account, "offline")
    feed.log("before")
    page = open_run(open_page, account, feed)
    page.locator(ROWS, has_text="before").wait_for()
    assert_quiet_while_connected(page)

    page.context.set_offline(True)
    feed.log("while offline")  # stored meanwhile; the page hears of it only once back
    wait_until(page, SHOWN, timeout=10)
    assert page.get_attribute("#stream-note", "role") == "status"
    page.screenshot(path=str(artifacts / "run-reconnecting.png"))

    page.context.set_offline(False)
    wait_until(page, GONE, timeout=20)
    page.locator(ROWS, has_text="while offline").wait_for()
    page.wait_for_timeout(500)
    assert row_texts(page) == ["before", "while offline"]


def test_the_runs_list_says_it_is_reconnecting_while_offline(open_page, account):
    RunFeed(account, "first")
    page = open_page()
    sign_in(page, account, "/")
    page.locator(".run-row").first.wait_for()
    assert_quiet_while_connected(page)

    page.context.set_offline(True)
    meanwhile = RunFeed(account, "started-meanwhile")
    wait_until(page, SHOWN, timeout=10)

    page.context.set_offline(False)
    wait_until(page, GONE, timeout=20)
    page.locator(f".run-row[data-uuid='{meanwhile.uuid}']").wait_for()


def test_a_page_that_never_connects_says_so(open_page, account):
    feed = RunFeed(account, "never")
    page = open_page()
    page.route("**/events?*", lambda route: None)  # the stream hangs, never opening
    sign_in(page, account, f"/runs/{feed.uuid}")
    wait_until(page, SHOWN, timeout=5)


def test_a_dropped_stream_says_so_until_it_is_open_again(open_page, account):
    feed = RunFeed(account, "dropped")
    feed.log("before")
    broken = {"now": True, "calls": 0}

    def stream(route):
        broken["calls"] += 1
        if broken["calls"] == 1:  # opens, then ends at once: the connection dropped
            route.fulfill(status=200, content_type="text/event-stream", body="retry: 300\n\n")
        elif broken["now"]:  # and the server cannot be reached meanwhile
            route.abort("connectionrefused")
        else:
            route.continue_()

    page = open_page()
    page.route("**/events?*", stream)
    sign_in(page, account, f"/runs/{feed.uuid}")
    wait_until(page, SHOWN, timeout=5)
    feed.log("meanwhile")
    page.wait_for_timeout(2000)  # a few tries, all failing: still said
    assert broken["calls"] > 2 and page.evaluate(SHOWN)

    broken["now"] = False
    wait_until(page, GONE, timeout=15)
    page.locator(ROWS, has_text="meanwhile").wait_for()
    page.errors[:] = [e for e in page.errors if "ERR_CONNECTION_REFUSED" not in e]

"""An open run page shows every stored line once, in seq order, whatever order lines are
stored and announced in: an SDK's older batch retried after a newer one, lines stored while the
page is still connecting, chunks of the original protocol posted at once."""

from __future__ import annotations

import threading

import pytest

from hyperdash import events as ev

from .support import ROWS, RunFeed, open_run, row_texts, sign_in, wait_until

pytestmark = pytest.mark.browser


def numbered(feed: RunFeed, count: int) -> list[dict]:
    """``count`` lines "line 1", "line 2", ..., in seq order."""
    return [feed.line(f"line {i}") for i in range(1, count + 1)]


def settled_rows(page, count: int) -> list[str]:
    """The rows' texts once there are ``count`` of them and a moment more (for any copy), or
    after 5 s, whatever they are then."""
    try:
        wait_until(page, f"document.querySelectorAll({ROWS!r}).length >= {count}", timeout=5)
    except AssertionError:
        pass
    page.wait_for_timeout(500)
    return row_texts(page)


def test_an_older_batch_stored_after_a_newer_one_shows_in_its_place(open_page, account):
    feed = RunFeed(account, "late-batch")
    lines = numbered(feed, 20)
    page = open_run(open_page, account, feed)
    feed.send(lines[10:])
    page.locator(ROWS, has_text="line 20").wait_for()
    feed.send(lines[:10])  # the retry of a batch that failed before the newer one went
    assert settled_rows(page, 20) == [f"line {i}" for i in range(1, 21)]


def test_lines_stored_while_the_page_connects_show_once(open_page, account):
    feed = RunFeed(account, "connecting")
    lines = numbered(feed, 30)
    feed.send(lines[10:20])  # on the page when it is made
    page = open_page()
    held = threading.Event()

    def connect(route):
        # Between the page's first lines and its stream: an older batch and a newer one stored.
        if not held.is_set():
            held.set()
            feed.send(lines[:10])
            feed.send(lines[20:])
        route.continue_()

    page.route("**/events?*", connect)
    sign_in(page, account, f"/runs/{feed.uuid}")
    assert settled_rows(page, 30) == [f"line {i}" for i in range(1, 31)]
    assert held.is_set()


def test_original_protocol_chunks_posted_at_once_show_as_stored(open_page, account):
    feed = RunFeed(account, "original")
    page = open_run(open_page, account, feed)

    def post(i: int) -> None:
        # One envelope per request, without seq, as the 0.15.3 SDK sends them.
        envelope = ev.envelope(ev.LOG, feed.uuid, {"uuid": f"chunk-{i}", "level": "INFO", "body": f"chunk {i}\n"})
        envelope.pop("seq", None)
        resp = account.server.session.post(account.server.url + ev.INGEST_PATH, json=envelope, timeout=60,
                                           headers={ev.AUTH_HEADER: account.api_key})
        assert resp.status_code == 200, resp.text

    threads = [threading.Thread(target=post, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    shown = settled_rows(page, 20)
    stored = account.server.session.get(f"{account.server.url}/api/v1/runs/{feed.uuid}/logs",
                                        headers={ev.AUTH_HEADER: account.api_key}).json()["lines"]
    assert sorted(shown) == sorted(f"chunk {i}" for i in range(20))
    assert shown == [line["text"] for line in stored]


def test_a_line_stored_late_between_a_bars_redraws_shows_before_the_bar(open_page, account):
    # The bar's row spans the seqs of its states: the late line is not one of them (it was
    # taken for a copy and dropped), and it goes where a reload puts it, before the bar's state.
    feed = RunFeed(account, "late-in-bar")
    start = feed.line("start")
    first_states = [feed.line(f"train {p}%", progress=True) for p in (10, 20)]
    middle = feed.line("MIDDLE message")
    last_states = [feed.line(f"train {p}%", progress=True) for p in (60, 90)]
    done, after = feed.line("train 100%"), feed.line("after")
    page = open_run(open_page, account, feed)
    feed.send([start, *first_states])
    page.locator(ROWS, has_text="train 20%").wait_for()
    feed.send([*last_states, done, after])
    page.locator(ROWS, has_text="after").wait_for()
    feed.send([middle])  # (a retried batch)
    expected = ["start", "MIDDLE message", "train 100%", "after"]
    assert settled_rows(page, 4) == expected
    page.reload()
    assert settled_rows(page, 4) == expected


def test_the_first_pieces_of_a_long_line_stored_late_join_its_rest(open_page, account):
    # A long line comes in pieces; the batch with its first pieces is stored after the one with
    # its rest (a retried batch). The page joins them into the one row a reload shows, in the
    # place of the line's first piece (before a line of the other stream written meanwhile).
    feed = RunFeed(account, "late-pieces")
    before = feed.line("before")
    pieces = [feed.line("AAAA", partial=True), feed.line("BBBB", partial=True)]
    other = feed.line("on stderr", stream=ev.STDERR)
    rest, after = feed.line("CCCC"), feed.line("after")
    page = open_run(open_page, account, feed)
    feed.send([before])
    page.locator(ROWS, has_text="before").wait_for()
    feed.send([other, rest, after])
    page.locator(ROWS, has_text="after").wait_for()
    feed.send(pieces)
    expected = ["before", "AAAABBBBCCCC", "on stderr", "after"]
    page.wait_for_timeout(1000)
    assert row_texts(page) == expected
    page.reload()
    assert settled_rows(page, 4) == expected


def test_a_batch_stored_while_the_page_reconnects_shows_behind_many_newer_lines(open_page, account):
    # While the page's stream reconnects, an older batch is stored, and then more newer lines
    # than the page's first read of a log holds: the older batch still goes in its place.
    feed = RunFeed(account, "reconnecting")
    lines = numbered(feed, 340)
    feed.send(lines[:10] + lines[20:40])  # on the page when it is made; lines 11 to 20 are late
    page = open_page()
    connections = []

    def connect(route):
        connections.append(route.request.url)
        if len(connections) == 1:
            # The first connection ends at once, as a dropped one does: the browser reconnects.
            route.fulfill(status=200, headers={"content-type": "text/event-stream"}, body="retry: 300\n\n")
            return
        if len(connections) == 2:
            feed.send(lines[10:20])
            feed.send(lines[40:])
        route.continue_()

    page.route("**/events?*", connect)
    sign_in(page, account, f"/runs/{feed.uuid}")
    page.locator(ROWS, has_text="line 340").wait_for()
    assert settled_rows(page, 340) == [f"line {i}" for i in range(1, 341)]
    assert len(connections) >= 2

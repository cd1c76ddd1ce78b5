"""The dashboard served by one server process shows, live, what a job sends through another
process on the same PostgreSQL database."""

from __future__ import annotations

import threading
from dataclasses import replace

import pytest
from pg_schema import fresh_schema

from .support import ROWS, RunFeed, open_run, row_texts, sign_in

pytestmark = [pytest.mark.postgres, pytest.mark.browser, pytest.mark.slow]


def test_lines_sent_through_one_process_appear_live_on_a_page_served_by_another(open_page, server_factory):
    with fresh_schema() as url:
        a, b = server_factory(start=False), server_factory(start=False)
        a.db_url = b.db_url = url
        starting = [threading.Thread(target=s.start, kwargs={"timeout": 60}) for s in (a, b)]
        for thread in starting:
            thread.start()
        for thread in starting:
            thread.join()
        try:
            account = a.signup()
            through_b = replace(account, server=b)
            feed = RunFeed(through_b, "across")  # created through B
            feed.log("first, through B")
            page = open_run(open_page, account, feed)  # served by A
            runs_page = open_page()
            sign_in(runs_page, account)
            runs_page.locator(".run-row").wait_for()

            feed.log("second, through B")
            feed.account = account
            feed.log("third, through A")
            feed.account = through_b
            feed.log("fourth, through B")
            page.locator(ROWS, has_text="fourth, through B").wait_for(timeout=10_000)
            assert row_texts(page) == ["first, through B", "second, through B", "third, through A",
                                       "fourth, through B"]
            later = RunFeed(through_b, "created-through-b")
            runs_page.locator(f".run-row[data-uuid='{later.uuid}']").wait_for(timeout=10_000)
        finally:
            a.stop()
            b.stop()

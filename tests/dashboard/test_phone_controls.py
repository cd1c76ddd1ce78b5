"""Small controls on a phone (Chromium as a Pixel 7), and a run's end said once in the runs list:
the compare page's filter shows its whole column name and hint, the runs page's Storage link is
as wide as its word, and a killed or failed run says how it ended once.

Screenshots go to test-artifacts/dashboard/ (ignored by git)."""

from __future__ import annotations

import pytest

from hyperdash import events as ev

from .support import TOUCH_PHONE, RunFeed, sign_in

pytestmark = pytest.mark.browser

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

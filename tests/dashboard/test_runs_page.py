"""The runs page in real Chromium: grouped by name, newest first, live, filtered."""

from __future__ import annotations

import time
import uuid

import pytest

from hyperdash import events as ev

from .support import RunFeed, sign_in

pytestmark = pytest.mark.browser


def groups(page) -> list[tuple[str, list[str]]]:
    """[(group name, [status of each run, top to bottom])]."""
    found = page.locator(".group").evaluate_all("""sections => sections.map(s => [
        s.querySelector('h2').textContent,
        [...s.querySelectorAll('.badge')].map(b => b.dataset.status),
    ])""")
    return [(name, statuses) for name, statuses in found]


def test_runs_are_grouped_by_name_newest_first_and_change_live(open_page, account):
    first = RunFeed(account, "resnet", host="gpu-a")
    first.end(ev.SUCCESS)
    RunFeed(account, "bert", host="gpu-b").end(ev.FAILURE, exit_code=2)
    second = RunFeed(account, "resnet", host="gpu-c")
    page = open_page()
    sign_in(page, account)
    page.locator(".group").nth(1).wait_for()
    assert groups(page) == [("resnet", ["running", "success"]), ("bert", ["failure"])]
    row = page.locator(f".run-row[data-uuid='{second.uuid}']")
    assert row.locator(".host").inner_text() == "gpu-c"
    assert row.locator(".started").inner_text().startswith("Today, ")
    # How it ended, said once: on the failure line.
    assert page.locator(".group", has_text="bert").locator(".failure").inner_text() == "exit code 2"
    assert page.locator(".group", has_text="bert").locator(".outcome").inner_text() == ""
    assert page.locator(".group", has_text="resnet").locator(".count").inner_text() == "2 runs"

    # A new run and a change of status show up without a reload.
    third = RunFeed(account, "bert", host="gpu-d")
    page.locator(f".run-row[data-uuid='{third.uuid}']").wait_for()
    assert groups(page) == [("bert", ["running", "failure"]), ("resnet", ["running", "success"])]
    second.end(ev.USER_CANCELED, exit_code=130)
    page.locator(f".run-row[data-uuid='{second.uuid}'] .badge[data-status='user_canceled']").wait_for()
    assert page.locator(f".run-row[data-uuid='{second.uuid}'] .badge").inner_text() == "Canceled"
    third.end(ev.KILLED, exit_code=None, signal="SIGKILL")
    page.locator(f".run-row[data-uuid='{third.uuid}'] .badge[data-status='killed']").wait_for()
    assert page.locator(f".run-row[data-uuid='{third.uuid}'] .failure").inner_text() == "killed by SIGKILL"
    assert page.locator(f".run-row[data-uuid='{third.uuid}'] .outcome").inner_text() == ""

    page.click(f".run-row[data-uuid='{first.uuid}']")
    page.wait_for_url(f"**/runs/{first.uuid}")
    assert page.locator("#run-name").inner_text() == "resnet"


def test_a_live_change_keeps_the_focus_where_it_was(open_page, account):
    """Someone on a run's row (keyboard, screen reader) keeps their place while the list changes
    live, and the list, rebuilt at each change, is no live region that reads itself out again."""
    watched = RunFeed(account, "resnet")
    RunFeed(account, "bert").end(ev.SUCCESS)
    page = open_page()
    sign_in(page, account)
    row = page.locator(f".run-row[data-uuid='{watched.uuid}']")
    row.focus()
    compare = page.locator(".group[data-name=bert] .compare-link")

    newcomer = RunFeed(account, "gpt2")
    page.locator(f".run-row[data-uuid='{newcomer.uuid}']").wait_for()
    assert page.evaluate("document.activeElement.dataset.uuid") == watched.uuid
    compare.focus()
    newcomer.end(ev.FAILURE, exit_code=1)
    page.locator(f".run-row[data-uuid='{newcomer.uuid}'] .badge[data-status='failure']").wait_for()
    assert page.evaluate("document.activeElement.getAttribute('href')") == "/compare?name=bert"
    assert page.locator("#runs").get_attribute("aria-live") is None


def test_filter_by_name_and_status(open_page, account):
    RunFeed(account, "alpha").end(ev.SUCCESS)
    RunFeed(account, "alpha").end(ev.FAILURE, exit_code=1)
    RunFeed(account, "beta").end(ev.FAILURE, exit_code=1)
    RunFeed(account, "gamma")
    page = open_page()
    sign_in(page, account)
    page.locator(".group").nth(2).wait_for()
    assert [name for name, _ in groups(page)] == ["gamma", "beta", "alpha"]

    page.select_option("#filter-status", "failure")
    page.wait_for_url("**/?status=failure")
    page.locator(".group", has_text="gamma").wait_for(state="detached")
    assert groups(page) == [("beta", ["failure"]), ("alpha", ["failure"])]

    page.type("#filter-name", "LPh")  # any part of a name, in any case, filters as one types
    page.wait_for_url("**/?q=LPh&status=failure")
    page.locator(".group", has_text="beta").wait_for(state="detached")
    assert groups(page) == [("alpha", ["failure"])]

    # The filters live in the address, so a reload (or a shared link) keeps them.
    page.reload()
    page.locator(".group").first.wait_for()
    assert groups(page) == [("alpha", ["failure"])]
    assert page.input_value("#filter-name") == "LPh"

    # A live run that does not match stays out; one that matches comes in.
    RunFeed(account, "beta").end(ev.FAILURE, exit_code=1)
    late = RunFeed(account, "alpha")
    late.end(ev.FAILURE, exit_code=4)
    page.locator(f".run-row[data-uuid='{late.uuid}'] .badge[data-status='failure']").wait_for()
    assert groups(page) == [("alpha", ["failure", "failure"])]

    page.fill("#filter-name", "nothing-like-it")
    page.press("#filter-name", "Enter")
    page.locator("#runs-no-match").wait_for()
    assert page.locator(".group").count() == 0

    page.goto(account.server.url + "/?status=not-a-status")
    page.locator(".group").first.wait_for()
    assert page.input_value("#filter-status") == ""
    assert len(groups(page)) == 3


def test_needs_attention_shows_what_went_wrong_live(open_page, account):
    """The status filter's "Needs attention": the runs that failed, were killed or went lost, and
    the running ones that are stalled; a run that fails or stalls while the page is open comes
    in, one that makes progress again goes."""
    RunFeed(account, "fine").end(ev.SUCCESS)
    RunFeed(account, "broken").end(ev.FAILURE, exit_code=1)
    RunFeed(account, "stopped").end(ev.USER_CANCELED, exit_code=130)
    RunFeed(account, "shot").end(ev.KILLED, exit_code=None, signal="SIGKILL")
    busy = RunFeed(account, "busy")
    stuck = RunFeed(account, "stuck", start=False)
    stuck.send([stuck.event(ev.RUN_STARTED, {"job_name": "stuck", "host": "gpu-box-1", "stall_after": 1})])
    stuck.log("epoch 1")
    window_ends = time.monotonic() + 1.1
    page = open_page()
    sign_in(page, account)
    page.locator(".group").nth(5).wait_for()

    page.select_option("#filter-status", label="Needs attention")
    page.wait_for_url("**/?status=attention")
    page.locator(".group", has_text="fine").wait_for(state="detached")
    assert groups(page) == [("shot", ["killed"]), ("broken", ["failure"])]
    page.reload()  # kept in the address, as the other filters are
    page.locator(".group").first.wait_for()
    assert page.input_value("#filter-status") == "attention"
    assert groups(page) == [("shot", ["killed"]), ("broken", ["failure"])]

    busy.end(ev.FAILURE, exit_code=3)
    page.locator(f".run-row[data-uuid='{busy.uuid}'] .badge[data-status='failure']").wait_for()
    # Alive past its window of 1 s with no progress: stalled, and in the list.
    time.sleep(max(0.0, window_ends - time.monotonic()))
    stuck.heartbeat()
    row = page.locator(f".run-row[data-uuid='{stuck.uuid}']")
    row.locator(".badge.stalled").wait_for(timeout=15_000)
    assert groups(page) == [("stuck", ["running", None]),  # (None: its Stalled badge)
                            ("busy", ["failure"]), ("shot", ["killed"]), ("broken", ["failure"])]
    stuck.log("epoch 2")  # progressing again: nothing to look at
    row.wait_for(state="detached")
    assert [name for name, _ in groups(page)] == ["busy", "shot", "broken"]


def test_a_groups_link_shows_that_name_alone_and_typing_searches_again(open_page, account):
    RunFeed(account, "train").end(ev.SUCCESS)
    RunFeed(account, "pretrain").end(ev.SUCCESS)
    page = open_page()
    sign_in(page, account)
    page.locator(".group").nth(1).wait_for()
    page.click(".group[data-name='train'] h2 a")
    page.wait_for_url("**/?name=train")
    # (the new page lists its runs after it loads: wait for them, not only for the other to go)
    page.locator(".group[data-name='train']").wait_for()
    page.locator(".group[data-name='pretrain']").wait_for(state="detached")
    assert [name for name, _ in groups(page)] == ["train"]
    assert page.input_value("#filter-name") == "train"

    page.fill("#filter-name", "TRAIN")  # edited: now any part of a name, in any case
    page.wait_for_url("**/?q=TRAIN")
    page.locator(".group[data-name='train']").wait_for()
    page.locator(".group[data-name='pretrain']").wait_for()
    assert sorted(name for name, _ in groups(page)) == ["pretrain", "train"]


def test_more_runs_load_on_request(open_page, account):
    feed = RunFeed(account, "sweep")
    started = ev.now_ms()
    feed.send([ev.envelope(ev.RUN_STARTED, str(uuid.uuid4()), {"job_name": "sweep", "host": f"node-{i}"},
                           seq=1, timestamp=started - i * 1000) for i in range(1, 105)])
    page = open_page()
    sign_in(page, account)
    page.locator("#load-more").wait_for()
    assert page.locator(".run-row").count() == 100
    assert page.locator(".run-row .host").first.inner_text() == "gpu-box-1", "newest first"
    page.click("#load-more")
    page.locator("#load-more").wait_for(state="hidden")
    assert page.locator(".run-row").count() == 105
    assert page.locator(".run-row .host").last.inner_text() == "node-104"
    assert page.locator(".group .count").inner_text() == "105 runs"

"""Deleting, archiving and sharing a run, and the storage page, in real Chromium: on a phone
too, with a confirmation before anything is deleted, and a shared page that works signed out,
live, escapes text, and stops at once when its link is revoked."""

from __future__ import annotations

import pytest
import requests

from hyperdash import events as ev

from .support import PHONE, ROWS, RunFeed, open_run, row_texts, sign_in, wait_until

pytestmark = pytest.mark.browser

HOSTILE = '<img src=x onerror="window.pwned=1">\'"&<script>window.pwned=2</script>'


def fits(page, selector: str) -> bool:
    box = page.locator(selector).bounding_box()
    width = page.viewport_size["width"]
    return box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width


def test_deleting_a_run_asks_first_and_fits_a_phone(open_page, account):
    feed = RunFeed(account, "to delete")
    feed.log("doomed line")
    feed.end()
    page = open_run(open_page, account, feed, viewport=PHONE, is_mobile=True, has_touch=True)
    page.click("#delete-open")
    assert page.locator("#delete-dialog").is_visible() and fits(page, "#delete-dialog")
    assert page.locator("#delete-running").is_hidden()
    page.click("#delete-cancel")
    assert page.locator("#delete-dialog").is_hidden()
    assert account.get(f"/api/v1/runs/{feed.uuid}").status_code == 200  # cancelled: nothing happened

    page.click("#delete-open")
    with page.expect_navigation():
        page.click("#delete-confirm")
    assert page.url == account.server.url + "/"
    assert account.get(f"/api/v1/runs/{feed.uuid}").status_code == 404


def test_a_running_run_is_deleted_only_past_a_warning(open_page, account):
    feed = RunFeed(account, "still running")
    feed.log("running line")
    page = open_run(open_page, account, feed)
    page.click("#delete-open")
    assert page.locator("#delete-running").is_visible()
    assert page.locator("#delete-confirm").inner_text() == "Delete anyway"
    with page.expect_navigation():
        page.click("#delete-confirm")
    assert account.get(f"/api/v1/runs/{feed.uuid}").status_code == 404
    late = account.server.session.post(account.server.url + ev.INGEST_PATH, timeout=10,
                                       headers={ev.AUTH_HEADER: account.api_key},
                                       json=[feed.line("too late")])
    assert late.status_code == 410


def test_archiving_from_the_run_page_and_the_archived_filter(open_page, account):
    feed = RunFeed(account, "shelve me")
    feed.end()
    kept = RunFeed(account, "stay listed")
    kept.end()
    page = open_run(open_page, account, feed)
    page.click("#archive")
    wait_until(page, "document.getElementById('archive').getAttribute('aria-pressed') === 'true'")
    assert page.locator("#archive").inner_text() == "Unarchive"

    page.goto(account.server.url + "/")
    page.wait_for_selector(".run-row")
    names = page.locator(".group h2").all_inner_texts()
    assert "stay listed" in names and "shelve me" not in names
    page.check("#filter-archived")
    page.locator(".group h2", has_text="shelve me").wait_for()
    assert page.locator(".group h2").all_inner_texts() == ["shelve me"]
    assert "archived=only" in page.url


def test_archiving_elsewhere_shows_at_once_on_the_pages_open(open_page, account):
    running = RunFeed(account, "archived while it runs")
    running.log("working")
    done = RunFeed(account, "archived when done")
    done.end()
    RunFeed(account, "never archived").end()
    run_page = open_run(open_page, account, running)
    listing = open_page()
    sign_in(listing, account)
    listing.locator(".group h2", has_text="archived while it runs").wait_for()
    shelf = open_page()
    sign_in(shelf, account, "/?archived=only")
    shelf.locator("#runs-no-match").wait_for()

    def names(page) -> list[str]:
        return sorted(page.locator(".group h2").all_inner_texts())

    def archive(feed, method: str = "POST") -> None:  # as the command line or another tab does
        resp = account.server.session.request(method, f"{account.server.url}/api/v1/runs/{feed.uuid}/archive",
                                              headers={ev.AUTH_HEADER: account.api_key}, timeout=10)
        assert resp.status_code == 200, resp.text

    archive(running)
    archive(done)
    wait_until(listing, "document.querySelectorAll('.group').length === 1")
    assert names(listing) == ["never archived"]
    wait_until(shelf, "document.querySelectorAll('.group').length === 2")
    assert names(shelf) == ["archived when done", "archived while it runs"]
    wait_until(run_page, "document.getElementById('archive').getAttribute('aria-pressed') === 'true'")
    assert run_page.locator("#archive").inner_text() == "Unarchive"
    # The archived run goes on: what it does next keeps it out of the default list.
    running.log("still working")
    running.end()
    wait_until(shelf, "document.querySelectorAll('.badge[data-status=success]').length === 2")
    wait_until(run_page, "document.querySelector('#run-status .badge[data-status=success]')")
    assert names(listing) == ["never archived"]
    # Brought back: into the default list, out of the archived one, and the button says so.
    archive(done, "DELETE")
    wait_until(listing, "document.querySelectorAll('.group').length === 2")
    assert names(listing) == ["archived when done", "never archived"]
    wait_until(shelf, "document.querySelectorAll('.group').length === 1")
    archive(running, "DELETE")
    wait_until(run_page, "document.getElementById('archive').getAttribute('aria-pressed') === 'false'")
    assert run_page.locator("#archive").inner_text() == "Archive"


def test_a_shared_link_works_signed_out_live_and_stops_when_revoked(open_page, account):
    feed = RunFeed(account, HOSTILE)
    feed.log("first shared line", HOSTILE)
    feed.params(lr=0.01, note=HOSTILE)
    feed.metric("loss", 0.9, step=1)
    owner = open_run(open_page, account, feed)
    owner.click("#share-open")
    owner.click("#share-create")
    wait_until(owner, "document.getElementById('share-url').value.includes('/shared/')")
    url = owner.input_value("#share-url")
    assert owner.locator("#share-list li").count() == 1

    guest = open_page(PHONE, is_mobile=True, has_touch=True)  # no cookies: signed out
    guest.goto(url)
    guest.wait_for_selector(ROWS)
    assert row_texts(guest) == ["first shared line", HOSTILE]
    assert guest.locator("#run-name").inner_text() == HOSTILE
    assert guest.evaluate("window.pwned") is None  # text, never markup
    assert guest.locator("#sign-out").count() == 0 and guest.locator("#delete-open").count() == 0
    assert guest.locator("a.back").count() == 0
    assert guest.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth") <= 0
    feed.log("live for the colleague")
    guest.locator(ROWS, has_text="live for the colleague").wait_for(timeout=5000)
    guest.click("[data-tab=params]")
    guest.locator("#params th", has_text="lr").wait_for()

    owner.click("#share-list button[data-share]")
    owner.locator("#share-list li.empty").wait_for()
    # The open page stops getting lines within seconds (its stream is ended), and a reload refuses.
    guest.wait_for_timeout(3000)
    feed.log("after the revoke")
    guest.wait_for_timeout(2500)
    assert guest.locator(ROWS, has_text="after the revoke").count() == 0
    # and it says so, rather than look alive and retry for ever
    guest.locator("#run-error", has_text="This link no longer shows the run").wait_for(timeout=10_000)
    response = guest.goto(url)
    assert response.status == 404 and "Link not found" in guest.content()
    guest.errors.clear()  # (the refused reconnections are logged by the browser, as they should be)


def test_an_open_page_of_a_run_deleted_elsewhere_says_so_and_stops(open_page, account):
    feed = RunFeed(account, "deleted elsewhere")
    feed.log("still here")
    page = open_run(open_page, account, feed, PHONE, is_mobile=True, has_touch=True)
    resp = requests.delete(account.server.url + f"/api/v1/runs/{feed.uuid}", params={"force": "true"},
                           headers={ev.AUTH_HEADER: account.api_key}, timeout=10)
    assert resp.status_code == 200, resp.text
    page.locator("#run-error", has_text="This run was deleted").wait_for(timeout=10_000)
    shown = page.locator("#fact-duration").inner_text()
    page.wait_for_timeout(2500)
    assert page.locator("#fact-duration").inner_text() == shown  # its clock stopped
    page.wait_for_timeout(4000)
    retries = [e for e in page.errors if "404" in e]
    page.errors.clear()  # (the refused reconnection is logged by the browser)
    assert len(retries) <= 3, retries  # it does not go on trying


def test_the_storage_page_shows_names_deletes_a_name_and_keeps_days(open_page, account):
    big = RunFeed(account, "big model")
    big.lines(300)
    big.metric("loss", 1.0)
    big.end()
    small = RunFeed(account, "small model")
    small.log("one line")
    small.end()
    page = open_page(PHONE, is_mobile=True, has_touch=True)
    sign_in(page, account, "/storage")
    page.wait_for_selector("#storage-rows tr")
    rows = page.locator("#storage-rows tr")
    assert rows.nth(0).get_attribute("data-name") == "big model"  # the largest first
    cells = rows.nth(0).locator("td").all_inner_texts()
    assert cells[0].startswith("1") and cells[2].replace("\u2009", "") == "300" and cells[3] == "1"
    assert "kB" in cells[1]

    page.fill("#keep-days", "0")
    page.click("#keep-save")
    page.locator("#storage-error").wait_for()
    assert account.get("/api/v1/users/settings").json()["keep_days"] is None  # refused, nothing saved
    page.fill("#keep-days", "30")
    page.click("#keep-save")
    wait_until(page, "document.getElementById('keep-save').textContent === 'Saved'")
    assert account.get("/api/v1/users/settings").json()["keep_days"] == 30

    page.click("#storage-rows tr[data-name='small model'] button")
    assert page.locator("#name-dialog").is_visible() and fits(page, "#name-dialog")
    page.click("#name-confirm")
    page.locator("#storage-rows tr[data-name='small model']").wait_for(state="detached")
    assert account.runs(name="small model") == []
    assert account.runs(name="big model") != []


def test_a_run_deleted_elsewhere_leaves_an_open_runs_page(open_page, account):
    gone, kept = RunFeed(account, "deleted elsewhere"), RunFeed(account, "still here")
    gone.end()
    kept.end()
    page = open_page()
    sign_in(page, account, "/")
    page.locator(f".run-row[data-uuid='{gone.uuid}']").wait_for()
    resp = account.server.session.delete(f"{account.server.url}/api/v1/runs/{gone.uuid}", timeout=10,
                                         headers={ev.AUTH_HEADER: account.api_key})
    assert resp.status_code == 200
    page.locator(f".run-row[data-uuid='{gone.uuid}']").wait_for(state="detached", timeout=5000)
    assert page.locator(f".run-row[data-uuid='{kept.uuid}']").count() == 1

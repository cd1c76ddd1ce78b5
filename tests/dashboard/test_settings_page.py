"""The notification settings page in real Chromium at phone size, on the real server: channels
added, tested, edited and removed, failed deliveries shown with the receiver's answer, and the
service worker showing a real Web Push payload (the server's, decrypted as the browser would)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from hyperdash import events as ev
from hyperdash.server.notify import generate_secret
from hyperdash.server.notify.webhook import SIGNATURE_HEADER, verify_signature

from .support import PHONE, RunFeed, sign_in

# The real receivers of the server's notification tests.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "server"))
from test_notify_channels import Answer, receiver  # noqa: E402, F401  (the fixture)
from test_notify_webpush import Browser  # noqa: E402

pytestmark = pytest.mark.browser


def channels(account) -> list[dict]:
    resp = account.server.session.get(account.server.url + "/api/v1/notify/channels",
                                      headers={ev.AUTH_HEADER: account.api_key}, timeout=10)
    assert resp.status_code == 200, resp.text
    return resp.json()["channels"]


def open_settings(open_page, account, **options):
    page = open_page(PHONE, **options)
    sign_in(page, account, "/")
    with page.expect_navigation():
        page.click("#settings-link")
    assert page.url.endswith("/settings")
    page.wait_for_selector("#add-channel [data-events] input[name=defaults]")
    return page


def test_channels_are_added_tested_edited_and_removed_from_a_phone(open_page, account, receiver):  # noqa: F811
    page = open_settings(open_page, account)
    page.on("dialog", lambda dialog: dialog.accept())
    assert page.evaluate("document.scrollingElement.scrollWidth <= document.scrollingElement.clientWidth")

    # A bad address is refused with the server's message, and nothing is added.
    page.select_option("#add-kind", "ntfy")
    page.fill("#add-channel input[name=url]", "not an address")
    page.click("#add-channel button[type=submit]")
    page.wait_for_selector("#add-error:not([hidden])")
    assert "url" in page.inner_text("#add-error")
    assert channels(account) == []
    # (Chromium logs the refusal itself as a console error: expected here, and only here.)
    page.errors[:] = [e for e in page.errors if "status of 400 (Bad Request)" not in e]

    # A webhook: its secret made in the page, its events chosen.
    page.select_option("#add-kind", "webhook")
    secret = page.input_value("#add-secret")
    assert secret.startswith("whsec_") and len(secret) > 40
    assert page.is_hidden("#add-channel input[name=chat_id]")
    page.fill("#add-channel input[name=name]", "ops hook")
    page.fill("#add-channel input[name=url]", receiver.base + "/hooks/page-secret-path-42")
    page.uncheck("#add-defaults")
    page.check("#add-channel input[data-event=stalled]")
    page.check("#add-channel input[data-event=rule]")
    page.uncheck("#add-channel input[data-event=lost]")
    page.click("#add-channel button[type=submit]")
    item = page.locator("#channels li[data-kind=webhook]")
    item.wait_for()
    assert "ops hook" in item.inner_text() and "page-secret-path-42" not in page.content()
    (stored,) = channels(account)
    assert stored["events"] == ["failure", "killed", "stalled", "rule"]
    assert page.is_visible("#add-error") is False

    # Test: the receiver's real answer is shown.
    receiver.answers.append(Answer(500, b"receiver <b>down</b> for maintenance"))
    item.locator("button[data-action=test]").click()
    item.locator(".result.bad", has_text="receiver <b>down</b> for maintenance").wait_for()
    assert receiver.requests[-1].json()["run"]["name"] == "Hyperdash test notification"

    # A run that fails: the receiver refuses it for good, and the page shows why.
    receiver.answers.append(Answer(404, b"no such hook"))
    feed = RunFeed(account, "<img src=x onerror=alert(1)> train")
    feed.end(ev.FAILURE, exit_code=2)
    deadline = time.monotonic() + 20
    while not page.locator("#deliveries li.failed").count():
        assert time.monotonic() < deadline, "the failed delivery never showed"
        page.reload()
        page.wait_for_selector("#add-channel [data-events] input[name=defaults]")
        time.sleep(0.3)
    failed = page.locator("#deliveries li.failed")
    assert "no such hook" in failed.locator(".detail").inner_text()
    assert "<img src=x onerror=alert(1)> train failed" in failed.locator("a").inner_text()
    assert failed.locator("a").get_attribute("href").endswith(f"/runs/{feed.uuid}")
    assert page.locator("#deliveries img").count() == 0

    # Edit: off, the defaults again, a name filter.
    item = page.locator("#channels li[data-kind=webhook]")
    item.locator("input[name=enabled]").uncheck()
    item.locator("input[name=defaults]").check()
    item.locator("input[name=name_filter]").fill("train-*")
    item.locator("button[data-action=save]").click()
    item.locator(".result.good", has_text="Saved").wait_for()
    (stored,) = channels(account)
    assert (stored["enabled"], stored["events"], stored["name_filter"]) == (False, None, "train-*")

    # Remove.
    item.locator("button[data-action=remove]").click()
    page.wait_for_selector("#channels-empty:not([hidden])")
    assert channels(account) == []
    assert page.evaluate("document.scrollingElement.scrollWidth <= document.scrollingElement.clientWidth")


def test_a_channels_address_and_secret_are_replaced_from_a_phone_never_shown(open_page, account, receiver):  # noqa: F811
    old_secret, moved_secret, new_secret = generate_secret(), generate_secret(), generate_secret()
    resp = account.server.session.post(
        account.server.url + "/api/v1/notify/channels", headers={ev.AUTH_HEADER: account.api_key}, timeout=10,
        json={"kind": "webhook", "name": "ops hook",
              "settings": {"url": receiver.base + "/hooks/old-secret-path-77", "secret": old_secret}})
    assert resp.status_code == 201, resp.text
    page = open_settings(open_page, account)
    item = page.locator("#channels li[data-kind=webhook]")
    item.wait_for()
    assert page.evaluate("document.scrollingElement.scrollWidth <= document.scrollingElement.clientWidth")

    def sent_with(secret: str, path: str) -> None:
        """Test the channel from the page: the receiver gets it at ``path``, signed with ``secret``."""
        before = len(receiver.requests)
        item.locator("button[data-action=test]").click()
        item.locator(".result.good", has_text="Test sent").wait_for()
        assert len(receiver.requests) == before + 1
        got = receiver.requests[-1]
        assert got.path == path
        assert verify_signature(secret, got.headers[SIGNATURE_HEADER.lower()], got.body)

    sent_with(old_secret, "/hooks/old-secret-path-77")
    item.locator("details.replace summary").click()
    fields = item.locator("details.replace input[data-setting]")
    assert [fields.nth(i).input_value() for i in range(fields.count())] == ["", ""]
    assert fields.nth(0).is_visible() and fields.nth(1).get_attribute("type") == "password"

    assert "needs the signing secret" in item.locator("details.replace .hint").inner_text()

    # A new address alone is refused with the server's reason (the stored secret is never sent
    # to a new address), and the channel stays as it was.
    item.locator("input[data-setting=url]").fill(receiver.base + "/hooks/new-secret-path-88")
    item.locator("button[data-action=save]").click()
    item.locator(".result.bad", has_text="needs this channel's secret given again").wait_for()
    page.errors[:] = [e for e in page.errors if "status of 400 (Bad Request)" not in e]
    sent_with(old_secret, "/hooks/old-secret-path-77")

    # With the secret (the address typed is still there): both replaced.
    item.locator("input[data-setting=secret]").fill(moved_secret)
    item.locator("button[data-action=save]").click()
    item.locator(".result.good", has_text="Saved").wait_for()
    assert item.locator("input[data-setting=url]").input_value() == ""  # not kept in the page
    sent_with(moved_secret, "/hooks/new-secret-path-88")

    # A new secret alone: the address is kept.
    item.locator("input[data-setting=secret]").fill(new_secret)
    item.locator("button[data-action=save]").click()
    item.locator(".result.good", has_text="Saved").wait_for()
    sent_with(new_secret, "/hooks/new-secret-path-88")

    # A bad address is refused with the server's message, and the channel stays as it was.
    item.locator("input[data-setting=url]").fill("not an address")
    item.locator("button[data-action=save]").click()
    item.locator(".result.bad", has_text="url").wait_for()
    page.errors[:] = [e for e in page.errors if "status of 400 (Bad Request)" not in e]
    sent_with(new_secret, "/hooks/new-secret-path-88")

    # Nothing of either secret ever reached the page, even after a reload.
    page.reload()
    item.wait_for()
    for text in (page.content(), json.dumps(channels(account))):
        for secret in (old_secret, moved_secret, new_secret, "old-secret-path-77", "new-secret-path-88"):
            assert secret not in text
    assert page.evaluate("document.scrollingElement.scrollWidth <= document.scrollingElement.clientWidth")


def test_the_service_worker_shows_the_servers_push_and_keeps_the_runs_link(open_page, account, receiver):  # noqa: F811
    # The server's side for real: a subscription (keys made here, as a browser makes them) and
    # a failing run; the push service on a loopback port gets the encrypted message.
    browser = Browser()
    resp = account.server.session.post(
        account.server.url + "/api/v1/notify/channels", headers={ev.AUTH_HEADER: account.api_key}, timeout=10,
        json={"kind": "webpush", "name": "phone", "settings": browser.subscription(receiver.base + "/push/sub1")})
    assert resp.status_code == 201, resp.text
    receiver.answers.append(Answer(201, b""))
    feed = RunFeed(account, "pushed-run")
    feed.log("Traceback (most recent call last):", "ValueError: bad shape")
    feed.end(ev.FAILURE, exit_code=1)
    deadline = time.monotonic() + 20
    while not receiver.requests:
        assert time.monotonic() < deadline, "no push reached the push service"
        time.sleep(0.05)
    payload = browser.decrypt(receiver.last.body)

    # The browser's side: the page registers the service worker; the push service's delivery is
    # played through the DevTools protocol with the decrypted payload.
    page = open_settings(open_page, account)
    origin = account.server.url
    page.context.grant_permissions(["notifications"], origin=origin)
    assert page.evaluate("navigator.serviceWorker.ready.then(() => true)")
    cdp = page.context.new_cdp_session(page)
    registrations: list[dict] = []
    cdp.on("ServiceWorker.workerRegistrationUpdated", lambda e: registrations.extend(e["registrations"]))
    cdp.send("ServiceWorker.enable")
    deadline = time.monotonic() + 10
    while not [r for r in registrations if r["scopeURL"] == origin + "/" and not r.get("isDeleted")]:
        assert time.monotonic() < deadline, f"no service worker registration: {registrations}"
        page.wait_for_timeout(50)  # (the sync API hands events over only while it waits)
    registration = next(r for r in registrations if r["scopeURL"] == origin + "/")
    cdp.send("ServiceWorker.deliverPushMessage", {
        "origin": origin, "registrationId": registration["registrationId"], "data": payload.decode()})

    shown = None
    deadline = time.monotonic() + 10
    while not shown:
        assert time.monotonic() < deadline, "the service worker showed no notification"
        shown = page.evaluate("""async () => {
            const reg = await navigator.serviceWorker.ready;
            return (await reg.getNotifications()).map(n => ({title: n.title, body: n.body, tag: n.tag, data: n.data}));
        }""")
        time.sleep(0.05)
    (note,) = shown
    sent = json.loads(payload)
    assert note["title"] == sent["title"] == "❌ pushed-run failed (exit code 1)"
    assert "ValueError: bad shape" in note["body"]
    assert note["tag"] == f"run-{feed.uuid}"
    assert note["data"]["url"].endswith(f"/runs/{feed.uuid}")

    # A tap: only a trusted event may wait for a window to open, so a dispatched one shows that
    # the handler runs and closes the notification, not that the run's page opens.
    (worker,) = page.context.service_workers
    left = worker.evaluate("""async () => {
        const [shown] = await self.registration.getNotifications();
        self.dispatchEvent(new NotificationEvent('notificationclick', {notification: shown}));
        return (await self.registration.getNotifications()).length;
    }""")
    assert left == 0


def test_subscribing_this_device_says_why_when_the_browser_cannot(open_page, account):
    page = open_settings(open_page, account)
    page.context.grant_permissions(["notifications"], origin=account.server.url)
    page.wait_for_selector("#push-subscribe:not([hidden])")
    page.click("#push-subscribe")
    state = page.locator("#push-state")
    deadline = time.monotonic() + 20
    while "subscribe" not in state.inner_text().lower() or "Get a notification" in state.inner_text():
        assert time.monotonic() < deadline, state.inner_text()
        time.sleep(0.1)
    # Playwright's contexts are incognito, where Chromium offers no Push API (and logs so itself):
    # the page says it could not subscribe, and adds nothing.
    page.errors[:] = [e for e in page.errors if "does not support the Push API in incognito" not in e]
    assert state.inner_text().startswith("Could not subscribe this device: ")
    assert channels(account) == []
    assert page.is_enabled("#push-subscribe")  # ready to try again

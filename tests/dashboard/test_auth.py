"""Signing in and out of the dashboard, the one-time link, and what guards the session."""

from __future__ import annotations

import re

import pytest
import requests

from .support import sign_in


def login_form_token(session: requests.Session, url: str) -> str:
    """The CSRF token of the sign-in form (its cookie is now in ``session``)."""
    page = session.get(url + "/login", timeout=10)
    assert page.status_code == 200
    return re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)


@pytest.mark.browser
def test_sign_in_with_password_and_sign_out(open_page, account):
    page = open_page()
    page.goto(account.server.url + "/")
    assert page.url.endswith("/login"), "an anonymous visitor is sent to the sign-in form"

    page.fill("input[name=email]", account.email)
    page.fill("input[name=password]", "not the password")
    page.click("button[type=submit]")
    assert page.locator("#login-error").inner_text() == "Wrong email or password."
    assert "/login" in page.url
    assert page.input_value("input[name=email]") == account.email
    page.errors.clear()  # the browser logs the 401 of that page as an error

    sign_in(page, account)
    assert page.url == account.server.url + "/"
    assert page.locator(".topbar .who").inner_text() == account.email

    cookie = next(c for c in page.context.cookies() if c["name"] == "hyperdash_session")
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Lax"
    assert page.evaluate("document.cookie").find("hyperdash_session") == -1

    page.click("#sign-out")
    page.wait_for_url("**/login")
    page.goto(account.server.url + "/")
    assert page.url.endswith("/login")
    # The old session token is dead on the server, not only forgotten by the browser.
    old = requests.get(account.server.url + "/api/v1/runs", cookies={"hyperdash_session": cookie["value"]},
                       timeout=10)
    assert old.status_code == 401


@pytest.mark.browser
def test_sign_in_returns_to_the_page_asked_for_but_never_off_site(open_page, account):
    page = open_page()
    page.goto(account.server.url + "/?status=failure")
    assert "/login?next=" in page.url
    page.fill("input[name=email]", account.email)
    page.fill("input[name=password]", account.password)
    with page.expect_navigation():
        page.click("button[type=submit]")
    assert page.url == account.server.url + "/?status=failure"
    assert page.input_value("#filter-status") == "failure"

    for target in ("//evil.example/", "https://evil.example/", "/\\evil.example"):
        session = requests.Session()
        token = login_form_token(session, account.server.url)
        resp = session.post(account.server.url + "/login", allow_redirects=False, timeout=10,
                            data={"email": account.email, "password": account.password,
                                  "csrf_token": token, "next": target})
        assert resp.status_code == 303
        assert resp.headers["location"] == "/", target


@pytest.mark.browser
def test_one_time_sign_in_link_works_once(open_page, server_factory):
    server = server_factory()
    found = re.search(r"Sign in to the dashboard: (\S+)", server.log_path.read_text())
    assert found, server.log_path.read_text()
    link = found.group(1)
    assert link.startswith(server.url + "/auth/token?token=")

    page = open_page()
    page.goto(link)
    assert page.url == server.url + "/"
    assert page.locator(".topbar .who").inner_text() == "local@localhost"

    again = open_page()
    again.goto(link)
    assert "/login" in again.url or again.locator("#login-error").count() == 1
    assert "expired or was used already" in again.locator("#login-error").inner_text()
    again.errors.clear()  # the refused link answers 400
    assert not [c for c in again.context.cookies() if c["name"] == "hyperdash_session"]


def test_forms_refuse_requests_from_other_sites(account):
    url = account.server.url
    data = {"email": account.email, "password": account.password}

    # Signing in needs the form's token and its cookie: a forged cross-site post has neither.
    forged = requests.post(url + "/login", data=data, allow_redirects=False, timeout=10)
    assert forged.status_code == 403
    assert "hyperdash_session" not in forged.cookies

    session = requests.Session()
    token = login_form_token(session, url)
    wrong = session.post(url + "/login", data={**data, "csrf_token": token + "x"}, allow_redirects=False,
                         timeout=10)
    assert wrong.status_code == 403
    other_site = session.post(url + "/login", data={**data, "csrf_token": token}, allow_redirects=False,
                              headers={"origin": "https://evil.example"}, timeout=10)
    assert other_site.status_code == 403
    assert "hyperdash_session" not in session.cookies

    signed_in = session.post(url + "/login", data={**data, "csrf_token": token}, allow_redirects=False,
                             timeout=10)
    assert signed_in.status_code == 303
    assert session.cookies.get("hyperdash_session")
    page = session.get(url + "/", timeout=10)
    csrf = re.search(r'<meta name="csrf-token" content="([^"]+)">', page.text).group(1)

    # Signing out without the session's token changes nothing.
    refused = session.post(url + "/logout", data={"csrf_token": "guess"}, allow_redirects=False, timeout=10)
    assert refused.status_code == 403
    assert session.get(url + "/api/v1/runs", timeout=10).status_code == 200

    # The API wants the token in a header from a cookie-authenticated caller.
    no_header = session.post(url + "/api/v1/users/api_keys", json={"name": "x"}, timeout=10)
    assert no_header.status_code == 403
    with_header = session.post(url + "/api/v1/users/api_keys", json={"name": "x"},
                               headers={"x-csrf-token": csrf}, timeout=10)
    assert with_header.status_code == 201

    out = session.post(url + "/logout", data={"csrf_token": csrf}, allow_redirects=False, timeout=10)
    assert out.status_code == 303
    assert session.get(url + "/api/v1/runs", timeout=10).status_code == 401


def test_sign_in_with_missing_fields_is_refused_clearly(account):
    session = requests.Session()
    token = login_form_token(session, account.server.url)
    resp = session.post(account.server.url + "/login", data={"csrf_token": token, "email": account.email},
                        allow_redirects=False, timeout=10)
    assert resp.status_code == 400
    assert "Enter your email and password." in resp.text
    assert "hyperdash_session" not in session.cookies


def test_pages_forbid_inline_and_foreign_scripts(account):
    session = requests.Session()
    for path in ("/login",):
        resp = session.get(account.server.url + path, timeout=10)
        policy = resp.headers["content-security-policy"]
        directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
        assert directives["script-src"] == "'self'"
        assert directives["default-src"] == "'self'"
        assert directives["frame-ancestors"] == "'none'"
        assert "<script>" not in resp.text, "no inline script"
    manifest = session.get(account.server.url + "/manifest.webmanifest", timeout=10)
    assert manifest.headers["content-type"].startswith("application/manifest+json")
    icons = {icon["sizes"]: icon["src"] for icon in manifest.json()["icons"]}
    for size in ("192x192", "512x512"):
        icon = session.get(account.server.url + icons[size], timeout=10)
        assert icon.status_code == 200 and icon.content[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = int.from_bytes(icon.content[16:20], "big"), int.from_bytes(icon.content[20:24], "big")
        assert f"{width}x{height}" == size

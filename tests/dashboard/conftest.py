"""Dashboard fixtures: real Chromium (Debian's ``chromium``, driven by Playwright) on the real
server.

Without Chromium or Playwright the browser tests skip, saying why; with
``HYPERDASH_REQUIRE_BROWSER=1`` they fail instead.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from .support import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, DESKTOP


@pytest.fixture(scope="session")
def browser():
    """One headless Chromium for the session."""
    required = os.environ.get("HYPERDASH_REQUIRE_BROWSER") == "1"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if required:
            pytest.fail("the playwright package is missing and HYPERDASH_REQUIRE_BROWSER=1")
        pytest.skip("the playwright package is not installed")
    if not shutil.which(CHROMIUM) and not Path(CHROMIUM).exists():
        if required:
            pytest.fail(f"Chromium is missing at {CHROMIUM} and HYPERDASH_REQUIRE_BROWSER=1")
        pytest.skip(f"Chromium is not installed at {CHROMIUM} (Debian package 'chromium')")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def open_page(browser):
    """``open_page(viewport=DESKTOP)``: a page in a fresh browser context (own cookies).

    Console errors and uncaught exceptions of the page are collected in ``page.errors``; the
    fixture fails the test if any happened, so a broken script never passes unnoticed.
    """
    contexts = []

    def make(viewport: dict = DESKTOP, **options):
        context = browser.new_context(viewport=viewport, **options)
        context.set_default_timeout(10_000)
        contexts.append(context)
        page = context.new_page()
        page.errors = []
        page.on("pageerror", lambda exc: page.errors.append(f"uncaught: {exc}"))
        page.on("console", lambda msg: msg.type == "error" and page.errors.append(f"console: {msg.text}"))
        return page

    yield make
    errors = [e for c in contexts for p in c.pages for e in getattr(p, "errors", [])]
    for context in contexts:
        context.close()
    assert not errors, errors


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS

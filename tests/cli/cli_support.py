"""Helpers for the command-line tests: how to start ``hyperdash`` and Python children."""

from __future__ import annotations

import sys

HYPERDASH = [sys.executable, "-m", "hyperdash"]


def py(code: str) -> list[str]:
    """A command line that runs Python ``code`` (a child for ``hyperdash run``)."""
    return [sys.executable, "-c", code]


def bare_env(home) -> dict[str, str]:
    """The environment of a person with Hyperdash home ``home`` and no HYPERDASH_* settings."""
    import os
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if not k.startswith("HYPERDASH_")}
    env.update(HYPERDASH_HOME=str(home), PYTHONPATH=str(repo))
    return env


def signed_in(account):
    """A ``requests.Session`` signed in to the dashboard as ``account``, through the sign-in
    form as a browser does it (its CSRF cookie and field, then the session cookie)."""
    import requests

    session = requests.Session()
    url = account.server.url
    form = session.get(url + "/login", timeout=10)
    assert form.status_code == 200, form.text
    signed = session.post(url + "/login", timeout=10, allow_redirects=False, data={
        "email": account.email, "password": account.password, "next": "/",
        "csrf_token": session.cookies.get("hyperdash_login_csrf"),
    })
    assert signed.status_code == 303 and session.cookies.get("hyperdash_session"), signed.text
    return session

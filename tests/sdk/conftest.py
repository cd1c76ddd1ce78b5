"""Helpers for the SDK's tests: monitored scripts run as real child processes."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest


@pytest.fixture
def script(tmp_path):
    """``script(code)``: write ``code`` (dedented) to a file and return its path."""
    count = [0]

    def write(code: str) -> Path:
        count[0] += 1
        path = tmp_path / f"job_{count[0]}.py"
        path.write_text(textwrap.dedent(code))
        return path

    return write


@pytest.fixture
def sdk_env(account, hyperdash_home):
    """The environment of a job reporting to ``account``, with a short exit flush."""

    def make(**overrides: str) -> dict[str, str]:
        env = account.sdk_env(hyperdash_home)
        env.update(HYPERDASH_EXIT_TIMEOUT="5", HYPERDASH_UPLOADER_PATIENCE="20")
        env.pop("PYTHONUNBUFFERED", None)
        env.update(overrides)
        return env

    return make


@pytest.fixture
def run_job(script, sdk_env):
    """``run_job(code, **env)``: run a script to completion; its CompletedProcess (text)."""

    def run(code: str, timeout: float = 60, env: dict[str, str] | None = None, **popen) -> subprocess.CompletedProcess:
        path = script(code)
        return subprocess.run(
            [sys.executable, str(path)], env=env or sdk_env(), capture_output=True,
            timeout=timeout, stdin=subprocess.DEVNULL, **popen,
        )

    return run



@pytest.fixture
def reporting(account, monkeypatch):
    """This process reports to ``account`` (for runs made in the test itself)."""
    monkeypatch.setenv("HYPERDASH_SERVER", account.server.url)
    monkeypatch.setenv("HYPERDASH_API_KEY", account.api_key)
    return account

"""Helpers for running the real ``hyperdash`` command as a subprocess."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from cli_support import HYPERDASH


@pytest.fixture
def hd(account, hyperdash_home: Path):
    """``hd(*args)``: run ``python -m hyperdash ARGS`` as ``account``, wait, return the result."""

    def call(*args: str, timeout: float = 60, **kwargs) -> subprocess.CompletedProcess:
        if "stdout" not in kwargs and "stderr" not in kwargs:
            kwargs.setdefault("capture_output", True)
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        return subprocess.run(
            [*HYPERDASH, *args], env=account.sdk_env(hyperdash_home), timeout=timeout, **kwargs
        )

    return call

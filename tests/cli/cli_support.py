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

"""Helpers shared by the SDK's tests."""

from __future__ import annotations


def texts(lines: list[dict], stream: str | None = None) -> list[str]:
    """The text of each log line (of ``stream`` only, when given)."""
    return [line["text"] for line in lines if stream is None or line["stream"] == stream]


def traceback_from(text: str) -> str:
    """``text`` from its first Python traceback on."""
    return text[text.index("Traceback (most recent call last):"):].rstrip("\n")


def counting_job(name: str, lines: int) -> str:
    """A job monitored as ``name`` that prints the numbers below ``lines``, one a line, as fast
    as it can."""
    return f"""
from hyperdash import monitor

@monitor({name!r})
def job():
    for i in range({lines}):
        print(i)

job()
"""

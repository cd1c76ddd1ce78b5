"""What the command line prints: tables, times and durations, run statuses, log lines and
upload progress bars.

Pure presentation: nothing here talks to a server or reads settings, so each piece can be
checked on its own and reused by any command.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from click._termui_impl import ProgressBar

from .events import STDERR

__all__ = [
    "print_table",
    "print_line",
    "clip",
    "parse_time",
    "when",
    "duration",
    "status_text",
    "ProgressBars",
]


# Control characters in a cell (a name with a newline, or an escape sequence that would drive
# the terminal): shown as a space (the spacing ones) or as U+FFFD, so that a row stays one line.
_SPACING = {ord(c): " " for c in "\t\n\v\f\r"}
_CONTROLS = {**{c: "\ufffd" for c in [*range(0x20), *range(0x7F, 0xA0)]}, **_SPACING}


def print_table(headers: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> None:
    """Columns as wide as their widest cell, two spaces apart; the last one is not padded. A
    cell's control characters are shown as a space or U+FFFD: each row is one line."""
    rows = [tuple(cell.translate(_CONTROLS) for cell in row) for row in rows]
    widths = [max(len(cell) for cell in column) for column in zip(headers, *rows, strict=False)]
    for row in (headers, *rows):
        # The last column has no width to pad to: one fewer cell than widths.
        cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=False)]
        click.echo("  ".join([*cells, row[-1]]))


def print_line(line: Mapping[str, Any]) -> None:
    """One log line of the API (``{"text", "stream", "partial"}``) on stdout or stderr, as
    the job wrote it; a partial piece gets no newline, the next piece continues it."""
    end = "" if line.get("partial") else "\n"
    click.echo(line.get("text", "") + end, nl=False, err=line.get("stream") == STDERR)


def clip(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters, an ellipsis saying that it was."""
    return text if len(text) <= width else text[: width - 1] + "…"


def parse_time(value: object) -> datetime | None:
    """An aware datetime from the API's ISO-8601 text or an epoch number; ``None`` if neither."""
    if value in (None, ""):
        return None
    if isinstance(value, (int, float)):
        # Milliseconds since the epoch, as envelopes carry them (seconds if small).
        seconds = value / 1000 if value > 1e11 else value
        return datetime.fromtimestamp(seconds, timezone.utc)
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def when(value: object) -> str:
    """A moment in local time, ``2026-03-01 14:05:09``; ``-`` when there is none."""
    parsed = parse_time(value)
    return parsed.astimezone().strftime("%Y-%m-%d %H:%M:%S") if parsed else "-"


def duration(started: object, ended: object) -> str:
    """How long a run took (``42.0s``, ``3m05s``, ``2h01m00s``), or has taken so far
    (``... (running)``) when it has not ended."""
    start = parse_time(started)
    if start is None:
        return "-"
    end = parse_time(ended) or datetime.now(timezone.utc)
    seconds = max(0.0, (end - start).total_seconds())
    if seconds < 60:
        text = f"{seconds:.1f}s"
    else:
        hours, rest = divmod(int(seconds), 3600)
        minutes, rest = divmod(rest, 60)
        text = f"{hours}h{minutes:02d}m{rest:02d}s" if hours else f"{minutes}m{rest:02d}s"
    return text if ended else text + " (running)"


def status_text(run: Mapping[str, Any]) -> str:
    """``failure (4)``, ``killed (SIGKILL)``, ``running (stalled)``: the status with the exit
    code, the signal or the stall behind it."""
    text = str(run.get("status") or "")
    if run.get("stalled_since"):
        return f"{text} (stalled)"
    if run.get("signal"):
        return f"{text} ({run['signal']})"
    if run.get("exit_code") not in (None, 0):
        return f"{text} ({run['exit_code']})"
    return text


class ProgressBars:
    """One click progress bar on stderr for each run that an upload sends; :meth:`update` is
    the ``on_progress(run_uuid, sent, total)`` callback of :func:`uploader.upload_pending`."""

    def __init__(self) -> None:
        self._run: str | None = None
        self._bar: ProgressBar[int] | None = None
        self._done = 0

    def __enter__(self) -> ProgressBars:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._close()

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.render_finish()
            self._bar = None

    def update(self, run_uuid: str, sent: int, total: int) -> None:
        """``sent`` of the ``total`` events of ``run_uuid`` are sent: a new bar for a new run."""
        bar = self._bar
        if run_uuid != self._run or bar is None:
            self._close()
            self._run, self._done = run_uuid, 0
            bar = self._bar = click.progressbar(length=max(total, 1), label=f"Run {run_uuid[:8]}", file=sys.stderr)
        if sent > self._done:
            bar.update(sent - self._done)
            self._done = sent

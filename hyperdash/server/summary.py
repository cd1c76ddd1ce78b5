"""Where a failed run went wrong: one line to show in the runs list, and the lines that show it.

Computed once, when the run's ``run_ended`` is stored with the status ``failure`` or
``killed``, from the run's last :data:`WINDOW` lines (stored in the same transaction):

- a Python traceback among them: its last line, ``ZeroDivisionError: division by zero``, and
  the lines from ``Traceback (most recent call last):`` to that one;
- else ``killed by SIGKILL`` or ``exit code 3`` (a failure without either: the last line of
  stderr), and the last :data:`LAST_LINES` lines of stderr (of any stream, when there are none).

A killed run is summed up by its signal even with a traceback (which is still what is shown).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from .. import events as ev
from ..plaintext import plain_line
from .store import logs

__all__ = ["failure_of", "WINDOW", "LAST_LINES", "MAX_SUMMARY_CHARS"]

#: How many of the run's last lines are searched for a traceback.
WINDOW = 300
#: How many lines of stderr are shown when there is no traceback.
LAST_LINES = 10
MAX_SUMMARY_CHARS = 300
_TRACEBACK = "Traceback (most recent call last):"


def failure_of(conn: Connection, run_id: int, ended: dict[str, Any]) -> dict[str, Any]:
    """The run's columns ``failure``, ``failure_first_seq`` and ``failure_last_seq``, as the
    ``run_ended`` payload ``ended`` and the run's last lines say (empty for a run that did not
    fail)."""
    status = ended["final_status"]
    if status not in (ev.FAILURE, ev.KILLED):
        return {}
    rows = conn.execute(
        select(logs.c.seq, logs.c.stream, logs.c.text)
        .where(logs.c.run_id == run_id, logs.c.superseded == 0)
        .order_by(logs.c.seq.desc()).limit(WINDOW)
    ).all()
    lines = [(row.seq, row.stream, plain_line(row.text) or "") for row in reversed(rows)]
    told, first, last = _traceback(lines)
    said = None  # the last line of stderr, when there is no traceback
    if first is None:
        errors = [line for line in lines if line[1] == ev.STDERR and line[2].strip()] or \
            [line for line in lines if line[2].strip()]
        shown = errors[-LAST_LINES:]
        if shown:
            first, last, said = shown[0][0], shown[-1][0], shown[-1][2].strip()
    exit_code, signal = ended.get("exit_code"), ended.get("signal")
    if status == ev.KILLED:
        summary = f"killed by {signal}" if signal else told or "killed"
    else:
        summary = told or (f"exit code {exit_code}" if exit_code not in (None, 0) else said or "failed")
    return {"failure": summary[:MAX_SUMMARY_CHARS], "failure_first_seq": first, "failure_last_seq": last}


def _traceback(lines: list[tuple[int, str, str]]) -> tuple[str | None, int | None, int | None]:
    """(the exception's line, the seq of the last traceback's first line, of its last line)."""
    start = next((k for k in range(len(lines) - 1, -1, -1) if lines[k][2].strip() == _TRACEBACK), None)
    if start is None:
        return None, None, None
    stream = lines[start][1]
    last = start
    for k in range(start + 1, len(lines)):
        seq, line_stream, text = lines[k]
        if line_stream != stream:
            continue
        last = k
        if text and not text[0].isspace():  # the frames are indented; the exception is not
            return text.strip(), lines[start][0], seq
    return _TRACEBACK, lines[start][0], lines[last][0]

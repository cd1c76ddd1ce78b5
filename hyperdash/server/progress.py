"""A run's progress: how far it is, how fast it goes, and how long it has left.

Two things tell it. A progress bar (tqdm's, or one drawn like it) is stored as progress lines,
the latest state of a line redrawn with ``\\r``::

    37%|███▋      | 370/1000 [01:02<01:45,  5.95it/s]

and ``exp.iter(n)`` records the internal param ``hd_iter_K_epochs`` (n) and the internal
metric ``hd_iter_K`` (the index reached). Ingest calls :func:`track` once per run and batch;
it parses at most two lines of the batch (the last progress line, and the line that finished
it), looks at the batch's last ``hd_iter_`` point and its params, and keeps the result on the
run (the ``progress`` column, JSON) as::

    {"done": 370, "total": 1000, "percent": 37.0, "rate": 5.95, "eta_s": 105.0,
     "elapsed_s": 62.0, "unit": "it", "source": "bar", "updated_at": "2024-05-01T12:00:00.000Z"}

``rate`` is per second, ``eta_s`` the seconds left as of ``updated_at`` (derived from the rate
when the bar shows none). :func:`track` says when the change is worth announcing: at most once
every :data:`ANNOUNCE_MS` per run, and always when the progress reaches its total.
"""

from __future__ import annotations

import re
from itertools import islice
from typing import Any

import orjson
from sqlalchemy import select, update
from sqlalchemy.engine import Connection

from .. import events as ev
from ..plaintext import last_state, strip_escapes
from .batch import Line, Mark, Point
from .store import run_events, runs
from .views import iso

__all__ = ["track", "parse_bar", "ANNOUNCE_MS"]

#: The least time between two announcements of one run's progress (the live streams').
ANNOUNCE_MS = 1000

# A count or rate, and a clock, as a bar shows them. The digits before the point are bounded
# (and a number is never read from the middle of a longer one), so that what is read is always
# a finite float: a line with a number too long for that is simply no bar.
_NUMBER = r"(?<![\d.])\d{1,15}(?:\.\d+)?(?![\d.])[kMGTPEZY]?"
_CLOCK = r"(?:\d{1,6}d,\s*)?(?:\d{1,9}:)?\d{1,9}:\d\d(?!\d)"
# tqdm's right side: "370/1000 [01:02<01:45,  5.95it/s" (the total, the time left and the rate
# may each be missing or "?"), after the percent and the bar on its left side.
_BAR = re.compile(
    rf"(?:(?P<percent>\d{{1,3}}(?:\.\d+)?)%\s*\|[^|]*\|\s*)?"
    rf"(?P<done>{_NUMBER})(?:/(?P<total>{_NUMBER}))?\s?(?P<unit>[^\s\[\]\d/]*)\s*"
    rf"\[(?P<elapsed>{_CLOCK})(?:<(?P<left>{_CLOCK}|\?))?"
    rf"(?:,\s*(?P<rate>{_NUMBER}|\?)\s?(?P<rate_unit>[^\s,\]]*))?"
)
_SCALE = {"k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18, "Z": 1e21, "Y": 1e24}
_ITER_METRIC = re.compile(r"hd_iter_(\d+)")
_ITER_PARAM = re.compile(r"hd_iter_(\d+)_epochs")
_EXACT = 2 ** 53  # the largest integer up to which every integer is a float


def _number(text: str) -> float:
    if text[-1] in _SCALE:
        return float(text[:-1]) * _SCALE[text[-1]]
    return float(text)


def _seconds(clock: str) -> float:
    days = 0
    if "d," in clock:
        head, clock = clock.split("d,", 1)
        days = int(head)
    seconds = 0
    for part in clock.strip().split(":"):
        seconds = seconds * 60 + int(part)
    return float(days * 86400 + seconds)


def _plain_number(value: float) -> float | int:
    # (an int only where a float holds it exactly: JSON's readers need no more)
    return int(value) if abs(value) <= _EXACT and value == int(value) else round(value, 3)


def _made(done: float, total: float | None, rate: float | None, left: float | None, elapsed: float | None,
          unit: str, source: str, ts: int) -> dict[str, Any]:
    """The progress as kept, with what the bar did not show derived from what it did."""
    if total is not None and total <= 0:
        total = None
    if rate is None and elapsed and done > 0:
        rate = done / elapsed
    if left is None and total is not None and rate:
        left = max(0.0, (total - done) / rate)
    percent = None if total is None else round(min(100.0, 100.0 * done / total), 1)
    return {"done": _plain_number(done), "total": None if total is None else _plain_number(total),
            "percent": percent, "rate": None if rate is None else round(rate, 4),
            "eta_s": None if left is None else round(left, 1),
            "elapsed_s": None if elapsed is None else round(elapsed, 1),
            "unit": unit, "source": source, "updated_at": iso(ts)}


def parse_bar(text: str, ts: int = 0) -> dict[str, Any] | None:
    """The progress a tqdm-style bar's line shows (escape codes and ``\\r`` states allowed),
    or None when the line is no such bar."""
    plain = last_state(strip_escapes(text))
    if "[" not in plain:  # (every bar shows its elapsed time in brackets: most lines stop here)
        return None
    found = None
    for match in _BAR.finditer(plain):  # the last one: the bar is at the end of its line
        found = match
    if found is None:
        return None
    done = _number(found["done"])
    total = _number(found["total"]) if found["total"] else None
    if total is None and found["percent"] is not None:
        return None  # a percent without a count: not a bar this knows
    rate = None
    rate_unit = found["rate_unit"] or ""
    per_item = rate_unit.startswith("s/")  # "1.50s/it": seconds per item
    if found["rate"] and found["rate"] != "?":
        value = _number(found["rate"])
        rate = (1 / value if value else None) if per_item else value
    left = _seconds(found["left"]) if found["left"] and found["left"] != "?" else None
    unit = found["unit"] or (rate_unit[2:] if per_item else rate_unit.split("/")[0]) or "it"
    return _made(done, total, rate, left, _seconds(found["elapsed"]), unit, "bar", ts)


def track(conn: Connection, run: dict[str, Any], hints: dict[str, Any], lines: list[Line], has_progress: bool,
          points: list[Point], marks: list[Mark], now: int) -> bool:
    """Keep the progress that this batch of the run shows (``run`` is the writer's row of the
    run, updated too; ``hints`` what this process remembers of the run across transactions);
    whether it is worth announcing now."""
    bar = _bar(hints, lines, has_progress, now) if lines else None
    counted = _iteration(conn, run, hints, points, marks, now) if points or marks else None
    if bar is None and counted is None:
        return False
    seq, progress = max((found for found in (bar, counted) if found is not None), key=lambda f: f[0])
    text = orjson.dumps(progress).decode()
    if text == run.get("progress"):
        return False
    conn.execute(update(runs).where(runs.c.id == run["id"]).values(progress=text))
    run["progress"] = text
    told = hints.get("progress_told")
    finished = progress["total"] is not None and progress["done"] >= progress["total"]
    if told is not None and now - told < ANNOUNCE_MS and not finished:
        return False
    hints["progress_told"] = now
    return True


# How many of a batch's last lines are looked at for a bar that finished within it.
_FINISHED_BAR_LOOK = 64


def _may_be_a_bar(text: str) -> bool:
    """A cheap first look: a bar's line ends with its bracketed times (``[00:01<00:00, 5it/s]``),
    perhaps followed by escape codes, or holds its redrawn states."""
    return "\r" in text or "]" in text[-24:]


# How many lines after a bar's last progress state may hold its final state.
_FINAL_STATE_LOOK = 8


def _next_lines(lines: list[Line], stream: str) -> list[Line]:
    """The first lines of ``stream`` among ``lines``, where a bar's final state may be."""
    return list(islice((line for line in lines if line.stream == stream), _FINAL_STATE_LOOK))


def _bar(hints: dict[str, Any], lines: list[Line], has_progress: bool, now: int) -> tuple[int, dict] | None:
    """(seq, progress) of the batch's last progress bar, or of the line that finished it."""
    candidates: list[Line] = []
    if has_progress:
        last = next((k for k in range(len(lines) - 1, -1, -1) if lines[k].progress and lines[k].text), None)
        if last is not None:
            stream = lines[last].stream
            # the bar's final state comes as an ordinary line, the one that replaced it (or,
            # below lines written above a nested bar's rows, one of the next few)
            candidates = [*_next_lines(lines[last + 1:], stream), lines[last]]
    if not candidates and hints.get("bar_stream"):
        candidates = _next_lines(lines, hints["bar_stream"])
        if not candidates:
            return None
    if not candidates:
        # A bar begun and finished within one batch (a short loop) comes as one ordinary line:
        # its last state (the SDK resolves the \r-redrawn states), or all of them. The last
        # line near the batch's end that may be one (a look bounded in cost).
        finished = next((line for line in reversed(lines[-_FINISHED_BAR_LOOK:]) if _may_be_a_bar(line.text)), None)
        candidates = [finished] if finished is not None else []
    for line in candidates:
        progress = parse_bar(line.text, min(line.ts, now))
        if progress is not None:
            hints["bar_stream"] = line.stream if line.progress else None
            return line.seq, progress
    hints["bar_stream"] = None
    return None


def _iteration(conn: Connection, run: dict[str, Any], hints: dict[str, Any], points: list[Point], marks: list[Mark],
               now: int) -> tuple[int, dict] | None:
    """(seq, progress) of the batch's last ``exp.iter`` step (or of a loop just begun)."""
    loops: dict[int, tuple[float, int]] = hints.setdefault("iter_loops", {})  # K -> (n, started at)
    begun = None
    for mark in marks:
        if mark.type != ev.PARAM:
            continue
        for name, value in mark.payload["params"].items():
            matched = _ITER_PARAM.fullmatch(name) if name.startswith("hd_iter_") else None
            if matched and isinstance(value, (int, float)) and not isinstance(value, bool):
                loops[int(matched[1])] = (float(value), mark.ts)
                begun = (mark.seq or 0, int(matched[1]))
    point = next((p for p in reversed(points) if p.is_internal and p.name.startswith("hd_iter_")
                  and _ITER_METRIC.fullmatch(p.name)), None)
    if point is not None and (begun is None or (point.seq or 0) > begun[0]):
        number = int(point.name[len("hd_iter_"):])
        total, started = loops.get(number) or _stored_loop(conn, run["id"], number) or (None, run["started_at"])
        if total is not None:
            loops[number] = (total, started)
        done = point.value + 1  # (the index reached: that many steps are done)
        elapsed = max(0.0, (point.ts - started) / 1000)
        return point.seq or 0, _made(done, total, None, None, elapsed or None, "it", "iter", min(point.ts, now))
    if begun is not None:
        total, started = loops[begun[1]]
        return begun[0], _made(0, total, None, None, None, "it", "iter", min(started, now))
    return None


def _stored_loop(conn: Connection, run_id: int, number: int) -> tuple[float, int] | None:
    """(n, when it was recorded) of the run's loop ``number``, from its stored params (only
    when the writer met the loop's first step before this process did)."""
    name = f"hd_iter_{number}_epochs"
    for payload, ts in conn.execute(
        select(run_events.c.payload, run_events.c.ts)
        .where(run_events.c.run_id == run_id, run_events.c.type == ev.PARAM,
               run_events.c.payload.contains(f'"{name}"', autoescape=True))
        .order_by(run_events.c.seq.desc()).limit(1)
    ):
        value = orjson.loads(payload)["params"].get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value), ts
    return None

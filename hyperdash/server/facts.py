"""What the store announces after a commit: plain domain facts, one record per thing that
happened, for the subscribers of :mod:`hyperdash.server.announce`.

Every fact names its account (``user_id``) and its run (``run_id``, the store's key, and
``run_uuid``, the client's). Facts about the run as a whole carry ``run``, the run as it stands
after the commit (the same fields the API shows, times in milliseconds since the epoch), so a
subscriber needs no read of its own. Facts are frozen, plain data: :func:`to_json` and
:func:`from_json` carry them to another process and back unchanged.

A batch announces, per run, in this order: ``RunCreated`` (the run's first events), the stored
``LinesStored``, ``PointsStored``, ``ParamsStored``, then ``RunStarted``, ``RunEnded`` or
``RunBack`` as its events say, then ``RunResumed`` (a stalled run made progress) and ``RuleFired``.
The sweep for silent runs announces ``RunLost``; the one for stuck runs ``RunStalled``.
"""

from __future__ import annotations

from typing import Any, Union

import msgspec

from .batch import Line, Mark, Point

__all__ = ["Fact", "RunState", "RunCreated", "RunStarted", "RunEnded", "RunLost", "RunBack",
           "LinesStored", "PointsStored", "ParamsStored", "Param", "ProgressChanged", "StopRequested",
           "RunStalled", "RunResumed", "RuleFired", "RunDeleted", "RunArchived", "RUN_FACTS", "FACT_TYPES",
           "to_json", "from_json"]


class RunState(msgspec.Struct, frozen=True):
    """A run as it stands after the commit (the columns of the ``runs`` table the API shows)."""

    uuid: str
    name: str | None
    status: str
    started_at: int
    ended_at: int | None
    last_seen_at: int
    exit_code: int | None
    signal: str | None
    host: str | None
    pid: int | None
    api: str | None
    max_seq: int  # the highest seq the run holds (``last_seq`` in the API)
    # (server/progress.py, server/summary.py, server/stop.py)
    progress: str | None = None  # the latest progress, as JSON text
    failure: str | None = None  # a failed run's one-line summary
    failure_first_seq: int | None = None
    failure_last_seq: int | None = None
    stop_requested_at: int | None = None
    stop_by: str | None = None
    stop_via: str | None = None
    stalled_since: int | None = None  # when a running run stalled (server/stalls.py), else None
    archived_at: int | None = None  # when the run was archived (out of the default lists), else None


class Fact(msgspec.Struct, frozen=True, tag_field="kind", tag=True):
    """The base of every fact: whose run it is about. ``kind`` in JSON is the class name."""

    user_id: int
    run_id: int
    run_uuid: str


# Each fact says frozen=True again, though msgspec inherits it, for type checkers, which do not.
class RunCreated(Fact, frozen=True):
    """The first events of a run the store did not know were stored."""

    run: RunState


class RunStarted(Fact, frozen=True):
    """The run's ``run_started`` event was stored (its name, host, pid, api are in ``run``)."""

    run: RunState


class RunEnded(Fact, frozen=True):
    """The run's ``run_ended`` event was stored."""

    status: str  # one of events.FINAL_STATUSES
    exit_code: int | None
    signal: str | None  # a signal's name, such as "SIGTERM"
    run: RunState


class RunLost(Fact, frozen=True):
    """The run sent nothing for longer than the server's lost timeout."""

    run: RunState


class RunBack(Fact, frozen=True):
    """A lost run sent events again: it is running once more."""

    run: RunState


class ProgressChanged(Fact, frozen=True):
    """The run's progress moved (a progress bar's line, or ``exp.iter``): ``run.progress``.
    Told at most about once a second per run (server/progress.py), and always when it is done."""

    run: RunState


class RunStalled(Fact, frozen=True):
    """A running run made no progress (no output, no metric or param of its own) for its stall
    window, though it may still be alive; ``since`` is when it last made progress."""

    since: int
    run: RunState


class RunResumed(Fact, frozen=True):
    """A stalled run made progress again."""

    run: RunState


class StopRequested(Fact, frozen=True):
    """Someone asked the run to stop (``run.stop_by``, ``run.stop_via``); the job hears of it
    in the reply to its next batch or heartbeat."""

    run: RunState


class RuleFired(Fact, frozen=True):
    """A metric rule fired on a point just stored. ``value`` is the point's value as text
    (``NaN``, ``Infinity`` or a number), ``rule`` the rule in words."""

    rule_id: int
    firing_id: int
    rule: str
    metric: str
    value: str
    step: int | None
    seq: int
    ts: int
    fired_at: int
    run: RunState


class LinesStored(Fact, frozen=True):
    """Log lines stored and shown, in seq order (a progress line replaced in the same batch is
    left out). An erased bar (a progress line with no text) is told too, though it is stored
    superseded: a view open meanwhile removes the bar it drew."""

    lines: tuple[Line, ...]


class PointsStored(Fact, frozen=True):
    """Metric points stored, in the order they came; ``nonfinite``: those whose value is NaN or
    infinite, stored apart (their ``metric`` events: the value is the text ``NaN``, ...)."""

    points: tuple[Point, ...]
    nonfinite: tuple[Mark, ...] = ()


class Param(msgspec.Struct, frozen=True, array_like=True):
    """One ``param`` event: the params it set."""

    seq: int
    ts: int
    params: dict[str, Any]


class ParamsStored(Fact, frozen=True):
    """``param`` events stored, in the order they came."""

    params: tuple[Param, ...]


class RunDeleted(Fact, frozen=True):
    """The run was deleted (by its owner, or by the retention rule): it is gone from every view."""


class RunArchived(Fact, frozen=True):
    """The run was archived (out of the default lists), or brought back (``run.archived_at`` None)."""

    run: RunState


# Facts about the run as a whole: each carries ``run``, the run as it stands after the commit.
RUN_FACTS = (RunCreated, RunStarted, RunEnded, RunLost, RunBack, ProgressChanged, StopRequested, RunStalled,
             RunResumed, RunArchived)
FACT_TYPES = (*RUN_FACTS, LinesStored, PointsStored, ParamsStored, RuleFired, RunDeleted)
_ANY_FACT = list[Union[FACT_TYPES]]  # type: ignore[valid-type]  # noqa: UP007 (a runtime union of a tuple)
_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(_ANY_FACT)


def to_json(facts: list[Fact]) -> bytes:
    """``facts`` as a JSON array (each an object with ``kind``), for another process."""
    return _ENCODER.encode(facts)


def from_json(data: bytes | str) -> list[Fact]:
    """The facts of :func:`to_json`'s output."""
    return _DECODER.decode(data)

"""A checked batch: the events of one ingest request, grouped by run, as rows ready to store.

Rows are small frozen records (msgspec Structs: made in C, so the tens of thousands of lines a
second that ingest takes cost little more than tuples would). ``array_like`` makes each one a
JSON array in field order, which is also the order the SQLite insert of plain lines binds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec

__all__ = ["Line", "Point", "Mark", "Chunk", "RunPart", "Batch", "NUMBERED_FROM"]

# Seqs a sender may send are below this; the events that come without one are numbered above
# it, so that a run with both (a second sender, a resumed run) has no seq that both claim: a
# sender's event is never taken for a copy of one the server numbered. (2**52: a sender counting
# from 1 never gets there, and the server's numbers stay exact as a page's JavaScript reads them.)
NUMBERED_FROM = 2**52


class Line(msgspec.Struct, frozen=True, gc=False, array_like=True):
    """One log line (``partial`` and ``progress`` are 0 or 1)."""

    seq: int
    ts: int
    stream: str
    text: str
    partial: int
    progress: int


class Point(msgspec.Struct, frozen=True, gc=False, array_like=True):
    """One metric point (``is_internal`` is 0 or 1)."""

    seq: int | None
    ts: int
    name: str
    value: float
    step: int | None
    is_internal: int


class Mark(msgspec.Struct, frozen=True, array_like=True):
    """A ``run_started``, ``run_ended`` or ``param`` event; ``type`` is the event type."""

    seq: int | None
    ts: int
    type: str
    payload: dict[str, Any]


class Chunk(msgspec.Struct, frozen=True, gc=False, array_like=True):
    """Output of an original client, sent without a seq: cut into lines when stored.
    ``chunk_id`` is the envelope's ``payload.uuid``, so a resent chunk is stored once."""

    ts: int
    stream: str
    body: str
    partial: int
    progress: int
    chunk_id: str | None


@dataclass
class RunPart:
    """The checked events of one run in a request, in the order they came."""

    uuid: str
    # Events that came with a seq.
    lines: list[Line] = field(default_factory=list)
    points: list[Point] = field(default_factory=list)
    marks: list[Mark] = field(default_factory=list)
    # Events without a seq (chunks of output; points and marks with seq None), in the order
    # they came: numbered when stored, after everything the run holds.
    unsequenced: list[Chunk | Point | Mark] = field(default_factory=list)
    envelopes: int = 0  # every envelope of the run, heartbeats included
    has_progress: bool = False  # a progress line is among ``lines``
    # ``lines`` are one stretch, as blocks of lines cut from one read of output come: each
    # line's seq the one after the last's, one time, one stream, none partial or progress (a
    # hint of how to store them, found where it costs nothing: not part of what was sent)
    one_run: bool = field(default=False, compare=False)


@dataclass
class Batch:
    """A checked request: who sent it, with which face (``api``), and its runs by uuid;
    ``replay`` when it uploads the spool of a process that has ended (no sign of life)."""

    user_id: int
    api: str | None
    parts: dict[str, RunPart]
    replay: bool = False

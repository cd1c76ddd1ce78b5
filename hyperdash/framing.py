"""Bytes to log lines: one stream's raw output cut into the pieces that become log events.

The common case (no ``\\r``, no over-long line) is handled per chunk with C-speed bytes
operations and no copy of the chunk: its complete lines go in pieces of about
:data:`PIECE_BYTES` at most (one more, the line that an earlier chunk began). Only a chunk with a
``\\r`` (a progress bar redrawing itself) or a line longer than :data:`events.MAX_LINE_BYTES`
takes the line-by-line path.

A piece is ``(kind, blob, count)``:

- ``LINES``: ``count`` complete lines, each ending in ``\\n`` (bytes, or a memoryview of the
  chunk fed, to spare copying it);
- ``PARTIAL``: one piece of a line too long to send whole; the next piece continues it;
- ``PROGRESS``: the latest state of a line still being redrawn with ``\\r``; an empty one when
  that line was erased (``\\r`` and spaces, or an erase-line escape such as ``\\x1b[K``), as a
  progress bar that is not left behind erases itself.

An erased line leaves nothing behind: not as a line of spaces at the end, nor as the last state
of the bar it erased.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

from .events import MAX_LINE_BYTES

__all__ = ["LINES", "PARTIAL", "PROGRESS", "PIECE_BYTES", "LineFramer", "visible_text", "utf8_cut"]

LINES = 1
PARTIAL = 2
PROGRESS = 3

# The most bytes of whole lines in one LINES piece (unless one line is longer): a piece becomes
# a spool record, and a batch that ends partway through a record has its sender count lines in
# it, then read it again for the next batch. Bounded pieces keep that to a fraction of a batch
# however much output one read brings (a flood's reads bring a megabyte).
PIECE_BYTES = 128 * 1024

Piece = tuple[int, "bytes | memoryview", int]


# A state that only blanks the line: spaces written over it, or the escapes that erase it
# (erase in line: to its end, to its start, all of it).
_ERASED = re.compile(rb"(?:[ \t]|\x1b\[[012]?K)*")


def visible_text(line: bytes) -> bytes:
    """What a terminal shows of a line redrawn with ``\\r``: its last non-empty state, or
    nothing when that state only erases the line."""
    for state in reversed(line.split(b"\r")):
        if state:
            return b"" if _ERASED.fullmatch(state) else state
    return b""


def utf8_cut(data: bytes, limit: int) -> int:
    """An index <= ``limit`` at which ``data`` can be cut without splitting a UTF-8 character."""
    cut = limit
    while cut > limit - 4 and cut > 0 and (data[cut] & 0xC0) == 0x80:
        cut -= 1
    return cut if cut > limit - 4 and cut > 0 else limit


def _may_hold_a_line_over(block: bytes, limit: int, start: int = 0, end: int | None = None) -> bool:
    """False when no line of ``block[start:end]`` is longer than ``limit`` bytes (checked per
    aligned window of ``limit // 2`` bytes: if each holds a newline, no line can be that long)."""
    end = len(block) if end is None else end
    step = max(1, limit // 2)
    find = block.find
    for window in range(start, end, step):
        if find(b"\n", window, min(window + step, end)) < 0:
            return True
    return False


class LineFramer:
    """Cuts the bytes of one stream into :data:`LINES`, :data:`PARTIAL` and :data:`PROGRESS`
    pieces. Not thread-safe: its owner serializes calls.

    A progress state is emitted at most every ``progress_interval`` seconds; the latest one
    that was held back comes out of :meth:`due_progress`, which the owner calls periodically.
    """

    def __init__(
        self,
        max_line: int = MAX_LINE_BYTES,
        progress_interval: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.max_line = max_line
        self.progress_interval = progress_interval
        self._clock = clock
        self._pending = b""
        self._progress: bytes | None = None  # latest state of the line being redrawn
        self._progress_sent: bytes | None = None
        self._progress_at = float("-inf")

    def feed(self, data: bytes) -> list[Piece]:
        """The pieces completed by ``data`` (a blob may be a memoryview of ``data``)."""
        out: list[Piece] = []
        if b"\r" in data or b"\r" in self._pending:
            self._feed_slow(self._pending + data if self._pending else data, out)
            return out
        last = data.rfind(b"\n")
        if last < 0:
            self._pending = self._cut_long(self._pending + data if self._pending else data, out)
            return out
        start = 0
        if self._pending:  # the line begun in an earlier chunk ends here
            start = data.find(b"\n") + 1
            self._emit_lines([self._pending + data[: start - 1]], out)
        if start <= last:
            end = last + 1
            if end - start > self.max_line and _may_hold_a_line_over(data, self.max_line, start, end):
                self._emit_lines(data[start:end].split(b"\n")[:-1], out)
            else:
                _whole_lines(data, start, end, out)
        self._pending = self._cut_long(data[last + 1 :], out)
        return out

    def flush(self) -> list[Piece]:
        """The unterminated last line, as a complete line (the stream has ended)."""
        out: list[Piece] = []
        text = visible_text(self._pending) if b"\r" in self._pending else self._pending
        if text:
            self._emit_lines([text], out)
        self._pending = b""
        self._progress = self._progress_sent = None
        return out

    def due_progress(self) -> list[Piece]:
        """The latest progress state, if one is waiting and the interval has passed."""
        if self._progress is None or self._progress == self._progress_sent:
            return []
        now = self._clock()
        if now - self._progress_at < self.progress_interval:
            return []
        self._progress_sent, self._progress_at = self._progress, now
        return [(PROGRESS, self._progress, 1)]

    # -- the line-by-line path ------------------------------------------------------------
    def _feed_slow(self, buf: bytes, out: list[Piece]) -> None:
        lines = buf.split(b"\n")
        tail = lines.pop()
        if lines:
            self._emit_lines([visible_text(line) if b"\r" in line else line for line in lines], out)
            # the redrawn line is finished: its final text supersedes every progress state
            self._progress = self._progress_sent = None
        if b"\r" in tail:
            state = visible_text(tail)
            if len(state) <= self.max_line:
                self._pending = state + (b"\r" if tail.endswith(b"\r") else b"")
                if state:
                    self._progress = state
                    out.extend(self.due_progress())
                elif self._progress is not None:
                    self._erase_progress(out)
                return
            tail = state
        self._pending = self._cut_long(tail, out)

    def _erase_progress(self, out: list[Piece]) -> None:
        """The line being redrawn was erased: an empty state replaces the one already sent, at
        once (nothing to throttle: the bar is gone)."""
        if self._progress_sent is not None:
            out.append((PROGRESS, b"", 1))
        self._progress = self._progress_sent = None
        self._progress_at = float("-inf")

    def _emit_lines(self, lines: list[bytes], out: list[Piece]) -> None:
        run: list[bytes] = []
        size = 0  # the bytes of ``run``, newlines included
        for line in lines:
            if len(line) > self.max_line or (run and size + len(line) + 1 > PIECE_BYTES):
                _add_lines(run, out)
                run, size = [], 0
                if len(line) > self.max_line:
                    line = self._cut_long(line, out)
            run.append(line)
            size += len(line) + 1
        _add_lines(run, out)

    def _cut_long(self, text: bytes, out: list[Piece]) -> bytes:
        """Emit ``PARTIAL`` pieces while ``text`` is longer than a line may be; the rest."""
        while len(text) > self.max_line:
            cut = utf8_cut(text, self.max_line)
            out.append((PARTIAL, text[:cut], 1))
            text = text[cut:]
        return text


def _add_lines(lines: list[bytes], out: list[Piece]) -> None:
    """``lines`` as one LINES piece (none when there are none)."""
    if lines:
        out.append((LINES, b"\n".join(lines) + b"\n", len(lines)))


def _whole_lines(data: bytes, start: int, end: int, out: list[Piece]) -> None:
    """The complete lines of ``data[start:end]`` (which ends with a newline) as LINES pieces of
    :data:`PIECE_BYTES` at most, each cut after a newline (a line longer than that is a piece of
    its own): views of ``data``, or ``data`` itself when it is one piece."""
    if start == 0 and end == len(data) <= PIECE_BYTES:
        out.append((LINES, data, data.count(b"\n")))
        return
    view = memoryview(data)
    while start < end:
        cut = end
        if end - start > PIECE_BYTES:
            cut = data.rfind(b"\n", start, start + PIECE_BYTES) + 1
            if cut <= start:  # (no newline in the first PIECE_BYTES: one line longer than that)
                cut = data.index(b"\n", start + PIECE_BYTES) + 1
        out.append((LINES, view[start:cut], data.count(b"\n", start, cut)))
        start = cut

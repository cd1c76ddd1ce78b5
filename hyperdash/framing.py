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

Nested progress bars (tqdm's ``position``, an inner bar with ``leave=False``) redraw several rows:
the inner bar's row is reached with ``\n`` and left with cursor-up escapes (``\x1b[A``) for
the row the cursor rests on between updates. A framer follows the cursor over the rows it can
come back to. A bar's row that ``\n`` leaves is held until what comes next shows whether the
cursor climbs back to it (or :data:`HOLD_SECONDS` pass). A cursor-up is followed only from a
row a bar drew from a ``\r`` (its state a bar's: tqdm's ends in ``]``) or erased after one (a
live display of several rows, rich's, erases each on its way back up, and redraws a row by
erasing it whole: ``\x1b[2K``, its other rows plain text held under that one as bars' rows
are); a program's own (text, then ``\x1b[A``) stays in its line as written. While the cursor
is hidden (``\x1b[?25l``, as a live display hides it from its start until it shows it again with
``\x1b[?25h``), each row of text a newline leaves is held so too: a display's first refresh draws
its rows as plain text, which its next climbs back over (a line printed while it is hidden is a
line once the cursor lands below it, or :data:`HOLD_SECONDS` pass). ``\n`` onto a
live row below moves there, ending nothing. The rows above the one the cursor climbs to are
never drawn again: each becomes a line; so do all of them when a line of plain text ends below
them, and at the stream's end. An erased row leaves nothing. A nested bar opens its row with
``\n`` from wherever the cursor is, and climbs back to the row above it: below the lines that a
block-buffered stdout lets out after the outer bar's state, that row is a blank line, which the
bar then draws over. So where bars nest (the cursor climbed once), a blank line right above the
cursor's row, while that row is empty or drawn from a ``\r`` and none is live, waits for the
bytes that show whether the cursor comes back to it (however they are cut into chunks), at most
:data:`HOLD_SECONDS`; the cursor back on it, it is that row again.
The progress state is the topmost bar's (the outer bar: the whole job's progress). Text written
where the cursor came back to before any ``\r`` (a print between two redraws) is a line of its
own, and what a redraw replaces there is kept as a line unless it is a bar's state (it ends with
tqdm's ``]``) or the redraw erases the whole row first (a live display's, whose rows it replaces
as the terminal does): nothing else written is lost. Text written on a bar's row that a
newline came down to (a kept bar draws its last state where the cursor rests, then comes down
onto its own row, an earlier state) takes that row as on a terminal: a line below the rows above.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from itertools import chain

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
# How long the row of a bar that a newline left waits for the cursor to come back up to it (a
# nested bar's next update) before it is a line.
HOLD_SECONDS = 0.5
# The rows the cursor may come back to, at most. A program redraws no more rows than its
# terminal is high (the cursor stops at the top row; rich's live displays crop to the terminal's
# height until their last refresh), and a terminal full-screen on a large display at a small
# font is some 200 rows high: a Progress with a bar per worker or a Live table of metrics fits,
# as nested bars do. Held rows are lines at most (4 MiB in all at worst, a terminal's rows far
# less), and a climb or a newline moves one row, whatever the number held.
MAX_LIVE_ROWS = 256

Piece = tuple[int, "bytes | memoryview", int]


# A state that only blanks the line: spaces written over it, or the escapes that erase it
# (erase in line: to its end, to its start, all of it).
_ERASED = re.compile(rb"(?:[ \t]|\x1b\[[012]?K)*")
# What moves the cursor between rows: a newline (down, or a new row), cursor-up escapes
_MOVES = re.compile(rb"\n|(?:\x1b\[\d*A)+")
_UP = re.compile(rb"\x1b\[(\d*)A")
_ERASE_ROW = b"\x1b[2K"  # erase the whole line the cursor is on
# Hiding the cursor, and showing it again: what a program does around a region it redraws
_HIDE_CURSOR, _SHOW_CURSOR = b"\x1b[?25l", b"\x1b[?25h"
_CURSOR_ONLY = re.compile(rb"(?:\x1b\[\?25[hl])+")
# The start of an escape that the chunk cut short (its end comes with the next chunk)
_CUT_ESCAPE = re.compile(rb"\x1b(?:\[\??\d*)?\Z")


def visible_text(line: bytes) -> bytes:
    """What a terminal shows of a line redrawn with ``\\r``: its last non-empty state, or
    nothing when that state only erases the line. (A state that only hides or shows the cursor
    shows nothing: a transient display shows it again below its rows, then climbs back over
    them, erasing each.)"""
    for state in reversed(line.split(b"\r")):
        if state and not _CURSOR_ONLY.fullmatch(state):  # (hiding or showing the cursor shows nothing)
            return b"" if _ERASED.fullmatch(state) else state
    return b""


def _redrawn(row: bytes) -> bool:
    """Whether a row is a bar's: its last state drawn after a ``\r``, and not in the place of
    a bar just erased (text written there is a line; ``text\r`` alone is a line that ends in
    a carriage return, as ``\r\n`` does)."""
    if b"\r" not in row:
        return False
    states = row.rstrip(b"\r").split(b"\r")
    if len(states) < 2 or _ERASED.fullmatch(states[-1]):
        return False  # (no text after a \r, or the bar's row is erased: nothing to come back to)
    earlier = [state for state in states[:-1] if state]
    return not (earlier and _ERASED.fullmatch(earlier[-1]))


def _bar_state(state: bytes) -> bool:
    """Whether a row's visible state is a bar's as tqdm draws it (its times end in ``]``)."""
    return state.rstrip().endswith(b"]")


def _compact(row: bytes) -> bytes:
    """A redrawn row reduced to its last two states (what :func:`visible_text` and
    :func:`_redrawn` look at), with the ``\r`` after them that makes the next text a new one."""
    states = [state for state in row.split(b"\r") if state]
    return b"\r" + b"\r".join(states[-2:]) + (b"\r" if row.endswith(b"\r") else b"")


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
        self._pending = b""  # the raw bytes of the cursor's row
        self._progress: bytes | None = None  # latest state of the line being redrawn
        self._progress_sent: bytes | None = None
        self._progress_at = float("-inf")
        # The rows the cursor may come back to (see the module's docstring): above it (top
        # first) and below it (nearest last); since when the cursor is on a new row below
        # them without having climbed back.
        self._above: list[bytes] = []
        self._below: list[bytes] = []
        self._held_since: float | None = None
        self._arrived = False  # the cursor came back to a row and no \r was written since
        self._drawn: bool | None = None  # whether the cursor's row was drawn from a \r (None: not yet)
        self._climbing = False  # the cursor climbed, and nothing was written since
        self._climbed = False  # the cursor climbed since the live rows began
        self._foreign = b""  # what was written there meanwhile
        self._cut_escape = b""  # an escape cut short at the end of the last chunk
        self._done: list[bytes] = []  # lines the rows gave, not yet in a piece
        self._nested = False  # whether the cursor climbed back to a bar's row (bars nest here)
        self._blank_since: float | None = None  # since when a blank line last in _done waits (_end_chunk)
        self._hidden = False  # the cursor is hidden: the rows written may be a live display's

    def feed(self, data: bytes) -> list[Piece]:
        """The pieces completed by ``data`` (a blob may be a memoryview of ``data``)."""
        out: list[Piece] = []
        # (an escape's first byte is looked for first: one byte is found at memory speed, six
        # take the search 0.7 ms a megabyte of output that holds none)
        rows = (self._above or self._below or self._arrived or self._cut_escape or self._done or self._hidden
                or b"\r" in self._pending or b"\x1b" in data and _HIDE_CURSOR in data
                or _HIDE_CURSOR in self._pending[-5:] + data[:5])
        if not rows and b"\r" in data and data.count(b"\r") == data.count(b"\r\n"):
            # (a terminal's line ends, \r\n: lines as \n makes them, on the fast path)
            data = data.replace(b"\r\n", b"\n")
        elif rows or b"\r" in data:
            self._feed_rows(data, out)
            return out
        last = data.rfind(b"\n")
        hold = (self._nested and last == len(data) - 1
                and (data[last - 1 : last] == b"\n" if last else not self._pending))
        if hold:  # (a blank line last, above where a nested bar's row may open: see _end_chunk)
            data, last = data[:last], last - 1
        if last < 0:
            self._pending = self._cut_long(self._pending + data if self._pending else data, out)
        else:
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
        if hold:
            self._hold_blank()
        return out

    def flush(self) -> list[Piece]:
        """The unterminated last line, as a complete line (the stream has ended); before it,
        what is left of the rows a bar drew (their last states, each a line)."""
        out: list[Piece] = []
        self._pending += self._cut_escape
        self._written_over()
        self._emit_foreign()
        for row in (*self._above, self._pending, *reversed(self._below)):
            text = visible_text(row) if b"\r" in row else row
            if text:
                self._done.append(text)
        self._pieces_of_done(out)
        self._pending = self._cut_escape = b""
        self._above, self._below, self._held_since, self._arrived, self._drawn = [], [], None, False, None
        self._climbing = self._climbed = self._hidden = False
        self._progress = self._progress_sent = None
        return out

    def due_progress(self) -> list[Piece]:
        """The latest progress state, if one is waiting and the interval has passed; before
        it, the rows of bars that the cursor left below them :data:`HOLD_SECONDS` ago and
        never came back to, as lines (those bars are done)."""
        out: list[Piece] = []
        if self._blank_since is not None and self._clock() - self._blank_since >= HOLD_SECONDS:
            self._pieces_of_done(out)  # (a blank line the cursor did not come back to)
        if self._held_since is not None and self._clock() - self._held_since >= HOLD_SECONDS:
            self._trim(0)
            self._pieces_of_done(out)
            self._update_progress(out)
            return out
        return out + self._due_state()

    def _due_state(self) -> list[Piece]:
        if self._progress is None or self._progress == self._progress_sent:
            return []
        now = self._clock()
        if now - self._progress_at < self.progress_interval:
            return []
        self._progress_sent, self._progress_at = self._progress, now
        return [(PROGRESS, self._progress, 1)]

    # -- the row-by-row path --------------------------------------------------------------
    def _feed_rows(self, data: bytes, out: list[Piece]) -> None:
        """Output with carriage returns or cursor-ups, or while rows are live: move the cursor
        over the rows as a terminal would (see the module's docstring)."""
        if self._cut_escape:
            data, self._cut_escape = self._cut_escape + data, b""
        cut = _CUT_ESCAPE.search(data)
        if cut:
            data, self._cut_escape = data[: cut.start()], data[cut.start():]
        start = 0
        for move in _MOVES.finditer(data):
            self._write(data[start : move.start()], out)
            if move.group() == b"\n":
                self._newline()
            else:
                self._up(sum(int(count or 1) for count in _UP.findall(move.group())), move.group(), out)
            start = move.end()
        self._write(data[start:], out)
        self._end_chunk(out)
        self._update_progress(out)

    def _pieces_of_done(self, out: list[Piece]) -> None:
        self._blank_since = None
        if self._done:
            self._emit_lines(self._done, out)
            self._done = []

    def _end_chunk(self, out: list[Piece]) -> None:
        """The lines the rows gave; where bars nest, but a blank one right above the cursor's
        row while that row is empty or a bar drawn from \r, and no row is live. A nested bar
        opens its row with a newline from wherever the cursor is (below the prints that a
        buffered stdout lets out after the outer bar's state, say) and climbs back to the row
        above, blank, to draw over it as it goes. So that blank line waits for the bytes that
        show whether the cursor comes back to it (in the next chunks, however they are cut),
        :data:`HOLD_SECONDS` at most."""
        since = self._blank_since
        held = bool(self._nested and self._done and not self._done[-1] and not (self._above or self._below)
                    and (not self._pending or b"\r" in self._pending))
        if held:
            self._done.pop()
        self._pieces_of_done(out)
        if held:
            self._blank_since = since
            self._hold_blank()

    def _hold_blank(self) -> None:
        """Keep a blank line back, last in the lines not yet sent (see :meth:`_end_chunk`)."""
        self._done.append(b"")
        if self._blank_since is None:
            self._blank_since = self._clock()

    def _back_above_the_live_rows(self) -> bytes:
        """The row a climb reaches above the live rows: one that is already a line, which
        stands in as a blank row (what is written there a line of its own); or a blank line not
        sent yet, which is that row again (what is drawn there replaces it, as on a terminal)."""
        if self._done and not self._done[-1]:
            self._done.pop()
        return b""

    def _write(self, text: bytes, out: list[Piece]) -> None:
        if not text:
            return
        seen = self._pending[-5:] + text  # (with the start of an escape that a chunk cut short)
        hidden_at, shown_at = seen.rfind(_HIDE_CURSOR), seen.rfind(_SHOW_CURSOR)
        if hidden_at != shown_at:  # (the last one counts; both -1: neither is here)
            self._hidden = hidden_at > shown_at
        if not (self._climbing and _ERASED.fullmatch(text)):
            self._landed()  # (a live display erases each row it climbs over: still climbing)
        if self._arrived and not visible_text(self._pending):
            self._pending = b""  # (back on a row left blank: a fresh one)
            self._arrived = False
        if self._arrived:
            # Back on a row drawn before: a bar redraws it from its start (\r, or an escape
            # that erases the whole row first, as a live display does after its climb),
            # anything else is written over it (a print between two redraws), and is kept as a line.
            erases = text.startswith(_ERASE_ROW)
            if erases:
                text = b"\r" + text
            at = text.find(b"\r")
            self._foreign += text if at < 0 else text[:at]
            if len(self._foreign) > self.max_line:
                self._pieces_of_done(out)
                self._foreign = self._cut_long(self._foreign, out)
            if at < 0:
                return
            text = text[at:]
            self._arrived = False
            state = visible_text(self._pending)
            if not (erases or _bar_state(state)):
                # what a redraw is about to replace is no bar's state (text glued on after one,
                # say), nor erased by it: it is kept as a line
                self._done.append(state)
                self._pending = b""
        if self._drawn is None:
            self._drawn = text.startswith(b"\r")
        if self._held_since is not None and b"\r" in text and visible_text(self._pending) and visible_text(text):
            # the row below the held ones is redrawn in place: a bar of its own, not a row that
            # climbs back to them (tqdm writes each update with the climb that ends it; a row
            # only erased may be left by one still, as a live display's next refresh does)
            self._trim(0)
        row = self._pending + text
        if len(row) > self.max_line:
            if b"\r" in row:  # (its visible state is what counts)
                state = visible_text(row)
                row = _compact(row) if len(state) <= self.max_line else state
            if b"\r" not in row:
                # a long line of plain text below the live rows: they are done, and go first
                self._trim(0)
                self._pieces_of_done(out)
                row = self._cut_long(row, out)
        self._pending = row

    def _newline(self) -> None:
        self._landed()
        self._written_over()
        self._emit_foreign()
        self._drawn = None
        if self._below:  # down onto a live row: nothing ends
            self._above.append(self._pending)
            self._pending = self._below.pop()
            self._arrived = True
            return
        row, self._pending = self._pending, b""
        bar = _redrawn(row) or (self._climbed and not visible_text(row))
        if bar or self._under_live_display(row):
            # a bar's row, a blank one passed over on the way down to a bar's (drawn later), or
            # one of a live display's rows: the cursor may come back up to it
            self._above.append(_compact(row) if b"\r" in row else row)
            if bar or self._held_since is None:  # (lines printed after a display wait no longer)
                self._held_since = self._clock()
            return
        # a line of its own below every live row: they are done, and it is a line
        region = self._climbed
        self._trim(0)
        text = visible_text(row) if b"\r" in row else row
        if text or b"\r" not in row or not region:  # (a bar's row erased among others leaves nothing)
            self._done.append(text)
        if b"\r" in row:  # the redrawn line is finished: its text supersedes its progress states
            self._progress = self._progress_sent = None

    def _under_live_display(self, row: bytes) -> bool:
        """Whether ``row``, which a newline leaves, may be a live display's: the rows held above
        it are one's (its top row drawn by erasing the whole row first, as rich draws), or the
        cursor is hidden (as a live display hides it from its start, its first refresh drawing
        its rows as plain text). Its next refresh climbs back over such a row, plain text as it
        may be. (A row that would show nothing, held, would leave nothing: a blank line printed
        while the cursor is hidden stays a line.)"""
        return len(self._above) + len(self._below) < MAX_LIVE_ROWS and (
            self._hidden and bool(visible_text(row))
            or bool(self._above) and visible_text(self._above[0]).startswith(_ERASE_ROW))

    def _up(self, rows: int, escape: bytes, out: list[Piece]) -> None:
        """A cursor-up: followed where a bar drew the row it leaves (from a \r, as tqdm's
        climb back from a nested bar's row); else it stays in the text as written (a program's
        own use of it), and the live rows are done."""
        state = visible_text(self._pending)
        # (from a row a bar drew from \r, its state a bar's: tqdm's ends in "]"; or from a row
        # erased after a \r, as a live display of several rows erases each on its way back up)
        bar = (not state and b"\r" in self._pending) or (self._drawn and _bar_state(state))
        if not (bar or self._climbing):
            self._landed()
            self._trim(0)
            self._write(escape, out)
            return
        self._emit_foreign()
        for _ in range(rows):
            if len(self._above) + len(self._below) >= MAX_LIVE_ROWS:
                break
            self._below.append(self._pending)
            self._pending = self._above.pop() if self._above else self._back_above_the_live_rows()
        self._arrived, self._drawn, self._held_since, self._climbing = True, None, None, True
        self._climbed = self._nested = True

    def _landed(self) -> None:
        """After a climb (which may come in several escapes, or chunks), what is written next
        shows where the cursor rests between a nested bar's updates: the rows above are never
        drawn again."""
        if self._climbing:
            self._climbing = False
            self._trim(len(self._below))

    def _trim(self, keep: int) -> None:
        """The live rows above the cursor further from the lowest row than ``keep`` become
        lines (the cursor will not come back to them); with 0, all of them."""
        done = min(len(self._above), max(0, len(self._above) + len(self._below) - keep))
        texts = [visible_text(row) for row in self._above[:done]]
        del self._above[:done]
        if not self._above and not self._below:
            self._held_since, self._climbed = None, False
        if any(texts):
            self._done += [text for text in texts if text]  # (an erased row leaves nothing)
            # the next progress state goes at once: it is then the last before its bar's line
            self._progress = self._progress_sent = None
            self._progress_at = float("-inf")

    def _written_over(self) -> None:
        """Text written on a bar's row that a newline came down to, below live rows (a kept
        tqdm bar draws its last state on the row the cursor rests on and leaves it with a
        newline, onto its own earlier row): that row is the text's now, under the rows above
        it, as on a terminal; the bar's state it was written over is gone, nothing to come
        back to."""
        if self._foreign and self._above and _bar_state(visible_text(self._pending)):
            self._pending, self._foreign = self._foreign, b""
            self._drawn = None

    def _emit_foreign(self) -> None:
        if self._foreign:
            self._done.append(self._foreign)
            self._foreign = b""

    def _update_progress(self, out: list[Piece]) -> None:
        """The progress state: the topmost live row's, where it was drawn over after a \r."""
        # (a row where text was written in place of an erased bar is no bar: the next one down)
        top = next((row for row in chain(self._above, (self._pending,)) if _redrawn(row)), None)
        if top is None:
            # no bar's row: the last one was erased (or is written over); or no rows but the
            # cursor's, which a carriage return may yet make a bar of
            top = b"\r" if self._above or self._below else self._pending
        if b"\r" not in top:
            return
        state = visible_text(top)
        if state:
            if len(state) <= self.max_line:
                self._progress = state
                out.extend(self._due_state())
        elif self._progress is not None:
            self._erase_progress(out)

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

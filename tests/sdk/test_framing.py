"""Bytes to lines: the fast path, long lines, progress redraws."""

from __future__ import annotations

import pytest

from hyperdash.framing import LINES, PARTIAL, PIECE_BYTES, PROGRESS, LineFramer, utf8_cut, visible_text


def lines_of(pieces):
    out = []
    for kind, blob, count in pieces:
        blob = bytes(blob)
        if kind == LINES:
            parts = blob.split(b"\n")[:-1]
            assert len(parts) == count
            out += [(LINES, p) for p in parts]
        else:
            assert count == 1
            out.append((kind, blob))
    return out


def test_complete_lines_in_one_piece_and_a_held_tail():
    framer = LineFramer()
    pieces = framer.feed(b"one\ntwo\nthr")
    assert pieces == [(LINES, b"one\ntwo\n", 2)]
    assert framer.feed(b"ee\n") == [(LINES, b"three\n", 1)]
    assert framer.feed(b"") == []
    assert framer.flush() == []


def test_unterminated_last_line_comes_out_on_flush():
    framer = LineFramer()
    assert framer.feed(b"no newline") == []
    assert framer.flush() == [(LINES, b"no newline\n", 1)]


def test_long_line_is_cut_into_partial_pieces_on_character_boundaries():
    framer = LineFramer(max_line=10)
    text = "é" * 12  # 24 bytes
    out = lines_of(framer.feed(text.encode() + b"\nshort\n"))
    assert [kind for kind, _ in out] == [PARTIAL, PARTIAL, LINES, LINES]
    assert b"".join(blob for _, blob in out[:3]).decode() == text
    assert all(len(blob) <= 10 for _, blob in out)
    for _, blob in out:
        blob.decode()  # no character cut in two
    assert out[3] == (LINES, b"short")


def test_long_line_arriving_in_chunks_is_cut_as_it_comes():
    framer = LineFramer(max_line=8)
    assert lines_of(framer.feed(b"x" * 20)) == [(PARTIAL, b"x" * 8), (PARTIAL, b"x" * 8)]
    assert lines_of(framer.feed(b"yy\n")) == [(LINES, b"xxxxyy")]


def test_progress_redraws_become_one_throttled_state_then_the_final_line():
    now = [0.0]
    framer = LineFramer(progress_interval=0.5, clock=lambda: now[0])
    assert lines_of(framer.feed(b"\r 10%")) == [(PROGRESS, b" 10%")]
    assert framer.feed(b"\r 20%") == []  # within the interval: held back
    assert framer.due_progress() == []
    now[0] = 1.0
    assert lines_of(framer.due_progress()) == [(PROGRESS, b" 20%")]
    assert framer.due_progress() == []  # nothing new
    assert lines_of(framer.feed(b"\r100%\nnext\n")) == [(LINES, b"100%"), (LINES, b"next")]
    assert framer.due_progress() == []


def test_crlf_and_trailing_carriage_return_keep_the_text():
    framer = LineFramer()
    # a chunk that ends between \r and \n looks like a redraw until the \n comes
    assert lines_of(framer.feed(b"windows\r\nline\r")) == [(LINES, b"windows"), (PROGRESS, b"line")]
    assert lines_of(framer.feed(b"\n")) == [(LINES, b"line")]


def test_helpers():
    assert visible_text(b"abc\rde\r") == b"de"
    assert visible_text(b"\r\r") == b""
    data = "aé".encode()  # a, then a two-byte character
    assert utf8_cut(data, 2) == 1
    assert utf8_cut(b"\xff" * 10, 4) == 4  # not UTF-8: cut where asked


def test_the_fast_path_never_misses_a_long_line():
    import random

    rng = random.Random(7)
    for _ in range(300):
        limit = rng.randint(2, 40)
        lines = [b"x" * rng.randint(0, 2 * limit) for _ in range(rng.randint(1, 40))]
        framer = LineFramer(max_line=limit)
        pieces = lines_of(framer.feed(b"\n".join(lines) + b"\n"))
        assert all(len(blob) <= limit for _, blob in pieces)
        rebuilt, current = [], b""
        for kind, blob in pieces:
            current += blob
            if kind == LINES:
                rebuilt.append(current)
                current = b""
        assert rebuilt == lines


def flood(lines: int) -> list[bytes]:
    return [b"%06d " % i + b"x" * 72 for i in range(lines)]  # 80 bytes with the newline


def test_a_read_of_a_flood_becomes_pieces_of_piece_bytes_at_most_each_cut_after_a_line():
    framer = LineFramer()
    lines = flood(13_107)  # about 1 MiB: what one read brings while output floods
    assert framer.feed(lines[0][:30]) == []  # a line begun in the read before
    pieces = framer.feed(lines[0][30:] + b"\n" + b"\n".join(lines[1:]) + b"\n")
    assert len(pieces) == 1 + 9  # the line begun before, then 1 MiB in pieces of 1,638 lines or fewer
    assert all(kind == LINES and len(blob) <= PIECE_BYTES for kind, blob, _ in pieces)
    assert lines_of(pieces) == [(LINES, line) for line in lines]
    assert [type(blob) for _, blob, _ in pieces[1:]] == [memoryview] * 9  # views of the read, not copies


def test_a_line_longer_than_a_piece_is_a_piece_of_its_own():
    framer = LineFramer(max_line=4 * PIECE_BYTES)
    long = b"y" * (PIECE_BYTES + 10)
    pieces = framer.feed(b"a\n" + long + b"\nb\n")
    assert [(kind, bytes(blob), count) for kind, blob, count in pieces] == [
        (LINES, b"a\n", 1), (LINES, long + b"\n", 1), (LINES, b"b\n", 1)]


def test_lines_framed_one_by_one_go_in_pieces_of_piece_bytes_at_most_too():
    framer = LineFramer(progress_interval=0)
    lines = flood(5_000)
    pieces = framer.feed(b"\r 10%\r100%\n" + b"\n".join(lines) + b"\n")  # a \r: the line-by-line path
    assert len(pieces) == 4
    assert all(len(blob) <= PIECE_BYTES for _, blob, _ in pieces)
    assert lines_of(pieces) == [(LINES, b"100%")] + [(LINES, line) for line in lines]


def test_an_erased_progress_line_leaves_nothing():
    for erase in (b"\r" + b" " * 30 + b"\r", b"\r\x1b[K", b"\r\x1b[2K", b"\r\x1b[0K\r"):
        framer = LineFramer()
        assert lines_of(framer.feed(b"\r 10%|#  | 1/10")) == [(PROGRESS, b" 10%|#  | 1/10")]
        # the bar already shown is replaced by an empty state at once, not throttled ...
        assert lines_of(framer.feed(b"\r 20%|## | 2/10" + erase)) == [(PROGRESS, b"")], erase
        assert framer.due_progress() == []
        # ... and the stream's end adds no line of spaces or escapes
        assert framer.flush() == [], erase


def test_an_erased_line_that_was_never_shown_sends_nothing_and_text_after_it_stays():
    now = [0.0]
    framer = LineFramer(clock=lambda: now[0])
    assert lines_of(framer.feed(b"\rbar 1")) == [(PROGRESS, b"bar 1")]
    now[0] = 5.0
    # erased, then the job writes a line in its place: the line is what stays
    assert lines_of(framer.feed(b"\rbar 2\r     \rdone\n")) == [(LINES, b"done")]
    framer = LineFramer()
    assert framer.feed(b"      \r") == []  # spaces only, never a progress state worth sending
    assert framer.flush() == []
    assert lines_of(LineFramer().flush()) == []


def test_tqdm_leave_false_leaves_no_line():
    import io

    from tqdm import tqdm

    framer = LineFramer(progress_interval=0)
    pieces = []

    class Stream(io.StringIO):  # each write of tqdm's reaches the framer as a chunk of its own
        def write(self, text):
            pieces.extend(lines_of(framer.feed(text.encode())))
            return len(text)

    for _ in tqdm(range(3), file=Stream(), leave=False, mininterval=0):
        pass
    pieces += lines_of(framer.flush())
    assert pieces[0][0] == PROGRESS and b"0/3" in pieces[0][1]
    assert pieces[-1] == (PROGRESS, b"")  # the bar is gone: the last state is empty
    assert [blob for kind, blob in pieces if kind == LINES] == []


def test_spaces_that_are_a_line_of_their_own_are_kept():
    framer = LineFramer()
    assert lines_of(framer.feed(b"   \n")) == [(LINES, b"   ")]
    assert framer.feed(b"  ") == []
    assert lines_of(framer.flush()) == [(LINES, b"  ")]


def _framed_writes(framer, body):
    """The pieces of everything ``body(stream)`` writes to ``stream``, each write a chunk of its
    own (as tqdm's reach the framer from an unbuffered stderr), and of the stream's end."""
    import io

    pieces = []

    class Stream(io.StringIO):
        def write(self, text):
            pieces.extend(lines_of(framer.feed(text.encode())))
            return len(text)

    body(Stream())
    pieces += lines_of(framer.flush())
    return pieces


def test_nested_tqdm_bars_leave_the_lines_a_terminal_shows_and_the_outer_bar_as_progress():
    from tqdm import tqdm

    def train(stream):
        for epoch in tqdm(range(3), desc="epochs", file=stream, mininterval=0):
            for _ in tqdm(range(20), desc="batches", file=stream, leave=False, mininterval=0):
                pass
            tqdm.write(f"epoch {epoch} done", file=stream)
        stream.write("after the bars\n")

    pieces = _framed_writes(LineFramer(progress_interval=0), train)
    lines = [blob for kind, blob in pieces if kind == LINES]
    assert lines[:3] == [b"epoch 0 done", b"epoch 1 done", b"epoch 2 done"]
    assert lines[3].startswith(b"epochs: 100%") and b"3/3" in lines[3]
    assert lines[4:] == [b"after the bars"]
    # the inner bar's states are never lines, and its row is never the run's progress
    states = [blob for kind, blob in pieces if kind == PROGRESS and blob]
    assert states and all(state.startswith(b"epochs:") for state in states), states[:5]
    assert not any(b"\x1b" in blob for _, blob in pieces)


def _lines_however_cut(body) -> dict[str, list[bytes]]:
    """The LINES of what ``body(stream)`` writes, framed with its bytes cut in several ways: each
    write a chunk, all in one, a byte at a time."""

    writes = []

    class Record:
        def write(self, text):
            writes.append(text.encode())

        def flush(self):
            pass

    body(Record())
    text = b"".join(writes)
    cuts = {"each write": writes, "all at once": [text], "a byte at a time": [text[i:i + 1] for i in range(len(text))]}
    framed = {}
    for how, chunks in cuts.items():
        framer = LineFramer(progress_interval=0)
        pieces = [piece for chunk in chunks for piece in lines_of(framer.feed(chunk))] + lines_of(framer.flush())
        framed[how] = [blob for kind, blob in pieces if kind == LINES]
    return framed


def test_nested_bars_frame_alike_however_their_bytes_are_cut():
    from tqdm import tqdm

    def train(stream):
        for _ in tqdm(range(2), desc="outer", file=stream, mininterval=0):
            list(tqdm(range(5), desc="inner", file=stream, leave=False, mininterval=0))
            tqdm.write("checkpoint", file=stream)

    framed = _lines_however_cut(train)
    assert framed["each write"][:2] == [b"checkpoint", b"checkpoint"] and b"outer: 100%" in framed["each write"][2]
    assert len(framed["each write"]) == 3
    assert framed["all at once"] == framed["a byte at a time"] == framed["each write"]


def test_a_print_between_two_redraws_of_nested_bars_is_a_line_of_its_own():
    framer = LineFramer(progress_interval=0)
    # (tqdm's states, which end in "]"; the cursor is then back on the outer bar's row)
    out = lines_of(framer.feed(b"\router 0/2 [00:00]\n\rinner 1/5 [00:00]\x1b[A"))
    out += lines_of(framer.feed(b"loss 0.25\n"))  # written over it, as a terminal would show it
    out += lines_of(framer.feed(b"\rinner 2/5 [00:00]\x1b[A"))
    out += lines_of(framer.flush())
    assert [blob for kind, blob in out if kind == LINES][0] == b"loss 0.25"


def test_a_bar_left_behind_with_nothing_after_it_is_a_line_once_the_interval_passes():
    now = [0.0]
    framer = LineFramer(progress_interval=0.5, clock=lambda: now[0])
    assert lines_of(framer.feed(b"\r 50%")) == [(PROGRESS, b" 50%")]
    now[0] = 1.0
    # its last state and the newline that leaves it behind: the cursor might still come back up
    assert lines_of(framer.feed(b"\r100%\n")) == [(PROGRESS, b"100%")]
    assert framer.due_progress() == []
    now[0] = 1.6  # it did not
    assert lines_of(framer.due_progress()) == [(LINES, b"100%")]
    assert framer.due_progress() == [] and framer.flush() == []
    # a line after it frees it at once, in order
    framer.feed(b"\rstep 9/9\n")
    assert lines_of(framer.feed(b"saved\n")) == [(LINES, b"step 9/9"), (LINES, b"saved")]


def test_a_terminals_line_ends_frame_as_newlines_do():
    framer = LineFramer()
    assert framer.feed(b"one\r\ntwo\r\nthr") == [(LINES, b"one\ntwo\n", 2)]
    assert lines_of(framer.feed(b"ee\r\n")) == [(LINES, b"three")]


def _frame_tqdm(body):
    """The LINES and the non-empty PROGRESS states of what ``body(stream)`` writes, a chunk a write."""
    pieces = _framed_writes(LineFramer(progress_interval=0), body)
    return ([blob for kind, blob in pieces if kind == LINES],
            [blob for kind, blob in pieces if kind == PROGRESS and blob])


def test_three_nested_bars_leave_the_outer_one_and_follow_it():
    from tqdm import tqdm

    def train(stream):
        for _ in tqdm(range(2), desc="outer", file=stream, mininterval=0):
            for _ in tqdm(range(3), desc="mid", leave=False, file=stream, mininterval=0):
                for _ in tqdm(range(5), desc="inner", leave=False, file=stream, mininterval=0):
                    pass
        stream.write("end\n")

    lines, states = _frame_tqdm(train)
    assert len(lines) == 2 and lines[0].startswith(b"outer: 100%") and b"2/2" in lines[0] and lines[1] == b"end"
    assert states and all(state.startswith(b"outer:") for state in states)


def test_tqdm_write_inside_the_inner_loop_leaves_its_lines_and_no_copy_of_the_outer_bar():
    from tqdm import tqdm

    def train(stream):
        for epoch in tqdm(range(2), desc="epochs", file=stream, mininterval=0):
            for batch in tqdm(range(20), desc="batch", leave=False, file=stream, mininterval=0):
                if batch % 10 == 9:
                    tqdm.write(f"epoch {epoch} batch {batch} loss=0.5", file=stream)
        stream.write("finished\n")

    lines, _ = _frame_tqdm(train)
    assert lines[:4] == [b"epoch 0 batch 9 loss=0.5", b"epoch 0 batch 19 loss=0.5", b"epoch 1 batch 9 loss=0.5",
                         b"epoch 1 batch 19 loss=0.5"]
    assert len(lines) == 6 and lines[4].startswith(b"epochs: 100%") and lines[5] == b"finished"


def test_prints_between_nested_bars_are_lines_and_no_state_of_the_inner_bar_is():
    from tqdm import tqdm

    def train(stream):
        for epoch in tqdm(range(3), desc="epochs", file=stream, mininterval=0):
            for _ in tqdm(range(5), desc="batch", leave=False, file=stream, mininterval=0):
                pass
            stream.write(f"epoch {epoch} done\n")  # a print, not tqdm.write
        stream.write("finished\n")

    lines, states = _frame_tqdm(train)
    assert [line for line in lines if b"done" in line or line == b"finished"] == [
        b"epoch 0 done", b"epoch 1 done", b"epoch 2 done", b"finished"]
    assert lines[-2].startswith(b"epochs: 100%")
    # (what a terminal keeps above each print: the outer bar as it stood, no inner bar, no blank)
    assert all(line.startswith(b"epoch") or line == b"finished" for line in lines), lines
    assert all(state.startswith(b"epochs:") for state in states)


def test_a_print_after_a_kept_inner_bar_follows_its_last_state_and_no_earlier_one():
    from tqdm import tqdm

    def train(stream):
        for epoch in tqdm(range(3), desc="epochs", file=stream, mininterval=0):
            for _ in tqdm(range(5), desc="batch", file=stream, mininterval=0):  # (leave=True: kept)
                pass
            stream.write(f"epoch {epoch} loss 0.1\n")  # a print

    # The kept bar draws its last state on the row the cursor rests on (over the outer bar's)
    # and comes down onto its own row, where the print writes over an earlier state of it.
    for how, lines in _lines_however_cut(train).items():
        assert [line[:11] if b"|" in line else line for line in lines] == [
            b"batch: 100%", b"epoch 0 loss 0.1", b"batch: 100%", b"epoch 1 loss 0.1", b"batch: 100%",
            b"epoch 2 loss 0.1", b"epochs: 100"], (how, lines)
        assert all(b"5/5" in line for line in lines if line.startswith(b"batch")), (how, lines)


def test_a_cursor_up_a_program_prints_itself_loses_no_text():
    from tqdm import tqdm

    def glued(stream):
        for i in tqdm(range(3), desc="bar", file=stream, mininterval=0):
            stream.write(f"A{i} \x1b[A B{i}\n")  # printed right after the bar's state, no newline between
        stream.write("end\n")

    lines, _ = _frame_tqdm(glued)
    # each print whole, in order, as written (the escape kept): it follows no bar's row
    printed = [next(k for k, line in enumerate(lines) if f"A{i} \x1b[A B{i}".encode() in line) for i in range(3)]
    assert printed == sorted(printed), lines
    assert lines[-1] == b"end"

    def replace_the_bar(stream):  # a line that replaces the finished bar above it
        for _ in tqdm(range(3), desc="download", file=stream, mininterval=0):
            pass
        stream.write("\x1b[1A\x1b[2Kdownload complete\n")
        stream.write("next step\n")

    lines, _ = _frame_tqdm(replace_the_bar)
    assert lines[0].startswith(b"download: 100%") and lines[1:] == [b"\x1b[1A\x1b[2Kdownload complete", b"next step"]


def test_bars_redrawn_in_any_order_after_a_write_leave_no_copy_of_the_outer_bar():
    """Three bars; after each tqdm.write they are redrawn outer, innermost, middle (tqdm's
    order varies): passing the middle bar's blank row on the way down ends nothing."""
    clear = b"\r" + b" " * 30
    outer, middle, inner = b"\rL0 0/2 [00:00]", b"\rL1 0/3 [00:00]", b"\rL2 0/5 [00:00]"

    def clear_all():
        return [clear, b"\r", b"\n\n", clear, b"\r", b"\x1b[A\x1b[A", b"\n", clear, b"\r", b"\x1b[A"]

    def redraw():
        return [outer, b"\n\n", inner, b"\x1b[A\x1b[A", b"\n", middle, b"\x1b[A"]

    writes = [outer, b"\n", middle, b"\x1b[A", b"\n\n", inner, b"\x1b[A\x1b[A"]
    writes += clear_all() + [b"MSG1", b"\n"] + redraw()
    writes += [b"\n\n", clear, b"\x1b[A\x1b[A", b"\n\n", inner, b"\x1b[A\x1b[A"]
    writes += clear_all() + [b"MSG2", b"\n"] + redraw()
    writes += [b"\n\n", clear, b"\x1b[A\x1b[A", b"\n", clear, b"\x1b[A", b"\rL0 2/2 [00:01]", b"\n", b"END\n"]
    framer = LineFramer(progress_interval=0)
    pieces = [piece for write in writes for piece in lines_of(framer.feed(write))] + lines_of(framer.flush())
    assert [blob for kind, blob in pieces if kind == LINES] == [b"MSG1", b"MSG2", b"L0 2/2 [00:01]", b"END"]


def _live_refresh(rows_before: int, rows: list[bytes]) -> bytes:
    """One refresh of a live display of several rows as rich draws it (its Progress with two
    tasks, Lightning's RichProgressBar while it validates): back to the top of the rows it drew
    last, erasing each, then the rows, the cursor resting at the end of the last one."""
    return b"\r\x1b[2K" + b"\x1b[1A\x1b[2K" * (rows_before - 1) + b"\n".join(rows)


def _live_display(extra_rows: list[bytes], prints: bool = False) -> list[bytes]:
    """The writes of a live display whose bar of epochs gains ``extra_rows`` (a row that the
    bar's metrics wrap onto, a bar of validation) for a while; with ``prints``, a line printed
    above it at each step, as rich prints while it shows (its rows redrawn under the line)."""
    writes = [_live_refresh(1, [b"Epoch 0 1/4"]), _live_refresh(1, [b"Epoch 0 4/4"])]
    drawn = 1
    for step in range(1, 4):
        rows = [b"Epoch 0 4/4", *extra_rows, f"Validation {step}/3".encode()]
        if prints:
            rows.insert(0, f"printed {step}".encode())
        writes.append(_live_refresh(drawn, rows))
        drawn = len(rows) - prints
    writes += [_live_refresh(drawn, [b"Epoch 1 0/4"]), _live_refresh(1, [b"Epoch 1 4/4"]), b"\n", b"done\n"]
    return writes


@pytest.mark.parametrize("extra_rows", [[], [b"    val_loss: 0.5"], [b"row a", b"row b"]])
@pytest.mark.parametrize("prints", [False, True])
def test_a_live_display_of_several_rows_leaves_its_last_state_once(extra_rows, prints):
    framer = LineFramer(progress_interval=0)
    writes = _live_display(extra_rows, prints)
    pieces = [piece for write in writes for piece in lines_of(framer.feed(write))] + lines_of(framer.flush())
    lines = [blob.replace(b"\x1b[2K", b"") for kind, blob in pieces if kind == LINES]
    # what a terminal shows: each printed line, the display's last state, the line after it
    assert lines == [*(f"printed {step}".encode() for step in range(1, 4) if prints), b"Epoch 1 4/4", b"done"]
    states = [blob for kind, blob in pieces if kind == PROGRESS and blob]
    assert states and not any(b"Validation" in state for state in states), states


def _rich_display(kind: str, rows: int, height: int):
    """A body for :func:`_lines_however_cut`: rich's display of ``rows`` rows on a terminal
    ``height`` rows high (rich crops a display taller than that to it until its last refresh,
    which shows it whole): its Progress with a bar per shard downloading, or a Live table of
    metrics. What a terminal keeps once it ends: each row's last state."""
    from rich.console import Console
    from rich.live import Live
    from rich.progress import Progress, TextColumn
    from rich.table import Table

    def metrics(step: int) -> Table:
        table = Table.grid()
        for row in range(rows):
            table.add_row(f"metric {row:02d}: {step * row}")
        return table

    def body(stream):
        console = Console(file=stream, force_terminal=True, width=60, height=height, color_system=None)
        if kind.startswith("progress"):
            progress = Progress(TextColumn("{task.description} {task.completed}/{task.total}"), console=console,
                                auto_refresh=False)
            if kind == "progress started with its tasks":  # (its first refresh draws them all)
                shards = [progress.add_task(f"shard {row:02d}", total=3) for row in range(rows)]
            with progress:
                if kind == "progress":  # (each task added draws the rows again)
                    shards = [progress.add_task(f"shard {row:02d}", total=3) for row in range(rows)]
                for _ in range(3):
                    for shard in shards:
                        progress.advance(shard)
                    progress.refresh()
        elif kind == "live table started with it":
            # as rich's documentation shows it: its first refresh draws the table's rows
            with Live(metrics(0), console=console, auto_refresh=False) as live:
                for step in range(1, 4):
                    live.update(metrics(step), refresh=True)
        else:
            # (one line first, which the table's first refresh draws over)
            with Live("waiting for the first step", console=console, auto_refresh=False) as live:
                for step in range(4):
                    live.update(metrics(step), refresh=True)
        stream.write("done\n")

    final = [f"shard {row:02d} 3/3" if kind.startswith("progress") else f"metric {row:02d}: {3 * row}"
             for row in range(rows)]
    return body, [*final, "done"]


@pytest.mark.parametrize("height", [24, 60], ids=["cropped to the terminal", "whole"])
@pytest.mark.parametrize("rows", [20, 40])
@pytest.mark.parametrize("kind", ["progress", "live table"])
def test_a_live_display_taller_than_a_few_bars_leaves_each_rows_last_state_once_however_cut(kind, rows, height):
    from hyperdash.plaintext import plain_lines

    body, expected = _rich_display(kind, rows, height)
    for how, lines in _lines_however_cut(body).items():
        shown = [line.rstrip() for line in plain_lines(line.decode() for line in lines) if line.strip()]
        assert shown == expected, (how, len(shown), shown[:3])


@pytest.mark.parametrize("rows", [3, 20])
@pytest.mark.parametrize("kind", ["live table started with it", "progress started with its tasks"])
def test_a_live_display_drawn_whole_at_its_start_leaves_each_rows_last_state_once_however_cut(kind, rows):
    # Its first refresh draws its rows as lines of plain text, with the cursor hidden, and the
    # next climbs back over them: they used to stay in the log as lines, all but the last.
    from hyperdash.plaintext import plain_lines

    body, expected = _rich_display(kind, rows, 60)
    for how, lines in _lines_however_cut(body).items():
        shown = [line.rstrip() for line in plain_lines(line.decode() for line in lines) if line.strip()]
        assert shown == expected, (how, len(shown), shown[:5])


def test_lines_logged_above_a_live_display_are_kept_once_in_order_however_cut():
    from rich.console import Console
    from rich.live import Live
    from rich.table import Table

    def metrics(step: int) -> Table:
        table = Table.grid()
        for row in range(3):
            table.add_row(f"metric {row}: {step * row}")
        return table

    def body(stream):
        console = Console(file=stream, force_terminal=True, width=60, height=24, color_system=None,
                          log_time=False, log_path=False)
        with Live(metrics(0), console=console, auto_refresh=False) as live:
            for step in range(1, 4):
                live.console.log(f"step {step} logged")
                live.update(metrics(step), refresh=True)
        stream.write("done\n")

    from hyperdash.plaintext import plain_lines

    for how, lines in _lines_however_cut(body).items():
        shown = [line.rstrip() for line in plain_lines(line.decode() for line in lines) if line.strip()]
        assert shown == ["step 1 logged", "step 2 logged", "step 3 logged", "metric 0: 0", "metric 1: 3",
                         "metric 2: 6", "done"], (how, shown)


def test_lines_printed_while_the_cursor_is_hidden_are_lines_however_cut_and_wait_no_longer_than_a_bar():
    # A spinner that prints its log lines above itself, the cursor hidden all along.
    writes = [b"\x1b[?25l"]
    for step in range(5):
        writes += [b"\r\x1b[2K", b"line %d\n" % step, b"\xe2\xa0\x8b working %d" % step]
    writes += [b"\r\x1b[2K", b"\x1b[?25h", b"finished\n"]
    text = b"".join(writes)
    cuts = {"each write": writes, "all at once": [text], "a byte at a time": [text[i:i + 1] for i in range(len(text))]}
    for how, chunks in cuts.items():
        framer = LineFramer(progress_interval=0)
        pieces = [piece for chunk in chunks for piece in lines_of(framer.feed(chunk))] + lines_of(framer.flush())
        lines = [blob.replace(b"\x1b[2K", b"").replace(b"\x1b[?25l", b"").replace(b"\x1b[?25h", b"")
                 for kind, blob in pieces if kind == LINES]
        assert lines == [b"line %d" % step for step in range(5)] + [b"finished"], (how, lines)
    now = [0.0]
    framer = LineFramer(progress_interval=0, clock=lambda: now[0])
    pieces = lines_of(framer.feed(b"\x1b[?25lfirst\n\nsecond\n\xe2\xa0\x8b working"))
    now[0] = 0.6  # (no refresh climbed back to them: they are lines, before the stream ends)
    pieces += lines_of(framer.due_progress())
    assert [blob for kind, blob in pieces if kind == LINES] == [b"\x1b[?25lfirst", b"", b"second"]
    assert not [blob for kind, blob in pieces if kind == PROGRESS and blob]  # (no line is a bar's state)


def test_a_transient_display_leaves_nothing_however_cut():
    from rich.console import Console
    from rich.progress import Progress, TextColumn

    def body(stream):
        console = Console(file=stream, force_terminal=True, width=60, height=24, color_system=None)
        with Progress(TextColumn("{task.description} {task.completed}/{task.total}"), console=console,
                      auto_refresh=False, transient=True) as progress:
            shards = [progress.add_task(f"shard {row}", total=2) for row in range(3)]
            for _ in range(2):
                for shard in shards:
                    progress.advance(shard)
                progress.refresh()
        console.print("after")

    from hyperdash.plaintext import plain_lines

    for how, lines in _lines_however_cut(body).items():
        shown = [line.rstrip() for line in plain_lines(line.decode() for line in lines) if line.strip()]
        assert shown == ["after"], (how, shown)


def _bar(desc: bytes, done: int, total: int) -> bytes:
    return b"\r%s: %3d%%| | %d/%d [00:00<00:00]" % (desc, 100 * done // total, done, total)


def _buffered_nested_bars(prints: bytes) -> list[bytes]:
    """tqdm's writes for nested bars (the inner one left behind in the second epoch only) with
    the program's own lines (``print``, and ``tqdm.write`` to stdout) block-buffered, as stdout
    is to a pipe or a file: they come out at the next flush, after the outer bar's state.
    ``prints`` is what the program prints after each epoch's loss line."""
    erase, up = b"\r" + b" " * 40, b"\x1b[A"
    writes = [_bar(b"epochs", 0, 3)]
    for epoch in range(3):
        inner = b"batch ep%d" % epoch
        writes += [b"\n", _bar(inner, 0, 5), up, b"\n", _bar(inner, 5, 5), up]
        if epoch == 1:  # (leave=True: its last state where the cursor rests, and a newline)
            writes += [_bar(inner, 5, 5), b"\n"]
        else:  # (leave=False: its row erased)
            writes += [b"\n", erase, up]
        # tqdm.write clears the outer bar and draws it again; then the outer bar's update
        writes += [erase + b"\r", _bar(b"epochs", epoch, 3), _bar(b"epochs", epoch + 1, 3)]
        if epoch == 2:
            writes.append(b"\n")  # (the outer bar's end)
        writes.append(b"tqdm.write epoch %d done\nprint epoch %d\n%s" % (epoch, epoch, prints))  # the flush
    return writes


@pytest.mark.parametrize("prints, blank", [(b"", b""), (b"\n", b"\n")], ids=["no blank line", "a blank line"])
def test_nested_bars_after_buffered_prints_leave_the_rows_a_terminal_shows_however_cut(prints, blank):
    # The inner bar's newline opens a row below the prints, which it climbs back up to and
    # draws over: that row used to be a blank line already, kept in the log (where a
    # terminal shows none), when the prints ended the bars' live rows.
    writes = _buffered_nested_bars(prints)
    text = b"".join(writes)
    expected = [
        _bar(b"epochs", 1, 3)[1:] + b"tqdm.write epoch 0 done", b"print epoch 0", *blank.split(b"\n")[:-1],
        _bar(b"batch ep1", 5, 5)[1:],
        _bar(b"epochs", 2, 3)[1:] + b"tqdm.write epoch 1 done", b"print epoch 1", *blank.split(b"\n")[:-1],
        _bar(b"epochs", 3, 3)[1:], b"tqdm.write epoch 2 done", b"print epoch 2", *blank.split(b"\n")[:-1],
    ]
    cuts = {"each write": writes, "a byte at a time": [text[i:i + 1] for i in range(len(text))]}
    cuts.update({f"cut at {at}": [text[:at], text[at:]] for at in range(len(text) + 1)})
    for how, chunks in cuts.items():
        framer = LineFramer(progress_interval=0)
        pieces = [piece for chunk in chunks for piece in lines_of(framer.feed(chunk))] + lines_of(framer.flush())
        assert [blob for kind, blob in pieces if kind == LINES] == expected, how


def _lines(pieces):
    return [blob for kind, blob in lines_of(pieces) if kind == LINES]


def test_a_blank_line_where_bars_nest_comes_out_in_its_place_when_no_bar_climbs_back_to_it():
    now = [0.0]
    framer = LineFramer(progress_interval=0, clock=lambda: now[0])
    framer.feed(b"\router 1/2 [00:00]\n\rinner 1/5 [00:00]\x1b[A\n\r" + b" " * 20 + b"\x1b[A")  # (bars nest)
    assert _lines(framer.feed(b"\router 2/2 [00:00]\nsaved\n\n")) == [b"outer 2/2 [00:00]", b"saved"]
    # (the cursor might climb back to the blank row from a bar drawn below it)
    assert lines_of(framer.feed(b"\rstep 1/9")) == [(PROGRESS, b"step 1/9")]
    now[0] = 0.4
    assert lines_of(framer.feed(b"\rstep 2/9")) == [(PROGRESS, b"step 2/9")]
    now[0] = 0.6  # it did not: the blank line is one
    assert lines_of(framer.due_progress()) == [(LINES, b"")]
    assert _lines(framer.feed(b"\rstep 9/9\n")) == []
    # a line after it, or the stream's end, lets it out at once, in order
    assert _lines(framer.feed(b"done\n\n")) == [b"step 9/9", b"done"]
    assert _lines(framer.feed(b"next\n")) == [b"", b"next"]
    assert _lines(framer.feed(b"\n\n")) == [b""]  # (the last one waits)
    assert _lines(framer.feed(b"\n\rstep 1/9")) == [b""]
    assert _lines(framer.flush()) == [b"", b"step 1/9"]


def test_blank_lines_are_lines_at_once_where_bars_do_not_nest():
    framer = LineFramer(progress_interval=0)
    assert _lines(framer.feed(b"\rstep 9/9\nsaved\n\n")) == [b"step 9/9", b"saved", b""]
    assert _lines(framer.feed(b"\n")) == [b""]

"""Terminal output as plain text: escapes removed, redrawn lines resolved, erased ones dropped."""

from __future__ import annotations

import pytest

from hyperdash.plaintext import last_state, plain_line, plain_lines, strip_escapes

BAR = "\x1b[32m" + "█" * 40 + "\x1b[0m"


@pytest.mark.parametrize("raw, plain", [
    ("plain text", "plain text"),
    ("\x1b[32mgreen\x1b[0m and \x1b[1;31mbold red\x1b[0m", "green and bold red"),
    ("\x1b[38;5;208morange\x1b[39m \x1b[48;2;1;2;3mtruecolour\x1b[m", "orange truecolour"),
    ("\x1b]0;window title\x07text", "text"),
    ("see \x1b]8;;https://example.com\x1b\\the docs\x1b]8;;\x1b\\ here", "see the docs here"),
    ("\x1b[2K\x1b[1Aup and erased", "up and erased"),
    ("\x1b(Bcharset", "charset"),
    ("cut off \x1b[3", "cut off "),
    ("bell\x07 and backspace\x08", "bell and backspace"),
    ("tab\tkept", "tab\tkept"),
    ("обучение 训练 \x1b[1m✓\x1b[0m", "обучение 训练 ✓"),
])
def test_escapes_go_and_the_text_stays(raw, plain):
    assert strip_escapes(raw) == plain


def test_a_redrawn_line_is_its_last_state():
    assert last_state(" 10%|#\r 50%|#####\r100%|##########") == "100%|##########"
    assert last_state("100%|done\r") == "100%|done"
    assert last_state("no carriage return") == "no carriage return"
    assert last_state("\r\r") == ""


def test_a_coloured_progress_bar_becomes_its_last_state_in_plain_text():
    line = "\r".join(f"\x1b[1mepoch 1\x1b[0m {p:3d}%|{BAR[:5 + p // 5]}" for p in (0, 50, 100))
    assert plain_line(line) == "epoch 1 100%|" + "█" * 20


def test_an_erased_line_is_no_line():
    assert plain_line(" 50%|#####\r          \r") is None
    assert plain_line("\x1b[2K\r") is None
    # A progress state known to be one (stored without its \r) that is blank was erased too.
    assert plain_line("      ", redrawn=True) is None
    # An ordinary blank line stays: it is part of the output.
    assert plain_line("") == ""
    assert plain_line("   ") == "   "


def test_plain_lines_leaves_out_erased_lines_only():
    lines = ["start", "\x1b[33mwarn\x1b[0m", " 10%\r 90%\r    \r", "", "end"]
    assert list(plain_lines(lines)) == ["start", "warn", "", "end"]

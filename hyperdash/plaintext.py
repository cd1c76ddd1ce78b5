"""Terminal output as plain text: what a person reads, without the codes a terminal obeys.

Dependency-free, so that the server may use it too (its log download). A line of output may
hold ANSI escape sequences (colours, cursor moves, window titles, hyperlinks) and carriage
returns (a progress bar drawing itself over and over). As plain text, a line is its escape
sequences removed and its carriage returns resolved to the last state drawn; a line whose last
state is blank was erased (a progress bar that cleared itself when done) and is no line at all.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

__all__ = ["strip_escapes", "last_state", "plain_line", "plain_lines"]

# OSC (window titles, OSC 8 hyperlinks: the text between them is kept), ended by BEL or ST, or
# cut off by the end of the line; CSI (colours, cursor moves, erasing); character set choices
# (tput's "\x1b(B"); other two-byte escapes.
_ESCAPE = re.compile(
    r"\x1b(?:\][^\x07\x1b]*(?:\x07|\x1b\\)?|\[[0-?]*[ -/]*[@-~]|[ -/]+[0-~]|[@-Z\\-_])"
    # A CSI cut off by the end of the line, and the 8-bit CSI form.
    r"|\x1b\[[0-?]*[ -/]*$|\x9b[0-?]*[ -/]*[@-~]"
)
# Control characters a terminal does not print (tab, newline and carriage return are kept).
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def strip_escapes(text: str) -> str:
    """``text`` without ANSI escape sequences and other unprintable control characters."""
    if "\x1b" in text or "\x9b" in text:
        text = _ESCAPE.sub("", text)
    return _CONTROL.sub("", text)


def last_state(text: str) -> str:
    """What a terminal shows of a line redrawn with ``\\r``: its last non-empty state."""
    if "\r" not in text:
        return text
    for state in reversed(text.split("\r")):
        if state:
            return state
    return ""


def plain_line(text: str, redrawn: bool = False) -> str | None:
    """One line of output (without its newline) as plain text; None when the line was erased:
    redrawn with ``\\r`` (or known to be a progress state: ``redrawn``) until nothing but
    blanks was left."""
    redrawn = redrawn or "\r" in text
    plain = last_state(strip_escapes(text))
    if redrawn and not plain.strip():
        return None
    return plain


def plain_lines(lines: Iterable[str]) -> Iterator[str]:
    """The plain text of each line (each without its newline), erased lines left out."""
    for line in lines:
        plain = plain_line(line)
        if plain is not None:
            yield plain

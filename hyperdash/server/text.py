"""Text from clients, checked or cleaned before it reaches the store: the one place for it.

JSON and URLs can carry two things that a store cannot keep alike: NUL (PostgreSQL's text type
refuses it, SQLite keeps it) and lone surrogates (UTF-8 cannot encode them). So that every store
gives the same answer:

- identifiers and what is looked up by them (emails, run uuids, metric names, run names and
  search terms in queries) are *checked*: :func:`checked` refuses such text with 400;
- labels and free text (API key names, the host a login names, log lines, names and param
  values a job sends) are *cleaned*: :func:`clean` replaces each NUL and lone surrogate by
  U+FFFD, so nothing a job wrote is dropped for one bad character.
"""

from __future__ import annotations

import re

from .errors import BadRequest

__all__ = ["is_clean", "has_surrogates", "clean", "checked", "REPLACEMENT"]

REPLACEMENT = "\ufffd"
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def has_surrogates(text: str) -> bool:
    """Whether ``text`` holds a lone surrogate (JSON can carry one; UTF-8 cannot)."""
    return not text.isascii() and _SURROGATE.search(text) is not None


def is_clean(text: str) -> bool:
    """Whether every store keeps ``text`` as it is: no NUL, no lone surrogate."""
    return "\x00" not in text and not has_surrogates(text)


def clean(text: str) -> str:
    """``text`` with each NUL and lone surrogate replaced by U+FFFD (free text and labels)."""
    return text if is_clean(text) else _UNSTORABLE.sub(REPLACEMENT, text)


def checked(text: str, what: str, code: str = "invalid_text") -> str:
    """``text`` itself, or 400 ``code`` naming ``what`` when it holds NUL or a lone surrogate."""
    if "\x00" in text:
        raise BadRequest(f"{what} holds a NUL character", code=code)
    if has_surrogates(text):
        raise BadRequest(f"{what} holds a lone surrogate (not valid Unicode text)", code=code)
    return text

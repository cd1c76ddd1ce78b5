"""A run's whole log as a file to download: plain text (what a person reads) or raw (as stored).

- **Plain text** (``logs.txt``): escape codes removed, each progress bar as the last state it
  drew, bars that erased themselves left out, one line per line of output.
- **Raw** (``logs.txt?raw=1``): the lines as the job wrote them, ANSI escape codes and carriage
  returns kept, each followed by a newline; a progress bar is the last state of it the server
  kept.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from urllib.parse import quote

from fastapi.responses import StreamingResponse

from ..plaintext import plain_line
from . import queries

__all__ = ["log_download", "plain_log", "content_disposition"]

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def content_disposition(name: str, fallback: str) -> str:
    """An ``attachment`` header value naming the file ``name`` in any script (RFC 6266's
    ``filename*=UTF-8''…``), with an ASCII ``filename=`` for clients that read only that one
    (``fallback`` when nothing of ``name`` is ASCII)."""
    folded = unicodedata.normalize("NFD", name).encode("ascii", "ignore").decode("ascii")
    stem, dot, ext = folded.rpartition(".")
    ascii_stem = _UNSAFE.sub("_", stem).strip("_.")
    ascii_name = (ascii_stem or fallback) + dot + ext
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"


def plain_log(store, run_id: int) -> Iterator[bytes]:
    """The log as plain text, a page of lines at a time. The pieces of a line too long to send
    whole are joined first (an escape code may be cut between them); the line goes out where it
    ends."""
    pieces: dict[str, list[str]] = {}  # stream -> the pieces of its unfinished line
    after = 0
    while True:
        with store.read() as conn:
            lines = queries.log_lines(conn, run_id, after=after, limit=queries.MAX_PAGE)
        if not lines:
            break
        out = []
        for line in lines:
            if line["partial"]:
                pieces.setdefault(line["stream"], []).append(line["text"])
                continue
            text = "".join(pieces.pop(line["stream"], ())) + line["text"]
            plain = plain_line(text, redrawn=line["progress"])
            if plain is not None:
                out.append(plain + "\n")
        after = lines[-1]["seq"]
        if out:
            yield "".join(out).encode("utf-8", "replace")
    # A line the run never finished.
    rest = [plain_line("".join(p)) for p in pieces.values()]
    if any(p is not None for p in rest):
        yield "".join(p + "\n" for p in rest if p is not None).encode("utf-8", "replace")


def log_download(store, run, raw: bool = False) -> StreamingResponse:
    """The response that downloads ``run``'s log (a row of the runs table): plain text, or raw."""
    name = run.name or run.uuid
    fallback = "run-" + run.uuid[:8]
    if raw:
        body, filename = queries.log_text(store, run.id), name[:100] + ".log"
    else:
        body, filename = plain_log(store, run.id), name[:100] + ".txt"
    return StreamingResponse(
        body, media_type="text/plain; charset=utf-8",
        headers={"content-disposition": content_disposition(filename, fallback)},
    )

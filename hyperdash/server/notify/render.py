"""A notification in each channel's markup, escaped for it and cut to its limits.

Every text is laid out the same way: the title in bold, the summary, the last lines of output in
a code block, and a link to the run. What does not fit is cut from the *start* of the output (its
end is what matters), and cutting happens on the raw text before it is escaped, so a cut never
falls inside an escape sequence (``&amp;``) or a character.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable
from dataclasses import dataclass

from .message import Notification

ELLIPSIS = "…"

# --- limits -----------------------------------------------------------------------------------
# Slack allows 40,000 characters of text, but a section block holds 3,000: more is noise anyway.
SLACK_MAX_CHARS = 3000
DISCORD_MAX_CHARS = 2000
# Telegram counts UTF-16 code units, as its clients do.
TELEGRAM_MAX_UNITS = 4096
# ntfy turns a longer message into an attachment.
NTFY_MAX_BYTES = 4096
# A push message may be 4,096 bytes once encrypted: aes128gcm adds a 86-byte header (with the
# sender's key), a 16-byte tag and a 1-byte padding delimiter.
WEBPUSH_MAX_BYTES = 4096 - 86 - 16 - 1


def utf8_size(text: str) -> int:
    return len(text.encode("utf-8"))


def utf16_size(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def fit_end(raw: str, budget: int, measure: Callable[[str], int]) -> str:
    """The longest end of ``raw`` whose measure is within ``budget``, marked with ``…`` if cut.

    ``measure`` is applied to candidate raw strings (so it includes any escaping): the cut is
    made on raw characters, never inside an escape sequence or a multi-byte character.
    """
    if measure(raw) <= budget:
        return raw
    lo, hi = 0, len(raw)  # lo always fits (the ellipsis alone, if the budget allows it)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if measure(ELLIPSIS + raw[len(raw) - mid :]) <= budget:
            lo = mid
        else:
            hi = mid - 1
    if lo == 0:
        return ELLIPSIS if measure(ELLIPSIS) <= budget else ""
    kept = raw[len(raw) - lo :]
    # Start at a line boundary when one is near: a half line at the top reads as garbage.
    newline = kept.find("\n")
    if 0 <= newline < 200 and newline < len(kept) - 1:
        kept = kept[newline + 1 :]
    return ELLIPSIS + kept


def fit_start(raw: str, budget: int, measure: Callable[[str], int]) -> str:
    """The longest start of ``raw`` within ``budget``, marked with ``…`` if cut (see fit_end)."""
    if measure(raw) <= budget:
        return raw
    lo, hi = 0, len(raw)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if measure(raw[:mid] + ELLIPSIS) <= budget:
            lo = mid
        else:
            hi = mid - 1
    if lo == 0:
        return ELLIPSIS if measure(ELLIPSIS) <= budget else ""
    return raw[:lo] + ELLIPSIS


@dataclass(frozen=True)
class Markup:
    """How one channel writes text: its escaping, emphasis, code blocks and links, and limit."""

    escape: Callable[[str], str]
    bold: Callable[[str], str]
    code: Callable[[str], str]  # takes raw text, escapes it as that markup's code blocks need
    link: Callable[[str, str], str]  # (url, escaped label)
    limit: int
    measure: Callable[[str], int] = len

    def render(self, n: Notification, *, with_title: bool = True, with_link: bool = True) -> str:
        """The notification as one text within :attr:`limit`."""
        head = [self.bold(self.escape(n.title))] if with_title else []
        summary = self.escape(n.summary)
        foot = [self.link(n.url, self.escape("Open the run"))] if with_link else []
        fixed = head + [summary] + foot
        if self.measure("\n".join(fixed)) > self.limit:
            # Only a huge rule text can get here; keep the title and the link, cut the summary.
            budget = self.limit - self.measure("\n".join(head + [""] + foot))
            summary = fit_start(n.summary, budget, lambda s: self.measure(self.escape(s)))
            return "\n".join(head + [self.escape(summary)] + foot)
        tail = n.tail.strip("\n")
        if tail.strip():
            budget = self.limit - self.measure("\n".join(head + [summary, self.code("")] + foot))
            tail = fit_end(tail, budget, lambda s: self.measure(self.code(s)) - self.measure(self.code("")))
        parts = head + [summary] + ([self.code(tail)] if tail.strip() else []) + foot
        return "\n".join(parts)


# --- Slack mrkdwn -----------------------------------------------------------------------------
def slack_escape(text: str) -> str:
    """Slack's three control characters; everything else is literal in mrkdwn text."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _fence_safe(text: str) -> str:
    # A ``` inside a code block would close it; a zero-width space keeps the backticks visible.
    return text.replace("```", "`\u200b`\u200b`")


SLACK = Markup(
    escape=slack_escape,
    bold=lambda s: f"*{s}*",
    code=lambda raw: f"```{slack_escape(_fence_safe(raw))}```",
    link=lambda url, label: f"<{slack_escape(url)}|{label}>",
    limit=SLACK_MAX_CHARS,
)

# --- Discord markdown -------------------------------------------------------------------------
_DISCORD_SPECIAL = re.compile(r"([\\*_~`|>#\[\]()<:@-])")


def discord_escape(text: str) -> str:
    """Backslash every markdown character, so run names and rules show as typed."""
    return _DISCORD_SPECIAL.sub(r"\\\1", text)


DISCORD = Markup(
    escape=discord_escape,
    bold=lambda s: f"**{s}**",
    code=lambda raw: f"```\n{_fence_safe(raw)}\n```",
    link=lambda url, label: f"[{label}](<{url}>)",
    limit=DISCORD_MAX_CHARS,
)


# --- Telegram HTML parse mode -----------------------------------------------------------------
def telegram_escape(text: str) -> str:
    """The escaping Telegram's HTML parse mode asks for: &, < and > (and quotes in attributes)."""
    return html.escape(text, quote=False)


TELEGRAM = Markup(
    escape=telegram_escape,
    bold=lambda s: f"<b>{s}</b>",
    code=lambda raw: f"<pre>{telegram_escape(raw)}</pre>",
    link=lambda url, label: f'<a href="{html.escape(url, quote=True)}">{label}</a>',
    limit=TELEGRAM_MAX_UNITS,
    measure=utf16_size,
)


# --- plain text (ntfy, email) -----------------------------------------------------------------
def plain(limit: int, measure: Callable[[str], int] = len) -> Markup:
    """Plain text: nothing to escape; the output indented by four spaces."""
    return Markup(
        escape=lambda s: s,
        bold=lambda s: s,
        code=lambda raw: "\n".join("    " + line for line in raw.split("\n")) if raw else "",
        link=lambda url, label: url,
        limit=limit,
        measure=measure,
    )


def ntfy_message(n: Notification) -> str:
    """The body of an ntfy message: its title and link travel in headers."""
    return plain(NTFY_MAX_BYTES, utf8_size).render(n, with_title=False, with_link=False)


def email_text(n: Notification) -> str:
    """The plain-text part of an email (no practical limit; the output is already a tail)."""
    return plain(1_000_000).render(n, with_title=False) + "\n"


def email_html(n: Notification) -> str:
    """The HTML part of an email: every piece of text escaped."""
    e = html.escape
    tail = n.tail.strip("\n")
    pre = f'<pre style="background:#f4f4f4;padding:8px;white-space:pre-wrap">{e(tail)}</pre>' if tail.strip() else ""
    return (
        f"<html><body><h3>{e(n.title)}</h3><p>{e(n.summary)}</p>{pre}"
        f'<p><a href="{e(n.url, quote=True)}">Open the run</a></p></body></html>'
    )


def webpush_payload(n: Notification) -> bytes:
    """The JSON that the dashboard's service worker shows: title, body, url, tag.

    The body is cut so that the whole payload fits in one encrypted push message.
    """

    def dump(body: str) -> bytes:
        data = {"title": n.title, "body": body, "url": n.url, "tag": n.run_uuid, "kind": n.kind, "key": n.key}
        return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    empty = len(dump(""))
    budget = WEBPUSH_MAX_BYTES - empty

    def measure(body: str) -> int:  # JSON escapes character by character, so sizes add up
        return len(dump(body)) - empty

    if measure(n.summary) > budget:
        return dump(fit_start(n.summary, budget, measure))
    tail = n.tail.strip("\n")
    if not tail.strip():
        return dump(n.summary)
    head = n.summary + "\n"
    return dump(head + fit_end(tail, budget - measure(head), measure))

"""What a notification says: the facts about one run, and its title and summary in plain text.

A :class:`Notification` is plain data, built by whoever decides that a person must hear about
something (the outbox, later). Each channel turns it into its own markup with
:mod:`hyperdash.server.notify.render`.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from urllib.parse import quote

from hyperdash import events
from hyperdash.plaintext import strip_escapes

# --- what happened ----------------------------------------------------------------------------
ENDED = "ended"  # the run finished: status says how
LOST = "lost"  # heartbeats stopped for longer than the server's timeout
BACK = "back"  # a lost run spoke again
STALLED = "stalled"  # the run is alive but has written nothing for a while
RULE = "rule"  # a rule of the user's fired (a metric crossed a threshold, ...)
KINDS = (ENDED, LOST, BACK, STALLED, RULE)

# Run names longer than this are cut in titles, and titles too: a lock screen shows one line.
MAX_TITLE_NAME_CHARS = 120
MAX_TITLE_CHARS = 200

# Beside terminal codes: C1 controls, and the Unicode controls that reorder what follows them
# (a name could make a title read backwards from there on).
_UNSHOWN = re.compile("[\x80-\x9f\u202a-\u202e\u2066-\u2069]")


def shown(text: str) -> str:
    """A job's text (a run name, a host, a rule) as a title or a summary shows it: one line,
    without the codes a terminal, a mail reader or a phone would act on."""
    return " ".join(_UNSHOWN.sub("", strip_escapes(text)).split())


@dataclass(frozen=True)
class Notification:
    """One thing a person must hear about, with everything a channel may show.

    ``kind`` is one of :data:`KINDS`; for :data:`ENDED`, ``status`` is one of
    ``hyperdash.events.FINAL_STATUSES``. ``tail`` holds the last lines of output (or the
    traceback), untrusted text that every channel escapes. ``base_url`` is the server's public
    address, from which :attr:`url` (the run's page) is built. For :data:`RULE`, ``rule`` is the
    rule in words, and ``value`` and ``step`` the point that fired it (``value`` as text:
    ``NaN``, ``Infinity`` or a number). ``duration_s``: how long the run had gone when it ended,
    went silent, stalled, came back or fired the rule. ``key`` identifies this
    notification across retries, so receivers can drop duplicates; left empty, it is derived
    from the kind, run and status (the outbox sends each channel a key of its own made of it).
    """

    kind: str
    run_name: str
    run_uuid: str
    base_url: str
    status: str | None = None
    duration_s: float | None = None
    exit_code: int | None = None
    signal: str | None = None
    host: str | None = None
    tail: str = ""
    rule: str | None = None
    key: str = ""
    value: str | None = None
    step: int | None = None
    #: the run's status when this happened (``running`` for a stall, a rule or a return;
    #: ``lost`` for a silence); None in notifications queued before it was kept
    run_status: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown notification kind {self.kind!r}; expected one of {', '.join(KINDS)}")
        if self.kind == ENDED and self.status not in events.FINAL_STATUSES:
            raise ValueError(
                f"a run that ended needs a final status ({', '.join(events.FINAL_STATUSES)}), not {self.status!r}"
            )
        if not self.key:
            seed = f"{self.kind}\0{self.run_uuid}\0{self.status or ''}\0{self.rule or ''}"
            object.__setattr__(self, "key", hashlib.sha256(seed.encode()).hexdigest()[:32])

    @property
    def event(self) -> str:
        """The event's name for machines: ``run.ended``, ``run.lost``, ... or ``rule.fired``."""
        return "rule.fired" if self.kind == RULE else f"run.{self.kind}"

    @property
    def url(self) -> str:
        """The run's page on the dashboard."""
        return f"{self.base_url.rstrip('/')}/runs/{quote(self.run_uuid, safe='')}"

    @property
    def short_name(self) -> str:
        name = shown(self.run_name) or "(unnamed run)"
        if len(name) > MAX_TITLE_NAME_CHARS:
            name = name[: MAX_TITLE_NAME_CHARS - 1] + "…"
        return name

    @property
    def title(self) -> str:
        """One line for a lock screen or a subject: which run, and what happened to it."""
        title = self._title()
        return title if len(title) <= MAX_TITLE_CHARS else title[: MAX_TITLE_CHARS - 1] + "…"

    def _title(self) -> str:
        name = self.short_name
        if self.kind == ENDED:
            if self.status == events.SUCCESS:
                return f"✅ {name} finished"
            if self.status == events.FAILURE:
                code = f" (exit code {self.exit_code})" if self.exit_code is not None else ""
                return f"❌ {name} failed{code}"
            if self.status == events.KILLED:
                by = f" by {self.signal}" if self.signal else ""
                return f"💀 {name} was killed{by}"
            return f"⏹ {name} was cancelled"
        if self.kind == LOST:
            return f"❓ {name} went silent"
        if self.kind == BACK:
            return f"↩️ {name} is back"
        if self.kind == STALLED:
            return f"⏸ {name} stalled"
        return f"🔔 {name}: {shown(self.rule or '') or 'a rule fired'}"

    @property
    def summary(self) -> str:
        """A sentence or two under the title: how long, where, how it ended."""
        parts = []
        what = {
            ENDED: {
                events.SUCCESS: "Finished",
                events.FAILURE: "Failed",
                events.KILLED: "Killed",
                events.USER_CANCELED: "Cancelled",
            }.get(self.status or "", "Ended"),
            LOST: "No heartbeat from the run",
            BACK: "The run is sending again",
            STALLED: "No output from the run for its stall window",
            RULE: "A rule fired",
        }[self.kind]
        if self.duration_s is not None:
            took = format_duration(self.duration_s)
            # (an end is after the whole run; the rest happen some way into it)
            what += f" after {took}" if self.kind == ENDED else (
                f" since {took} into it" if self.kind == LOST else f", {took} into it")
        host = shown(self.host or "")
        if host:
            what += f" on {host}" if self.kind == ENDED or self.duration_s is None else f", on {host}"
        parts.append(what + ".")
        if self.kind == ENDED and self.status == events.FAILURE and self.exit_code is not None:
            parts.append(f"Exit code {self.exit_code}.")
        if self.kind == ENDED and self.status == events.KILLED and self.signal:
            parts.append(f"Signal {self.signal}.")
        if self.kind == RULE and self.rule:
            point = ""
            if self.value is not None:
                point = f" ({self.value}" + (f" at step {self.step}" if self.step is not None else "") + ")"
            parts.append(f"Rule: {shown(self.rule)}{point}.")
        return " ".join(parts)


def format_duration(seconds: float) -> str:
    """``"3 s"``, ``"4 min 05 s"``, ``"2 h 03 min"``, ``"3 d 4 h"``: short and unambiguous."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s} s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m} min {s:02d} s"
    h, m = divmod(m, 60)
    if h < 24:
        return f"{h} h {m:02d} min"
    d, h = divmod(h, 24)
    return f"{d} d {h} h"

"""Checks for the pieces of a channel's settings (addresses, tokens), and how secrets are masked.

A bad setting raises :class:`SettingsError` with one sentence a person can act on; its message
never repeats a secret (an address is named by its scheme and host only).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from .delivery import MASK


class SettingsError(ValueError):
    """A channel's settings are unusable; the message says which one and why."""


def require(settings: Mapping[str, Any], name: str) -> str:
    """A required text setting, stripped."""
    value = settings.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise SettingsError(f"{name} is required")
    if not isinstance(value, str):
        raise SettingsError(f"{name} must be text")
    return value.strip()


def optional(settings: Mapping[str, Any], name: str) -> str | None:
    """An optional text setting, stripped; empty means absent."""
    value = settings.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str):
        raise SettingsError(f"{name} must be text")
    return value.strip()


def check_url(value: str, *, name: str = "url") -> str:
    """An absolute http(s) address with a host, and no user name or password in it."""
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in value):
        raise SettingsError(f"{name} must not contain spaces or control characters")
    try:
        parts = urlsplit(value)
        _ = parts.port  # raises ValueError for a bad port
    except ValueError:
        raise SettingsError(f"{name} is not a valid address") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise SettingsError(f"{name} must start with https:// (or http://)")
    if "@" in parts.netloc:
        raise SettingsError(f"{name} must not hold a user name or password before the host")
    if not parts.hostname:
        raise SettingsError(f"{name} has no host")
    if parts.fragment:
        raise SettingsError(f"{name} must not have a #fragment")
    return value


def origin(url: str) -> str:
    """``scheme://host[:port]`` of an address."""
    parts = urlsplit(url)
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}"


def url_secrets(url: str) -> list[str]:
    """The parts of a hook's address that act as a password: its path, query, long segments."""
    parts = urlsplit(url)
    segments = [s for s in parts.path.split("/") if len(s) >= 8]
    return [url, parts.path if len(parts.path) > 1 else "", parts.query, *segments]


def mask_tail(value: str, keep: int = 2) -> str:
    """The first ``keep`` characters and ``****``: enough to recognise, not to use."""
    return value[:keep] + "…" + MASK if len(value) > keep else MASK


def mask_url(url: str, *, keep_segments: int = 0) -> str:
    """An address with its path shown only up to ``keep_segments`` segments, the rest masked.

    Each further segment keeps its first two characters, so a person can tell two hooks apart:
    ``https://hooks.slack.com/services/T0…/B0…/****``.
    """
    parts = urlsplit(url)
    segments = [s for s in parts.path.split("/") if s]
    shown = segments[:keep_segments]
    hidden = segments[keep_segments:]
    masked = [mask_tail(s) for s in hidden[:-1]] + ([MASK] if hidden else [])
    path = "/".join(shown + masked)
    query = "?" + MASK if parts.query else ""
    return f"{origin(url)}/{path}{query}"


# A deliberately simple check: one @, a local part without spaces or separators, a dotted domain
# (or localhost). Whether the mailbox exists only the receiving server can say.
_EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@(localhost|[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+)$")


def check_email(value: str, *, name: str = "address") -> str:
    """A bare email address (``someone@example.com``), without a display name."""
    if not _EMAIL.match(value) or len(value) > 254:
        raise SettingsError(f"{name} {value[:80]!r} is not an email address like someone@example.com")
    return value

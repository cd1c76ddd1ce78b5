"""Notification channels: how the server tells a person about a run with the dashboard closed.

This package is the channel layer, and nothing more. It knows:

- what a notification says (:class:`Notification`, in :mod:`.message`), and how it is written for
  each channel: escaped for its markup and cut to its limits (:mod:`.render`);
- what a channel is (:class:`Channel`): settings checked on construction (a bad one raises
  :class:`SettingsError` with a clear message), :meth:`Channel.masked` settings to show,
  and :meth:`Channel.deliver`, one real attempt with a short timeout, classified as a
  :class:`DeliveryResult`: delivered, retry (maybe after ``retry_after_s``), failed for good,
  or gone (a push subscription to delete), with the receiver's answer, secrets scrubbed;
- the kinds: ``webhook`` (signed JSON, :mod:`.webhook` documents how to verify it),
  ``slack``, ``discord``, ``telegram``, ``ntfy`` (:mod:`.chat`), ``email`` (:mod:`.smtp`)
  and ``webpush`` (:mod:`.webpush`, with the server's VAPID keys).

It holds no state, starts no thread and touches no store. The durable outbox plugs in above it:
a subscriber to the store's announcements writes one outbox row per (notification, channel);
a delivery worker builds the channel with :func:`make_channel` from the stored settings, calls
``deliver``, and by the result marks the row done, schedules a retry (honouring
``retry_after_s``), gives up, or deletes a gone subscription. Grouping and per-channel rate limits
belong to that worker too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .base import Channel
from .chat import DiscordChannel, NtfyChannel, SlackChannel, TelegramChannel
from .delivery import DeliveryResult, Outcome, parse_retry_after
from .message import BACK, ENDED, KINDS, LOST, RULE, STALLED, Notification
from .settings import SettingsError
from .smtp import EmailChannel
from .webhook import WebhookChannel, generate_secret, verify_signature
from .webpush import VapidKeys, WebPushChannel

CHANNEL_KINDS: dict[str, type[Channel]] = {
    cls.kind: cls
    for cls in (
        WebhookChannel, SlackChannel, DiscordChannel, NtfyChannel, TelegramChannel, EmailChannel, WebPushChannel
    )
}


# The server's options that each kind takes besides ``timeout`` (see make_channel).
KIND_OPTIONS: dict[str, frozenset[str]] = {
    "webpush": frozenset({"vapid", "subject", "ttl_s"}),
    "email": frozenset({"ssl_context"}),
    "telegram": frozenset({"api_base"}),
    "slack": frozenset({"origins"}),
    "discord": frozenset({"origins"}),
}


def make_channel(kind: str, settings: Mapping[str, Any], **options: Any) -> Channel:
    """The channel of ``kind`` with ``settings`` checked; raises SettingsError if unusable.

    ``options`` are the server's, not the user's: ``timeout`` for every kind; ``vapid`` and
    ``subject`` for webpush; ``ssl_context`` for email; ``api_base`` for telegram; ``origins``
    for slack and discord. Those another kind takes are left out, so one set serves every kind.
    """
    try:
        cls = CHANNEL_KINDS[kind]
    except KeyError:
        raise SettingsError(f"unknown channel kind {kind!r}; expected one of {', '.join(CHANNEL_KINDS)}") from None
    taken = KIND_OPTIONS.get(kind, frozenset()) | {"timeout"}
    ours = {name: value for name, value in options.items() if name in taken or name not in ALL_KIND_OPTIONS}
    return cls(settings, **ours)


ALL_KIND_OPTIONS = frozenset().union(*KIND_OPTIONS.values())


__all__ = [
    "BACK",
    "CHANNEL_KINDS",
    "KIND_OPTIONS",
    "ENDED",
    "KINDS",
    "LOST",
    "RULE",
    "STALLED",
    "Channel",
    "DeliveryResult",
    "DiscordChannel",
    "EmailChannel",
    "Notification",
    "NtfyChannel",
    "Outcome",
    "SettingsError",
    "SlackChannel",
    "TelegramChannel",
    "VapidKeys",
    "WebPushChannel",
    "WebhookChannel",
    "generate_secret",
    "make_channel",
    "parse_retry_after",
    "verify_signature",
]

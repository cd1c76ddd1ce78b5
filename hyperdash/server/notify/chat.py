"""Chat and phone services reached by one HTTP request: Slack, Discord, Telegram and ntfy.

Slack and Discord accept only their own incoming-webhook addresses; Telegram's API address is a
constructor option. Both exist so that a self-hosted or test receiver can stand in for them;
they are server options, never a user's settings.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from hyperdash import events

from .base import Channel
from .delivery import DeliveryResult, Outcome, post
from .message import ENDED, LOST, RULE, STALLED, Notification
from .render import DISCORD, SLACK, TELEGRAM, ntfy_message, slack_escape
from .settings import SettingsError, check_url, mask_url, optional, origin, require, url_secrets


def _check_hook(url: str, origins: Sequence[str], path: re.Pattern[str], example: str) -> str:
    check_url(url)
    parts = urlsplit(url)
    if origin(url) not in {o.rstrip("/").lower() for o in origins} or not path.fullmatch(parts.path) or parts.query:
        raise SettingsError(f"url must be an incoming webhook address like {example}")
    return url


class SlackChannel(Channel):
    """A Slack incoming webhook. Settings: ``url`` (https://hooks.slack.com/services/T…/B…/…)."""

    kind = "slack"
    setting_names = ("url",)
    destinations = ("url",)
    ORIGINS = ("https://hooks.slack.com",)
    PATH = re.compile(r"/services/T[A-Z0-9]+/B[A-Z0-9]+/[A-Za-z0-9]+")

    def __init__(self, settings: Mapping[str, Any], *, origins: Sequence[str] | None = None, **options: Any):
        self.origins = tuple(origins or self.ORIGINS)
        super().__init__(settings, **options)

    def check(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        url = require(settings, "url")
        return {"url": _check_hook(url, self.origins, self.PATH, "https://hooks.slack.com/services/T…/B…/…")}

    def masked(self) -> dict[str, Any]:
        return {"url": mask_url(self.settings["url"], keep_segments=1)}

    def secrets(self) -> list[str]:
        return url_secrets(self.settings["url"])

    def send(self, notification: Notification) -> DeliveryResult:
        body = {
            # What phones show in the push notification; the block is what the channel shows.
            "text": slack_escape(notification.title),
            "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": SLACK.render(notification)}}],
            "unfurl_links": False,
        }
        return post(self.settings["url"], json_body=body, scrub=self.scrub, timeout=self.timeout)


class DiscordChannel(Channel):
    """A Discord incoming webhook. Settings: ``url`` (https://discord.com/api/webhooks/ID/TOKEN)."""

    kind = "discord"
    setting_names = ("url",)
    destinations = ("url",)
    ORIGINS = ("https://discord.com", "https://discordapp.com", "https://ptb.discord.com", "https://canary.discord.com")
    PATH = re.compile(r"/api/webhooks/\d+/[A-Za-z0-9_-]+")

    def __init__(self, settings: Mapping[str, Any], *, origins: Sequence[str] | None = None, **options: Any):
        self.origins = tuple(origins or self.ORIGINS)
        super().__init__(settings, **options)

    def check(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        url = require(settings, "url")
        return {"url": _check_hook(url, self.origins, self.PATH, "https://discord.com/api/webhooks/123…/…")}

    def masked(self) -> dict[str, Any]:
        return {"url": mask_url(self.settings["url"], keep_segments=2)}

    def secrets(self) -> list[str]:
        return url_secrets(self.settings["url"])

    def send(self, notification: Notification) -> DeliveryResult:
        body = {
            "content": DISCORD.render(notification),
            "username": "Hyperdash",
            # Log text may say @everyone: it must not ping anyone.
            "allowed_mentions": {"parse": []},
        }
        return post(self.settings["url"], json_body=body, scrub=self.scrub, timeout=self.timeout)


class TelegramChannel(Channel):
    """A Telegram bot's message to a chat. Settings: ``token`` (from @BotFather), ``chat_id``.

    ``chat_id`` is a number (negative for groups) or a public channel's ``@name``.
    """

    kind = "telegram"
    setting_names = ("token", "chat_id")
    # The token goes to the API address only, a server option; chat_id picks one of the bot's chats.
    secret_settings = ("token",)
    API_BASE = "https://api.telegram.org"
    TOKEN = re.compile(r"\d{3,16}:[A-Za-z0-9_-]{30,64}")
    CHAT_ID = re.compile(r"-?\d{1,20}|@[A-Za-z][A-Za-z0-9_]{4,31}")

    def __init__(self, settings: Mapping[str, Any], *, api_base: str | None = None, **options: Any):
        self.api_base = (api_base or self.API_BASE).rstrip("/")
        super().__init__(settings, **options)

    def check(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        token = require(settings, "token")
        if not self.TOKEN.fullmatch(token):
            raise SettingsError("token must be a bot token from @BotFather, like 123456789:AAE…")
        chat_id = settings.get("chat_id")
        chat_id = str(chat_id).strip() if isinstance(chat_id, int) and not isinstance(chat_id, bool) else chat_id
        chat_id = require({"chat_id": chat_id}, "chat_id")
        if not self.CHAT_ID.fullmatch(chat_id):
            raise SettingsError("chat_id must be a chat's number (like -1001234567890) or a channel's @name")
        return {"token": token, "chat_id": chat_id}

    def masked(self) -> dict[str, Any]:
        bot = self.settings["token"].partition(":")[0]
        return {"token": f"{bot}:****", "chat_id": self.settings["chat_id"]}

    def secrets(self) -> list[str]:
        return [self.settings["token"], self.settings["token"].partition(":")[2]]

    def send(self, notification: Notification) -> DeliveryResult:
        chat_id: int | str = self.settings["chat_id"]
        body = {
            "chat_id": int(chat_id) if not str(chat_id).startswith("@") else chat_id,
            "text": TELEGRAM.render(notification),
            "parse_mode": "HTML",
            "link_preview_options": {"is_disabled": True},
        }
        url = f"{self.api_base}/bot{self.settings['token']}/sendMessage"
        result = post(url, json_body=body, scrub=self.scrub, timeout=self.timeout)
        if result.outcome is Outcome.RETRY and result.retry_after_s is None:
            # Telegram says how long to wait in its JSON answer rather than in a header.
            match = re.search(r'"retry_after"\s*:\s*(\d+)', result.detail)
            if match:
                return DeliveryResult(result.outcome, result.detail, result.status, float(match.group(1)))
        return result


# ntfy's priorities, by name and by number.
NTFY_PRIORITIES = {"min": 1, "low": 2, "default": 3, "high": 4, "max": 5, "urgent": 5}


def _header_text(text: str) -> str:
    # HTTP headers carry Latin-1 at best; ntfy decodes RFC 2047 encoded words, as mail does.
    if text.isascii():
        return text
    return "=?utf-8?b?" + base64.b64encode(text.encode("utf-8")).decode("ascii") + "?="


class NtfyChannel(Channel):
    """An ntfy topic (ntfy.sh or a self-hosted server). Settings: ``url`` (the topic's address),
    optional ``token`` (an access token, tk_…) and ``priority`` (min, low, default, high, max,
    or 1-5; by default high for failures and lost runs, default otherwise)."""

    kind = "ntfy"
    setting_names = ("url", "token", "priority")
    destinations = ("url",)
    secret_settings = ("token",)
    TOPIC = re.compile(r"[-_A-Za-z0-9]{1,64}")
    TOKEN = re.compile(r"tk_[A-Za-z0-9]{20,64}")

    def check(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        url = check_url(require(settings, "url"))
        parts = urlsplit(url)
        if parts.query or not self.TOPIC.fullmatch(parts.path.rstrip("/").rpartition("/")[2]):
            raise SettingsError("url must be a topic's address, like https://ntfy.sh/my-topic")
        token = optional(settings, "token")
        if token is not None and not self.TOKEN.fullmatch(token):
            raise SettingsError("token must be an ntfy access token, like tk_AgQdq7mVBoFD37zQVN29RhuMzNIz2")
        priority = settings.get("priority")
        if priority in (None, ""):
            priority = None
        elif str(priority).strip().lower() in NTFY_PRIORITIES:
            priority = NTFY_PRIORITIES[str(priority).strip().lower()]
        elif str(priority).strip() in ("1", "2", "3", "4", "5"):
            priority = int(str(priority).strip())
        else:
            raise SettingsError("priority must be one of min, low, default, high, max, or 1 to 5")
        return {"url": url.rstrip("/"), "token": token, "priority": priority}

    def masked(self) -> dict[str, Any]:
        segments = [s for s in urlsplit(self.settings["url"]).path.split("/") if s]
        shown: dict[str, Any] = {"url": mask_url(self.settings["url"], keep_segments=len(segments) - 1)}
        shown["token"] = "tk_****" if self.settings["token"] else None
        shown["priority"] = self.settings["priority"]
        return shown

    def secrets(self) -> list[str]:
        topic = urlsplit(self.settings["url"]).path.rstrip("/").rpartition("/")[2]
        return [*url_secrets(self.settings["url"]), self.settings["token"] or "", topic]

    def priority(self, n: Notification) -> int:
        if self.settings["priority"] is not None:
            return self.settings["priority"]
        urgent = n.kind in (LOST, STALLED, RULE) or (
            n.kind == ENDED and n.status in (events.FAILURE, events.KILLED)
        )
        return 4 if urgent else 3

    @staticmethod
    def tags(n: Notification) -> list[str]:
        return ["hyperdash", n.status if n.kind == ENDED and n.status else n.kind]

    def send(self, notification: Notification) -> DeliveryResult:
        headers = {
            "Title": _header_text(notification.title),
            "Priority": str(self.priority(notification)),
            "Click": notification.url,
            "Tags": ",".join(self.tags(notification)),
            "Content-Type": "text/plain; charset=utf-8",
        }
        if self.settings["token"]:
            headers["Authorization"] = f"Bearer {self.settings['token']}"
        body = ntfy_message(notification).encode("utf-8")
        return post(self.settings["url"], data=body, headers=headers, scrub=self.scrub, timeout=self.timeout)


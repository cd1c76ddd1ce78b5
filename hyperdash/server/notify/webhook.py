"""A generic webhook: a signed JSON POST that any program can receive.

The request
-----------
``POST <url>`` with ``Content-Type: application/json`` and these headers:

- ``X-Hyperdash-Event``: what happened: ``run.ended``, ``run.lost``, ``run.back``,
  ``run.stalled`` or ``rule.fired``.
- ``Idempotency-Key``: the same for every attempt to deliver one notification; a receiver that
  has seen it already should answer 2xx and do nothing (delivery is at least once).
- ``X-Hyperdash-Signature: t=<unix seconds>,v1=<hex>``, where ``<hex>`` is
  HMAC-SHA256, keyed with the channel's secret, of ``"<t>." + <raw request body>``.

Verifying a request
-------------------
Take the raw body bytes as received (before any JSON parsing), rebuild ``"<t>." + body``,
compute the HMAC with the secret, compare it with ``v1`` in constant time, and refuse a ``t``
more than a few minutes from your clock, so that a captured request cannot be replayed later.
:func:`verify_signature` does exactly that.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets as _secrets
import time
from collections.abc import Mapping
from typing import Any

from ... import events as ev
from .base import Channel
from .delivery import MASK, DeliveryResult, post
from .message import BACK, ENDED, LOST, RULE, STALLED, Notification
from .render import fit_end, utf8_size
from .settings import SettingsError, check_url, mask_url, require, url_secrets

SIGNATURE_HEADER = "X-Hyperdash-Signature"
EVENT_HEADER = "X-Hyperdash-Event"
IDEMPOTENCY_HEADER = "Idempotency-Key"
MIN_SECRET_CHARS = 16
SECRET_PREFIX = "whsec_"
# The output's end sent in a webhook's body: ample for a traceback, small for any receiver.
MAX_TAIL_BYTES = 16 * 1024
# How far a signature's time may be from the receiver's clock (see verify_signature).
DEFAULT_TOLERANCE_S = 300


def generate_secret() -> str:
    """A new random signing secret for a webhook channel."""
    return SECRET_PREFIX + _secrets.token_urlsafe(32)


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The ``X-Hyperdash-Signature`` value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode("ascii") + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify_signature(
    secret: str, header: str, body: bytes, *, tolerance_s: float = DEFAULT_TOLERANCE_S, now: float | None = None
) -> bool:
    """For receivers: whether ``header`` signs ``body`` with ``secret``, recently enough."""
    fields: dict[str, list[str]] = {}
    for item in header.split(","):
        name, _, value = item.strip().partition("=")
        fields.setdefault(name, []).append(value)
    try:
        timestamp = int(fields["t"][0])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance_s:
        return False
    expected = sign(secret, body, timestamp).rpartition("v1=")[2]
    return any(hmac.compare_digest(expected, given) for given in fields.get("v1", []))


# What a notification queued before its run's status was kept says of it.
_STATUS_OF_KIND = {LOST: ev.LOST, BACK: ev.RUNNING, STALLED: ev.RUNNING, RULE: ev.RUNNING}


def payload(n: Notification) -> dict[str, Any]:
    """The JSON body: the event, the run's facts, the texts a receiver may show as they are."""
    return {
        "id": n.key,
        "event": n.event,
        "created": int(time.time()),
        "title": n.title,
        "text": n.summary,
        "url": n.url,
        "run": {
            "uuid": n.run_uuid,
            "name": n.run_name,
            # (the run's status, as the API shows it: a stall is a condition of a running run)
            "status": n.status if n.kind == ENDED else n.run_status or _STATUS_OF_KIND.get(n.kind),
            "duration_s": n.duration_s,
            "exit_code": n.exit_code,
            "signal": n.signal,
            "host": n.host,
        },
        "rule": n.rule,
        # the point that fired the rule (rule.fired only): its value as text, and its step
        "value": n.value,
        "step": n.step,
        "tail": fit_end(n.tail, MAX_TAIL_BYTES, utf8_size),
    }


class WebhookChannel(Channel):
    """Settings: ``url`` (http or https) and ``secret`` (at least 16 characters)."""

    kind = "webhook"
    setting_names = ("url", "secret")
    destinations = ("url",)
    secret_settings = ("secret",)

    def check(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        url = check_url(require(settings, "url"))
        secret = require(settings, "secret")
        if len(secret) < MIN_SECRET_CHARS or not re.fullmatch(r"[\x21-\x7e]+", secret):
            raise SettingsError(
                f"secret must be at least {MIN_SECRET_CHARS} printable characters without spaces"
            )
        return {"url": url, "secret": secret}

    def masked(self) -> dict[str, Any]:
        # Only the prefix that generate_secret puts on every secret is shown.
        prefix = SECRET_PREFIX if self.settings["secret"].startswith(SECRET_PREFIX) else ""
        return {"url": mask_url(self.settings["url"]), "secret": f"{prefix}{MASK}"}

    def secrets(self) -> list[str]:
        return [self.settings["secret"], *url_secrets(self.settings["url"])]

    def send(self, notification: Notification) -> DeliveryResult:
        body = json.dumps(payload(notification), ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        headers = {
            "Content-Type": "application/json",
            EVENT_HEADER: notification.event,
            IDEMPOTENCY_HEADER: notification.key,
            SIGNATURE_HEADER: sign(self.settings["secret"], body, int(time.time())),
        }
        return post(self.settings["url"], data=body, headers=headers, scrub=self.scrub, timeout=self.timeout)

"""Web Push: notifications on a phone's lock screen, through the browser's own push service.

The server has one VAPID key pair (RFC 8292), made once with :meth:`VapidKeys.generate` and kept
(as :meth:`VapidKeys.dumps` text) by the store; browsers subscribe with its public half
(:attr:`VapidKeys.application_server_key`). Each subscription (endpoint, p256dh, auth) is a
channel. A message is encrypted for the subscription's keys as RFC 8291 says (aes128gcm), signed
with a VAPID JWT whose audience is the push service's origin, and POSTed to the endpoint. A push
service that answers 404 or 410 says the subscription is gone: the result is ``Outcome.GONE``.
"""

from __future__ import annotations

import base64
import binascii
import re
import time
from collections.abc import Mapping
from typing import Any

import http_ece
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid02

from hyperdash import events

from .base import Channel
from .delivery import MASK, DeliveryResult, post
from .message import ENDED, LOST, Notification
from .render import webpush_payload
from .settings import SettingsError, check_email, check_url, mask_url, origin, require, url_secrets

# A VAPID token may live 24 hours at most; half leaves room for clocks that disagree.
JWT_LIFETIME_S = 12 * 3600
# How long the push service keeps a message for a phone that is offline.
DEFAULT_TTL_S = 24 * 3600
GONE_STATUSES = (404, 410)


def b64url_decode(text: str) -> bytes:
    """Base64url (or plain base64) with or without padding, as browsers hand keys out."""
    text = text.strip().replace("+", "-").replace("/", "_").rstrip("=")
    if not re.fullmatch(r"[A-Za-z0-9_-]*", text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


class VapidKeys:
    """The server's VAPID key pair (P-256). ``repr`` shows only the public half."""

    def __init__(self, private_key: ec.EllipticCurvePrivateKey):
        if not isinstance(private_key, ec.EllipticCurvePrivateKey) or private_key.curve.name != "secp256r1":
            raise SettingsError("a VAPID key must be a P-256 private key")
        self.private_key = private_key

    @classmethod
    def generate(cls) -> VapidKeys:
        """A new key pair: make it once per server and keep it (see :meth:`dumps`)."""
        return cls(ec.generate_private_key(ec.SECP256R1()))

    @classmethod
    def loads(cls, text: str) -> VapidKeys:
        """The key pair from :meth:`dumps`'s text (PKCS#8 PEM)."""
        try:
            key = serialization.load_pem_private_key(text.encode("ascii"), password=None)
        except (ValueError, TypeError, UnicodeEncodeError):
            raise SettingsError("the stored VAPID key is not a PEM private key") from None
        return cls(key)  # type: ignore[arg-type]

    def dumps(self) -> str:
        """The private key as PKCS#8 PEM text, to keep in the store."""
        return self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode("ascii")

    @property
    def application_server_key(self) -> str:
        """The public key as browsers' ``pushManager.subscribe`` takes it (base64url, 65 bytes)."""
        return b64url_encode(
            self.private_key.public_key().public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
            )
        )

    def authorization(self, endpoint: str, subject: str, *, now: float | None = None) -> str:
        """The ``Authorization: vapid t=<JWT>,k=<public key>`` value for one endpoint."""
        expires = int(now if now is not None else time.time()) + JWT_LIFETIME_S
        claims = {"aud": origin(endpoint), "exp": expires, "sub": subject}
        # Our own check_subject has vetted ``sub``; py_vapid's strict mode refuses http:// URLs.
        return Vapid02(self.private_key, conf={"no-strict": True}).sign(claims)["Authorization"]

    def __repr__(self) -> str:
        return f"<VapidKeys public={self.application_server_key}>"


def check_subject(subject: str) -> str:
    """The VAPID ``sub``: a ``mailto:`` address or the server's public http(s) URL."""
    if subject.startswith("mailto:"):
        check_email(subject[len("mailto:") :], name="the VAPID subject's address")
        return subject
    try:
        return check_url(subject, name="the VAPID subject")
    except SettingsError:
        raise SettingsError("the VAPID subject must be mailto:someone@example.com or the server's public URL") from None


class WebPushChannel(Channel):
    """One browser's push subscription. Settings: ``endpoint``, ``p256dh`` and ``auth``, as the
    browser's ``PushSubscription.toJSON()`` gives them (``keys.p256dh``/``keys.auth`` too).

    ``vapid`` (the server's keys) and ``subject`` (see :func:`check_subject`) are server options.
    """

    kind = "webpush"
    # (flat, or as PushSubscription.toJSON() gives them: keys nested, and when they expire)
    setting_names = ("endpoint", "p256dh", "auth", "keys", "expirationTime")
    destinations = ("endpoint",)
    secret_settings = ("auth",)

    def __init__(
        self,
        settings: Mapping[str, Any],
        *,
        vapid: VapidKeys,
        subject: str,
        ttl_s: int = DEFAULT_TTL_S,
        **options: Any,
    ):
        if not isinstance(vapid, VapidKeys):
            raise TypeError("vapid must be VapidKeys")
        self.vapid = vapid
        self.subject = check_subject(subject)
        self.ttl_s = ttl_s
        super().__init__(settings, **options)

    def check(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        nested = settings.get("keys")
        keys: Mapping[str, Any] = nested if isinstance(nested, Mapping) else settings
        if isinstance(nested, Mapping) and (unknown := sorted(str(k) for k in nested if k not in ("p256dh", "auth"))):
            raise SettingsError(f"keys has no {unknown[0]!r}: it holds p256dh and auth")
        endpoint = check_url(require(settings, "endpoint"), name="endpoint")
        p256dh, auth = require(keys, "p256dh"), require(keys, "auth")
        try:
            point = b64url_decode(p256dh)
            ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
            if len(point) != 65:
                raise ValueError
        except (ValueError, binascii.Error):
            raise SettingsError("p256dh must be the subscription's P-256 public key (65 bytes, base64url)") from None
        try:
            if len(b64url_decode(auth)) != 16:
                raise ValueError
        except (ValueError, binascii.Error):
            raise SettingsError("auth must be the subscription's 16-byte secret (base64url)") from None
        return {"endpoint": endpoint, "p256dh": p256dh.strip(), "auth": auth.strip()}

    def masked(self) -> dict[str, Any]:
        # A push endpoint's path is a capability: whoever has it (and the keys) can push.
        return {
            "endpoint": mask_url(self.settings["endpoint"]),
            "p256dh": self.settings["p256dh"][:6] + "…",
            "auth": MASK,
        }

    def secrets(self) -> list[str]:
        return [*url_secrets(self.settings["endpoint"]), self.settings["auth"]]

    def urgency(self, n: Notification) -> str:
        if n.kind == LOST or (n.kind == ENDED and n.status in (events.FAILURE, events.KILLED)):
            return "high"
        return "normal"

    def encrypt(self, payload: bytes) -> bytes:
        """``payload`` encrypted for this subscription (RFC 8291, aes128gcm, one record)."""
        return http_ece.encrypt(
            payload,
            private_key=ec.generate_private_key(ec.SECP256R1()),  # a new sender key per message
            dh=b64url_decode(self.settings["p256dh"]),
            auth_secret=b64url_decode(self.settings["auth"]),
            version="aes128gcm",
        )

    def send(self, notification: Notification) -> DeliveryResult:
        endpoint = self.settings["endpoint"]
        headers = {
            "Authorization": self.vapid.authorization(endpoint, self.subject),
            "Content-Encoding": "aes128gcm",
            "Content-Type": "application/octet-stream",
            "TTL": str(self.ttl_s),
            "Urgency": self.urgency(notification),
        }
        body = self.encrypt(webpush_payload(notification))
        return post(
            endpoint, data=body, headers=headers, gone_statuses=GONE_STATUSES, scrub=self.scrub, timeout=self.timeout
        )

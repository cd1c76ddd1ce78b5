"""Web Push against a local push service that checks what a real one (and the browser) would.

The test plays the browser: it makes the subscription's keys (P-256 pair and auth secret). The
push service on a loopback port verifies the VAPID JWT with the server's public key, and the
payload is decrypted here with RFC 8291's steps written out independently of the sender's code.
"""

from __future__ import annotations

import base64
import json
import os
import struct
import time

import pytest
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from test_notify_channels import SHORT, Answer, failed_run, receiver  # noqa: F401  (the fixture)

from hyperdash.server.notify import (
    LOST,
    Notification,
    Outcome,
    SettingsError,
    VapidKeys,
    WebPushChannel,
    make_channel,
)

SUBJECT = "mailto:ops@example.com"


def b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


class Browser:
    """A push subscription's keys, as a browser makes them."""

    def __init__(self):
        self.private = ec.generate_private_key(ec.SECP256R1())
        self.public = self.private.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        self.auth = os.urandom(16)

    def subscription(self, endpoint: str) -> dict:
        return {"endpoint": endpoint, "keys": {"p256dh": b64e(self.public), "auth": b64e(self.auth)}}

    def decrypt(self, body: bytes) -> bytes:
        """RFC 8291 section 3.4 and RFC 8188, one record."""
        salt, rs, idlen = body[:16], struct.unpack("!I", body[16:20])[0], body[20]
        sender_public = body[21 : 21 + idlen]
        ciphertext = body[21 + idlen :]
        assert idlen == 65 and sender_public[0] == 4
        assert len(ciphertext) <= rs
        shared = self.private.exchange(
            ec.ECDH(), ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), sender_public)
        )

        def hkdf(salt_: bytes, ikm: bytes, info: bytes, length: int) -> bytes:
            return HKDF(hashes.SHA256(), length, salt_, info).derive(ikm)

        ikm = hkdf(self.auth, shared, b"WebPush: info\x00" + self.public + sender_public, 32)
        cek = hkdf(salt, ikm, b"Content-Encoding: aes128gcm\x00", 16)
        nonce = hkdf(salt, ikm, b"Content-Encoding: nonce\x00", 12)
        padded = AESGCM(cek).decrypt(nonce, ciphertext, None)
        plain = padded.rstrip(b"\x00")
        assert plain.endswith(b"\x02"), "the last record ends with the 0x02 delimiter"
        return plain[:-1]


def verify_vapid(authorization: str, vapid: VapidKeys, audience: str) -> dict:
    """RFC 8292: ``vapid t=<JWT>,k=<key>``, an ES256 JWT signed by k, for this audience."""
    scheme, _, params = authorization.partition(" ")
    assert scheme == "vapid"
    fields = dict(p.strip().split("=", 1) for p in params.split(","))
    assert fields["k"] == vapid.application_server_key
    header_b64, claims_b64, sig_b64 = fields["t"].split(".")
    assert json.loads(b64d(header_b64)) == {"typ": "JWT", "alg": "ES256"}
    sig = b64d(sig_b64)
    assert len(sig) == 64
    public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b64d(fields["k"]))
    der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
    public.verify(der, f"{header_b64}.{claims_b64}".encode(), ec.ECDSA(hashes.SHA256()))
    claims = json.loads(b64d(claims_b64))
    assert claims["aud"] == audience
    assert time.time() < claims["exp"] <= time.time() + 24 * 3600
    return claims


@pytest.fixture
def vapid():
    return VapidKeys.generate()


def test_a_push_is_signed_encrypted_and_shows_title_body_and_link(receiver, vapid):  # noqa: F811
    browser = Browser()
    endpoint = receiver.base + "/wpush/v2/gAAAAABsubscriptionTokenXYZ"
    channel = WebPushChannel(browser.subscription(endpoint), vapid=vapid, subject=SUBJECT, timeout=SHORT)
    receiver.answers = [Answer(201, b"")]
    result = channel.deliver(failed_run())
    assert (result.outcome, result.status) == (Outcome.DELIVERED, 201)

    req = receiver.last
    assert req.path == "/wpush/v2/gAAAAABsubscriptionTokenXYZ"
    assert req.headers["content-encoding"] == "aes128gcm"
    assert req.headers["ttl"] == "86400"
    assert req.headers["urgency"] == "high"
    claims = verify_vapid(req.headers["authorization"], vapid, receiver.base)
    assert claims["sub"] == SUBJECT
    payload = json.loads(browser.decrypt(req.body))
    assert payload["title"] == "❌ train <resnet> & *bold* @everyone failed (exit code 1)"
    assert payload["body"].startswith("Failed after 1 h 02 min on gpu-3. Exit code 1.\nepoch 1 loss 0.5\n")
    assert payload["body"].endswith("ValueError: a < b & c")
    assert payload["url"] == "https://hd.example.com/runs/0b7c6a1e-uuid"
    assert payload["tag"] == "0b7c6a1e-uuid"
    assert payload["key"] == "notif-42"


def test_a_signature_by_another_key_does_not_verify(receiver, vapid):  # noqa: F811
    # The check above must be able to fail: the same request checked against other keys.
    browser = Browser()
    channel = WebPushChannel(
        browser.subscription(receiver.base + "/p/abc"), vapid=vapid, subject=SUBJECT, timeout=SHORT
    )
    receiver.answers = [Answer(201, b"")]
    channel.deliver(failed_run())
    other = VapidKeys.generate()
    with pytest.raises(AssertionError):
        verify_vapid(receiver.last.headers["authorization"], other, receiver.base)
    forged = receiver.last.headers["authorization"].replace(
        f"k={vapid.application_server_key}", f"k={other.application_server_key}"
    )
    with pytest.raises(InvalidSignature):
        verify_vapid(forged, other, receiver.base)
    with pytest.raises(InvalidTag):
        Browser().decrypt(receiver.last.body)  # another browser's keys cannot read it


def test_a_long_output_still_fits_one_push_message(receiver, vapid):  # noqa: F811
    browser = Browser()
    channel = WebPushChannel(
        browser.subscription(receiver.base + "/p/abc"), vapid=vapid, subject="https://hd.example.com", timeout=SHORT
    )
    receiver.answers = [Answer(201, b"")]
    tail = "".join(f"step {i}: loss={i / 7:.5f} ✓ \"quoted\"\n" for i in range(2000)) + "last line"
    assert channel.deliver(failed_run(tail=tail)).delivered
    assert len(receiver.last.body) <= 4096
    assert len(receiver.last.body) > 4000
    payload = json.loads(browser.decrypt(receiver.last.body))
    assert payload["body"].endswith("last line")
    assert "\n…step " in payload["body"]
    assert verify_vapid(receiver.last.headers["authorization"], vapid, receiver.base)["sub"] == "https://hd.example.com"


@pytest.mark.parametrize("status", [404, 410])
def test_a_subscription_the_push_service_no_longer_knows_is_gone(receiver, vapid, status):  # noqa: F811
    channel = WebPushChannel(
        Browser().subscription(receiver.base + "/p/abc"), vapid=vapid, subject=SUBJECT, timeout=SHORT
    )
    receiver.answers = [Answer(status, b"expired")]
    result = channel.deliver(Notification(LOST, "nightly", "u-1", "https://hd.example.com"))
    assert (result.outcome, result.status) == (Outcome.GONE, status)


def test_push_service_trouble_is_retried_and_a_refusal_fails(receiver, vapid):  # noqa: F811
    channel = WebPushChannel(
        Browser().subscription(receiver.base + "/p/abc"), vapid=vapid, subject=SUBJECT, timeout=SHORT
    )
    receiver.answers = [Answer(429, b"", {"Retry-After": "60"}), Answer(502, b""), Answer(403, b"bad jwt")]
    limited = channel.deliver(failed_run())
    assert (limited.outcome, limited.retry_after_s) == (Outcome.RETRY, 60.0)
    assert channel.deliver(failed_run()).outcome is Outcome.RETRY
    refused = channel.deliver(failed_run())
    assert (refused.outcome, refused.detail) == (Outcome.FAILED, "HTTP 403: bad jwt")


def test_vapid_keys_survive_being_stored(vapid):
    text = vapid.dumps()
    assert text.startswith("-----BEGIN PRIVATE KEY-----")
    again = VapidKeys.loads(text)
    assert again.application_server_key == vapid.application_server_key
    assert len(b64d(vapid.application_server_key)) == 65
    assert "PRIVATE" not in repr(vapid) and vapid.application_server_key in repr(vapid)
    with pytest.raises(SettingsError, match="not a PEM private key"):
        VapidKeys.loads("garbage")
    rsa_like = ec.generate_private_key(ec.SECP384R1())
    with pytest.raises(SettingsError, match="P-256"):
        VapidKeys(rsa_like)


def test_bad_subscriptions_and_subjects_are_refused_clearly(vapid):
    good = Browser().subscription("https://fcm.googleapis.com/fcm/send/abc:def")

    def sub(**changes):
        s = {"endpoint": good["endpoint"], **good["keys"]}
        s.update(changes)
        return s

    cases = [
        (sub(endpoint="ftp://push.example/x"), "endpoint must start with https://"),
        (sub(p256dh="AAAA"), "p256dh must be the subscription's P-256 public key"),
        (sub(p256dh=b64e(b"\x04" + b"\x01" * 64)), "p256dh must be the subscription's P-256 public key"),
        (sub(p256dh="not base64 !!"), "p256dh must be"),
        (sub(auth=b64e(b"x" * 8)), "auth must be the subscription's 16-byte secret"),
        ({"endpoint": good["endpoint"]}, "p256dh is required"),
    ]
    for settings, message in cases:
        with pytest.raises(SettingsError, match=message):
            WebPushChannel(settings, vapid=vapid, subject=SUBJECT)
    with pytest.raises(SettingsError, match="the VAPID subject must be mailto:"):
        WebPushChannel(good, vapid=vapid, subject="ops@example.com")
    with pytest.raises(SettingsError, match="is not an email address"):
        WebPushChannel(good, vapid=vapid, subject="mailto:not an address")
    # Both shapes a browser's toJSON() may be stored in are accepted.
    flat = make_channel("webpush", sub(), vapid=vapid, subject=SUBJECT)
    nested = make_channel("webpush", good, vapid=vapid, subject=SUBJECT)
    assert flat.settings == nested.settings


def test_subscription_is_shown_masked(vapid):
    browser = Browser()
    channel = WebPushChannel(
        browser.subscription("https://fcm.googleapis.com/fcm/send/cXyZsecretRegistrationToken"),
        vapid=vapid,
        subject=SUBJECT,
    )
    shown = repr(channel) + str(channel.masked())
    assert "cXyZsecretRegistrationToken" not in shown
    assert b64e(browser.auth) not in shown
    assert channel.masked()["endpoint"] == "https://fcm.googleapis.com/fc…****/se…****/****"

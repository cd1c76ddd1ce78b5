"""The outcome of one delivery attempt, and the one place that sends HTTP requests to receivers.

Every attempt ends in a :class:`DeliveryResult`: delivered, retry (later, perhaps after a delay
the receiver asked for), failed for good, or gone (a push subscription that no longer exists).
The receiver's answer is kept, cut short and with the channel's secrets scrubbed, so the settings
page can show why a channel does not work.
"""

from __future__ import annotations

import email.utils
import enum
import logging
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import requests
import urllib3

log = logging.getLogger("hyperdash.server.notify")

# A receiver gets this long to accept the connection, and this long between bytes of its answer.
CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 10.0
# How much of a receiver's answer is kept for the settings page.
MAX_DETAIL_CHARS = 500
MASK = "****"
USER_AGENT = "hyperdash-notify/1"


class Outcome(str, enum.Enum):
    DELIVERED = "delivered"
    RETRY = "retry"  # a temporary failure: try again later (after ``retry_after_s`` if given)
    FAILED = "failed"  # permanent: retrying the same thing cannot succeed
    GONE = "gone"  # the receiver no longer exists (a push subscription): delete it


@dataclass(frozen=True)
class DeliveryResult:
    """What one attempt gave: the outcome, the receiver's status and answer, a wait if asked."""

    outcome: Outcome
    detail: str = ""
    status: int | None = None
    retry_after_s: float | None = None

    @property
    def delivered(self) -> bool:
        return self.outcome is Outcome.DELIVERED


class Scrubber:
    """Replaces a channel's secrets in any text (an answer, an error) with ``****``."""

    def __init__(self, secrets: Iterable[str | None]):
        # Longest first, so a secret that contains another is replaced whole.
        self._secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def __call__(self, text: str, limit: int | None = None) -> str:
        """``text`` scrubbed, then cut to ``limit`` characters without leaving half a secret."""
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        if limit is not None and len(text) > limit:
            text = text[:limit]
        # A cut (here or by whoever read the text) may have left the start of a secret at the end.
        for secret in self._secrets:
            for n in range(min(len(secret), len(text)), 2, -1):
                if text.endswith(secret[:n]):
                    return text[:-n] + MASK
        return text


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if re.fullmatch(r"\d+(\.\d+)?", value):
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def classify_status(status: int, *, gone_statuses: tuple[int, ...] = ()) -> Outcome:
    """An HTTP status as an outcome: 2xx delivered; 408, 425, 429 and 5xx retry; else failed."""
    if 200 <= status < 300:
        return Outcome.DELIVERED
    if status in gone_statuses:
        return Outcome.GONE
    if status in (408, 425, 429) or status >= 500:
        return Outcome.RETRY
    return Outcome.FAILED


def _connection_error_reason(exc: BaseException) -> str:
    # requests' messages embed the full URL (with its secret path); keep only the OS's reason.
    text = str(exc)
    match = re.search(r"\[Errno -?\d+\][^'\")]*", text)
    if match:
        return match.group(0).strip()
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return "the receiver's TLS certificate could not be verified"
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS handshake failed"
    return "connection failed"


def post(
    url: str,
    *,
    scrub: Scrubber,
    headers: Mapping[str, str] | None = None,
    json_body: object | None = None,
    data: bytes | None = None,
    gone_statuses: tuple[int, ...] = (),
    timeout: tuple[float, float] = (CONNECT_TIMEOUT_S, READ_TIMEOUT_S),
) -> DeliveryResult:
    """POST to a receiver and classify what happens. Never raises for network trouble.

    Redirects are not followed: a receiver that moved must be set up again, and a redirect
    must not carry a signed body or a token to another host.
    """
    all_headers = {"User-Agent": USER_AGENT, **(headers or {})}
    try:
        response = requests.post(
            url,
            headers=all_headers,
            json=json_body,
            data=data,
            timeout=timeout,
            allow_redirects=False,
            stream=True,  # read only the start of the answer: a receiver may send anything
        )
    except requests.exceptions.Timeout:
        return DeliveryResult(
            Outcome.RETRY, f"no answer within {timeout[0]:g} s to connect / {timeout[1]:g} s to reply"
        )
    except requests.exceptions.ConnectionError as exc:
        reason = _connection_error_reason(exc)
        if "certificate" in reason:
            return DeliveryResult(Outcome.FAILED, reason)
        return DeliveryResult(Outcome.RETRY, scrub(reason))
    except requests.exceptions.RequestException as exc:
        return DeliveryResult(Outcome.FAILED, f"the request could not be made ({type(exc).__name__})")
    with response:
        status = response.status_code
        try:
            raw = response.raw.read(4 * MAX_DETAIL_CHARS, decode_content=True) or b""
        except (OSError, urllib3.exceptions.HTTPError):  # the status is what counts
            raw = b""
        body = raw.decode(response.encoding or "utf-8", errors="replace")
        detail = f"HTTP {status}" + (f": {body}" if body.strip() else "")
        if 300 <= status < 400:
            detail = f"HTTP {status}: the receiver redirects; set its final address"
        outcome = classify_status(status, gone_statuses=gone_statuses)
        retry_after = parse_retry_after(response.headers.get("Retry-After")) if outcome is Outcome.RETRY else None
        return DeliveryResult(outcome, scrub(detail, MAX_DETAIL_CHARS), status, retry_after)

"""Email through an SMTP server: plain, STARTTLS or implicit TLS, with or without a login."""

from __future__ import annotations

import email.utils
import smtplib
import ssl
from collections.abc import Mapping
from email.message import EmailMessage
from typing import Any

from .base import Channel
from .delivery import DeliveryResult, Outcome
from .message import Notification
from .render import email_html, email_text
from .settings import SettingsError, check_email, optional, require

SECURITIES = ("starttls", "tls", "none")
DEFAULT_PORTS = {"starttls": 587, "tls": 465, "none": 25}
MAX_RECIPIENTS = 20
_LOOPBACK = ("localhost", "127.0.0.1", "::1")


class EmailChannel(Channel):
    """Settings: ``host``, ``port`` (by default 587, 465 or 25 as ``security`` says),
    ``security`` (``starttls``, the default; ``tls`` for implicit TLS; ``none``), optional
    ``username`` and ``password``, ``from`` (an address) and ``to`` (an address, a list of them,
    or several separated by commas).

    ``ssl_context`` (a server option) sets which certificates are trusted; by default the
    system's, with the host name checked.
    """

    kind = "email"
    setting_names = ("host", "port", "security", "username", "password", "from", "to")
    destinations = ("host", "port")
    secret_settings = ("password",)

    def __init__(self, settings: Mapping[str, Any], *, ssl_context: ssl.SSLContext | None = None, **options: Any):
        self.ssl_context = ssl_context
        super().__init__(settings, **options)

    def check(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        host = require(settings, "host")
        if not all(c.isalnum() or c in ".-_:[]" for c in host):
            raise SettingsError("host must be a host name or an IP address, like smtp.example.com")
        security = (optional(settings, "security") or "starttls").lower()
        if security not in SECURITIES:
            raise SettingsError(f"security must be one of {', '.join(SECURITIES)}")
        port = settings.get("port") or DEFAULT_PORTS[security]
        try:
            port = int(port)
        except (TypeError, ValueError):
            port = 0
        if not 0 < port < 65536:
            raise SettingsError("port must be a number from 1 to 65535")
        username = optional(settings, "username")
        password = settings.get("password") or None
        if (username is None) != (password is None):
            raise SettingsError("username and password go together: give both or neither")
        if password is not None and not isinstance(password, str):
            raise SettingsError("password must be text")
        if username and security == "none" and host.lower() not in _LOOPBACK:
            raise SettingsError("a login needs security starttls or tls: the password would cross the network in clear")
        sender = check_email(require(settings, "from"), name="from")
        to = settings.get("to")
        if isinstance(to, str):
            to = [a.strip() for a in to.split(",") if a.strip()]
        if not to or not isinstance(to, (list, tuple)) or not all(isinstance(a, str) for a in to):
            raise SettingsError("to must be one email address or more")
        if len(to) > MAX_RECIPIENTS:
            raise SettingsError(f"to may hold at most {MAX_RECIPIENTS} addresses")
        to = [check_email(a.strip(), name="to") for a in to]
        return {
            "host": host,
            "port": port,
            "security": security,
            "username": username,
            "password": password,
            "from": sender,
            "to": to,
        }

    def masked(self) -> dict[str, Any]:
        shown = dict(self.settings)
        shown["password"] = "****" if self.settings["password"] else None
        return shown

    def secrets(self) -> list[str]:
        return [self.settings["password"] or ""]

    def message(self, n: Notification) -> EmailMessage:
        """The email for ``n``: plain text, with an HTML alternative."""
        s = self.settings
        msg = EmailMessage()
        msg["Subject"] = n.title
        msg["From"] = s["from"]
        msg["To"] = ", ".join(s["to"])
        msg["Date"] = email.utils.formatdate(localtime=False)
        # The same notification keeps the same Message-ID across retries, so mail programs
        # show a duplicate once.
        msg["Message-ID"] = f"<{n.key}@{s['from'].rpartition('@')[2]}>"
        msg["Auto-Submitted"] = "auto-generated"
        msg["X-Hyperdash-Event"] = n.event
        msg.set_content(email_text(n))
        msg.add_alternative(email_html(n), subtype="html")
        return msg

    def _context(self) -> ssl.SSLContext:
        return self.ssl_context or ssl.create_default_context()

    def send(self, notification: Notification) -> DeliveryResult:
        s = self.settings
        where = f"{s['host']}:{s['port']}"
        timeout = max(self.timeout)
        try:
            if s["security"] == "tls":
                client: smtplib.SMTP = smtplib.SMTP_SSL(s["host"], s["port"], timeout=timeout, context=self._context())
            else:
                client = smtplib.SMTP(s["host"], s["port"], timeout=timeout)
            with client:
                if s["security"] == "starttls":
                    client.starttls(context=self._context())
                if s["username"]:
                    client.login(s["username"], s["password"])
                refused = client.send_message(self.message(notification), s["from"], s["to"])
        except smtplib.SMTPAuthenticationError as exc:
            return self._answer(Outcome.FAILED, "the server refused the user name or password", exc)
        except smtplib.SMTPNotSupportedError as exc:
            return DeliveryResult(Outcome.FAILED, self.scrub(f"{where} does not support this: {exc}"))
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            outcome = Outcome.RETRY if codes and all(400 <= c < 500 for c in codes) else Outcome.FAILED
            said = "; ".join(f"{a}: {c} {m.decode(errors='replace')}" for a, (c, m) in exc.recipients.items())
            return DeliveryResult(outcome, self.scrub(f"recipients refused: {said}")[:500], codes[0] if codes else None)
        except smtplib.SMTPResponseException as exc:
            outcome = Outcome.RETRY if 400 <= exc.smtp_code < 500 else Outcome.FAILED
            return self._answer(outcome, "the server refused the message", exc)
        except ssl.SSLCertVerificationError:
            return DeliveryResult(Outcome.FAILED, f"the TLS certificate of {where} could not be verified")
        except ssl.SSLError as exc:
            return DeliveryResult(
                Outcome.FAILED, f"TLS with {where} failed ({exc.reason}): is the security setting right for this port?"
            )
        except TimeoutError:
            return DeliveryResult(Outcome.RETRY, f"{where} did not answer within {timeout:g} s")
        except smtplib.SMTPServerDisconnected as exc:
            # smtplib reports a read that timed out as a disconnection.
            if "timed out" in str(exc):
                return DeliveryResult(Outcome.RETRY, f"{where} did not answer within {timeout:g} s")
            return DeliveryResult(Outcome.RETRY, f"{where} closed the connection")
        except OSError as exc:
            return DeliveryResult(Outcome.RETRY, self.scrub(f"could not reach {where}: {exc.strerror or exc}"))
        if refused:
            names = ", ".join(sorted(refused))
            return DeliveryResult(Outcome.DELIVERED, self.scrub(f"accepted by {where}, except for {names}"))
        return DeliveryResult(Outcome.DELIVERED, f"accepted by {where} for {len(s['to'])} recipient(s)")

    def _answer(self, outcome: Outcome, what: str, exc: smtplib.SMTPResponseException) -> DeliveryResult:
        said = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
        return DeliveryResult(outcome, self.scrub(f"{what}: {exc.smtp_code} {said}")[:500], exc.smtp_code)

"""The email channel against real SMTP servers (aiosmtpd) on loopback ports: plain, STARTTLS and
implicit TLS with a self-signed certificate made here, with and without a login."""

from __future__ import annotations

import datetime
import email
import email.policy
import ipaddress
import logging
import socket
import ssl
import threading

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from test_notify_channels import failed_run

from hyperdash.server.notify import EmailChannel, Outcome, SettingsError

USER, PASSWORD = "alerts@example.com", "Pa55w0rd-very-secret"


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1 and localhost, its key, and a client context."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    (folder / "cert.pem").write_bytes(cert_pem)
    (folder / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    client = ssl.create_default_context(cadata=cert_pem.decode())
    return server, client


class Mailbox:
    """What the SMTP server received: envelopes, and the logins it accepted or refused."""

    def __init__(self):
        self.envelopes = []
        self.logins = []
        self.received = threading.Event()

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append(envelope)
        self.received.set()
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("full@"):
            return "452 mailbox full, try later"
        if address.startswith("nobody@"):
            return "550 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    def authenticator(self, server, session, envelope, mechanism, auth_data):
        ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
            USER.encode(),
            PASSWORD.encode(),
        )
        self.logins.append((mechanism, ok))
        return AuthResult(success=ok, handled=False)  # let aiosmtpd answer 535 itself

    def message(self, index: int = -1) -> email.message.EmailMessage:
        return email.message_from_bytes(self.envelopes[index].content, policy=email.policy.default)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def smtp_server(tls_files):
    """``smtp_server(mode)``: a running SMTP server; mode is "none", "starttls" or "tls"."""
    server_ctx, _ = tls_files
    started = []

    def start(mode: str, *, login: bool = False):
        box = Mailbox()
        kwargs = {}
        if mode == "starttls":
            kwargs.update(tls_context=server_ctx, require_starttls=True)
        if mode == "tls":
            # aiosmtpd sees only STARTTLS as TLS; this whole connection is TLS already.
            kwargs.update(ssl_context=server_ctx, auth_require_tls=False)
        if login:
            kwargs.update(authenticator=box.authenticator, auth_required=True)
        controller = Controller(box, hostname="127.0.0.1", port=free_port(), **kwargs)
        controller.start()
        started.append(controller)
        return controller.port, box

    yield start
    for controller in started:
        controller.stop()


def settings(port: int, security: str, **more) -> dict:
    return {
        "host": "127.0.0.1",
        "port": port,
        "security": security,
        "from": "hyperdash@example.com",
        "to": "me@example.com",
        **more,
    }


def test_plain_smtp_delivers_a_text_and_html_email(smtp_server):
    port, box = smtp_server("none")
    channel = EmailChannel(settings(port, "none", to="me@example.com, team@example.com"))
    result = channel.deliver(failed_run())
    assert result.outcome is Outcome.DELIVERED, result.detail
    assert result.detail == f"accepted by 127.0.0.1:{port} for 2 recipient(s)"
    envelope = box.envelopes[0]
    assert envelope.mail_from == "hyperdash@example.com"
    assert envelope.rcpt_tos == ["me@example.com", "team@example.com"]
    msg = box.message()
    assert msg["Subject"] == "❌ train <resnet> & *bold* @everyone failed (exit code 1)"
    assert msg["From"] == "hyperdash@example.com"
    assert msg["To"] == "me@example.com, team@example.com"
    assert msg["Message-ID"] == "<notif-42@example.com>"
    assert msg["X-Hyperdash-Event"] == "run.ended"
    assert msg["Auto-Submitted"] == "auto-generated"
    text = msg.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert text == (
        "Failed after 1 h 02 min on gpu-3. Exit code 1.\n"
        "    epoch 1 loss 0.5\n    Traceback (most recent call last):\n"
        '      File "train.py", line 3\n    ValueError: a < b & c\n'
        "https://hd.example.com/runs/0b7c6a1e-uuid\n"
    )
    html = msg.get_body(("html",)).get_content()
    assert "<h3>❌ train &lt;resnet&gt; &amp; *bold* @everyone failed (exit code 1)</h3>" in html
    assert "ValueError: a &lt; b &amp; c" in html and "<resnet>" not in html
    assert '<a href="https://hd.example.com/runs/0b7c6a1e-uuid">Open the run</a>' in html


def test_a_run_names_terminal_codes_stay_out_of_the_subject(smtp_server):
    # (a mail reader in a terminal would obey them: colours, a window title, a cleared screen)
    port, box = smtp_server("none")
    name = "\x1b]0;owned\x07\x1b[2Jtrain \x1b[1;31mresnet\x1b[0m\u202e"
    result = EmailChannel(settings(port, "none")).deliver(failed_run(run_name=name))
    assert result.outcome is Outcome.DELIVERED, result.detail
    msg = box.message()
    assert msg["Subject"] == "❌ train resnet failed (exit code 1)"
    assert "<h3>❌ train resnet failed (exit code 1)</h3>" in msg.get_body(("html",)).get_content()


def test_starttls_with_login(smtp_server, tls_files):
    port, box = smtp_server("starttls", login=True)
    channel = EmailChannel(settings(port, "starttls", username=USER, password=PASSWORD), ssl_context=tls_files[1])
    result = channel.deliver(failed_run())
    assert result.outcome is Outcome.DELIVERED, result.detail
    assert box.logins and all(ok for _, ok in box.logins)
    assert box.message()["Subject"].startswith("❌ train")


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_implicit_tls_with_login(smtp_server, tls_files):
    port, box = smtp_server("tls", login=True)
    channel = EmailChannel(settings(port, "tls", username=USER, password=PASSWORD), ssl_context=tls_files[1])
    result = channel.deliver(failed_run())
    assert result.outcome is Outcome.DELIVERED, result.detail
    assert box.logins == [(box.logins[0][0], True)]
    assert len(box.envelopes) == 1


def test_a_wrong_password_fails_for_good_and_stays_secret(smtp_server, tls_files, caplog):
    caplog.set_level(logging.DEBUG, logger="hyperdash.server.notify")
    port, box = smtp_server("starttls", login=True)
    wrong = "Wr0ng-but-still-secret"
    channel = EmailChannel(settings(port, "starttls", username=USER, password=wrong), ssl_context=tls_files[1])
    result = channel.deliver(failed_run())
    assert result.outcome is Outcome.FAILED
    assert result.detail.startswith("the server refused the user name or password: 535")
    assert box.envelopes == []
    for text in (result.detail, repr(channel), str(channel.masked()), *(r.getMessage() for r in caplog.records)):
        assert wrong not in text
    assert channel.masked()["password"] == "****"


def test_an_untrusted_certificate_fails_with_a_clear_message(smtp_server):
    port, box = smtp_server("tls")
    result = EmailChannel(settings(port, "tls")).deliver(failed_run())  # the system's trust store
    assert result.outcome is Outcome.FAILED
    assert result.detail == f"the TLS certificate of 127.0.0.1:{port} could not be verified"
    assert box.envelopes == []


def test_tls_to_a_plain_port_says_to_check_the_security_setting(smtp_server, tls_files):
    port, _ = smtp_server("none")
    result = EmailChannel(settings(port, "tls"), ssl_context=tls_files[1]).deliver(failed_run())
    assert result.outcome is Outcome.FAILED
    assert "is the security setting right for this port?" in result.detail


def test_recipients_refused_for_now_are_retried_and_for_good_fail(smtp_server):
    port, box = smtp_server("none")
    later = EmailChannel(settings(port, "none", to="full@example.com")).deliver(failed_run())
    assert (later.outcome, later.status) == (Outcome.RETRY, 452)
    never = EmailChannel(settings(port, "none", to="nobody@example.com")).deliver(failed_run())
    assert (never.outcome, never.status) == (Outcome.FAILED, 550)
    assert "nobody@example.com: 550 no such user" in never.detail
    some = EmailChannel(settings(port, "none", to="me@example.com, nobody@example.com")).deliver(failed_run())
    assert some.outcome is Outcome.DELIVERED and "except for nobody@example.com" in some.detail
    assert box.envelopes[-1].rcpt_tos == ["me@example.com"]


def test_a_server_that_is_down_is_retried():
    result = EmailChannel(settings(free_port(), "none"), timeout=(2.0, 2.0)).deliver(failed_run())
    assert result.outcome is Outcome.RETRY
    assert "could not reach 127.0.0.1" in result.detail


def test_a_server_that_never_answers_is_cut_off():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)  # accepts connections, never says hello
    try:
        port = listener.getsockname()[1]
        result = EmailChannel(settings(port, "none"), timeout=(0.5, 0.5)).deliver(failed_run())
        assert result.outcome is Outcome.RETRY
        assert result.detail == f"127.0.0.1:{port} did not answer within 0.5 s"
    finally:
        listener.close()


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"host": ""}, "host is required"),
        ({"host": "smtp.example.com; rm"}, "host must be a host name"),
        ({"security": "ssl"}, "security must be one of starttls, tls, none"),
        ({"port": "abc"}, "port must be a number"),
        ({"port": 70000}, "port must be a number"),
        ({"username": "u"}, "username and password go together"),
        (
            {"host": "smtp.example.com", "security": "none", "username": "u", "password": "p"},
            "a login needs security starttls or tls",
        ),
        ({"from": "not an address"}, "from 'not an address' is not an email address"),
        ({"to": ""}, "to must be one email address or more"),
        ({"to": "me@example.com, bad@@example.com"}, "to 'bad@@example.com' is not an email address"),
        ({"to": "me@example.com\r\nBcc: x@example.com"}, "is not an email address"),
        ({"to": [f"u{i}@example.com" for i in range(21)]}, "to may hold at most 20 addresses"),
    ],
)
def test_bad_email_settings_are_refused_clearly(changes, message):
    with pytest.raises(SettingsError, match=message):
        EmailChannel({**settings(25, "starttls"), **changes})


def test_default_ports_follow_the_security():
    assert EmailChannel({**settings(0, "starttls"), "port": None}).settings["port"] == 587
    assert EmailChannel({**settings(0, "tls"), "port": None}).settings["port"] == 465
    assert EmailChannel({**settings(0, "none"), "port": None}).settings["port"] == 25

"""Channels that speak HTTP, each against a real receiver on a loopback port.

The receiver records every request (method, path, headers, raw body) and answers as the test
scripts it: a status, headers, a body, or no answer at all (a receiver that hangs).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from email.header import decode_header, make_header
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from hyperdash.server.notify import (
    ENDED,
    LOST,
    DeliveryResult,
    DiscordChannel,
    Notification,
    NtfyChannel,
    Outcome,
    SettingsError,
    SlackChannel,
    TelegramChannel,
    WebhookChannel,
    generate_secret,
    make_channel,
    parse_retry_after,
    verify_signature,
)
from hyperdash.server.notify.render import DISCORD_MAX_CHARS, NTFY_MAX_BYTES, TELEGRAM_MAX_UNITS

SHORT = (2.0, 1.0)  # connect, read: a hanging receiver is cut off quickly in these tests


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)


@dataclass
class Answer:
    status: int = 200
    body: bytes = b"ok"
    headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False
    echo_path: bool = False  # append the request's path to the body, as many error pages do


class Receiver:
    """A threaded HTTP server on 127.0.0.1 that records requests and answers as scripted."""

    def __init__(self):
        self.requests: list[Request] = []
        self.answers: list[Answer] = []
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                receiver.requests.append(
                    Request("POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                )
                answer = receiver.answers.pop(0) if receiver.answers else Answer()
                if answer.hang:
                    receiver.release.wait(30)
                    return
                body = answer.body + (self.path.encode() if answer.echo_path else b"")
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    @property
    def last(self) -> Request:
        assert self.requests, "the receiver got no request"
        return self.requests[-1]


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def failed_run(**kw) -> Notification:
    defaults = dict(
        kind=ENDED,
        run_name="train <resnet> & *bold* @everyone",
        run_uuid="0b7c6a1e-uuid",
        base_url="https://hd.example.com/",
        status="failure",
        duration_s=3725,
        exit_code=1,
        host="gpu-3",
        tail=(
            "epoch 1 loss 0.5\nTraceback (most recent call last):\n"
            "  File \"train.py\", line 3\nValueError: a < b & c\n"
        ),
        key="notif-42",
    )
    defaults.update(kw)
    return Notification(**defaults)


SLACK_PATH = "/services/T0123ABCD/B0456EFGH/s3cr3tXyZtokenPART"
DISCORD_PATH = "/api/webhooks/112233445566/Sup3r-S3cret_discord-Token"
TELEGRAM_TOKEN = "123456789:AAEhBOweik6ad9r_QXMENQjcrGbqCr4K-Hw"
NTFY_TOKEN = "tk_AgQdq7mVBoFD37zQVN29RhuMzNIz2"


# --- webhook ----------------------------------------------------------------------------------
def test_webhook_posts_signed_json_that_verifies_with_the_secret(receiver):
    secret = generate_secret()
    channel = WebhookChannel({"url": receiver.base + "/hooks/in?src=hd", "secret": secret}, timeout=SHORT)
    result = channel.deliver(failed_run())
    assert result == DeliveryResult(Outcome.DELIVERED, "HTTP 200: ok", 200)

    req = receiver.last
    assert req.path == "/hooks/in?src=hd"
    assert req.headers["content-type"] == "application/json"
    assert req.headers["x-hyperdash-event"] == "run.ended"
    assert req.headers["idempotency-key"] == "notif-42"
    # The scheme as documented, recomputed here independently: t=<ts>,v1=hmac(secret, "<ts>.<body>").
    fields = dict(item.split("=", 1) for item in req.headers["x-hyperdash-signature"].split(","))
    assert abs(int(fields["t"]) - time.time()) < 60
    expected = hmac.new(secret.encode(), f"{fields['t']}.".encode() + req.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(fields["v1"], expected)
    assert verify_signature(secret, req.headers["x-hyperdash-signature"], req.body)
    assert not verify_signature(secret, req.headers["x-hyperdash-signature"], req.body + b" ")
    assert not verify_signature("another-secret-of-enough-length", req.headers["x-hyperdash-signature"], req.body)
    # A captured request replayed ten minutes later is refused.
    assert not verify_signature(secret, req.headers["x-hyperdash-signature"], req.body, now=time.time() + 600)

    body = req.json()
    assert body["id"] == "notif-42"
    assert body["event"] == "run.ended"
    assert body["title"] == "❌ train <resnet> & *bold* @everyone failed (exit code 1)"
    assert body["url"] == "https://hd.example.com/runs/0b7c6a1e-uuid"
    assert body["run"] == {
        "uuid": "0b7c6a1e-uuid",
        "name": "train <resnet> & *bold* @everyone",
        "status": "failure",
        "duration_s": 3725,
        "exit_code": 1,
        "signal": None,
        "host": "gpu-3",
    }
    assert body["tail"].endswith("ValueError: a < b & c\n")


def test_webhook_retries_on_500_and_on_429_with_retry_after_and_fails_on_404(receiver):
    channel = WebhookChannel({"url": receiver.base + "/h", "secret": "x" * 20}, timeout=SHORT)
    receiver.answers = [
        Answer(500, b"internal trouble"),
        Answer(429, b"slow down", {"Retry-After": "17"}),
        Answer(503, b"", {"Retry-After": "Wed, 21 Oct 2099 07:28:00 GMT"}),
        Answer(404, b"no such hook"),
        Answer(408, b"request timeout"),
        Answer(302, b"", {"Location": "http://elsewhere.example/"}),
    ]
    first = channel.deliver(failed_run())
    assert (first.outcome, first.status, first.detail, first.retry_after_s) == (
        Outcome.RETRY, 500, "HTTP 500: internal trouble", None,
    )
    second = channel.deliver(failed_run())
    assert (second.outcome, second.status, second.retry_after_s) == (Outcome.RETRY, 429, 17.0)
    third = channel.deliver(failed_run())
    assert third.outcome is Outcome.RETRY and third.retry_after_s > 365 * 24 * 3600
    fourth = channel.deliver(failed_run())
    assert (fourth.outcome, fourth.status, fourth.detail) == (Outcome.FAILED, 404, "HTTP 404: no such hook")
    assert channel.deliver(failed_run()).outcome is Outcome.RETRY  # 408
    moved = channel.deliver(failed_run())
    assert moved.outcome is Outcome.FAILED and "redirects" in moved.detail
    assert len(receiver.requests) == 6  # the redirect was not followed


def test_a_receiver_that_hangs_is_cut_off_and_retried_later(receiver):
    channel = WebhookChannel({"url": receiver.base + "/h", "secret": "x" * 20}, timeout=(2.0, 0.5))
    receiver.answers = [Answer(hang=True)]
    started = time.monotonic()
    result = channel.deliver(failed_run())
    assert result.outcome is Outcome.RETRY
    assert "no answer within" in result.detail
    assert time.monotonic() - started < 10  # cut off by the read timeout, not by the receiver


def test_a_receiver_that_is_down_is_retried_later():
    import socket

    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    channel = WebhookChannel({"url": f"http://127.0.0.1:{port}/secretpath/abc", "secret": "x" * 20}, timeout=SHORT)
    result = channel.deliver(failed_run())
    assert result.outcome is Outcome.RETRY
    assert "refused" in result.detail.lower()
    assert "secretpath" not in result.detail


def test_the_answer_kept_is_short_and_scrubbed_of_secrets(receiver):
    channel = SlackChannel({"url": receiver.base + SLACK_PATH}, origins=[receiver.base], timeout=SHORT)
    receiver.answers = [Answer(400, b"invalid hook s3cr3tXyZtokenPART " + b"x" * 5000)]
    result = channel.deliver(failed_run())
    assert result.outcome is Outcome.FAILED
    assert "s3cr3tXyZtokenPART" not in result.detail
    assert result.detail.startswith("HTTP 400: invalid hook ****")
    assert len(result.detail) <= 520


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"secret": "x" * 20}, "url is required"),
        ({"url": "ftp://example.com/h", "secret": "x" * 20}, "url must start with https://"),
        ({"url": "javascript:alert(1)", "secret": "x" * 20}, "url must start with https://"),
        ({"url": "https://user:pw@example.com/h", "secret": "x" * 20}, "must not hold a user name or password"),
        ({"url": "https://example.com/a b", "secret": "x" * 20}, "must not contain spaces"),
        ({"url": "https:///nohost", "secret": "x" * 20}, "url has no host"),
        ({"url": "https://example.com:99999/h", "secret": "x" * 20}, "url is not a valid address"),
        ({"url": "https://example.com/h"}, "secret is required"),
        ({"url": "https://example.com/h", "secret": "short"}, "secret must be at least 16"),
    ],
)
def test_webhook_refuses_bad_settings_clearly(settings, message):
    with pytest.raises(SettingsError, match=message):
        WebhookChannel(settings)


def test_webhook_settings_are_shown_masked():
    channel = WebhookChannel(
        {"url": "https://example.com/hooks/abcdef123456?token=zzzsecret", "secret": "whsec_abcdefghijklmnop"}
    )
    assert channel.masked() == {"url": "https://example.com/ho…****/****?****", "secret": "whsec_****"}
    assert "abcdef123456" not in repr(channel) and "zzzsecret" not in repr(channel)
    assert "abcdefghijklmnop" not in repr(channel)


# --- Slack ------------------------------------------------------------------------------------
def test_slack_gets_mrkdwn_escaped_text(receiver):
    channel = SlackChannel({"url": receiver.base + SLACK_PATH}, origins=[receiver.base], timeout=SHORT)
    assert channel.deliver(failed_run()).delivered
    req = receiver.last
    assert req.path == SLACK_PATH
    body = req.json()
    assert body["text"] == "❌ train &lt;resnet&gt; &amp; *bold* @everyone failed (exit code 1)"
    text = body["blocks"][0]["text"]["text"]
    assert body["blocks"][0]["text"]["type"] == "mrkdwn"
    assert text == (
        "*❌ train &lt;resnet&gt; &amp; *bold* @everyone failed (exit code 1)*\n"
        "Failed after 1 h 02 min on gpu-3. Exit code 1.\n"
        "```epoch 1 loss 0.5\nTraceback (most recent call last):\n  File \"train.py\", line 3\n"
        "ValueError: a &lt; b &amp; c```\n"
        "<https://hd.example.com/runs/0b7c6a1e-uuid|Open the run>"
    )


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.slack.com/services/T0123/B0456",
        "https://hooks.slack.com.evil.example/services/T0123ABCD/B0456EFGH/abc",
        "http://hooks.slack.com/services/T0123ABCD/B0456EFGH/abc",
        "https://example.com/services/T0123ABCD/B0456EFGH/abc",
        "https://hooks.slack.com/services/T0123ABCD/B0456EFGH/abc?x=1",
    ],
)
def test_slack_accepts_only_incoming_webhook_addresses(url):
    with pytest.raises(SettingsError, match=r"url must be an incoming webhook address like https://hooks\.slack\.com/services/"):
        SlackChannel({"url": url})


def test_slack_address_is_masked():
    channel = SlackChannel({"url": "https://hooks.slack.com/services/T0123ABCD/B0456EFGH/s3cr3tXyZtokenPART"})
    assert channel.masked() == {"url": "https://hooks.slack.com/services/T0…****/B0…****/****"}


# --- Discord ----------------------------------------------------------------------------------
def test_discord_gets_escaped_markdown_and_pings_nobody(receiver):
    channel = DiscordChannel({"url": receiver.base + DISCORD_PATH}, origins=[receiver.base], timeout=SHORT)
    receiver.answers = [Answer(204, b"")]
    result = channel.deliver(failed_run())
    assert result == DeliveryResult(Outcome.DELIVERED, "HTTP 204", 204)
    body = receiver.last.json()
    assert body["allowed_mentions"] == {"parse": []}
    assert body["content"] == (
        "**❌ train \\<resnet\\> & \\*bold\\* \\@everyone failed \\(exit code 1\\)**\n"
        "Failed after 1 h 02 min on gpu\\-3. Exit code 1.\n"
        "```\nepoch 1 loss 0.5\nTraceback (most recent call last):\n  File \"train.py\", line 3\n"
        "ValueError: a < b & c\n```\n"
        "[Open the run](<https://hd.example.com/runs/0b7c6a1e-uuid>)"
    )


def test_discord_content_is_cut_to_2000_characters_keeping_the_end_of_the_output(receiver):
    channel = DiscordChannel({"url": receiver.base + DISCORD_PATH}, origins=[receiver.base], timeout=SHORT)
    tail = "".join(f"line {i} ```fence``` é\n" for i in range(500)) + "the last line"
    assert channel.deliver(failed_run(tail=tail)).delivered
    content = receiver.last.json()["content"]
    assert len(content) <= DISCORD_MAX_CHARS
    assert len(content) > DISCORD_MAX_CHARS - 100
    assert "the last line\n```\n[Open the run]" in content
    assert "\n```\n…line " in content  # cut at a line's start, marked
    assert content.count("```") == 2  # a fence inside the output does not close the block


def test_discord_and_rate_limit(receiver):
    channel = DiscordChannel({"url": receiver.base + DISCORD_PATH}, origins=[receiver.base], timeout=SHORT)
    receiver.answers = [Answer(429, b'{"retry_after": 1.5}', {"Retry-After": "2"})]
    result = channel.deliver(failed_run())
    assert (result.outcome, result.retry_after_s) == (Outcome.RETRY, 2.0)


def test_discord_address_is_checked_and_masked():
    with pytest.raises(SettingsError, match="like https://discord.com/api/webhooks/"):
        DiscordChannel({"url": "https://discord.com/api/webhooks/notanumber/tok"})
    channel = DiscordChannel({"url": "https://discord.com" + DISCORD_PATH})
    assert channel.masked() == {"url": "https://discord.com/api/webhooks/11…****/****"}


# --- Telegram ---------------------------------------------------------------------------------
def test_telegram_sends_html_to_the_chat(receiver):
    channel = TelegramChannel(
        {"token": TELEGRAM_TOKEN, "chat_id": -1001234567890}, api_base=receiver.base, timeout=SHORT
    )
    receiver.answers = [Answer(200, b'{"ok":true,"result":{"message_id":7}}')]
    assert channel.deliver(failed_run()).delivered
    req = receiver.last
    assert req.path == f"/bot{TELEGRAM_TOKEN}/sendMessage"
    body = req.json()
    assert body["chat_id"] == -1001234567890
    assert body["parse_mode"] == "HTML"
    assert body["text"] == (
        "<b>❌ train &lt;resnet&gt; &amp; *bold* @everyone failed (exit code 1)</b>\n"
        "Failed after 1 h 02 min on gpu-3. Exit code 1.\n"
        "<pre>epoch 1 loss 0.5\nTraceback (most recent call last):\n  File \"train.py\", line 3\n"
        "ValueError: a &lt; b &amp; c</pre>\n"
        '<a href="https://hd.example.com/runs/0b7c6a1e-uuid">Open the run</a>'
    )


def test_telegram_text_is_cut_to_its_limit_without_breaking_an_entity_or_a_character(receiver):
    channel = TelegramChannel(
        {"token": TELEGRAM_TOKEN, "chat_id": "@hyperdash_runs"}, api_base=receiver.base, timeout=SHORT
    )
    tail = "<&>" * 3000 + "😀" * 3000  # escapes that grow, characters of two UTF-16 units
    assert channel.deliver(failed_run(tail=tail)).delivered
    text = receiver.last.json()["text"]
    assert receiver.last.json()["chat_id"] == "@hyperdash_runs"
    units = len(text.encode("utf-16-le")) // 2
    assert TELEGRAM_MAX_UNITS - 10 < units <= TELEGRAM_MAX_UNITS
    pre = text.split("<pre>", 1)[1].split("</pre>", 1)[0]
    assert pre.startswith("…😀") and pre.endswith("😀")


def test_telegram_rate_limit_in_the_answer_is_honoured(receiver):
    channel = TelegramChannel({"token": TELEGRAM_TOKEN, "chat_id": "42"}, api_base=receiver.base, timeout=SHORT)
    receiver.answers = [
        Answer(
            429,
            b'{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 33",'
            b'"parameters":{"retry_after":33}}',
        ),
        Answer(400, b'{"ok":false,"error_code":400,"description":"Bad Request: chat not found"}'),
    ]
    limited = channel.deliver(failed_run())
    assert (limited.outcome, limited.retry_after_s) == (Outcome.RETRY, 33.0)
    missing = channel.deliver(failed_run())
    assert missing.outcome is Outcome.FAILED and "chat not found" in missing.detail


def test_telegram_settings_are_checked_and_masked():
    with pytest.raises(SettingsError, match="token must be a bot token"):
        TelegramChannel({"token": "not-a-token", "chat_id": 1})
    with pytest.raises(SettingsError, match="chat_id must be a chat's number"):
        TelegramChannel({"token": TELEGRAM_TOKEN, "chat_id": "some chat"})
    with pytest.raises(SettingsError, match="chat_id is required"):
        TelegramChannel({"token": TELEGRAM_TOKEN})
    channel = TelegramChannel({"token": TELEGRAM_TOKEN, "chat_id": 42})
    assert channel.masked() == {"token": "123456789:****", "chat_id": "42"}


# --- ntfy -------------------------------------------------------------------------------------
def test_ntfy_posts_the_message_with_title_priority_click_and_tags(receiver):
    channel = NtfyChannel({"url": receiver.base + "/hd-runs-x7", "token": NTFY_TOKEN}, timeout=SHORT)
    assert channel.deliver(failed_run(run_name="训练 run")).delivered
    req = receiver.last
    assert req.path == "/hd-runs-x7"
    assert str(make_header(decode_header(req.headers["title"]))) == "❌ 训练 run failed (exit code 1)"
    assert req.headers["priority"] == "4"
    assert req.headers["click"] == "https://hd.example.com/runs/0b7c6a1e-uuid"
    assert req.headers["tags"] == "hyperdash,failure"
    assert req.headers["authorization"] == f"Bearer {NTFY_TOKEN}"
    assert req.body.decode() == (
        "Failed after 1 h 02 min on gpu-3. Exit code 1.\n"
        "    epoch 1 loss 0.5\n    Traceback (most recent call last):\n"
        '      File "train.py", line 3\n    ValueError: a < b & c'
    )


def test_ntfy_message_fits_in_4_kib_and_priority_is_settable(receiver):
    channel = NtfyChannel({"url": receiver.base + "/topic", "priority": "min"}, timeout=SHORT)
    assert channel.deliver(failed_run(tail="é" * 10_000 + "\nend")).delivered
    req = receiver.last
    assert NTFY_MAX_BYTES - 8 < len(req.body) <= NTFY_MAX_BYTES
    req.body.decode("utf-8")  # no character cut in half
    assert req.headers["priority"] == "1"
    assert "authorization" not in req.headers
    ok = failed_run(status="success", exit_code=None)
    NtfyChannel({"url": receiver.base + "/topic"}, timeout=SHORT).deliver(ok)
    assert receiver.last.headers["priority"] == "3"
    title = str(make_header(decode_header(receiver.last.headers["title"])))
    assert title == "✅ train <resnet> & *bold* @everyone finished"
    NtfyChannel({"url": receiver.base + "/topic"}, timeout=SHORT).deliver(Notification(LOST, "plain name", "u", "http://h"))
    assert receiver.last.headers["title"].startswith("=?utf-8?b?")  # the emoji needs an encoded word
    assert str(make_header(decode_header(receiver.last.headers["title"]))) == "❓ plain name went silent"


def test_ntfy_settings_are_checked_and_masked():
    with pytest.raises(SettingsError, match="url must be a topic's address"):
        NtfyChannel({"url": "https://ntfy.sh/bad!topic"})
    with pytest.raises(SettingsError, match="token must be an ntfy access token"):
        NtfyChannel({"url": "https://ntfy.sh/topic", "token": "password123"})
    with pytest.raises(SettingsError, match="priority must be one of"):
        NtfyChannel({"url": "https://ntfy.sh/topic", "priority": "7"})
    channel = NtfyChannel({"url": "https://ntfy.sh/my-private-topic", "token": NTFY_TOKEN})
    assert channel.masked() == {"url": "https://ntfy.sh/****", "token": "tk_****", "priority": None}


# --- all kinds --------------------------------------------------------------------------------
def test_make_channel_builds_each_kind_and_refuses_an_unknown_one(receiver):
    channel = make_channel("slack", {"url": receiver.base + SLACK_PATH}, origins=[receiver.base])
    assert isinstance(channel, SlackChannel)
    with pytest.raises(SettingsError, match="unknown channel kind 'pager'"):
        make_channel("pager", {})
    with pytest.raises(SettingsError, match="url is required"):
        make_channel("webhook", {"url": "  ", "secret": "x" * 20})


def test_secrets_never_reach_reprs_exceptions_or_logs(receiver, caplog):
    """Every kind, through a delivered, a refused, a failing and an unreachable attempt, with
    receivers that echo the secrets back."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    # Our own log lines at every level; other libraries' at INFO, as a server runs.
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.DEBUG, logger="hyperdash.server.notify")

    def channels(base):
        return [
            (SlackChannel({"url": base + SLACK_PATH}, origins=[base], timeout=SHORT), ["s3cr3tXyZtokenPART"]),
            (
                DiscordChannel({"url": base + DISCORD_PATH}, origins=[base], timeout=SHORT),
                ["Sup3r-S3cret_discord-Token"],
            ),
            (
                TelegramChannel({"token": TELEGRAM_TOKEN, "chat_id": 1}, api_base=base, timeout=SHORT),
                [TELEGRAM_TOKEN.split(":")[1]],
            ),
            (
                NtfyChannel({"url": base + "/my-private-topic", "token": NTFY_TOKEN}, timeout=SHORT),
                [NTFY_TOKEN, "my-private-topic"],
            ),
            (
                WebhookChannel({"url": base + "/my-private-hook", "secret": "topsecretvalue1234"}, timeout=SHORT),
                ["topsecretvalue1234", "my-private-hook"],
            ),
        ]

    seen: list[tuple[str, list[str]]] = []
    for base in (receiver.base, dead):
        for channel, secrets in channels(base):
            seen.append((repr(channel), secrets))
            seen.append((str(channel.masked()), secrets))
            for answer in (
                Answer(200),
                Answer(401, ("bad token " + " ".join(secrets) + " ").encode()),
                Answer(500, b"no route for ", echo_path=True),
                Answer(400, b"x" * 480 + b" " + secrets[0].encode()),  # a secret cut by the 500-character limit
            ):
                receiver.answers = [answer]
                seen.append((repr(channel.deliver(failed_run())), secrets))
    # A bad setting's message does not repeat the secret it was given.
    for kind, settings in [
        ("slack", {"url": "https://hooks.slack.com/services/T1/B1/s3cr3tXyZtokenPART?x"}),
        ("telegram", {"token": "99:s3cr3tXyZtokenPART", "chat_id": 1}),
        ("ntfy", {"url": "https://ntfy.sh/t", "token": "s3cr3tXyZtokenPART"}),
        ("webhook", {"url": "https://u:s3cr3tXyZtokenPART@example.com/", "secret": "x" * 20}),
        ("webhook", {"url": "https://example.com/", "secret": "s3cr3tXyZ"}),
    ]:
        with pytest.raises(SettingsError) as info:
            make_channel(kind, settings)
        seen.append((str(info.value), ["s3cr3tXyZ"]))
    every = [s for _, secrets in seen for s in secrets]
    seen.extend((r.getMessage(), every) for r in caplog.records)
    assert any("delivered" in text for text, _ in seen) and any("retry" in text for text, _ in seen)
    assert any("****" in text for text, _ in seen)
    for text, secrets in seen:
        for secret in secrets:
            for piece in (secret, secret[:6], secret[-6:]):
                assert piece not in text, f"{piece!r} of a secret leaked in {text!r}"


def test_retry_after_parsing():
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after("Thu, 01 Jan 1970 00:00:10 GMT", now=0) == 10.0
    assert parse_retry_after("Thu, 01 Jan 1970 00:00:10 GMT", now=100) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_a_lost_run_reads_as_lost(receiver):
    channel = WebhookChannel({"url": receiver.base + "/h", "secret": "x" * 20}, timeout=SHORT)
    assert channel.deliver(Notification(LOST, "nightly", "u-1", "http://hd.local", duration_s=30, host="box")).delivered
    body = receiver.last.json()
    assert receiver.last.headers["x-hyperdash-event"] == "run.lost"
    assert body["title"] == "❓ nightly went silent"
    assert body["text"] == "No heartbeat from the run since 30 s into it, on box."
    assert body["run"]["status"] == "lost"

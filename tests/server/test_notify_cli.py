"""``hyperdash notify``: its arguments (in-process, CliRunner), then the real command against a
real ``hyperdash server`` process, up to a real job that fails and the webhook it causes."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner
from test_notify_channels import Answer, receiver  # noqa: F401  (the fixture)

from hyperdash.cli import cli
from hyperdash.server.notify import verify_signature

PUBLIC_URL = "https://runs.example.org/hd"


@pytest.mark.parametrize(("args", "message"), [
    (("add", "webhook", "--token", "x"), "--token is not a setting of webhook channels"),
    (("add", "telegram", "--url", "https://x.example"), "--url is not a setting of telegram channels"),
    (("add", "slack", "--url", "https://hooks.slack.com/services/a/b/c", "--password-stdin"),
     "--password-stdin is for email channels"),
    (("add", "ntfy", "--url", "https://ntfy.sh/t", "--events", "failure,explosion"), "'explosion'"),
    (("edit", "3", "--events", ","), "--events takes some of"),
])
def test_mistakes_are_caught_before_anything_is_sent(args, message):
    result = CliRunner().invoke(cli, ["notify", *args], catch_exceptions=False)
    assert result.exit_code == 1, result.output
    assert result.output.startswith("hyperdash: ") and message in result.output
    assert "Traceback" not in result.output


def test_kinds_and_ids_are_checked_by_click():
    runner = CliRunner()
    result = runner.invoke(cli, ["notify", "add", "pigeon"])
    assert result.exit_code == 2 and "'pigeon' is not one of" in result.output
    result = runner.invoke(cli, ["notify", "test", "zero"])
    assert result.exit_code == 2 and "'zero' is not a valid integer" in result.output
    assert "webpush" not in runner.invoke(cli, ["notify", "add", "--help"]).output.split("Options")[0]
    result = runner.invoke(cli, ["notify", "edit", "3"])  # (refused before any server is asked)
    assert result.exit_code == 1
    assert result.output == "hyperdash: nothing to change: give --name, --events, --filter, --enable or --disable\n"


def hd(account, home, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hyperdash", *args], input=input, capture_output=True, text=True,
                          env=account.sdk_env(home), timeout=120)


def test_add_list_test_edit_remove_against_a_real_server(account, hyperdash_home, receiver):  # noqa: F811
    hook = receiver.base + "/hooks/cli-secret-path-0123"
    added = hd(account, hyperdash_home, "notify", "add", "webhook", "--url", hook, "--name", "ci",
               "--events", "failure,stalled", "--filter", "train-*")
    assert added.returncode == 0, added.stderr
    assert added.stdout.startswith("Added webhook channel ")
    channel_id = added.stdout.split()[3]
    assert f"`hyperdash notify test {channel_id}` sends it a test notification" in added.stderr
    secret = added.stdout.strip().rsplit(" ", 1)[1]
    assert secret.startswith("whsec_")

    listed = hd(account, hyperdash_home, "notify", "list")
    assert listed.returncode == 0, listed.stderr
    row = listed.stdout.splitlines()[1].split()
    assert row[:3] == [channel_id, "webhook", "ci"]
    assert "failure,stalled" in row and "train-*" in row and "yes" in row
    assert "cli-secret-path-0123" not in listed.stdout and secret not in listed.stdout

    tested = hd(account, hyperdash_home, "notify", "test", channel_id)
    assert tested.returncode == 0, tested.stderr
    assert tested.stdout.startswith("Delivered: HTTP 200")
    assert verify_signature(secret, receiver.last.headers["x-hyperdash-signature"], receiver.last.body)
    assert json.loads(receiver.last.body)["url"] == f"{account.server.url}/runs/test"  # this server's address

    receiver.answers.append(Answer(401, b"who are you"))
    tested = hd(account, hyperdash_home, "notify", "test", channel_id)
    assert tested.returncode == 1
    assert tested.stderr == "hyperdash: not delivered (failed): HTTP 401: who are you\n"
    # A receiver that hangs is cut off by the server, whose answer is told, not a time-out of ours.
    receiver.answers.append(Answer(hang=True))
    tested = hd(account, hyperdash_home, "notify", "test", channel_id)
    receiver.release.set()
    assert tested.returncode == 1
    assert tested.stderr.startswith("hyperdash: not delivered (retry): no answer within"), tested.stderr

    edited = hd(account, hyperdash_home, "notify", "edit", channel_id, "--events", "default", "--disable")
    assert edited.returncode == 0, edited.stderr
    row = hd(account, hyperdash_home, "notify", "list").stdout.splitlines()[1].split()
    assert "default" in row and "no" in row

    mail = hd(account, hyperdash_home, "notify", "add", "email", "--host", "smtp.example.com", "--from",
              "hd@example.com", "--to", "a@example.com, b@example.com")
    assert mail.returncode == 0, mail.stderr
    row = hd(account, hyperdash_home, "notify", "list").stdout.splitlines()[-1]
    assert "a@example.com, b@example.com" in row and "[" not in row
    hd(account, hyperdash_home, "notify", "remove", mail.stdout.split()[3])

    bad = hd(account, hyperdash_home, "notify", "add", "ntfy", "--url", "https://ntfy.sh/no spaces please")
    assert bad.returncode == 1 and bad.stderr.startswith("hyperdash: url ")
    assert len(hd(account, hyperdash_home, "notify", "list").stdout.splitlines()) == 2

    removed = hd(account, hyperdash_home, "notify", "remove", channel_id)
    assert removed.returncode == 0, removed.stderr
    assert hd(account, hyperdash_home, "notify", "list").stdout.startswith("No notification channels")
    again = hd(account, hyperdash_home, "notify", "remove", channel_id)
    assert again.returncode == 1 and f"no notification channel {channel_id}" in again.stderr


def test_a_failing_job_reaches_the_webhook_with_a_link_under_the_public_url(server_factory, tmp_path, receiver):  # noqa: F811
    server = server_factory("--public-url", PUBLIC_URL)
    account = server.signup()
    home = tmp_path / "job-home"
    home.mkdir()
    secret = "whsec_end-to-end-secret-0123456789"
    added = hd(account, home, "notify", "add", "webhook", "--url", receiver.base + "/in", "--secret", secret)
    assert added.returncode == 0, added.stderr
    job = hd(account, home, "run", "-n", "e2e-fails", sys.executable, "-c",
             "print('loading data'); raise SystemExit('out of memory')")
    assert job.returncode == 1, job.stderr
    deadline = time.monotonic() + 60
    while not receiver.requests:
        assert time.monotonic() < deadline, "no notification reached the receiver"
        time.sleep(0.05)
    req = receiver.last
    assert verify_signature(secret, req.headers["x-hyperdash-signature"], req.body)
    body = req.json()
    assert body["event"] == "run.ended" and body["run"]["status"] == "failure"
    assert body["run"]["name"] == "e2e-fails" and body["run"]["exit_code"] == 1
    assert body["url"] == f"{PUBLIC_URL}/runs/{body['run']['uuid']}"
    assert "out of memory" in body["tail"]
    assert secret not in server.log_path.read_text()

"""Following runs from a terminal (runs, logs, logs -f) and uploading the spool (sync)."""

from __future__ import annotations

import re
import subprocess
import time
import uuid

import requests
from cli_support import HYPERDASH, py

from hyperdash import events


def test_runs_lists_status_and_duration(hd, account):
    assert hd("run", "-n", "listed ok", "true").returncode == 0
    assert hd("run", "-n", "listed failing", *py("import sys; sys.exit(4)")).returncode == 4
    account.wait_for_run("listed failing", "failure")
    account.wait_for_run("listed ok", "success")

    result = hd("runs")
    assert result.returncode == 0, result.stderr
    header, newest, older = result.stdout.decode().splitlines()
    assert header.split() == ["RUN", "NAME", "STATUS", "STARTED", "DURATION"]
    assert "listed failing" in newest and "failure (4)" in newest and newest.rstrip().endswith("s")
    assert "listed ok" in older and "success" in older

    only_failures = hd("runs", "--status", "failure").stdout.decode()
    assert "listed failing" in only_failures and "listed ok" not in only_failures
    needing_attention = hd("runs", "--status", "attention").stdout.decode()
    assert "listed failing" in needing_attention and "listed ok" not in needing_attention
    assert "listed ok" not in hd("runs", "-n", "listed").stdout.decode()  # the whole name
    found = hd("runs", "-q", "LISTED").stdout.decode().splitlines()[1:]  # or a part, in any case
    assert len(found) == 2 and all("listed" in row for row in found)
    assert hd("runs", "-q", "nothing like it").stdout == b"No runs match.\n"
    assert hd("runs", "--status", "lost", "--archived").stdout == b"No archived runs match.\n"


def test_runs_columns_stay_in_line_for_long_statuses(hd, account):
    assert hd("run", "-n", "short", "true").returncode == 0
    killed = "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"
    assert hd("run", "-n", "a rather longer run name", *py(killed)).returncode == 128 + 9
    account.wait_for_run("a rather longer run name", "killed")
    account.wait_for_run("short", "success")

    header, *rows = hd("runs").stdout.decode().splitlines()
    status_at, started_at = header.index("STATUS"), header.index("STARTED")
    assert [row[status_at:started_at].rstrip() for row in rows] == ["killed (SIGKILL)", "success"]
    for row in rows:
        assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d  ", row[started_at:]), row
        assert row[started_at - 2:started_at] == "  "


def test_logs_by_name_and_by_id_prefix(hd, account):
    code = "import sys; print('out one'); print('err one', file=sys.stderr); print('out two')"
    assert hd("run", "-n", "logged", *py(code)).returncode == 0
    run = account.wait_for_run("logged", "success")

    by_name = hd("logs", "logged")
    assert by_name.returncode == 0, by_name.stderr
    assert by_name.stdout == b"out one\nout two\n"
    assert by_name.stderr == b"err one\n"
    by_prefix = hd("logs", run["uuid"][:8])
    assert by_prefix.stdout == b"out one\nout two\n"

    missing = hd("logs", "no run has this name")
    assert missing.returncode == 1
    assert missing.stderr == b"hyperdash: no run matches 'no run has this name': see `hyperdash runs`\n"


def test_logs_follow_prints_until_the_run_ends(account, hyperdash_home):
    env = account.sdk_env(hyperdash_home)
    code = "import time\nfor i in range(8):\n    print('tick', i, flush=True)\n    time.sleep(0.25)\n"
    job = subprocess.Popen([*HYPERDASH, "run", "-n", "followed", *py(code)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        account.wait_for_run("followed", "running")
        follower = subprocess.run([*HYPERDASH, "logs", "-f", "followed"], capture_output=True, env=env, timeout=60)
    finally:
        job.wait(30)
    assert follower.returncode == 0, follower.stderr
    assert follower.stdout.decode().splitlines() == [f"tick {i}" for i in range(8)]


def test_sync_uploads_a_run_once(server_factory, tmp_path):
    server = server_factory()
    account = server.signup()
    server.stop()
    home = tmp_path / "home"
    env = account.sdk_env(home)
    env["HYPERDASH_UPLOADER_PATIENCE"] = "0"  # the background uploader gives up at once

    code = "for i in range(500): print('offline line', i)"
    job = subprocess.run([*HYPERDASH, "run", "-n", "offline", "--exit-timeout", "0.5", *py(code)],
                         capture_output=True, env=env, timeout=60)
    assert job.returncode == 0
    assert b"`hyperdash sync`" in job.stderr  # the run says what is left and how it will be sent

    def sync(expect_rc: int = 0) -> str:
        # The detached uploader may still hold the spool for a moment: then sync leaves it be.
        result = subprocess.run([*HYPERDASH, "sync"], capture_output=True, env=env, timeout=60)
        if "held by another process" in result.stdout.decode():
            return ""
        assert result.returncode == expect_rc, result.stderr
        return result.stdout.decode() + result.stderr.decode()

    down = account.wait_for(lambda: sync(expect_rc=1), 20)
    assert down.splitlines()[-1] == "hyperdash: 1 of the runs could not be uploaded; run `hyperdash sync` again later"
    assert "stays in the spool: cannot reach" in down

    server.start()
    first = account.wait_for(sync, 20)
    assert first.startswith("Uploaded 1 run (")
    run = account.wait_for_run("offline", "success")
    lines = account.logs(run["uuid"])
    assert [line["text"] for line in lines] == [f"offline line {i}" for i in range(500)]

    assert sync() == "Nothing to upload.\n"
    assert len(account.logs(run["uuid"])) == 500


def test_an_empty_or_blank_run_reference_is_a_one_line_error(hd, account):
    assert hd("run", "-n", "named", "true").returncode == 0
    account.wait_for_run("named", "success")
    commands = [("logs",), ("logs", "-f"), ("stop",), ("open",), ("runs", "archive"), ("runs", "unarchive"),
                ("runs", "share"), ("runs", "delete", "--yes")]
    for command in commands:
        for ref in ("", "  "):
            result = hd(*command, ref)
            assert result.returncode == 1, (command, ref, result.stderr)
            assert result.stderr == (b"hyperdash: name a run: its id, the start of one, or its name "
                                     b"(see `hyperdash runs`)\n"), (command, ref)
    assert account.wait_for_run("named", "success")  # nothing was archived, stopped or deleted
    assert "named" in hd("runs").stdout.decode()


def test_archived_runs_are_found_by_name_and_by_the_start_of_their_id(hd, account):
    assert hd("run", "-n", "shelved", *py("print('kept')")).returncode == 0
    run = account.wait_for_run("shelved", "success")["uuid"]
    assert hd("runs", "archive", "shelved").returncode == 0
    for ref in ("shelved", run[:4], run[:7]):
        result = hd("logs", ref)
        assert result.returncode == 0 and result.stdout == b"kept\n", (ref, result.stderr)
    assert hd("runs", "unarchive", "shelved").returncode == 0
    assert "shelved" in hd("runs").stdout.decode()


def test_names_with_control_characters_keep_the_table_in_rows(hd, account):
    assert hd("run", "-n", "two\nlines\x1b[31m", "true").returncode == 0
    account.wait_for_run("two\nlines\x1b[31m", "success")
    header, row = hd("runs").stdout.decode().splitlines()
    assert "two lines\ufffd[31m" in row and "\x1b" not in row


def test_a_lost_run_shows_its_time_until_it_went_quiet_and_is_not_followed_for_ever(server_factory, tmp_path):
    server = server_factory("--lost-timeout", "1")
    account = server.signup()
    run = str(uuid.uuid4())
    started = events.now_ms() - 120_000  # two minutes ago: its time until the last word is under one
    resp = requests.post(server.url + events.INGEST_PATH, headers={events.AUTH_HEADER: account.api_key}, json=[
        events.envelope("run_started", run, {"job_name": "went quiet"}, seq=1, timestamp=started),
        events.envelope("log", run, {"uuid": "1", "level": "INFO", "body": "last words", "stream": "stdout"},
                        seq=2, timestamp=started)], timeout=10)
    assert resp.status_code == 200, resp.text
    account.wait_for_run("went quiet", "lost", timeout=20)
    env = account.sdk_env(tmp_path / "home")
    listed = subprocess.run([*HYPERDASH, "runs"], capture_output=True, env=env, timeout=60)
    row = listed.stdout.decode().splitlines()[1]
    assert "lost" in row and "(running)" not in row and re.search(r"  \d+m\d\ds$", row), row
    follower = subprocess.run([*HYPERDASH, "logs", "-f", run[:8]], capture_output=True, env=env, timeout=60)
    assert follower.returncode == 0 and follower.stdout == b"last words\n"
    assert b"is lost: nothing was heard from it since" in follower.stderr


def test_logs_follow_waits_for_a_run_not_there_yet_and_through_a_restart_of_the_server(server_factory, tmp_path):
    server = server_factory()
    account = server.signup()
    run = str(uuid.uuid4())

    def send(*envelopes: dict) -> None:
        resp = requests.post(server.url + events.INGEST_PATH, headers={events.AUTH_HEADER: account.api_key},
                             json=list(envelopes), timeout=10)
        assert resp.status_code == 200, resp.text

    def line(seq: int, text: str) -> dict:
        return events.envelope("log", run, {"uuid": str(seq), "level": "INFO", "body": text, "stream": "stdout"},
                               seq=seq)

    # Followed by the start of its id, as the job's first line says, before it reached the server.
    follower = subprocess.Popen([*HYPERDASH, "logs", "-f", run[:8]], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=account.sdk_env(tmp_path / "home"))
    try:
        time.sleep(1.5)
        send(events.envelope("run_started", run, {"job_name": "arrives late"}, seq=1), line(2, "first"))
        account.wait_for(lambda: account.runs(name="arrives late"), 10)
        time.sleep(1.5)  # (the follower has it now)
        server.stop()
        time.sleep(2)  # the follower finds no server, and waits
        server.start()
        send(line(3, "after the restart"),
             events.envelope("run_ended", run, {"final_status": "success", "exit_code": 0}, seq=4))
        out, err = follower.communicate(timeout=60)
    finally:
        if follower.poll() is None:
            follower.kill()
    assert follower.returncode == 0, err
    assert out.decode().splitlines() == ["first", "after the restart"]
    assert "following on once it answers" in err.decode() and "the server answers again" in err.decode()
    assert "Traceback" not in err.decode()

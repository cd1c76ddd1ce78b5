"""`hyperdash sync`: what it sends, what it could not send and why, what it skips; --list,
--discard and --server."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import uuid

from cli_support import HYPERDASH

from hyperdash import framing
from hyperdash.spool import EVENT, Spool
from tests.conftest import free_port


def leave_spool(server: str, name: str, lines: int, key_source: str | None = None, close: bool = True) -> Spool:
    """A spool as a finished run leaves it: run_started, ``lines`` lines in records of 10, run_ended."""
    run_uuid = str(uuid.uuid4())
    spool = Spool.create(run_uuid, {"uuid": run_uuid, "name": name, "api": "monitor", "server": server,
                                    "key_source": key_source})
    spool.append(EVENT, None, 1, 1, 1000, json.dumps({"type": "run_started", "payload": {"job_name": name}}).encode())
    seq = 2
    for start in range(0, lines, 10):
        block = b"".join(f"{name} {i}\n".encode() for i in range(start, min(lines, start + 10)))
        spool.append(framing.LINES, "stdout", seq, block.count(b"\n"), 1000, block)
        seq += block.count(b"\n")
    ended = {"type": "run_ended", "payload": {"final_status": "success"}}
    spool.append(EVENT, None, seq, 1, 1000, json.dumps(ended).encode())
    if close:
        spool.close()
    return spool


def lines_of(account, name: str) -> list[str]:
    run = account.wait_for_run(name, status="success")
    return [line["text"] for line in account.logs(run["uuid"])]


def test_sync_says_what_it_sent_what_it_could_not_and_why(hd, account, tmp_path):
    dead = f"http://127.0.0.1:{free_port()}"
    unreachable = leave_spool(dead, "unreachable", 3)
    revoked = tmp_path / "hyperdash.json"
    revoked.write_text('{"api_key": "revoked"}')
    refused = leave_spool(account.server.url, "refused", 3, key_source=str(revoked))
    sent = leave_spool(account.server.url, "sendable", 20)
    held = leave_spool(account.server.url, "still running", 2, close=False)  # this process owns it
    try:
        done = hd("sync")
        out, err = done.stdout.decode(), done.stderr.decode()
        assert done.returncode == 1, err
        assert "Uploaded 1 run (22 events)." in out
        assert (f"Skipped run {held.folder.name} (still running, for {account.server.url}): held by another "
                "process") in out
        assert (f"Run {unreachable.folder.name} (unreachable, for {dead}) stays in the spool: cannot reach {dead}: "
                "connection refused") in err, err
        assert (f"Run {refused.folder.name} (refused, for {account.server.url}) stays in the spool: key refused by "
                f"{account.server.url} (key from {revoked})") in err, err
        assert err.splitlines()[-1] == ("hyperdash: 2 of the runs could not be uploaded; "
                                        "run `hyperdash sync` again later")
        assert lines_of(account, "sendable") == [f"sendable {i}" for i in range(20)]
        assert not sent.folder.exists() and unreachable.folder.exists() and refused.folder.exists()

        listing = hd("sync", "--list").stdout.decode().splitlines()
        assert listing[0].split() == ["RUN", "NAME", "SERVER", "EVENTS", "STATE"]
        rows = {line.split()[0]: " ".join(line.split()) for line in listing[1:]}
        assert set(rows) == {unreachable.folder.name, refused.folder.name, held.folder.name}
        assert f"{dead} 5 cannot reach {dead}: connection refused (failing since" in rows[unreachable.folder.name]
        assert "held by a live process" in rows[held.folder.name]
    finally:
        held.close()


def test_discard_asks_first_and_deletes_only_that_run(hd, account):
    doomed = leave_spool(f"http://127.0.0.1:{free_port()}", "doomed", 4)
    kept = leave_spool(f"http://127.0.0.1:{free_port()}", "kept", 4)
    declined = hd("sync", "--discard", doomed.folder.name[:8], stdin=None, input=b"n\n")
    assert declined.returncode == 1 and doomed.folder.exists()
    assert f"Delete run {doomed.folder.name} (doomed): 6 events never sent to" in declined.stderr.decode()
    accepted = hd("sync", "--discard", doomed.folder.name[:8], stdin=None, input=b"y\n")
    assert accepted.returncode == 0, accepted.stderr
    assert f"Deleted the spool of run {doomed.folder.name} (doomed, 6 events not sent)." in accepted.stdout.decode()
    assert not doomed.folder.exists() and kept.folder.exists()

    unknown = hd("sync", "--discard", "nosuchrun", "--yes")
    assert unknown.returncode == 1 and unknown.stderr.decode().count("\n") == 1
    assert "no run nosuchrun waits in the spool of this machine" in unknown.stderr.decode()
    held = leave_spool(account.server.url, "held", 2, close=False)
    try:
        busy = hd("sync", "--discard", held.folder.name, "--yes")
        assert busy.returncode == 1 and "held by a live process" in busy.stderr.decode()
        assert held.folder.exists()
    finally:
        held.close()
    assert hd("sync", "--discard", kept.folder.name, "--yes").returncode == 0 and not kept.folder.exists()


def test_server_sends_the_spools_to_another_server_from_their_first_event(hd, account):
    gone = f"http://127.0.0.1:{free_port()}"
    spool = leave_spool(gone, "moved", 30, close=False)
    # the old server had acknowledged the first records before it went away
    records = list(spool.records(0))
    spool.save_cursor(records[2].offset, records[1].last_seq)
    spool.close()
    bad = hd("sync", "--server", "ftp://example.com")
    assert bad.returncode == 1 and "--server must be an http:// or https:// address" in bad.stderr.decode()
    assert spool.folder.exists()

    done = hd("sync", "--server", account.server.url)
    assert done.returncode == 0, done.stderr
    assert "Uploaded 1 run (32 events)." in done.stdout.decode()
    assert b"Run " not in done.stderr  # progress bars are for a terminal, not a log
    assert lines_of(account, "moved") == [f"moved {i}" for i in range(30)]  # those acknowledged elsewhere too


def test_a_server_that_refuses_the_spools_leaves_them_as_they_were(hd, account, server_factory):
    gone = f"http://127.0.0.1:{free_port()}"
    spool = leave_spool(gone, "stays", 30, close=False)
    records = list(spool.records(0))
    spool.save_cursor(records[2].offset, records[1].last_seq)
    spool.close()
    stranger = server_factory()  # where this account's key means nothing
    refused = hd("sync", "--server", stranger.url)
    assert refused.returncode == 1, refused.stdout
    assert json.loads((spool.folder / "meta.json").read_text())["server"] == gone  # still the run's server
    reopened = Spool.open_orphan(spool.folder)
    assert reopened is not None
    assert (reopened.cursor_offset, reopened.acked_seq) == (records[2].offset, records[1].last_seq)  # and as far
    reopened.close()
    assert gone in hd("sync", "--list").stdout.decode()
    done = hd("sync", "--server", account.server.url)
    assert done.returncode == 0, done.stderr
    assert lines_of(account, "stays") == [f"stays {i}" for i in range(30)]


# A run that logs one line, waits for the word, logs five more and is killed before it ends.
_KILLED_RUN = """
import sys, time
from pathlib import Path
from hyperdash import Experiment
exp = Experiment("killed mid-run", capture_io=False)
exp.log("line 0")
while not Path(sys.argv[1]).exists():
    time.sleep(0.02)
for i in range(1, 6):
    exp.log(f"line {i}")  # (spooled before log() returns)
Path(sys.argv[2]).write_text("logged")
time.sleep(120)
"""


def test_sync_of_a_killed_runs_spool_stores_its_lines_and_leaves_it_lost(server_factory, hyperdash_home, tmp_path):
    server = server_factory("--lost-timeout", "3")
    account = server.signup()
    env = account.sdk_env(hyperdash_home)
    go, logged = tmp_path / "go", tmp_path / "logged"
    child = subprocess.Popen([sys.executable, "-c", _KILLED_RUN, str(go), str(logged)], env=env,
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    try:
        run = account.wait_for_run("killed mid-run", "running", timeout=30)
        account.wait_for(lambda: [line["text"] for line in account.logs(run["uuid"])] == ["line 0"], 30)
        server.stop()  # the next lines stay in the spool
        go.write_text("go")
        account.wait_for(logged.exists, 30)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    server.start()
    lost = account.wait_for_run("killed mid-run", "lost", timeout=30)

    done = subprocess.run([*HYPERDASH, "sync"], env=env, capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    assert "Uploaded 1 run" in done.stdout.decode()
    after = account.run(run["uuid"])
    # Its lines are all there, and the dead run did not come back to life for a while.
    assert (after["status"], after["last_seen_at"]) == ("lost", lost["last_seen_at"])
    assert [line["text"] for line in account.logs(run["uuid"])] == [f"line {i}" for i in range(6)]


def test_runs_moved_to_another_server_go_with_the_key_configured_now(hd, account, tmp_path):
    # The run's key came from a hyperdash.json that still holds the old server's key; the key to
    # use on the new server is the one configured now, HYPERDASH_API_KEY first, as ever.
    old_settings = tmp_path / "old-project" / "hyperdash.json"
    old_settings.parent.mkdir()
    old_settings.write_text(json.dumps({"api_key": "hd_the_old_servers_key"}))
    gone = f"http://127.0.0.1:{free_port()}"
    spool = leave_spool(gone, "moved with today's key", 20, key_source=str(old_settings))
    done = hd("sync", "--server", account.server.url)
    assert done.returncode == 0, done.stderr
    assert lines_of(account, "moved with today's key") == [f"moved with today's key {i}" for i in range(20)]
    assert not spool.folder.exists()

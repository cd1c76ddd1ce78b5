"""Spools for different servers are independent: a dead server or a refused key holds back only
its own spools, one uploader works per machine, and a run sends what it can before handing off."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sdk_support import counting_job, texts
from test_spool_and_upload import write_run

from hyperdash.spool import spool_root
from hyperdash.uploader import ServerBook, upload_pending
from tests.conftest import free_port


def uploader_pids(home: Path) -> list[int]:
    """Live uploaders (``python -m hyperdash.uploader``, or a detached one, whose command line
    imports it) working on Hyperdash home ``home``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            environ = (entry / "environ").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        uploads = any(b"hyperdash.uploader" in arg for arg in cmdline)
        if uploads and f"HYPERDASH_HOME={home}".encode() in environ and state != "Z":
            pids.append(int(entry.name))
    return pids


def stop(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def dead_server() -> str:
    return f"http://127.0.0.1:{free_port()}"


def test_a_dead_server_does_not_delay_a_live_one(account, hyperdash_home):
    dead = write_run(dead_server(), "meant for a dead server", 5)
    dead.close()
    os.utime(dead.folder, (1e9, 1e9))  # the older spool: the one an uploader working in order starts with
    live = write_run(account.server.url, "meant for a live server", 50)
    live.close()
    env = account.sdk_env(hyperdash_home)
    env["HYPERDASH_UPLOADER_PATIENCE"] = "600"
    uploader = subprocess.Popen([sys.executable, "-m", "hyperdash.uploader"], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        run = account.wait_for_run("meant for a live server", status="success", timeout=60)
        # (its spool goes once the server's answer is in, a moment after the run shows as ended)
        account.wait_for(lambda: not live.folder.exists())
        assert uploader.poll() is None, "the uploader should still be waiting for the dead server"
        assert dead.folder.exists()
        assert texts(account.logs(run["uuid"])) == [f"line {i}" for i in range(50)]
        # the dead server was tried, failed, and waits for its next try
        entry = account.wait_for(lambda: ServerBook.load().entries.get(dead.meta()["server"]))
        assert "cannot reach" in entry["error"] and entry["next"] > entry["since"]
        assert uploader.poll() is None and dead.folder.exists()
    finally:
        uploader.kill()
        uploader.wait()


def test_a_refused_key_holds_back_only_the_spools_sent_with_it(account, hyperdash_home, monkeypatch, tmp_path):
    bad_key_file = tmp_path / "project" / "hyperdash.json"
    bad_key_file.parent.mkdir()
    bad_key_file.write_text('{"api_key": "a-revoked-key"}')
    refused = write_run(account.server.url, "sent with a revoked key", 3)
    meta = refused.meta()
    meta["key_source"] = str(bad_key_file)  # the key came from that project's file
    (refused.folder / "meta.json").write_text(json.dumps(meta))
    refused.close()
    good = write_run(account.server.url, "sent with a good key", 4)
    good.close()
    monkeypatch.setenv("HYPERDASH_API_KEY", account.api_key)
    summary = upload_pending()
    assert summary.uploaded == [good.folder.name]
    assert summary.failed[refused.folder.name].startswith(f"key refused by {account.server.url} "
                                                          f"(key from {bad_key_file})")
    account.wait_for_run("sent with a good key", status="success")
    # the key in that file is fixed: the spool goes with it, from the file it named
    bad_key_file.write_text(json.dumps({"api_key": account.api_key}))
    monkeypatch.setenv("HYPERDASH_API_KEY", "another-wrong-key")
    assert upload_pending().uploaded == [refused.folder.name]
    account.wait_for_run("sent with a revoked key", status="success")


def test_one_uploader_per_machine_however_many_runs_fail(run_job, sdk_env, hyperdash_home):
    env = sdk_env(HYPERDASH_SERVER=dead_server(), HYPERDASH_EXIT_TIMEOUT="0.5", HYPERDASH_UPLOADER_PATIENCE="600")
    job = """
        from hyperdash import monitor

        @monitor("to a dead server")
        def job():
            print("a line")

        job()
    """
    said = []
    try:
        for _ in range(4):
            done = run_job(job, env=env)
            assert done.returncode == 0, done.stderr
            said.append(done.stderr.decode())
            assert len(uploader_pids(hyperdash_home)) <= 1
        assert "a background uploader is sending them now" in said[0], said[0]
        assert all("the background uploader already running sends them" in err for err in said[1:]), said
        assert len(uploader_pids(hyperdash_home)) == 1
        assert len(list(spool_root().iterdir())) == 4  # every run waits, none is lost
    finally:
        stop(uploader_pids(hyperdash_home))


def test_runs_handing_over_at_the_same_moment_start_one_uploader(hyperdash_home, monkeypatch):
    # No time for the first uploader to start and take the lock itself: the spawner holds it
    # for it, so the next hand-overs see it taken at once.
    monkeypatch.setenv("HYPERDASH_UPLOADER_PATIENCE", "600")
    monkeypatch.setenv("HYPERDASH_API_KEY", "a-key-its-server-would-take")
    write_run(dead_server(), "waits for its server", 3).close()
    from hyperdash.uploader import spawn_detached, uploader_running

    started = [spawn_detached() for _ in range(5)]
    try:
        assert started[0] is not None and started[1:] == [None] * 4
        # (a process that has just been spawned may not show its new command line yet)
        deadline = time.monotonic() + 10
        while not uploader_pids(hyperdash_home) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert uploader_pids(hyperdash_home) == [started[0]]
        assert uploader_running()
        log = hyperdash_home / "logs" / "uploader.log"
        deadline = time.monotonic() + 30
        while "cannot reach" not in (log.read_text() if log.exists() else ""):
            assert time.monotonic() < deadline, "the uploader should try the server"
            time.sleep(0.05)
        assert "another uploader" not in log.read_text()
        assert uploader_pids(hyperdash_home) == [started[0]]  # it holds on, with the lock
        assert spawn_detached() is None
    finally:
        stop(uploader_pids(hyperdash_home))


def test_a_look_at_the_uploader_lock_is_not_taken_for_an_uploader(hyperdash_home, monkeypatch):
    # Another process looking whether an uploader runs holds the lock shared, for an instant:
    # caught in the act, it is no uploader, and the run that starts one waits the look out.
    from hyperdash import uploader

    monkeypatch.setenv("HYPERDASH_API_KEY", "a-key-its-server-would-take")
    look = os.open(hyperdash_home / "uploader.lock", os.O_RDWR | os.O_CREAT, 0o600)
    ended: list[int] = []
    try:
        fcntl.flock(look, fcntl.LOCK_SH | fcntl.LOCK_NB)
        assert not uploader.uploader_running()
        seen = uploader._only_looked_at

        def look_ends_once_seen(fd):
            if not seen(fd):
                return False
            os.close(look)
            ended.append(look)
            return True

        monkeypatch.setattr(uploader, "_only_looked_at", look_ends_once_seen)
        pid = uploader.spawn_detached()
    finally:
        if not ended:
            os.close(look)
    try:
        assert ended and pid is not None
    finally:
        stop(uploader_pids(hyperdash_home) + ([pid] if pid else []))


def test_a_large_job_reaches_a_live_server_while_the_uploader_is_stuck(run_job, sdk_env, account, hyperdash_home):
    # Earlier runs against servers stopped for good, and an uploader holding the machine's lock
    # while it waits for them: the new job must not depend on it.
    for _ in range(3):
        write_run(dead_server(), "earlier", 3).close()
    lock = os.open(hyperdash_home / "uploader.lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        done = run_job(counting_job("big and short", 200000), env=sdk_env(HYPERDASH_EXIT_TIMEOUT="60"), timeout=120)
        assert done.returncode == 0, done.stderr
        err = done.stderr.decode()
        assert "not sent" not in err and "lost" not in err, err  # all of it went at exit
        run = account.wait_for_run("big and short", status="success", timeout=5)
        lines = texts(account.logs(run["uuid"]))
        assert lines == [str(i) for i in range(200000)]
    finally:
        os.close(lock)


def test_a_run_starts_no_uploader_for_a_server_in_backoff(run_job, sdk_env, hyperdash_home):
    server = dead_server()
    book = ServerBook.load()
    book.failed(server, f"cannot reach {server}: connection refused", time.time() - 3600, patience=600)
    book.failed(server, f"cannot reach {server}: connection refused", time.time(), patience=600)
    done = run_job("""
        from hyperdash import monitor

        @monitor("server in backoff")
        def job():
            print("a line")

        job()
    """, env=sdk_env(HYPERDASH_SERVER=server, HYPERDASH_EXIT_TIMEOUT="0.5"))
    assert done.returncode == 0, done.stderr
    err = done.stderr.decode()
    assert f"{server} has not answered for a while (cannot reach {server}: connection refused (failing since" in err
    assert "events of this run are not sent yet" in err and "a later run on this machine sends them" in err
    assert not (hyperdash_home / "logs" / "uploader.log").exists()  # no uploader was started
    assert len(list(spool_root().iterdir())) == 1


def test_a_server_failing_a_thousand_times_keeps_its_short_backoff(hyperdash_home):
    # an uploader told to be patient for days meets a server down all that time
    book = ServerBook.load()
    now = time.time()
    for _ in range(1100):
        book.failed("http://127.0.0.1:9", "connection refused", now, patience=7 * 86400)
    entry = ServerBook.load().entries["http://127.0.0.1:9"]
    assert entry["failures"] == 1100
    assert now + 30 <= entry["next"] <= now + 60

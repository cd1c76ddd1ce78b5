"""What a run says and does with events it could not send: the detached uploader, one at a time,
and no uploader at all when there is no key to send with."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import threading
import time

from sdk_support import counting_job, texts
from test_spool_and_upload import write_run

from hyperdash import errors
from hyperdash.run import HANDOFF_BYTES, Run
from hyperdash.spool import Spool, spool_root
from hyperdash.transport import Transport
from tests.conftest import free_port

SHORT_JOB = """
from hyperdash import monitor

@monitor("handed over")
def job():
    print("a line")

job()
"""


def uploader_log(home) -> str:
    path = home / "logs" / "uploader.log"
    return path.read_text() if path.exists() else ""


def test_no_key_starts_no_uploader_and_says_how_to_send_later(run_job, sdk_env, hyperdash_home):
    env = sdk_env(HYPERDASH_EXIT_TIMEOUT="1")
    del env["HYPERDASH_API_KEY"]
    env["HOME"] = str(hyperdash_home)  # no ~/hyperdash.json of the person running the tests
    done = run_job(SHORT_JOB, env=env)
    assert done.returncode == 0, done.stderr
    err = done.stderr.decode()
    assert "events of this run are not sent (no API key is configured); they wait in the spool: " \
           "after `hyperdash login`, `hyperdash sync` sends them" in err, err
    assert "background uploader" not in err
    assert not (hyperdash_home / "logs" / "uploader.log").exists()  # none was started
    assert len(list(spool_root().iterdir())) == 1


def test_a_refused_key_starts_no_uploader(run_job, sdk_env, hyperdash_home):
    done = run_job(SHORT_JOB, env=sdk_env(HYPERDASH_API_KEY="not-a-key", HYPERDASH_EXIT_TIMEOUT="2"))
    assert done.returncode == 0, done.stderr
    err = done.stderr.decode()
    assert "(the server refused the API key); they wait in the spool" in err, err
    assert "background uploader" not in err
    assert not (hyperdash_home / "logs" / "uploader.log").exists()


def test_config_errors_already_shown_are_not_repeated(account, monkeypatch, tmp_path, capfd):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "hyperdash.json").write_text("{broken")
    monkeypatch.setenv("HYPERDASH_SERVER", account.server.url)
    monkeypatch.delenv("HYPERDASH_API_KEY", raising=False)
    for quiet in (False, True):
        run = Run("broken settings", echo=False, exit_timeout=1.0, quiet_config_errors=quiet).start()
        run.write("stdout", b"a line\n")
        run.end()
        err = capfd.readouterr().err
        assert "events of this run are not sent (no usable API key" in err, err
        assert ("is not valid JSON" in err) is not quiet, err


def hold_uploader_lock(home):
    fd = os.open(home / "uploader.lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd


def test_a_second_uploader_exits_at_once_leaving_its_run_to_the_first(account, hyperdash_home):
    spool = write_run(account.server.url, "left to the other", 3)
    spool.close()
    env = account.sdk_env(hyperdash_home)
    lock = hold_uploader_lock(hyperdash_home)  # as a running uploader holds it
    try:
        started = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "hyperdash.uploader", "--run", spool.folder.name],
                              env=env, capture_output=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert time.monotonic() - started < 5
        assert b"another uploader is running" in done.stdout
        assert spool.folder.exists()
    finally:
        os.close(lock)
    first = subprocess.run([sys.executable, "-m", "hyperdash.uploader"], env=env, capture_output=True, timeout=60)
    assert first.returncode == 0 and not spool.folder.exists(), first.stdout


def test_the_running_uploader_takes_spools_orphaned_while_it_works(account, hyperdash_home):
    env = account.sdk_env(hyperdash_home)
    env["HYPERDASH_UPLOADER_PATIENCE"] = "3"
    stuck = write_run(f"http://127.0.0.1:{free_port()}", "server gone", 3)  # keeps the first busy
    stuck.close()
    first = subprocess.Popen([sys.executable, "-m", "hyperdash.uploader"], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        # the first uploader holds the lock and has tried the dead server once
        line = first.stdout.readline()
        assert b"not sent this time: cannot reach" in line, line
        late = write_run(account.server.url, "orphaned later", 4)
        late.close()
        second = subprocess.run([sys.executable, "-m", "hyperdash.uploader", "--run", late.folder.name],
                                env=env, capture_output=True, timeout=60)
        assert b"another uploader is running" in second.stdout, second.stdout
        out = line + first.communicate(timeout=60)[0]
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode == 1, out  # the unreachable one stays, and says so
    assert b"stays in the spool" in out and stuck.folder.exists() and not late.folder.exists()
    run = account.wait_for_run("orphaned later", status="success")
    assert texts(account.logs(run["uuid"])) == [f"line {i}" for i in range(4)]


def test_the_running_uploader_waits_for_a_run_that_handed_over_and_still_holds_its_spool(
        reporting, hyperdash_home, monkeypatch, capfd, tmp_path):
    env = reporting.sdk_env(hyperdash_home)
    env["HYPERDASH_UPLOADER_PATIENCE"] = "3"
    stuck = write_run(f"http://127.0.0.1:{free_port()}", "server gone", 3)  # keeps the uploader busy
    stuck.close()
    said = tmp_path / "uploader.out"
    with open(said, "wb") as out:
        uploader = subprocess.Popen([sys.executable, "-m", "hyperdash.uploader"], env=env, stdout=out,
                                    stderr=subprocess.STDOUT)
    try:
        reporting.wait_for(lambda: "not sent this time: cannot reach" in said.read_text())

        def unreachable(self, envelopes, api):
            raise errors.ServerUnreachable(reporting.server.url, "the network is down")

        monkeypatch.setattr(Transport, "send_events", unreachable)  # (in this process only)
        run = Run("handed over to the running uploader", echo=False, exit_timeout=1.0).start()
        for i in range(5):
            run.write("stdout", f"line {i}\n".encode())
        # The run's process holds its spool a while after the run has ended and handed it over
        # (as a look at it from another process does, for a moment).
        still_held = os.dup(run._spool._lock_fd)
        try:
            run.end()
            assert "the background uploader already running sends them" in capfd.readouterr().err
            # the uploader has given up on the dead server: it exits, or waits for this run
            reporting.wait_for(lambda: uploader.poll() is not None or
                               f"waiting for the process of run {run.uuid} to exit" in said.read_text(), timeout=30)
        finally:
            os.close(still_held)  # the run's process exits
        assert uploader.wait(timeout=60) == 1, said.read_text()  # (the dead server's run stays)
    finally:
        if uploader.poll() is None:
            uploader.kill()
            uploader.wait()
    detail = reporting.wait_for_run("handed over to the running uploader", status="success")
    assert texts(reporting.logs(detail["uuid"])) == [f"line {i}" for i in range(5)]
    assert stuck.folder.exists() and not (spool_root() / run.uuid).exists()


def test_a_failed_run_hands_over_to_the_uploader_already_running(run_job, sdk_env, hyperdash_home):
    lock = hold_uploader_lock(hyperdash_home)
    try:
        done = run_job(SHORT_JOB, env=sdk_env(HYPERDASH_SERVER=f"http://127.0.0.1:{free_port()}",
                                              HYPERDASH_EXIT_TIMEOUT="1"))
    finally:
        os.close(lock)
    assert done.returncode == 0, done.stderr
    assert "the background uploader already running sends them" in done.stderr.decode()
    assert uploader_log(hyperdash_home) == ""  # no second one was started


def test_a_large_backlog_at_exit_goes_to_an_uploader_at_once_and_arrives_whole(run_job, sdk_env, account,
                                                                                hyperdash_home):
    # A flood just before the end: the job does not wait for it to be sent (even with a long
    # exit timeout), a detached uploader sends it.
    done = run_job(counting_job("flood at the end", 100000), env=sdk_env(HYPERDASH_EXIT_TIMEOUT="60"), timeout=120)
    assert done.returncode == 0, done.stderr
    assert "a background uploader is sending them now" in done.stderr.decode(), done.stderr
    run = account.wait_for_run("flood at the end", status="success", timeout=120)
    assert texts(account.logs(run["uuid"])) == [str(i) for i in range(100000)]
    account.wait_for(lambda: "done in" in uploader_log(hyperdash_home), timeout=60)


def open_files_under(folder) -> list[str]:
    """What this process holds open in ``folder`` (its descriptors, from /proc)."""
    held = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # (the descriptor listdir used, closed since)
        if target.startswith(f"{folder}/"):
            held.append(target)
    return held


def test_a_run_handing_over_closes_its_spool_only_once_the_shipper_reads_it_no_more(reporting, hyperdash_home,
                                                                                     monkeypatch, capfd):
    # The shipper thread is caught reading the spool just as the run ends with a backlog for
    # the uploader (the run does not wait for a request in flight). Its read goes on only once
    # the run has closed the spool, or once the run waits for it: either way it must not read a
    # closed spool, leave a descriptor open, or say anything after the run's last line.
    reading, go = threading.Event(), threading.Event()
    read, close = Spool._read, Spool.close

    def paused_read(self, offset, size, end):
        if threading.current_thread().name == "hyperdash-shipper" and not reading.is_set():
            reading.set()
            go.wait(30)
        return read(self, offset, size, end)

    def closing(self):
        close(self)
        go.set()

    monkeypatch.setattr(Spool, "_read", paused_read)
    monkeypatch.setattr(Spool, "close", closing)
    run = Run("closed under the reader", echo=False, exit_timeout=30).start()
    shipper = run._shipper

    class Awaited:
        """The sender's lock on the spool: the run waiting for it lets the read go on."""

        def __init__(self, lock):
            self.lock = lock

        def __enter__(self):
            if threading.current_thread() is not shipper:
                go.set()
            return self.lock.__enter__()

        def __exit__(self, *exc):
            return self.lock.__exit__(*exc)

    shipper.sender._spool_lock = Awaited(shipper.sender._spool_lock)
    lines = HANDOFF_BYTES // 100 + 100
    for i in range(lines):
        run.write("stdout", b"%099d\n" % i)
    assert reading.wait(30)
    folder = run._spool.folder
    run.end()
    shipper.join(30)
    assert not shipper.is_alive()
    err = capfd.readouterr().err
    assert "a background uploader is sending them now" in err, err
    assert err.splitlines()[-1].startswith("hyperdash: the log of this run is at "), err
    assert "internal error" not in err
    assert open_files_under(folder) == []
    detail = reporting.wait_for_run("closed under the reader", status="success", timeout=60)
    assert texts(reporting.logs(detail["uuid"])) == [f"{i:099d}" for i in range(lines)]
    reporting.wait_for(lambda: "done in" in uploader_log(hyperdash_home), timeout=60)


def test_a_short_job_sends_its_lines_itself_at_exit(run_job, sdk_env, account, hyperdash_home):
    done = run_job(SHORT_JOB, env=sdk_env(HYPERDASH_EXIT_TIMEOUT="60"))
    assert done.returncode == 0, done.stderr
    assert "not sent" not in done.stderr.decode(), done.stderr
    run = account.wait_for_run("handed over", status="success", timeout=5)
    assert texts(account.logs(run["uuid"])) == ["a line"]
    assert not (hyperdash_home / "logs" / "uploader.log").exists()  # no uploader was needed

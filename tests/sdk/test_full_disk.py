"""A full disk under the Hyperdash home: with the server up, every line still arrives (sent from
bounded memory), one line says so, and nothing is declared lost."""

from __future__ import annotations

import os
import resource
import subprocess
import sys

import pytest
from sdk_support import texts

LINES = 300_000


@pytest.fixture
def small_home(tmp_path):
    """``(home, preexec_fn)``: a Hyperdash home that fills up after about 2 MiB. A real 2 MiB
    tmpfs where this process may mount one (as root); else a file size limit (RLIMIT_FSIZE) on
    the job's processes, which makes their writes fail with EFBIG past 1 MiB."""
    home = tmp_path / "small-home"
    home.mkdir()
    mounted = os.geteuid() == 0 and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(home)], capture_output=True
    ).returncode == 0
    if mounted:
        yield home, None
        subprocess.run(["umount", str(home)], check=True)
    else:
        def limit_file_size():
            resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))

        yield home, limit_file_size


def check_every_line_arrived(account, name: str, done: subprocess.CompletedProcess) -> None:
    err = done.stderr.decode()
    assert done.returncode == 0, err
    assert err.count("cannot write to") == 1, err  # one warning line
    assert "sent from memory" in err
    assert "lost" not in err and "not sent" not in err, err
    run = account.wait_for_run(name, status="success")
    assert texts(account.logs(run["uuid"])) == [str(i) for i in range(LINES)]


def test_hyperdash_run_on_a_full_disk_sends_every_line(account, small_home):
    home, preexec = small_home
    env = account.sdk_env(home)
    env["HYPERDASH_EXIT_TIMEOUT"] = "60"  # the machine may be busy: time enough to send it all
    done = subprocess.run(
        [sys.executable, "-m", "hyperdash", "run", "-n", "full disk run", sys.executable, "-c",
         f"for i in range({LINES}): print(i)"],
        env=env, capture_output=True, timeout=180, preexec_fn=preexec, stdin=subprocess.DEVNULL)
    assert done.stdout.decode().splitlines() == [str(i) for i in range(LINES)]  # the terminal saw it all
    check_every_line_arrived(account, "full disk run", done)


def test_an_experiment_on_a_full_disk_sends_every_line(account, small_home, script):
    home, preexec = small_home
    env = account.sdk_env(home)
    env["HYPERDASH_EXIT_TIMEOUT"] = "60"
    path = script(f"""
        from hyperdash import Experiment

        exp = Experiment("full disk experiment", capture_io=True)
        for i in range({LINES}):
            print(i)
        exp.end()
    """)
    done = subprocess.run([sys.executable, str(path)], env=env, capture_output=True, timeout=180,
                          preexec_fn=preexec, stdin=subprocess.DEVNULL)
    check_every_line_arrived(account, "full disk experiment", done)


def test_events_dropped_from_memory_are_counted_in_the_runs_last_line(account, monkeypatch, capfd):
    from hyperdash.run import Run
    from tests.conftest import free_port

    monkeypatch.setenv("HYPERDASH_SERVER", f"http://127.0.0.1:{free_port()}")  # down: nothing goes
    monkeypatch.setenv("HYPERDASH_API_KEY", account.api_key)
    monkeypatch.setenv("HYPERDASH_UPLOADER_PATIENCE", "0")  # the uploader it starts gives up at once
    run = Run("dropping", echo=False, exit_timeout=0.5).start()
    spool = run._spool
    os.close(spool._events_fd)
    spool._events_fd = os.open("/dev/full", os.O_WRONLY)  # from now on every write: ENOSPC
    spool.memory_limit = 4000
    for i in range(2000):
        run.write("stdout", b"line %d\n" % i)
    run.end()
    err = capfd.readouterr().err
    assert spool.dropped_events > 0
    # run_started is on disk and goes to the uploader; the 2000 lines and run_ended only ever
    # were in memory: those dropped and those the dead server never took are lost
    assert ("hyperdash: 2001 events of this run are lost: the spool could not be written to disk and the "
            "server did not take them in time; 1 events of this run are not sent yet") in err, err

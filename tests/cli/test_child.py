"""How ``hyperdash run`` decides whether the child still needs a signal that hyperdash got, and
how soon ``hyperdash run`` and ``hyperdash pipe`` end once the child, or the input, has.

The end-to-end tests (test_cli_run.py) show one SIGINT reaching the child both from a terminal and
from ``kill``; but two copies of a signal sent a few microseconds apart usually merge into one
pending signal, so they cannot show that hyperdash holds back the terminal's copy. Here the
decision itself is checked against real processes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from types import SimpleNamespace

import pytest

from hyperdash import child, pump

SI_USER, SI_KERNEL = 0, 0x80


def test_a_signal_from_the_terminal_is_not_sent_again_to_a_child_in_our_group():
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"]) as same_group:
        try:
            assert child._child_got_it_too(SimpleNamespace(si_code=SI_KERNEL), same_group.pid)
            # kill() from another process reaches hyperdash alone: the child needs its copy.
            assert not child._child_got_it_too(SimpleNamespace(si_code=SI_USER), same_group.pid)
        finally:
            same_group.kill()


def test_a_child_in_its_own_group_always_gets_its_copy():
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], start_new_session=True) as own_group:
        try:
            assert os.getpgid(own_group.pid) != os.getpgrp()
            assert not child._child_got_it_too(SimpleNamespace(si_code=SI_KERNEL), own_group.pid)
        finally:
            own_group.kill()


def test_outcome_status_and_exit_code():
    assert child.Outcome(0).status == "success"
    assert child.Outcome(3).status == "failure"
    killed = child.Outcome(128 + signal.SIGTERM, signal.SIGTERM)
    assert (killed.status, killed.signal_name) == ("killed", "SIGTERM")
    # Real-time signals have no name of their own: counted from either end, as kill -l does.
    for number, name in ((signal.SIGRTMIN, "SIGRTMIN"), (signal.SIGRTMIN + 6, "SIGRTMIN+6"),
                         (signal.SIGRTMAX - 14, "SIGRTMAX-14"), (signal.SIGRTMAX, "SIGRTMAX")):
        assert child.Outcome(128 + number, number).signal_name == name
    assert child.Outcome(130, signal.SIGINT).status == "user_canceled"
    # A child that catches Ctrl-C and exits non-zero was still cancelled by the user ...
    assert child.Outcome(1, None, ended_by=signal.SIGINT).status == "user_canceled"
    assert child.Outcome(1, None, ended_by=signal.SIGINT).signal_name is None
    # ... but one that finished its work regardless succeeded.
    assert child.Outcome(0, None, ended_by=signal.SIGINT).status == "success"
    # And so with SIGTERM and SIGHUP: killed, the signal recorded, unless it finished its work.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        caught = child.Outcome(3, None, ended_by=sig)
        assert (caught.status, caught.exit_code, caught.signal_name) == ("killed", 3, sig.name)
        assert child.Outcome(0, None, ended_by=sig).status == "success"


@pytest.fixture
def long_pauses(account, hyperdash_home, monkeypatch) -> list[float]:
    """This process reports to ``account``, and its pumps take every read after the first for
    output streaming in, pausing after it for longer than a test allows itself: the pauses
    they take (their seconds)."""
    monkeypatch.setattr(pump, "GATHER_WINDOW", 60.0)
    monkeypatch.setattr(pump, "GATHER_PAUSE", 60.0)
    monkeypatch.setattr(pump, "STEADY_PAUSE", 60.0)
    monkeypatch.setenv("HYPERDASH_SERVER", account.server.url)
    monkeypatch.setenv("HYPERDASH_API_KEY", account.api_key)
    pauses: list[float] = []
    gather = pump.Pump.gather

    def noted(self, seconds: float) -> None:
        pauses.append(seconds)
        gather(self, seconds)

    monkeypatch.setattr(pump.Pump, "gather", noted)
    return pauses


def test_the_run_ends_as_soon_as_its_command_has_exited(account, long_pauses, monkeypatch, capfd):
    """Output that streams in gathers between reads; the command's exit ends a pause in
    progress, and its end of file is read then, not after the pause."""
    # (the time a command's lingering children may hold its output open: none here)
    monkeypatch.setattr(child, "DRAIN_SECONDS", 60.0)
    code = "import os, time; os.write(1, b'first\\n'); time.sleep(2); os.write(1, b'last\\n')"
    started = time.monotonic()
    exit_code = child.monitor_command("ends at once", [sys.executable, "-c", code], merge_streams=False,
                                      system_metrics=False)
    assert exit_code == 0
    assert time.monotonic() - started < 30
    assert 60.0 in long_pauses  # (the pump was pausing after the last line)
    assert capfd.readouterr().out == "first\nlast\n"
    run = account.wait_for_run("ends at once", status="success")
    assert [line["text"] for line in account.logs(run["uuid"])] == ["first", "last"]


def test_pipe_ends_as_soon_as_its_input_has(account, long_pauses, monkeypatch, capfd):
    """Input that streams in gathers between reads; its end ends a pause in progress, and the
    run ends then (not at the next look, nor after the pause)."""
    monkeypatch.setattr(child, "PIPE_CHECK_SECONDS", 60.0)
    read_fd, write_fd = os.pipe()
    written: list[str] = []

    def feed() -> None:  # a line at a time until the pump pauses, then the end
        for i in range(50):
            written.append(f"line {i}")
            os.write(write_fd, f"line {i}\n".encode())
            if 60.0 in long_pauses:
                break
            time.sleep(0.3)
        os.close(write_fd)

    saved_stdin = os.dup(0)
    os.dup2(read_fd, 0)
    os.close(read_fd)
    feeder = threading.Thread(target=feed)
    try:
        feeder.start()
        started = time.monotonic()
        assert child.monitor_stdin("piped in and out") == 0
        assert time.monotonic() - started < 30
    finally:
        feeder.join()
        os.dup2(saved_stdin, 0)
        os.close(saved_stdin)
    assert 60.0 in long_pauses
    assert capfd.readouterr().out.splitlines() == written
    run = account.wait_for_run("piped in and out", status="success")
    assert [line["text"] for line in account.logs(run["uuid"])] == written

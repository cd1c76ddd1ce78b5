"""How ``hyperdash run`` decides whether the child still needs a signal that hyperdash got.

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
from types import SimpleNamespace

from hyperdash import child

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
    assert child.Outcome(130, signal.SIGINT).status == "user_canceled"
    # A child that catches Ctrl-C and exits non-zero was still cancelled by the user ...
    assert child.Outcome(1, None, interrupted=True).status == "user_canceled"
    # ... but one that finished its work regardless succeeded.
    assert child.Outcome(0, None, interrupted=True).status == "success"

"""The switch interval while a run lives in the job's process: short enough that a job busy in
pure Python does not keep the SDK's threads (and so its lines) waiting."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from hyperdash.switching import RUN_SWITCH_INTERVAL, shorten_switch_interval


@pytest.fixture
def interval():
    """Python's default interval for the test, and back to what it was after it."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(0.005)
    yield
    sys.setswitchinterval(before)


def test_runs_shorten_the_interval_while_any_lives_and_put_it_back_after_the_last(interval):
    first = shorten_switch_interval()
    assert sys.getswitchinterval() == pytest.approx(RUN_SWITCH_INTERVAL)
    second = shorten_switch_interval()
    first()
    first()  # (twice is once)
    assert sys.getswitchinterval() == pytest.approx(RUN_SWITCH_INTERVAL)
    second()
    assert sys.getswitchinterval() == pytest.approx(0.005)


def test_an_interval_the_job_set_is_kept(interval):
    release = shorten_switch_interval()
    sys.setswitchinterval(0.02)  # the job's own choice, meanwhile
    release()
    assert sys.getswitchinterval() == pytest.approx(0.02)
    sys.setswitchinterval(0.0002)  # shorter already: left alone
    release = shorten_switch_interval()
    assert sys.getswitchinterval() == pytest.approx(0.0002)
    release()
    assert sys.getswitchinterval() == pytest.approx(0.0002)


def test_lines_of_a_job_busy_in_pure_python_reach_the_server_while_it_runs(script, sdk_env, account):
    # A line every 2.5 ms of pure-Python work (which holds the GIL), for 15 s.
    path = script("""
        import time
        from hyperdash import monitor

        @monitor("busy in python")
        def job():
            for i in range(6000):
                until = time.perf_counter() + 0.0025
                while time.perf_counter() < until:
                    pass
                print(f"tick {i}", flush=True)

        job()
    """)
    proc = subprocess.Popen([sys.executable, str(path)], env=sdk_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # (the terminal's copy, as the job prints it)
            if line == "tick 1200\n":  # about 3 s in
                break
        run = account.wait_for_run("busy in python")
        # The lines printed a second before are on the server within 3 s more, while the job
        # still computes. (Kept waiting 5 ms each time they ask for the GIL, its threads would
        # send them only at the end.)
        deadline = time.monotonic() + 3
        while "tick 800" not in [line["text"] for line in account.logs(run["uuid"])]:
            assert time.monotonic() < deadline, "the lines wait for the job to end"
            time.sleep(0.1)
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait(30)

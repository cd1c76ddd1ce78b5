"""Stopping an @monitor or Experiment job from afar: KeyboardInterrupt in its main thread, even
while it sleeps, and the run ends user_canceled; a job that cannot get a KeyboardInterrupt (SIGINT
ignored) is ended after the grace period instead."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid

import pytest


def _start(account, script, sdk_env, code: str, name: str, env: dict[str, str] | None = None,
           **popen) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, str(script(code))], env=sdk_env(**(env or {})),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **popen)
    run = account.wait_for_run(name, "running", timeout=30)
    account.wait_for(lambda: any(line["text"] == "ready" for line in account.logs(run["uuid"])), timeout=30)
    return proc, run["uuid"]


# How the job takes the KeyboardInterrupt: lets it end the program; or cleans up and returns, or
# exits 1 as Lightning does on Ctrl-C (which used to end the run success or failure, its page
# saying at once that it was stopped).
@pytest.mark.parametrize("taken, exit_code", [("raise", -signal.SIGINT), ("return 'partial'", 0), ("sys.exit(1)", 1)])
def test_a_monitor_job_asleep_is_stopped(account, script, sdk_env, taken, exit_code):
    name = f"monitor-{uuid.uuid4().hex[:8]}"
    proc, run_uuid = _start(account, script, sdk_env, f"""
        import sys, time
        from hyperdash import monitor

        @monitor({name!r})
        def train():
            print("ready", flush=True)
            try:
                time.sleep(120)  # blocked in a call: the stop must still reach it
            except KeyboardInterrupt:
                print("interrupted", flush=True)
                {taken}

        train()
    """, name)
    asked = time.monotonic()
    account.stop_run(run_uuid)
    out, err = proc.communicate(timeout=30)
    took = time.monotonic() - asked
    assert "interrupted" in out.decode()
    assert ("KeyboardInterrupt" in err.decode()) == (taken == "raise")
    assert proc.returncode == exit_code, err.decode()
    assert took < 15, f"the job took {took:.1f}s to stop"
    run = account.wait_until_ended(run_uuid)
    assert run["status"] == "user_canceled"
    assert run["stop"] == {"requested_at": run["stop"]["requested_at"], "by": account.email, "via": "api"}
    assert "interrupted" in [line["text"] for line in account.logs(run_uuid)]


def test_an_experiment_in_a_busy_loop_is_stopped(account, script, sdk_env):
    name = f"experiment-{uuid.uuid4().hex[:8]}"
    proc, run_uuid = _start(account, script, sdk_env, f"""
        from hyperdash import Experiment

        with Experiment({name!r}) as exp:
            print("ready", flush=True)
            for i in exp.iter(10**9, log=False):
                pass
    """, name)
    account.stop_run(run_uuid)
    out, err = proc.communicate(timeout=30)
    assert "KeyboardInterrupt" in err.decode()
    run = account.wait_until_ended(run_uuid)
    assert run["status"] == "user_canceled" and run["stop"]["by"] == account.email
    # exp.iter kept its progress meanwhile.
    assert run["progress"]["source"] == "iter" and run["progress"]["total"] == 10**9
    assert run["progress"]["done"] > 0


@pytest.mark.parametrize("ignored, dies_of", [
    ((signal.SIGINT,), signal.SIGTERM),
    ((signal.SIGINT, signal.SIGTERM), signal.SIGKILL),
])
def test_a_job_that_ignores_sigint_is_ended_after_the_grace_period(account, script, sdk_env, ignored, dies_of):
    name = f"deaf-{uuid.uuid4().hex[:8]}"

    def ignore() -> None:  # as a non-interactive shell starts a job in the background (`job &`)
        for signum in ignored:
            signal.signal(signum, signal.SIG_IGN)

    proc, run_uuid = _start(account, script, sdk_env, f"""
        import time
        from hyperdash import monitor

        @monitor({name!r})
        def train():
            print("ready", flush=True)
            time.sleep(120)

        train()
    """, name, env={"HYPERDASH_STOP_GRACE": "1"}, preexec_fn=ignore)
    try:
        account.stop_run(run_uuid)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == -dies_of, err.decode()
    said = [line for line in err.decode().splitlines() if "asked this run to stop" in line]
    assert said == [f"hyperdash: {account.email} asked this run to stop, from the API: the job ignores SIGINT, "
                    f"so no KeyboardInterrupt can stop it: unless it ends first, in 1 s the run ends "
                    f"user_canceled and the process (pid {proc.pid}) is terminated"]
    run = account.wait_until_ended(run_uuid)
    assert run["status"] == "user_canceled" and run["stop"]["by"] == account.email


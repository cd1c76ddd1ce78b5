"""Stopping a `hyperdash run` job from afar: SIGINT, then SIGTERM and SIGKILL while the command
goes on; `hyperdash stop`; the run ends user_canceled and says who stopped it."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid

import psutil
import pytest
from cli_support import HYPERDASH, py

# Prints a line, then waits: as an idle job does, between its heartbeats.
WAITS = """
import time
print("ready", flush=True)
time.sleep(120)
"""

# Ignores SIGINT and SIGTERM (saying so), so only SIGKILL ends it.
STUBBORN = """
import signal, sys, time
def said(signum, frame):
    print("ignoring", signal.Signals(signum).name, flush=True)
signal.signal(signal.SIGINT, said)
signal.signal(signal.SIGTERM, said)
print("ready", flush=True)
while True:
    time.sleep(0.1)
"""


# Run by a shell that waits for it, as `sh train.sh` runs it: writes its pid, then loops.
GRANDCHILD = """
import os, signal, sys, time
if len(sys.argv) > 2:  # stubborn: only SIGKILL ends it
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
with open(sys.argv[1], "w") as f:
    f.write(str(os.getpid()))
print("ready", flush=True)
while True:
    time.sleep(0.1)
"""


def _start(account, home, code: str, **env: str) -> tuple[subprocess.Popen, str]:
    return _start_command(account, home, py(code), env)


def _start_command(account, home, command: list[str], env: dict[str, str] | None = None,
                   stdout=subprocess.PIPE) -> tuple[subprocess.Popen, str]:
    """``hyperdash run`` of ``command``, once its run has stored the line ``ready``."""
    name = f"stop-{uuid.uuid4().hex[:8]}"
    proc = subprocess.Popen([*HYPERDASH, "run", "-n", name, "--", *command],
                            env={**account.sdk_env(home), **(env or {})},
                            stdin=subprocess.DEVNULL, stdout=stdout, stderr=subprocess.PIPE)
    run = account.wait_for_run(name, "running", timeout=30)
    account.wait_for(lambda: any(line["text"] == "ready" for line in account.logs(run["uuid"])), timeout=30)
    return proc, run["uuid"]


def test_hyperdash_stop_ends_a_run_job_user_canceled(account, hyperdash_home, hd):
    proc, run_uuid = _start(account, hyperdash_home, WAITS)
    asked = time.monotonic()
    done = hd("stop", run_uuid[:8])
    assert done.returncode == 0, done.stderr
    assert f"Asked run {run_uuid[:8]}" in done.stdout.decode()
    out, err = proc.communicate(timeout=30)
    took = time.monotonic() - asked
    assert proc.returncode == 130, err.decode()  # the command died of SIGINT (KeyboardInterrupt)
    assert took < 15, f"the job took {took:.1f}s to stop"
    assert f"{account.email} asked this run to stop, from the command line" in err.decode()
    run = account.wait_until_ended(run_uuid)
    assert run["status"] == "user_canceled"
    assert run["stop"]["by"] == account.email and run["stop"]["via"] == "cli"
    assert run["failure"] is None
    # Stopping it again is refused, clearly.
    again = hd("stop", run_uuid)
    assert again.returncode == 1
    assert "has already ended (user_canceled); there is nothing to stop" in again.stderr.decode()


def test_a_command_that_ignores_sigint_gets_sigterm_then_sigkill(account, hyperdash_home):
    proc, run_uuid = _start(account, hyperdash_home, STUBBORN, HYPERDASH_STOP_GRACE="1")
    account.stop_run(run_uuid)
    out, err = proc.communicate(timeout=40)
    assert proc.returncode == 137, err.decode()  # SIGKILL
    text = out.decode()
    assert "ignoring SIGINT" in text and "ignoring SIGTERM" in text
    assert text.index("ignoring SIGINT") < text.index("ignoring SIGTERM")
    run = account.wait_until_ended(run_uuid)
    assert (run["status"], run["signal"], run["exit_code"]) == ("user_canceled", "SIGKILL", 137)
    assert run["stop"]["via"] == "api"
    stored = [line["text"] for line in account.logs(run_uuid)]
    assert "ignoring SIGINT" in stored and "ignoring SIGTERM" in stored


def test_another_account_cannot_stop_the_job(account, hyperdash_home, hyperdash_server):
    proc, run_uuid = _start(account, hyperdash_home, WAITS)
    try:
        other = hyperdash_server.signup()
        resp = hyperdash_server.session.post(f"{hyperdash_server.url}/api/v1/runs/{run_uuid}/stop",
                                             headers={"x-hyperdash-auth": other.api_key}, timeout=10)
        assert resp.status_code == 404
        time.sleep(6)  # longer than an idle job's heartbeat: it would have heard by now
        assert proc.poll() is None
        assert account.run(run_uuid)["status"] == "running" and account.run(run_uuid)["stop"] is None
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def test_a_pipe_is_stopped_like_ctrl_c(account, hyperdash_home):
    name = f"pipe-{uuid.uuid4().hex[:8]}"
    proc = subprocess.Popen([*HYPERDASH, "pipe", "-n", name], env=account.sdk_env(hyperdash_home),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdin.write(b"ready\n")
    proc.stdin.flush()
    run = account.wait_for_run(name, "running", timeout=30)
    account.wait_for(lambda: any(line["text"] == "ready" for line in account.logs(run["uuid"])), timeout=30)
    account.stop_run(run["uuid"])
    try:
        proc.wait(timeout=30)
    finally:
        proc.stdin.close()
    assert proc.returncode == 130
    ended = account.wait_until_ended(run["uuid"])
    assert ended["status"] == "user_canceled"


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.parametrize("shell", ["sh", "bash"])
def test_a_stop_reaches_the_job_under_a_shell_and_spares_the_pipe_reader(account, hyperdash_home, tmp_path,
                                                                        shell):
    (tmp_path / "train.py").write_text(GRANDCHILD)
    pid_file = tmp_path / "grandchild.pid"
    # The shell runs Python and waits for it (a command follows: no exec in its place).
    (tmp_path / "train.sh").write_text(f"{sys.executable} {tmp_path / 'train.py'} {pid_file}\necho after\n")
    # `hyperdash run ... | cat > out`: the reader shares hyperdash's process group.
    reader = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        proc, run_uuid = _start_command(account, hyperdash_home, [shell, str(tmp_path / "train.sh")],
                                        {"HYPERDASH_STOP_GRACE": "2"}, stdout=reader.stdin)
        reader.stdin.close()  # (hyperdash holds the write end now)
        shell_pid = psutil.Process(proc.pid).children()[0].pid
        grandchild = int(pid_file.read_text())
        resp = account.server.session.post(f"{account.server.url}/api/v1/runs/{run_uuid}/stop",
                                           headers={"x-hyperdash-auth": account.api_key}, timeout=10)
        assert resp.status_code == 202, resp.text
        _, err = proc.communicate(timeout=40)
        # Python got the SIGINT (KeyboardInterrupt), and the shell ended with it.
        assert proc.returncode == 130, err.decode()
        assert "KeyboardInterrupt" in err.decode() and "after" not in reader.stdout.read().decode()
        assert _gone(shell_pid) and _gone(grandchild)
        run = account.wait_until_ended(run_uuid)
        assert (run["status"], run["signal"]) == ("user_canceled", "SIGINT")
        assert reader.wait(timeout=30) == 0  # it read to the end: no signal reached it
    finally:
        reader.kill()
        if pid_file.exists() and not _gone(grandchild := int(pid_file.read_text())):
            psutil.Process(grandchild).kill()


def test_the_final_sigkill_reaches_what_outlives_the_shell(account, hyperdash_home, tmp_path):
    (tmp_path / "train.py").write_text(GRANDCHILD)
    pid_file = tmp_path / "grandchild.pid"
    try:
        proc, run_uuid = _start_command(account, hyperdash_home, [
            "bash", "-c", f"{sys.executable} {tmp_path / 'train.py'} {pid_file} stubborn; echo after"],
            {"HYPERDASH_STOP_GRACE": "1"})
        grandchild = int(pid_file.read_text())
        resp = account.server.session.post(f"{account.server.url}/api/v1/runs/{run_uuid}/stop",
                                           headers={"x-hyperdash-auth": account.api_key}, timeout=10)
        assert resp.status_code == 202, resp.text
        out, err = proc.communicate(timeout=40)
        assert proc.returncode == 143, err.decode()  # the shell died of SIGTERM, Python ignored it
        assert _gone(grandchild)  # and got SIGKILL, though the shell was gone by then
        run = account.wait_until_ended(run_uuid)
        assert (run["status"], run["signal"]) == ("user_canceled", "SIGTERM")
    finally:
        if pid_file.exists() and not _gone(grandchild := int(pid_file.read_text())):
            psutil.Process(grandchild).kill()

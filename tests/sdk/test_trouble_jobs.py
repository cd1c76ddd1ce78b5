"""Real jobs against a real server: a job that hangs while its process lives becomes stalled
within its window and clears when it goes on (under ``@monitor`` and under ``hyperdash run``);
rules set with ``exp.alert`` fire on the points the job records."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

HANG = """
    import os, pathlib, time

    go, end = pathlib.Path(os.environ["GO"]), pathlib.Path(os.environ["END"])

    def hang_until(path):
        while not path.exists():  # the process lives (its heartbeats go on); the loop is stuck
            time.sleep(0.05)
"""

# A command that prints, hangs until ``go``, prints again and hangs until ``end``.
HANGING_SCRIPT = textwrap.dedent(HANG + """
    print("epoch 1", flush=True)
    hang_until(go)
    print("epoch 2", flush=True)
    hang_until(end)
""")


def _wait_stalled_then_resumed(account, name: str, tmp_path, proc: subprocess.Popen) -> None:
    run = account.wait_for_run(name, timeout=30)
    stalled = account.wait_for(lambda: (r := account.run(run["uuid"]))["stalled_since"] and r, timeout=30)
    assert stalled["status"] == "running"  # alive, not lost
    assert any(r["uuid"] == run["uuid"] and r["stalled_since"] for r in account.runs(name=name))
    (tmp_path / "go").touch()
    resumed = account.wait_for(lambda: (r := account.run(run["uuid"]))["stalled_since"] is None and r, timeout=30)
    assert resumed["status"] == "running"
    (tmp_path / "end").touch()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert account.run(run["uuid"])["status"] == "success"
    stall = account.get(f"/api/v1/runs/{run['uuid']}/stall").json()
    assert (stall["stall_after_s"], stall["source"]) == (2.0, "run")


# The training loop of a ``@monitor`` job that makes no progress of its own until ``go``.
STUCK_LOOPS = {
    "stall-monitor": "hang_until(go)",
    # ``exp.iter`` records an internal param each time it is called (and an internal metric):
    # the SDK's bookkeeping, not the job's progress.
    "stall-iter": "while not go.exists():\n"
                  "            for _ in exp.iter(1, log=False):\n"
                  "                time.sleep(0.2)",
}


@pytest.mark.parametrize("name", list(STUCK_LOOPS))
def test_a_monitor_job_that_hangs_is_stalled_then_clears(script, sdk_env, account, tmp_path, name):
    path = script(HANG + """
    from hyperdash import monitor

    @monitor(NAME, stall_after="2s")
    def train(exp):
        exp.metric("loss", 1.0)
        print("epoch 1", flush=True)
        STUCK
        print("epoch 2", flush=True)
        hang_until(end)

    train()
    """.replace("NAME", repr(name)).replace("STUCK", STUCK_LOOPS[name]))
    env = sdk_env(GO=str(tmp_path / "go"), END=str(tmp_path / "end"))
    proc = subprocess.Popen([sys.executable, str(path)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL)
    try:
        _wait_stalled_then_resumed(account, name, tmp_path, proc)
    finally:
        proc.kill()


def test_a_hyperdash_run_job_that_hangs_is_stalled_then_clears(sdk_env, account, tmp_path):
    env = sdk_env(GO=str(tmp_path / "go"), END=str(tmp_path / "end"))
    proc = subprocess.Popen([sys.executable, "-m", "hyperdash", "run", "-n", "stall-cli", "--stall-after", "2s",
                             sys.executable, "-c", HANGING_SCRIPT], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        _wait_stalled_then_resumed(account, "stall-cli", tmp_path, proc)
    finally:
        proc.kill()


def test_a_hyperdash_pipe_job_that_hangs_is_stalled_then_clears(sdk_env, account, tmp_path):
    env = sdk_env(GO=str(tmp_path / "go"), END=str(tmp_path / "end"))
    job = subprocess.Popen([sys.executable, "-c", HANGING_SCRIPT], env=env, stdout=subprocess.PIPE,
                           stdin=subprocess.DEVNULL)
    assert job.stdout is not None
    proc = subprocess.Popen([sys.executable, "-m", "hyperdash", "pipe", "-n", "stall-pipe", "--stall-after", "2s"],
                            env=env, stdin=job.stdout, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    job.stdout.close()  # (the pipe's only reader is hyperdash now: it sees the end of input)
    try:
        _wait_stalled_then_resumed(account, "stall-pipe", tmp_path, proc)
        assert job.wait(timeout=30) == 0
    finally:
        proc.kill()
        job.kill()


def test_alerts_from_code_fire_once_and_a_bad_one_never_stops_the_job(run_job, account):
    done = run_job("""
        import math
        from hyperdash import Experiment

        exp = Experiment("alerts", capture_io=False, echo=False)
        assert exp.alert("loss", nan=True)
        assert exp.alert("loss", above=10)
        assert exp.alert("acc", patience=2, mode="max")
        assert not exp.alert("loss", above=1, below=0)  # two kinds: said on stderr, not set
        assert not exp.alert("loss", mode="sideways", patience=3)
        for step, loss in enumerate([3.0, 12.0, 13.0, math.nan, math.nan, 2.0]):
            exp.metric("loss", loss, step=step)
        for step, acc in enumerate([0.5, 0.7, 0.6, 0.65]):
            exp.metric("acc", acc, step=step)
        exp.end()
        print("done")
    """)
    assert done.returncode == 0 and done.stdout.decode().splitlines()[-1] == "done", done.stderr
    err = done.stderr.decode()
    assert "alert on 'loss' is not set: a rule needs exactly one of" in err
    assert "'mode' must be" in err
    run = account.wait_for_run("alerts", status="success")
    found = account.get(f"/api/v1/runs/{run['uuid']}/rules").json()
    assert [r["description"] for r in found["rules"]] == [
        "loss is NaN or infinite", "loss is above 10", "acc has not improved (higher is better) for 2 points"]
    assert all(r["source"] == "code" for r in found["rules"])
    assert [(f["description"], f["value_text"], f["step"]) for f in found["firings"]] == [
        ("loss is above 10", "12.0", 1), ("loss is NaN or infinite", "NaN", 3),
        ("acc has not improved (higher is better) for 2 points", "0.65", 3)]
    # NaN points are not charted
    points = account.get(f"/api/v1/runs/{run['uuid']}/metrics/loss").json()["points"]
    assert [p["value"] for p in points] == [3.0, 12.0, 13.0, 2.0]


def test_a_bad_stall_after_is_said_and_the_job_runs(run_job, account):
    done = run_job("""
        from hyperdash import Experiment

        exp = Experiment("bad window", capture_io=False, stall_after="soon")
        exp.metric("x", 1)
        exp.end()
        print("done")
    """)
    assert done.returncode == 0 and done.stdout.decode().splitlines()[-1] == "done", done.stderr
    assert "stall_after is not used" in done.stderr.decode()
    run = account.wait_for_run("bad window", status="success")
    assert account.get(f"/api/v1/runs/{run['uuid']}/stall").json()["source"] == "server"


def test_the_servers_default_window_from_its_command_line(server_factory, sdk_env, tmp_path):
    server = server_factory("--stall-after", "2s")
    account = server.signup()
    env = {**sdk_env(GO=str(tmp_path / "go"), END=str(tmp_path / "end")),
           "HYPERDASH_SERVER": server.url, "HYPERDASH_API_KEY": account.api_key}
    proc = subprocess.Popen([sys.executable, "-m", "hyperdash", "run", "-n", "stall-default", sys.executable, "-c",
                             HANGING_SCRIPT], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL)
    try:
        run = account.wait_for_run("stall-default", timeout=30)
        account.wait_for(lambda: account.run(run["uuid"])["stalled_since"], timeout=30)
        assert account.get(f"/api/v1/runs/{run['uuid']}/stall").json()["source"] == "server"
        (tmp_path / "go").touch()
        account.wait_for(lambda: account.run(run["uuid"])["stalled_since"] is None, timeout=30)
        (tmp_path / "end").touch()
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()


def test_a_job_killed_outright_goes_lost_without_being_told_stalled_first(server_factory, sdk_env):
    # Its window (1 s) is far shorter than the lost timeout (6 s): once the job is gone, no
    # heartbeat says it lives, so it is silent, not stuck.
    server = server_factory("--stall-after", "1s", "--lost-timeout", "6")
    account = server.signup()
    env = {**sdk_env(), "HYPERDASH_SERVER": server.url, "HYPERDASH_API_KEY": account.api_key}
    # (it makes progress until it is killed: a line every 0.2 s)
    proc = subprocess.Popen([sys.executable, "-m", "hyperdash", "run", "-n", "killed outright", sys.executable,
                             "-c", "import itertools, time\nfor i in itertools.count(1):\n"
                             "    print('epoch', i, flush=True)\n    time.sleep(0.2)"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        assert proc.stdout.readline() == b"epoch 1\n"
        run = account.wait_for_run("killed outright", timeout=30)
        account.wait_for(lambda: account.logs(run["uuid"]), timeout=30)
        os.killpg(proc.pid, signal.SIGKILL)  # hyperdash and its job, with no word to the server
        seen = []  # the run as it looked, every 0.1 s, until it went lost
        account.wait_for(lambda: seen.append(account.run(run["uuid"])) or seen[-1]["status"] == "lost", timeout=30)
        assert len(seen) > 10 and not [r for r in seen if r["stalled_since"]]
    finally:
        proc.kill()
        proc.wait(timeout=30)


def test_a_bad_window_on_the_command_line_is_a_usage_error(sdk_env):
    for args in (["server", "--stall-after", "soon"], ["run", "-n", "x", "--stall-after", "10y", "true"],
                 ["pipe", "-n", "x", "--stall-after", "soon"]):
        done = subprocess.run([sys.executable, "-m", "hyperdash", *args], env=sdk_env(), capture_output=True,
                              timeout=60, stdin=subprocess.DEVNULL)
        assert done.returncode == 2, done.stderr
        assert "Invalid value for '--stall-after': a duration is a number" in done.stderr.decode()

"""``hyperdash tensorboard``: event files written by a real TensorBoard writer become runs with
their steps, backfilled or followed, by the real command against a real server."""

from __future__ import annotations

import importlib.util
import json
import signal
import subprocess
import sys
import threading
import time

import pytest
from cli_support import HYPERDASH

from tests.conftest import free_port

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    importlib.util.find_spec("tensorboard") is None or importlib.util.find_spec("torch") is None,
    reason="tensorboard and torch (its SummaryWriter) are not installed")]

WRITER = """
import json, sys
from torch.utils.tensorboard import SummaryWriter

folder, points = sys.argv[1], json.loads(sys.argv[2])
writer = SummaryWriter(folder)
for tag, step, value in points:
    writer.add_scalar(tag, value, step, walltime=1_700_000_000 + step)
writer.add_text("note", "not a scalar", 0)
writer.close()
"""


def write_scalars(folder, points: list[tuple[str, int, float]]) -> None:
    """Scalars written by torch's SummaryWriter (TensorBoard's format), in a process of its own."""
    subprocess.run([sys.executable, "-c", WRITER, str(folder), json.dumps(points)], check=True, timeout=120)


def series(account, run_uuid: str, name: str) -> list[tuple[int, float]]:
    return [(p["step"], p["value"]) for p in account.get(f"/api/v1/runs/{run_uuid}/metrics/{name}").json()["points"]]


def runs_by_folder(account, name: str, count: int, status: str = "success") -> dict[str, dict]:
    def found():
        runs = [r for r in account.runs(name=name) if r["status"] == status]
        return runs if len(runs) == count else None

    runs = account.wait_for(found, timeout=30)
    return {account.run(r["uuid"])["params"]["tensorboard.run"]: account.run(r["uuid"]) for r in runs}


def test_backfill_imports_each_run_folder_with_steps(account, hyperdash_home, tmp_path):
    logdir = tmp_path / "runs"
    write_scalars(logdir / "lr_0.1", [("loss", s, 1 / (s + 1)) for s in range(5)] + [("acc", 4, 0.9)])
    write_scalars(logdir / "lr_0.01", [("loss", s, 2 / (s + 1)) for s in range(3)])
    done = subprocess.run([*HYPERDASH, "tensorboard", "--logdir", str(logdir), "-n", "sweep", "--backfill",
                           "--no-follow"], env=account.sdk_env(hyperdash_home), capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    assert "9 points recorded in 2 runs" in done.stderr
    runs = runs_by_folder(account, "sweep", 2)
    assert set(runs) == {"lr_0.1", "lr_0.01"}
    first = runs["lr_0.1"]
    assert first["params"]["tensorboard.logdir"] == str(logdir.resolve())
    assert set(first["metrics"]) == {"loss", "acc"}  # the text summary is not a scalar
    assert series(account, first["uuid"], "loss") == [(s, pytest.approx(1 / (s + 1))) for s in range(5)]
    assert series(account, runs["lr_0.01"]["uuid"], "loss") == [(s, pytest.approx(2 / (s + 1))) for s in range(3)]
    # Each point keeps the time it was written, not the time it was sent.
    point = account.get(f"/api/v1/runs/{first['uuid']}/metrics/acc").json()["points"][0]
    assert point["timestamp"].startswith("2023-11-14T22:13:24")


def test_with_the_server_away_the_points_are_recorded_and_said_to_wait(account, hyperdash_home, tmp_path):
    logdir = tmp_path / "runs"
    write_scalars(logdir / "only", [("loss", s, 1.0) for s in range(3)])
    env = {**account.sdk_env(hyperdash_home), "HYPERDASH_SERVER": f"http://127.0.0.1:{free_port()}",
           "HYPERDASH_UPLOADER_PATIENCE": "0"}
    done = subprocess.run([*HYPERDASH, "tensorboard", "--logdir", str(logdir), "-n", "away", "--backfill",
                           "--no-follow"], env=env, capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    assert "3 points recorded in 1 run" in done.stderr and "sent" not in done.stderr.splitlines()[-1]
    assert "not sent yet (they are kept in the spool)" in done.stderr, done.stderr


def test_follow_sends_what_is_written_after_it_starts(account, hyperdash_home, tmp_path):
    logdir = tmp_path / "tb"
    write_scalars(logdir / "a", [("loss", s, 1.0) for s in range(3)])  # there before: not sent
    follower = subprocess.Popen([*HYPERDASH, "tensorboard", "--logdir", str(logdir), "--interval", "0.2"],
                                env=account.sdk_env(hyperdash_home), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(2)  # started, and past what was there
        assert follower.poll() is None
        write_scalars(logdir / "a", [("loss", s, 0.5) for s in range(3, 6)])
        write_scalars(logdir / "b", [("loss", s, 0.25) for s in range(2)])  # a run folder new since
        account.wait_for(lambda: len(account.runs(name="tb")) == 2, timeout=30)
        runs = {account.run(r["uuid"])["params"]["tensorboard.run"]: r for r in account.runs(name="tb")}
        account.wait_for(lambda: len(series(account, runs["a"]["uuid"], "loss")) == 3, timeout=30)
        assert series(account, runs["a"]["uuid"], "loss") == [(3, 0.5), (4, 0.5), (5, 0.5)]
        account.wait_for(lambda: series(account, runs["b"]["uuid"], "loss") == [(0, 0.25), (1, 0.25)], timeout=30)
        assert all(r["status"] == "running" for r in account.runs(name="tb"))
    finally:
        follower.send_signal(signal.SIGINT)
        out, err = follower.communicate(timeout=60)
    assert follower.returncode == 0, err
    assert "5 points recorded in 2 runs" in err
    assert set(runs_by_folder(account, "tb", 2)) == {"a", "b"}


def test_bad_input_is_refused_and_sends_nothing(account, hyperdash_home, tmp_path):
    env = account.sdk_env(hyperdash_home)

    def call(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*HYPERDASH, "tensorboard", *args], env=env, capture_output=True, text=True,
                              timeout=60, stdin=subprocess.DEVNULL)

    missing = call("--logdir", str(tmp_path / "nowhere"), "--backfill", "--no-follow")
    assert missing.returncode == 1 and "no such folder" in missing.stderr
    (tmp_path / "empty").mkdir()
    lazy = call("--logdir", str(tmp_path / "empty"), "--no-follow")
    assert lazy.returncode == 1 and "add --backfill" in lazy.stderr
    nameless = call("--logdir", str(tmp_path / "empty"), "-n", " ")
    assert nameless.returncode == 2 and "must not be empty" in nameless.stderr
    assert call("--logdir").returncode == 2
    assert account.runs() == []



def test_a_stop_ends_that_run_alone_and_the_last_one_ends_the_command(account, hyperdash_home, tmp_path):
    logdir = tmp_path / "stops"
    follower = subprocess.Popen([*HYPERDASH, "tensorboard", "--logdir", str(logdir), "--interval", "0.2"],
                                env=account.sdk_env(hyperdash_home), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    logdir.mkdir()
    try:
        write_scalars(logdir / "a", [("loss", 0, 1.0)])
        write_scalars(logdir / "b", [("loss", 0, 2.0)])
        account.wait_for(lambda: len(account.runs(name="stops")) == 2, timeout=30)
        runs = {account.run(r["uuid"])["params"]["tensorboard.run"]: r["uuid"] for r in account.runs(name="stops")}
        account.stop_run(runs["a"])
        account.wait_for(lambda: account.run(runs["a"])["status"] == "user_canceled", timeout=30)
        # a is read no more; b goes on.
        write_scalars(logdir / "a", [("loss", 1, 1.5)])
        write_scalars(logdir / "b", [("loss", 1, 2.5)])
        account.wait_for(lambda: series(account, runs["b"], "loss") == [(0, 2.0), (1, 2.5)], timeout=30)
        assert follower.poll() is None and account.run(runs["b"])["status"] == "running"
        account.stop_run(runs["b"])  # the last one followed: the command ends
        out, err = follower.communicate(timeout=60)
    finally:
        follower.kill()
    assert follower.returncode == 0, err
    assert "from the API: ending this run and no longer following a; the other runs go on" in err
    assert "from the API: ending this run, the only one followed: hyperdash tensorboard ends" in err
    assert "stopping the job" not in err
    assert account.run(runs["b"])["status"] == "user_canceled"
    assert series(account, runs["a"], "loss") == [(0, 1.0)]


@pytest.fixture
def follower_reporting(account, monkeypatch):
    """A Follower made in the test itself, whose runs report to ``account``."""
    from hyperdash.tensorboard import Follower

    monkeypatch.setenv("HYPERDASH_SERVER", account.server.url)
    monkeypatch.setenv("HYPERDASH_API_KEY", account.api_key)
    return lambda logdir: Follower(logdir, backfill=True, say=lambda line: None)


def test_an_event_file_removed_meanwhile_is_passed_over(account, follower_reporting, tmp_path):
    logdir = tmp_path / "rotated"
    write_scalars(logdir / "a", [("loss", 0, 1.0)])
    write_scalars(logdir / "a", [("loss", 1, 2.0)])  # a second event file
    first, second = sorted((logdir / "a").iterdir())
    follower = follower_reporting(logdir)
    reader = follower.loader_class

    def rotated_away_once_listed(path: str):
        if path == str(first):
            first.unlink()
        return reader(path)

    follower.loader_class = rotated_away_once_listed
    assert follower.poll() == 1  # the second file's point
    second.unlink()  # removed once its reader was open
    write_scalars(logdir / "a", [("loss", 2, 3.0)])
    assert follower.poll() == 1
    follower.end()
    run = account.wait_for_run("rotated", status="success", timeout=30)
    assert series(account, run["uuid"], "loss") == [(1, 2.0), (2, 3.0)]


def test_an_error_that_ends_the_command_ends_its_runs(account, follower_reporting, tmp_path):
    logdir = tmp_path / "broken"
    write_scalars(logdir / "a", [("loss", 0, 1.0)])
    follower = follower_reporting(logdir)
    follower.poll()
    write_scalars(logdir / "a", [("loss", 1, 2.0)])

    def unreadable(path: str):
        raise OSError(5, "Input/output error")

    follower.loader_class = unreadable
    follower.folders[(logdir / "a").resolve()].loaders.clear()
    with pytest.raises(OSError, match="Input/output error"):
        follower.send(threading.Event(), 0.1)
    run = account.wait_for_run("broken", status="failure", timeout=30)
    texts = [line["text"] for line in account.logs(run["uuid"])]
    assert texts == ["hyperdash tensorboard: ended by an error: OSError(5, 'Input/output error')"]

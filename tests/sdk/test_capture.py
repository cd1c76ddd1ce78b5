"""The pump on descriptors that cannot be polled (regular files, /dev/null); the order of
stdout and stderr under the in-process capture."""

from __future__ import annotations

import os
import pty
import shlex
import subprocess
import sys

import pytest
from terminal_support import busy_cpus, run_in_terminal, shown_lines

from hyperdash.channel import same_destination
from hyperdash.pump import Pump
from hyperdash.run import Run


def test_pump_reads_a_regular_file_and_dev_null_beside_a_pipe(tmp_path):
    source = tmp_path / "input.log"
    source.write_bytes(b"".join(f"file line {i}\n".encode() for i in range(5000)))
    terminal = tmp_path / "terminal"
    read_pipe, write_pipe = os.pipe()
    run = Run("unpollable", echo=False, exit_timeout=0.0).start()
    with open(terminal, "wb") as shown:
        channels = [(os.open(source, os.O_RDONLY), shown.fileno(), "stdout"),
                    (os.open(os.devnull, os.O_RDONLY), None, "stderr"),
                    (read_pipe, None, "stderr")]
        pump = Pump(run, channels)
        pump.start()
        os.write(write_pipe, b"from the pipe\n")
        os.close(write_pipe)
        pump.join(10)
        assert not pump.is_alive(), "the pump should stop at the end of every input"
    run.end()
    assert terminal.read_bytes() == source.read_bytes()  # passed through unchanged
    log = run.log_path.read_text().splitlines()
    assert [line for line in log if line.startswith("file line")] == [f"file line {i}" for i in range(5000)]
    assert "from the pipe" in log


def test_pump_of_dev_null_ends_it_at_once_and_still_reads_the_pipe_beside_it(tmp_path):
    read_pipe, write_pipe = os.pipe()
    run = Run("nothing", echo=False, exit_timeout=0.0).start()
    pump = Pump(run, [(os.open(os.devnull, os.O_RDONLY), None, "stdout"), (read_pipe, None, "stderr")])
    pump.start()
    os.write(write_pipe, b"still read\n")
    os.close(write_pipe)
    pump.join(5)
    assert not pump.is_alive()
    run.end()
    assert run.log_path.read_text() == "still read\n"


def test_same_destination_is_one_terminal_pipe_or_file_but_not_dev_null(tmp_path):
    opened = []

    def track(*fds):
        opened.extend(fds)
        return fds

    first, second = track(*os.pipe()), track(*os.pipe())
    assert same_destination(first[1], track(os.dup(first[1]))[0])  # 2>&1 into a pipe
    assert not same_destination(first[1], second[1])
    log = track(os.open(tmp_path / "out.log", os.O_WRONLY | os.O_CREAT))[0]
    assert same_destination(log, track(os.open(tmp_path / "out.log", os.O_WRONLY | os.O_APPEND))[0])
    assert not same_destination(log, track(os.open(tmp_path / "err.log", os.O_WRONLY | os.O_CREAT))[0])
    # /dev/null: nobody sees the order, so the streams may stay apart
    assert not same_destination(*track(os.open(os.devnull, os.O_WRONLY), os.open(os.devnull, os.O_WRONLY)))
    master, slave = track(*pty.openpty())
    assert same_destination(slave, track(os.open(os.ttyname(slave), os.O_WRONLY))[0])
    assert not same_destination(slave, track(*pty.openpty())[1])
    assert not same_destination(slave, 12345)  # not open
    for fd in opened:
        os.close(fd)


# -- the in-process capture (@monitor, Experiment) keeps the order of descriptors 1 and 2 --------

PAIRS = 300
EXPECTED = [text for i in range(PAIRS) for text in (f"out {i}", f"err {i}")]

ALTERNATING = f"""
import os, sys
from hyperdash import monitor

how = sys.argv[1] if len(sys.argv) > 1 else "print"

@monitor("alternating " + how)
def job():
    for i in range({PAIRS}):
        if how == "print":
            print(f"out {{i}}", flush=True)
            print(f"err {{i}}", file=sys.stderr, flush=True)
        else:  # straight to the descriptors, as C code or a child process writes
            os.write(1, b"out %d\\n" % i)
            os.write(2, b"err %d\\n" % i)

job()
"""


def stored_texts(account, name: str) -> list[dict]:
    run = account.wait_for_run(name, "success", timeout=60)
    return account.wait_for(lambda: (lines := account.logs(run["uuid"])) and len(lines) >= 2 * PAIRS and lines, 60)


@pytest.mark.parametrize("how", ["print", "os.write"])
def test_monitor_keeps_the_order_of_stdout_and_stderr_in_one_pipe(script, sdk_env, account, how):
    path = script(ALTERNATING)
    with busy_cpus():
        result = subprocess.run([sys.executable, str(path), how], env=sdk_env(), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)  # 2>&1
    assert result.returncode == 0, result.stdout[-2000:]
    assert shown_lines(result.stdout) == EXPECTED
    lines = stored_texts(account, f"alternating {how}")
    assert [line["text"] for line in lines] == EXPECTED


@pytest.mark.parametrize("how", ["print", "os.write"])
def test_monitor_keeps_the_order_of_stdout_and_stderr_in_a_terminal(script, sdk_env, account, how):
    path = script(ALTERNATING)
    with busy_cpus():
        rc, output = run_in_terminal([sys.executable, str(path), how], sdk_env(), timeout=120)
    assert rc == 0, output[-2000:]
    assert shown_lines(output) == EXPECTED
    lines = stored_texts(account, f"alternating {how}")
    assert [line["text"] for line in lines] == EXPECTED


def test_monitor_keeps_stderr_apart_where_it_goes_elsewhere(run_job, account):
    done = run_job(ALTERNATING)  # stdout and stderr to pipes of their own
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode().splitlines() == [f"out {i}" for i in range(PAIRS)]
    assert [line for line in done.stderr.decode().splitlines() if not line.startswith("hyperdash:")] == [
        f"err {i}" for i in range(PAIRS)]
    lines = stored_texts(account, "alternating print")
    assert [line["text"] for line in lines if line["stream"] == "stdout"] == [f"out {i}" for i in range(PAIRS)]
    assert [line["text"] for line in lines if line["stream"] == "stderr"] == [f"err {i}" for i in range(PAIRS)]


def test_the_local_log_never_glues_one_streams_output_onto_the_others_unfinished_line():
    run = Run("apart", echo=False, exit_timeout=0.0).start()
    run.write("stderr", b"\repoch 1:   0%|     | 0/40")  # a bar, redrawn on stderr
    run.write("stdout", b"epoch 0 done\n")  # read late from its own channel
    run.write("stderr", b"\repoch 1: 100%|#####| 40/40\n")
    run.write("stdout", b"no newline yet")
    run.write("stdout", b", now one\n")
    run.end()
    assert run.log_path.read_bytes() == (b"\repoch 1:   0%|     | 0/40\nepoch 0 done\n"
                                         b"\repoch 1: 100%|#####| 40/40\nno newline yet, now one\n")


# -- output to a file: the job writes it itself, and the file is read after it --------------------

TO_A_FILE = f"""
import os, stat, sys
from hyperdash import monitor

@monitor("to a file")
def job():
    print("descriptor 1 is the file itself:", stat.S_ISREG(os.fstat(1).st_mode), flush=True)
    for i in range({PAIRS}):
        print(f"out {{i}}", flush=True)
        os.write(2, b"err %d\\n" % i)
    sys.stdout.write("the last words, unflushed\\n")  # (in Python's buffer until the end)

job()
"""


def test_output_to_a_file_is_written_by_the_job_itself_and_read_after_it(script, sdk_env, account, tmp_path):
    path = script(TO_A_FILE)
    # > out.log 2>&1: one file, written by the job at no cost to its writes, in the order written
    out = tmp_path / "out.log"
    with open(out, "wb") as file, busy_cpus():
        result = subprocess.run([sys.executable, str(path)], env=sdk_env(), stdin=subprocess.DEVNULL,
                                stdout=file, stderr=subprocess.STDOUT, timeout=120)
    assert result.returncode == 0, out.read_bytes()[-2000:]
    expected = ["descriptor 1 is the file itself: True", *EXPECTED, "the last words, unflushed"]
    assert shown_lines(out.read_bytes()) == expected
    first = account.wait_for_run("to a file", "success", timeout=60)
    lines = account.wait_for(lambda: len(got := account.logs(first["uuid"])) >= len(expected) and got, 60)
    assert [line["text"] for line in lines] == expected

    # >> out.log 2> err.log: what the file held before is not the run's; each stream its own file
    appended, errors = tmp_path / "appended.log", tmp_path / "err.log"
    appended.write_bytes(b"from an earlier job\n")
    with open(appended, "ab") as file, open(errors, "wb") as err:
        result = subprocess.run([sys.executable, str(path)], env=sdk_env(), stdin=subprocess.DEVNULL,
                                stdout=file, stderr=err, timeout=120)
    assert result.returncode == 0, errors.read_bytes()[-2000:]
    assert shown_lines(appended.read_bytes()) == ["from an earlier job", "descriptor 1 is the file itself: True",
                                                  *[f"out {i}" for i in range(PAIRS)], "the last words, unflushed"]
    second = account.wait_for(lambda: [r for r in account.runs(name="to a file") if r["uuid"] != first["uuid"]], 60)[0]
    lines = account.wait_for(lambda: len(got := account.logs(second["uuid"])) >= 2 * PAIRS + 2 and got, 60)
    assert [line["text"] for line in lines if line["stream"] == "stdout"] == [
        "descriptor 1 is the file itself: True", *[f"out {i}" for i in range(PAIRS)], "the last words, unflushed"]
    assert [line["text"] for line in lines if line["stream"] == "stderr"] == [f"err {i}" for i in range(PAIRS)]


# A job that starts a helper process during its run, and waits for it after the run's end.
OUTLIVES_THE_RUN = """
import subprocess, sys, time
from hyperdash import Experiment

exp = Experiment("helper outlives the run")
helper = subprocess.Popen([sys.executable, "-c", "import time\\nfor i in range(6):\\n"
                           "    print('helper', i, flush=True)\\n    time.sleep(0.3)"])
time.sleep(0.5)
exp.end()
if sys.argv[1:] == ["wait"]:
    print("helper exit code:", helper.wait(), flush=True)
"""


@pytest.mark.parametrize("terminal", [False, True])
@pytest.mark.parametrize("job", ["waits", "exits"])
def test_a_process_started_during_the_run_writes_on_after_its_end(script, sdk_env, account, terminal, job):
    # Its channel used to be closed under it at the end: it died of SIGPIPE (a pipe) or
    # failed to write (a terminal), whether the job went on or exited.
    path = script(OUTLIVES_THE_RUN)
    argv = [sys.executable, str(path), *(["wait"] if job == "waits" else [])]
    if terminal:
        # (under a shell, as in a terminal: the session's leader, whose exit would hang up on all)
        rc, output = run_in_terminal(["/bin/sh", "-c", f"{shlex.join(argv)}; sleep 3"], sdk_env(), timeout=60)
    else:
        done = subprocess.run(argv, env=sdk_env(), stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
        rc, output = done.returncode, done.stdout
    assert rc == 0, output[-2000:]
    shown = [line for line in shown_lines(output) if not line.startswith("hyperdash:")]
    waited = ["helper exit code: 0"] if job == "waits" else []
    assert sorted(shown) == sorted([f"helper {i}" for i in range(6)] + waited)
    run = account.wait_for_run("helper outlives the run", "success", timeout=30)
    stored = [line["text"] for line in account.logs(run["uuid"])]
    assert stored and set(stored) <= {f"helper {i}" for i in range(6)}  # what came during the run, alone

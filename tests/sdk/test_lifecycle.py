"""How a run ends, and what the job sees: statuses, signals, exceptions, fork, the Experiment API."""

from __future__ import annotations

import fcntl
import os
import pty
import signal
import struct
import subprocess
import sys
import termios
import time

import pytest
from sdk_support import texts, traceback_from
from terminal_support import run_in_terminal


def start_job(script, env, code: str) -> subprocess.Popen:
    """A job that prints ``ready`` (flushed) when it is worth signalling."""
    return subprocess.Popen([sys.executable, str(script(code))], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


WAITING_JOB = """
import time
from hyperdash import monitor

@monitor("waiting")
def job():
    print("working", flush=True)
    print("ready", flush=True)
    time.sleep(60)

job()
"""


def wait_ready(proc: subprocess.Popen) -> None:
    for line in proc.stdout:
        if line.strip() == b"ready":
            return
    raise AssertionError(proc.stderr.read().decode())


def test_exception_fails_the_run_keeps_the_traceback_and_propagates(run_job, account):
    done = run_job("""
        from hyperdash import monitor

        @monitor("exploding")
        def job():
            print("about to fail")
            raise ValueError("boom")

        job()
    """)
    assert done.returncode == 1
    err = done.stderr.decode()
    assert err.count("ValueError: boom") == 1 and "Traceback" in err  # the terminal, once
    run = account.wait_for_run("exploding", status="failure")
    lines = account.logs(run["uuid"])
    assert texts(lines, "stdout") == ["about to fail"]
    stderr_text = "\n".join(texts(lines, "stderr"))
    assert "Traceback (most recent call last)" in stderr_text and stderr_text.endswith("ValueError: boom")


@pytest.mark.parametrize("fails", [
    """
        @monitor("traceback")
        def train():
            try:
                {}["lr"]
            except KeyError:
                raise RuntimeError("diverged")
    """,
    """
        def train():
            with Experiment("traceback"):
                try:
                    1 / 0
                except ZeroDivisionError as exc:
                    raise ValueError("bad step") from exc
    """,
], ids=["monitor", "experiment"])
def test_a_failed_runs_traceback_is_the_one_python_prints(run_job, account, fails):
    # It used to start where the SDK caught the exception (monitor.py's wrapper, the `with`
    # line), without the frames of the code that called the monitored function.
    done = run_job("""
        from hyperdash import Experiment, monitor
    """ + fails + """
        def main():
            train()

        if __name__ == "__main__":
            main()
    """)
    assert done.returncode == 1
    printed = traceback_from(done.stderr.decode())
    assert printed.count("Traceback (most recent call last):") == 2  # (a chained exception)
    assert ", in <module>" in printed and ", in main" in printed
    run = account.wait_for_run("traceback", status="failure")
    logged = "\n".join(texts(account.logs(run["uuid"]), "stderr"))
    assert traceback_from(logged) == printed
    assert run["failure"]["summary"] == printed.splitlines()[-1]


def test_sys_exit_code_is_kept(run_job, account):
    done = run_job("""
        import sys
        from hyperdash import monitor

        @monitor("exit three")
        def job():
            sys.exit(3)

        job()
    """)
    assert done.returncode == 3
    run = account.wait_for_run("exit three", status="failure")
    assert run["exit_code"] == 3


def test_ctrl_c_is_user_canceled(script, sdk_env, account):
    proc = start_job(script, sdk_env(), WAITING_JOB)
    wait_ready(proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode != 0 and b"KeyboardInterrupt" in err
    run = account.wait_for_run("waiting", status="user_canceled")
    assert texts(account.logs(run["uuid"]))[:2] == ["working", "ready"]


def test_sigterm_is_killed_and_the_process_dies_of_it(script, sdk_env, account):
    proc = start_job(script, sdk_env(), WAITING_JOB)
    wait_ready(proc)
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGTERM
    assert time.monotonic() - started < 10
    run = account.wait_for_run("waiting", status="killed")
    assert run["signal"] == "SIGTERM"
    assert texts(account.logs(run["uuid"]))[:2] == ["working", "ready"]


def test_capture_io_false_sends_params_metrics_and_status_only(run_job, account):
    done = run_job("""
        from hyperdash import Experiment

        exp = Experiment("no capture", capture_io=False)
        exp.param("layers", 3)
        print("only on the terminal")
        exp.metric("loss", 0.5)
        exp.end()
    """)
    assert done.returncode == 0, done.stderr
    assert "only on the terminal" in done.stdout.decode()
    run = account.wait_for_run("no capture", status="success")
    assert account.logs(run["uuid"]) == []
    detail = account.run(run["uuid"])
    assert detail["params"] == {"layers": 3} and detail["metrics"]["loss"]["value"] == 0.5


def test_experiment_api(run_job, account):
    done = run_job("""
        import numpy as np
        from hyperdash import Experiment

        with Experiment("api") as exp:
            assert exp.param("lr", np.float32(0.5)) == np.float32(0.5)
            assert exp.param("optimizer", "adam") == "adam"
            assert exp.param("augment", True) is True
            for step in range(5):
                assert exp.metric("loss", np.float64(1 / (step + 1)), step=np.int64(step)) == 1 / (step + 1)
            for bad, kind in (("high", TypeError), ([1], TypeError)):
                try:
                    exp.metric("loss", bad)
                except kind as exc:
                    print("refused:", exc)
            try:
                exp.param("", 1)
            except ValueError as exc:
                print("refused:", exc)
            exp.metric("loss", float("nan"))  # not recorded, the job goes on
        exp.end()  # a second end does nothing
        print("done")
    """)
    assert done.returncode == 0, done.stderr
    out = done.stdout.decode().splitlines()
    assert "{ lr: 0.5 }" in out and "{ optimizer: adam }" in out  # echoed as the original did
    assert "| loss:   1.000000 |" in out
    assert sum(line.startswith("refused:") for line in out) == 3 and out[-1] == "done"
    assert done.stderr.decode().count("'loss' got nan") == 1
    run = account.wait_for_run("api", status="success")
    detail = account.run(run["uuid"])
    assert detail["params"] == {"lr": 0.5, "optimizer": "adam", "augment": True}
    series = account.get(f"/api/v1/runs/{run['uuid']}/metrics/loss").json()["points"]
    assert [(p["step"], p["value"]) for p in series] == [(s, 1 / (s + 1)) for s in range(5)]


def test_monitor_hands_exp_and_echo_can_be_off(run_job, account):
    done = run_job("""
        from hyperdash import monitor, Experiment

        @monitor("with exp")
        def job(exp):
            assert isinstance(exp, Experiment)
            exp.param("batch", 64, log=False)
            return "result"

        print(job())
        with Experiment("quiet", echo=False) as exp:
            exp.metric("m", 1)
    """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode().split() == ["result"]
    run = account.wait_for_run("with exp", status="success")
    assert account.run(run["uuid"])["params"] == {"batch": 64}
    account.wait_for_run("quiet", status="success")


def test_the_original_import_path_works(run_job, account):
    done = run_job("""
        from hyperdash.sdk import monitor

        @monitor("dogs vs. cats")
        def train_dogs_vs_cats():
            print("Epoch 1, accuracy: 50%")

        train_dogs_vs_cats()
    """)
    assert done.returncode == 0, done.stderr
    run = account.wait_for_run("dogs vs. cats", status="success")
    assert texts(account.logs(run["uuid"])) == ["Epoch 1, accuracy: 50%"]


def test_uncaught_exception_ends_an_unended_experiment_as_failure(run_job, account):
    done = run_job("""
        from hyperdash import Experiment

        exp = Experiment("never ended")
        print("working")
        raise RuntimeError("lost control")
    """)
    assert done.returncode == 1
    run = account.wait_for_run("never ended", status="failure")
    assert "RuntimeError: lost control" in "\n".join(texts(account.logs(run["uuid"]), "stderr"))


@pytest.mark.parametrize("capture_io", [True, False])
def test_an_uncaught_exception_fails_the_run_whoever_prints_it(run_job, account, capture_io):
    # A hook of the program's own put in place after ours (rich.traceback.install() does so)
    # used to leave the run success; and without capture_io, no traceback reached the log.
    name = f"own hook, capture {capture_io}"
    done = run_job(f"""
        import sys, traceback
        from hyperdash import Experiment

        exp = Experiment({name!r}, capture_io={capture_io})
        sys.excepthook = lambda kind, exc, tb: print("in my own words:", exc, file=sys.stderr)
        raise RuntimeError("CUDA out of memory")
    """)
    assert done.returncode == 1
    assert "in my own words: CUDA out of memory" in done.stderr.decode()
    run = account.wait_for_run(name, status="failure")
    logged = texts(account.logs(run["uuid"]), "stderr")
    if capture_io:  # the log holds what the terminal showed
        assert logged == ["in my own words: CUDA out of memory"]
    else:  # nothing captured what was printed: the log gets the traceback
        assert "Traceback (most recent call last):" in logged
        assert run["failure"]["summary"] == "RuntimeError: CUDA out of memory"


@pytest.mark.parametrize("ending, status, exit_code", [
    ("sys.exit(3)", "failure", 3),
    ("sys.exit(0)", "success", 0),
    ("sys.exit('bad input')", "failure", 1),
    ("pass", "success", None),  # the thread's sys.exit(5) ended only the thread
    # site's exit and quit, which raise SystemExit themselves (these used to end success)
    ("exit(4)", "failure", 4),
    ("quit(5)", "failure", 5),
    # codes as the process exits with them (these used to be refused by the server: the run
    # went lost)
    ("sys.exit(True)", "failure", 1),
    ("sys.exit(256)", "success", 0),
    ("sys.exit(-1)", "failure", 255),
    ("sys.exit(2**70)", "failure", 255),
])
def test_sys_exit_ends_an_unended_experiment_with_its_code(run_job, account, ending, status, exit_code):
    name = f"ends with {ending}"
    done = run_job(f"""
        import sys, threading
        from hyperdash import Experiment

        exp = Experiment({name!r})
        print("working")
        thread = threading.Thread(target=sys.exit, args=(5,))
        thread.start()
        thread.join()
        {ending}
    """)
    assert done.returncode == (exit_code or 0), done.stderr
    run = account.wait_for_run(name, status=status)
    assert run["exit_code"] == exit_code


def test_fork_child_output_is_captured_once_by_the_parent(run_job, account):
    done = run_job("""
        import os, sys
        from hyperdash import monitor

        @monitor("forking")
        def job(exp):
            print("parent before", flush=True)
            pid = os.fork()
            if pid == 0:
                print("child says hi", flush=True)
                exp.metric("child metric", 1)  # not recorded: the run belongs to the parent
                exp.param("child param", 2, log=False)  # neither, and no second warning
                sys.stdout.flush()
                os._exit(0)
            os.waitpid(pid, 0)
            print("parent after")

        job()
    """)
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.decode().splitlines() if "forked child" in line]
    assert len(warnings) == 1 and "'child metric'" in warnings[0] and "not recorded" in warnings[0]
    runs = account.runs(name="forking")
    assert len(runs) == 1
    run = account.wait_for_run("forking", status="success")
    lines = texts(account.logs(run["uuid"]))
    assert lines == ["parent before", "child says hi", "| child metric: 1 |", "parent after"]
    job_metrics = [name for name, point in account.run(run["uuid"])["metrics"].items() if not point["internal"]]
    assert job_metrics == []  # (the system metrics are the parent's)


def test_a_child_told_to_end_as_soon_as_it_is_forked_ends(run_job, account):
    # Python drops a signal that a forked child gets before it has set itself up, while the
    # parent's handlers are its own: a pool's terminate() sent to a worker that had just started
    # went unheard, and the pool's exit waited for that worker forever.
    done = run_job("""
        import collections, os, signal, time
        from hyperdash import monitor

        @monitor("forks told to end")
        def job():
            handlers = lambda: [signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)]
            ours = handlers()
            ends = collections.Counter()
            for sig in [signal.SIGTERM, signal.SIGHUP] * 20:
                pid = os.fork()
                if pid == 0:
                    time.sleep(0.3)
                    os._exit(7)  # (it lived on)
                os.kill(pid, sig)
                _, status = os.waitpid(pid, 0)
                ends[os.WTERMSIG(status) == sig if os.WIFSIGNALED(status) else os.waitstatus_to_exitcode(status)] += 1
            print("ended by the signal", ends[True], "of 40; lived on", ends[7])
            print("the parent keeps its handlers", handlers() == ours)

        job()
    """)
    assert done.returncode == 0, done.stderr
    run = account.wait_for_run("forks told to end", status="success")
    assert texts(account.logs(run["uuid"])) == ["ended by the signal 40 of 40; lived on 0",
                                                "the parent keeps its handlers True"]


def test_terminal_is_unchanged_under_a_pty(script, sdk_env):
    code = """
        import sys
        from hyperdash import monitor

        @monitor("tty")
        def job():
            print("isatty", sys.stdout.isatty())
            sys.stdout.write("\\x1b[32mgreen\\x1b[0m\\n")
            for i in range(3):
                sys.stdout.write(f"\\r{i}/3")
            print()
        job()
    """
    plain_code = code.replace("@monitor(\"tty\")", "")

    def run_in_pty(path) -> bytes:
        master, slave = pty.openpty()
        proc = subprocess.Popen([sys.executable, str(path)], env=sdk_env(), stdin=subprocess.DEVNULL,
                                stdout=slave, stderr=subprocess.DEVNULL)
        os.close(slave)
        out = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        proc.wait(timeout=30)
        os.close(master)
        return out

    monitored, plain = run_in_pty(script(code)), run_in_pty(script(plain_code))
    assert b"isatty True" in plain
    assert monitored == plain


def test_a_terminal_resize_reaches_the_job_and_its_own_handler(script, sdk_env):
    path = script("""
        import os, signal, time
        from hyperdash import monitor

        seen = []  # the widths the job's own SIGWINCH handler read
        signal.signal(signal.SIGWINCH, lambda *_: seen.append(os.get_terminal_size(1).columns))

        @monitor("resized")
        def job():
            before = os.get_terminal_size(1)
            print("ready", before.columns, before.lines, flush=True)
            deadline = time.monotonic() + 20
            while 111 not in seen and time.monotonic() < deadline:
                time.sleep(0.02)
            size = os.get_terminal_size(1)
            print("size", size.columns, size.lines, "handler saw", seen[-1:], flush=True)
        job()
        print("after", signal.getsignal(signal.SIGWINCH).__name__, flush=True)
    """)
    resized = []

    def resize_when_ready(output, master):
        if b"ready" in output and not resized:
            resized.append(True)
            fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 111, 0, 0))

    rc, output = run_in_terminal([sys.executable, str(path)], sdk_env(), on_output=resize_when_ready)
    assert rc == 0, output
    assert b"ready 80 24" in output, output
    assert b"size 111 33 handler saw [111]" in output, output
    assert b"after <lambda>" in output, output  # the job's handler is left in place


def test_output_written_just_before_os_exit_reaches_the_terminal_and_the_spool(script, sdk_env, account,
                                                                               hyperdash_home):
    path = script("""
        import os, threading
        from hyperdash import Experiment

        exp = Experiment("cut short")
        print("some output")
        printer = threading.Thread(target=print, args=("from a thread",))
        printer.start()
        printer.join()
        print("last words", flush=True)
        print("and no newline", end="", flush=True)
        print("left in Python's buffer", end="")
        os._exit(3)  # no end, no flush of Python's buffers: only what reached the terminal
    """)
    rc, output = run_in_terminal([sys.executable, str(path)], sdk_env())
    assert rc == 3
    shown = output.replace(b"\r\n", b"\n").splitlines()
    assert shown[0].startswith(b"hyperdash: follow this run at "), output  # said as the run starts
    shown = shown[1:]
    assert shown[0] == b"some output" and b"from a thread" in shown, output
    assert shown[-2:] == [b"last words", b"and no newline"], output

    sync = subprocess.run([sys.executable, "-m", "hyperdash", "sync"], env=sdk_env(), capture_output=True,
                          timeout=60)
    assert sync.returncode == 0, sync.stderr
    run = account.wait_for_run("cut short")
    assert run["status"] == "running"  # never ended: the server decides when it is lost
    assert sorted(texts(account.logs(run["uuid"]))) == sorted(["some output", "from a thread", "last words",
                                                              "and no newline"])


def test_next_run_uploads_an_orphaned_spool(run_job, account, hyperdash_home):
    crashed = run_job("""
        import os, time
        from hyperdash import monitor

        @monitor("crashed")
        def job():
            for i in range(100):
                print("line", i, flush=True)
            time.sleep(0.3)  # captured into the spool, not sent yet (the first send waits 1s)
            os._exit(9)  # no end, no flush: the spool is all that is left

        job()
    """)
    assert crashed.returncode == 9
    assert len(list((hyperdash_home / "spool").iterdir())) == 1
    assert account.runs(name="crashed") == []
    later = run_job("""
        from hyperdash import monitor
        import time

        @monitor("later")
        def job():
            time.sleep(1)  # long enough for its first look around

        job()
    """)
    assert later.returncode == 0, later.stderr
    run = account.wait_for_run("crashed", timeout=30)
    account.wait_for(lambda: len(account.logs(run["uuid"])) == 100, timeout=30)
    assert texts(account.logs(run["uuid"])) == [f"line {i}" for i in range(100)]
    assert run["status"] == "running"  # it never ended; the server decides when it is lost
    account.wait_for(lambda: not any((hyperdash_home / "spool").iterdir()), timeout=30)


@pytest.mark.parametrize("bad", ["", 7])
def test_bad_run_names_are_refused(bad):
    from hyperdash import Experiment

    with pytest.raises((TypeError, ValueError)):
        Experiment(bad)


def test_a_monitored_call_inside_another_takes_the_output_for_its_time_and_gives_it_back(run_job, account):
    # The outer run used to end success when the inner one started (it later raised), and what
    # it recorded after was dropped without a word.
    done = run_job("""
        from hyperdash import monitor

        @monitor("evaluate")
        def evaluate(exp):
            print("evaluating")
            exp.metric("val_acc", 0.8)

        @monitor("train")
        def train(exp):
            print("epoch 1")
            evaluate()
            exp.metric("train_loss", 0.1)
            print("epoch 2")
            raise RuntimeError("diverged")

        train()
    """)
    assert done.returncode == 1
    inner = account.wait_for_run("evaluate", status="success")
    assert texts(account.logs(inner["uuid"])) == ["evaluating", "| val_acc:   0.800000 |"]
    outer = account.wait_for_run("train", status="failure")
    logged = texts(account.logs(outer["uuid"]))
    assert logged[:3] == ["epoch 1", "| train_loss:   0.100000 |", "epoch 2"]
    assert "RuntimeError: diverged" in logged
    assert account.run(outer["uuid"])["metrics"]["train_loss"]["value"] == 0.1
    assert "was ended" not in done.stderr.decode()

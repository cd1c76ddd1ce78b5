"""Every captured line reaches the server once and in order, whatever the server does."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from sdk_support import texts


def wait_file(path: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.02)


# A job in three phases: it prints a block, touches <flags>/printed-N, waits for <flags>/go-N.
PHASED_JOB = """
import sys, time
from pathlib import Path
from hyperdash import monitor

flags = Path(sys.argv[1])

def wait(name):
    deadline = time.monotonic() + 60
    while not (flags / name).exists():
        assert time.monotonic() < deadline, name
        time.sleep(0.02)

@monitor("phased")
def job():
    for phase in range(3):
        for i in range(100):
            print(f"phase {phase} line {i}")
        sys.stdout.flush()
        (flags / f"printed-{phase}").touch()
        if phase < 2:
            wait(f"go-{phase}")

job()
"""


def expected_phased() -> list[str]:
    return [f"phase {p} line {i}" for p in range(3) for i in range(100)]


def start_phased(script, env, tmp_path) -> tuple[subprocess.Popen, Path]:
    flags = tmp_path / "flags"
    flags.mkdir()
    proc = subprocess.Popen([sys.executable, str(script(PHASED_JOB)), str(flags)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    return proc, flags


def first_warning(proc: subprocess.Popen) -> bytes:
    """The job's stderr up to its first warning: the line that says where to follow the run,
    then the warning line."""
    follow = proc.stderr.readline()
    assert b"follow this run at" in follow, follow
    return follow + proc.stderr.readline()


def test_every_line_once_in_order_with_both_streams(run_job, account):
    done = run_job("""
        import sys
        from hyperdash import monitor

        @monitor("in order")
        def job():
            for i in range(3000):
                print(f"out {i}")
                if i % 100 == 0:
                    print(f"err {i}", file=sys.stderr)
            return 42

        print("returned", job())
    """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode().splitlines()[-1] == "returned 42"
    run = account.wait_for_run("in order", status="success")
    lines = account.logs(run["uuid"])
    seqs = [line["seq"] for line in lines]
    assert seqs == sorted(set(seqs))
    assert texts(lines, "stdout") == [f"out {i}" for i in range(3000)]
    assert texts(lines, "stderr") == [f"err {i}" for i in range(0, 3000, 100)]
    # the terminal got the same bytes, and the path of the local log
    assert done.stdout.decode().splitlines()[:3000] == [f"out {i}" for i in range(3000)]
    log_path = re.search(r"the log of this run is at (.+)", done.stderr.decode()).group(1)
    log = Path(log_path).read_text().splitlines()
    assert [line for line in log if line.startswith("out ")] == [f"out {i}" for i in range(3000)]
    assert [line for line in log if line.startswith("err ")] == [f"err {i}" for i in range(0, 3000, 100)]


def test_server_down_for_the_first_half_then_up(server_factory, script, tmp_path, hyperdash_home):
    server = server_factory()
    account = server.signup()
    server.stop()
    env = account.sdk_env(hyperdash_home)
    env.update(HYPERDASH_EXIT_TIMEOUT="15")
    proc, flags = start_phased(script, env, tmp_path)
    wait_file(flags / "printed-0")
    first = first_warning(proc)  # the job has tried to send, and failed
    assert b"cannot reach" in first, first
    (flags / "go-0").touch()
    wait_file(flags / "printed-1")
    server.start()
    (flags / "go-1").touch()
    stderr = first + proc.communicate(timeout=60)[1]
    assert proc.returncode == 0, stderr
    assert stderr.decode().count("cannot reach") == 1, stderr  # one warning line, not one per try
    run = account.wait_for_run("phased", status="success", timeout=30)
    assert texts(account.logs(run["uuid"])) == expected_phased()


def test_server_restarted_mid_run(server_factory, script, tmp_path, hyperdash_home):
    server = server_factory()
    account = server.signup()
    env = account.sdk_env(hyperdash_home)
    env.update(HYPERDASH_EXIT_TIMEOUT="15")
    proc, flags = start_phased(script, env, tmp_path)
    wait_file(flags / "printed-0")
    run = account.wait_for_run("phased")
    account.wait_for(lambda: len(account.logs(run["uuid"])) == 100)  # sent live, before any exit
    server.stop()
    (flags / "go-0").touch()
    wait_file(flags / "printed-1")
    time.sleep(1.0)
    server.start()
    (flags / "go-1").touch()
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    account.wait_for_run("phased", status="success", timeout=30)
    assert texts(account.logs(run["uuid"])) == expected_phased()


@pytest.fixture
def silent_server():
    """A server that takes connections and never answers: its ``url``, and the connections it
    ``held``."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept_and_say_nothing():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept_and_say_nothing, daemon=True)
    thread.start()
    yield SimpleNamespace(url=f"http://127.0.0.1:{listener.getsockname()[1]}", held=held)
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    listener.close()


def test_server_that_never_answers_exit_is_bounded(run_job, sdk_env, hyperdash_home, silent_server):
    env = sdk_env(HYPERDASH_SERVER=silent_server.url, HYPERDASH_EXIT_TIMEOUT="2", HYPERDASH_UPLOADER_PATIENCE="1")
    started = time.monotonic()
    done = run_job("""
        import time
        from hyperdash import monitor

        @monitor("hanging server")
        def job():
            for i in range(20):
                print("line", i)
            time.sleep(1.5)  # long enough for a send to start and hang

        job()
    """, env=env)
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    assert elapsed < 8, f"exit took {elapsed:.1f}s"
    assert silent_server.held, "the job never connected to the server"
    err = done.stderr.decode()
    assert re.search(r"\d+ events of this run are not sent yet", err), err
    spools = list((hyperdash_home / "spool").iterdir())
    assert len(spools) == 1 and (spools[0] / "events").stat().st_size > 0


def test_401_then_rotated_key_in_the_key_file(account, script, tmp_path, hyperdash_home):
    key_file = hyperdash_home / "hyperdash.json"
    key_file.write_text('{"api_key": "not-a-valid-key"}')
    env = account.sdk_env(hyperdash_home)
    del env["HYPERDASH_API_KEY"]
    env.update(HYPERDASH_KEY_REFRESH_SECONDS="1", HYPERDASH_EXIT_TIMEOUT="15")
    flags = tmp_path / "flags"
    flags.mkdir()
    proc = subprocess.Popen([sys.executable, str(script(PHASED_JOB)), str(flags)], env=env, cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    wait_file(flags / "printed-0")
    first = first_warning(proc)  # the first send was refused
    assert b"refused the API key (401" in first, first
    assert account.runs(name="phased") == []
    key_file.write_text(json.dumps({"api_key": account.api_key}))
    (flags / "go-0").touch()
    wait_file(flags / "printed-1")
    run = account.wait_for_run("phased", timeout=20)  # arrives while the job still runs
    (flags / "go-1").touch()
    stderr = first + proc.communicate(timeout=60)[1]
    assert proc.returncode == 0, stderr
    assert stderr.decode().count("refused the API key (401") == 1, stderr
    account.wait_for_run("phased", status="success")
    assert texts(account.logs(run["uuid"])) == expected_phased()


def test_threads_printing_together_never_mix_lines(run_job, sdk_env, account):
    # Unbuffered, so that each line is one write(2): CPython's buffered text streams are not
    # thread-safe on their own (they may repeat or drop a line with no capture at all).
    done = run_job("""
        import sys, threading
        from hyperdash import monitor

        def worker(n):
            for i in range(2000):
                sys.stdout.write(f"thread {n} line {i} " + "z" * (i % 97) + "\\n")

        @monitor("threads")
        def job():
            threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()

        job()
    """, env=sdk_env(PYTHONUNBUFFERED="1"))
    assert done.returncode == 0, done.stderr
    run = account.wait_for_run("threads", status="success")
    lines = texts(account.logs(run["uuid"]))
    assert lines == done.stdout.decode().splitlines()  # what the terminal got, line for line
    per_thread: dict[int, list[int]] = {}
    for text in lines:
        match = re.fullmatch(r"thread (\d) line (\d+) (z*)", text)
        assert match, f"mixed line: {text!r}"
        n, i = int(match.group(1)), int(match.group(2))
        assert len(match.group(3)) == i % 97
        per_thread.setdefault(n, []).append(i)
    assert per_thread == {n: list(range(2000)) for n in range(6)}


def test_unicode_invalid_utf8_ansi_and_long_lines(run_job, account):
    done = run_job("""
        import os, sys
        from hyperdash import monitor

        @monitor("odd bytes")
        def job():
            print("héllo wörld — 日本語 🚀 عربى")
            print("\\x1b[31mred\\x1b[0m and plain")
            sys.stdout.flush()
            os.write(1, b"bad \\xff\\xfe bytes\\n")
            print("é" * 20000)  # 40,000 bytes: longer than one line may be
            print("after")

        job()
    """)
    assert done.returncode == 0, done.stderr
    assert b"bad \xff\xfe bytes\n" in done.stdout  # the terminal got the bytes unchanged
    run = account.wait_for_run("odd bytes", status="success")
    lines = account.logs(run["uuid"])
    assert lines[0]["text"] == "héllo wörld — 日本語 🚀 عربى"
    assert lines[1]["text"] == "\x1b[31mred\x1b[0m and plain"
    assert lines[2]["text"] == "bad \ufffd\ufffd bytes"
    pieces = lines[3:-1]
    assert len(pieces) == 3
    assert [p["partial"] for p in pieces] == [True, True, False]
    assert "".join(p["text"] for p in pieces) == "é" * 20000  # no character cut in two
    assert lines[-1]["text"] == "after"


def test_tqdm_progress_bar_is_one_line_with_its_final_state(run_job, account):
    done = run_job("""
        import time
        from tqdm import tqdm
        from hyperdash import monitor

        @monitor("progress")
        def job():
            print("before")
            for i in tqdm(range(300), mininterval=0, miniters=1):
                time.sleep(0.005)
            print("after")

        job()
    """)
    assert done.returncode == 0, done.stderr
    assert done.stderr.count(b"\r") >= 300  # the terminal saw every redraw
    run = account.wait_for_run("progress", status="success")
    lines = account.logs(run["uuid"])
    assert texts(lines, "stdout") == ["before", "after"]
    bar = [line for line in lines if line["stream"] == "stderr"]
    assert 1 <= len(bar) <= 20, len(bar)
    final = bar[-1]
    assert not final["progress"] and "300/300" in final["text"] and "100%" in final["text"]


def test_spool_folder_unwritable_falls_back_to_memory(run_job, sdk_env, account, hyperdash_home):
    (hyperdash_home / "spool").write_text("not a folder")
    done = run_job("""
        from hyperdash import monitor

        @monitor("no spool")
        def job():
            for i in range(50):
                print("line", i)

        job()
    """)
    assert done.returncode == 0, done.stderr
    assert done.stderr.decode().count("cannot write the spool") == 1
    run = account.wait_for_run("no spool", status="success")
    assert texts(account.logs(run["uuid"])) == [f"line {i}" for i in range(50)]


def interrupt_the_last_send(argv: list[str], env: dict[str, str],
                            sig: int = signal.SIGINT) -> tuple[int, bytes, str]:
    """Run ``argv``, which prints ``done`` and then ends a run whose server never answers;
    ``sig`` (Ctrl-C) while it waits for the server: its exit code, the rest of its stdout, its
    stderr."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            env={**env, "HYPERDASH_EXIT_TIMEOUT": "60"})
    try:
        assert proc.stdout.readline() == b"done\n"
        time.sleep(1.5)  # (in the wait for the server by now)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=15)
    finally:
        proc.kill()
    said = err.decode()
    assert re.search(r"\d+ events of this run are not sent yet", said), said
    return proc.returncode, out, said


# The run ends as the program exits (the interrupt only ends the wait), or at exp.end() (the
# program gets the interrupt there).
@pytest.mark.parametrize("ending, exit_code", [("pass", 0), ("exp.end(); print('after the end')", -signal.SIGINT)])
def test_ctrl_c_while_the_last_events_are_sent_ends_the_wait_and_keeps_them(script, sdk_env, hyperdash_home,
                                                                            silent_server, ending, exit_code):
    # It used to print a traceback through the SDK's threads (twice chained), and left the
    # program's sys.exit hooked after an end() it interrupted.
    path = script(f"""
        import sys
        from hyperdash import Experiment

        exp = Experiment("interrupted flush")
        print("done", flush=True)
        {ending}
    """)
    returncode, out, said = interrupt_the_last_send([sys.executable, str(path)],
                                                    sdk_env(HYPERDASH_SERVER=silent_server.url))
    assert returncode == exit_code, said
    assert "shipper" not in said and "During handling" not in said and "Exception ignored" not in said
    assert b"after the end" not in out
    if exit_code:
        assert said.count("Traceback") == 1 and said.rstrip().endswith("KeyboardInterrupt")
    spools = list((hyperdash_home / "spool").iterdir())
    assert len(spools) == 1 and (spools[0] / "events").stat().st_size > 0


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_while_hyperdash_run_sends_its_last_events_exits_as_the_command_did(sdk_env, silent_server, sig):
    # It used to say "Aborted!" and exit 1 (Ctrl-C), or die of SIGTERM without a word of the
    # events it kept, though the command had exited 0.
    returncode, _, said = interrupt_the_last_send(
        [sys.executable, "-m", "hyperdash", "run", "-n", "interrupted flush", "echo", "done"],
        sdk_env(HYPERDASH_SERVER=silent_server.url), sig)
    assert returncode == 0 and "Aborted" not in said, said

"""``hyperdash run`` and ``hyperdash pipe`` with real child processes, against the real server."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shlex
import signal
import struct
import subprocess
import termios
import time

import pytest
from cli_support import HYPERDASH, py
from terminal_support import run_in_terminal

# A child that waits for SIGINT or SIGTERM, says how many copies it got, then dies of it. It
# takes them with sigwaitinfo, so a copy that comes a moment after the first is counted apart.
COUNTS_SIGNALS = """
import os, signal
watched = {signal.SIGINT, signal.SIGTERM}
signal.pthread_sigmask(signal.SIG_BLOCK, watched)
print("ready", flush=True)
got = [signal.sigtimedwait(watched, 30)]
while (info := signal.sigtimedwait(watched, 0.5)) is not None:
    got.append(info)
print("signals", len(got), flush=True)
signal.signal(got[0].si_signo, signal.SIG_DFL)
os.kill(os.getpid(), got[0].si_signo)
signal.pthread_sigmask(signal.SIG_UNBLOCK, watched)
"""


def texts(lines: list[dict], stream: str | None = None) -> list[str]:
    return [line["text"] for line in lines if stream is None or line["stream"] == stream]


def test_exit_code_and_both_streams(hd, account):
    code = "import sys; print('to stdout'); print('to stderr', file=sys.stderr); sys.exit(3)"
    result = hd("run", "-n", "exit three", *py(code))
    assert result.returncode == 3
    assert result.stdout == b"to stdout\n"
    # After the one line that says where to follow the run, which hyperdash says as it starts.
    follow, rest = result.stderr.split(b"\n", 1)
    assert follow.startswith(b"hyperdash: follow this run at ") and rest.startswith(b"to stderr\n")
    assert b"Traceback" not in result.stderr
    run = account.wait_for_run("exit three", "failure")
    assert run["exit_code"] == 3 and run["api"] == "cli_run"
    lines = account.logs(run["uuid"])
    assert texts(lines, "stdout") == ["to stdout"]
    assert texts(lines, "stderr") == ["to stderr"]


def test_arguments_reach_the_child_unchanged_and_success(hd, account):
    args = ["-n", "inner", "--", "$HOME", "two words", "*", ""]
    result = hd("run", "-n", "argv", *py("import json, sys; print(json.dumps(sys.argv[1:]))"), *args)
    assert result.returncode == 0
    assert json.loads(result.stdout) == args  # no shell: nothing expanded, split or dropped
    run = account.wait_for_run("argv", "success")
    assert run["exit_code"] == 0 and run["signal"] is None


def test_child_that_prints_nothing(hd, account):
    result = hd("run", "-n", "silent", "true")
    assert result.returncode == 0 and result.stdout == b""
    run = account.wait_for_run("silent", "success")
    assert account.logs(run["uuid"]) == []


def test_child_killed_by_a_signal(hd, account):
    code = "import os, signal; print('going', flush=True); os.kill(os.getpid(), signal.SIGTERM)"
    result = hd("run", "-n", "self-terminated", *py(code))
    assert result.returncode == 128 + signal.SIGTERM
    run = account.wait_for_run("self-terminated", "killed")
    assert run["signal"] == "SIGTERM"
    assert texts(account.logs(run["uuid"])) == ["going"]


def start_counting_child(account, home, name: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        [*HYPERDASH, "run", "-n", name, *py(COUNTS_SIGNALS)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
        env=account.sdk_env(home),
    )
    assert proc.stdout.readline() == b"ready\n"
    return proc


@pytest.mark.parametrize(
    "sig, status, exit_code",
    [(signal.SIGINT, "user_canceled", 130), (signal.SIGTERM, "killed", 143), (signal.SIGHUP, "killed", 129)],
)
def test_signal_to_hyperdash_reaches_the_child_once(account, hyperdash_home, sig, status, exit_code):
    name = f"forwarded {sig.name}"
    proc = start_counting_child(account, hyperdash_home, name)
    if sig == signal.SIGHUP:
        # The child counts SIGINT and SIGTERM only; a SIGHUP simply kills it.
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == exit_code
        assert account.wait_for_run(name, status)["signal"] == "SIGHUP"
        return
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    assert out == b"signals 1\n", err
    assert proc.returncode == exit_code
    run = account.wait_for_run(name, status)
    assert run["signal"] == sig.name
    assert texts(account.logs(run["uuid"])) == ["ready", "signals 1"]


# A child that reports each of these signals as it gets it, and ends after the last one.
REPORTS_OTHER_SIGNALS = """
import signal
watched = [signal.SIGALRM, signal.SIGUSR1, signal.SIGPWR, signal.SIGRTMIN + 3, signal.SIGABRT]
signal.pthread_sigmask(signal.SIG_BLOCK, watched)
print("ready", flush=True)
for _ in watched:
    print("got", signal.sigtimedwait(watched, 30).si_signo, flush=True)
"""


def test_every_other_signal_is_passed_on_and_leaves_hyperdash_watching(account, hyperdash_home):
    # SIGALRM, SIGPWR or a real-time signal used to kill hyperdash itself, leaving the command
    # running unwatched and its run to go lost.
    proc = subprocess.Popen([*HYPERDASH, "run", "-n", "other signals", *py(REPORTS_OTHER_SIGNALS)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            env=account.sdk_env(hyperdash_home))
    assert proc.stdout.readline() == b"ready\n"
    sent = [signal.SIGALRM, signal.SIGUSR1, signal.SIGPWR, signal.SIGRTMIN + 3, signal.SIGABRT]
    for sig in sent:
        proc.send_signal(sig)
        assert proc.stdout.readline() == f"got {int(sig)}\n".encode()
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    run = account.wait_for_run("other signals", "success")
    assert texts(account.logs(run["uuid"])) == ["ready", *(f"got {int(sig)}" for sig in sent)]


@pytest.mark.parametrize("sig, name", [(signal.SIGALRM, "SIGALRM"), (signal.SIGRTMIN + 6, "SIGRTMIN+6"),
                                       (signal.SIGRTMAX - 1, "SIGRTMAX-1")])
def test_a_child_killed_by_any_signal_ends_killed_with_that_signal_named(hd, account, sig, name):
    # A real-time signal used to crash hyperdash (no name for it), and the run went lost.
    code = f"import os; print('going', flush=True); os.kill(os.getpid(), {int(sig)})"
    result = hd("run", "-n", f"died of {name}", *py(code))
    assert result.returncode == 128 + sig, result.stderr
    assert b"Traceback" not in result.stderr
    run = account.wait_for_run(f"died of {name}", "killed")
    assert (run["signal"], run["exit_code"]) == (name, 128 + sig)


def test_a_signal_to_hyperdash_that_kills_its_child_ends_the_run_killed(account, hyperdash_home):
    proc = subprocess.Popen([*HYPERDASH, "run", "-n", "alarm", *py("import time; print('ready', flush=True); "
                                                                   "time.sleep(30)")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            env=account.sdk_env(hyperdash_home))
    assert proc.stdout.readline() == b"ready\n"
    proc.send_signal(signal.SIGALRM)
    proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGALRM
    assert account.wait_for_run("alarm", "killed")["signal"] == "SIGALRM"


@pytest.mark.parametrize("sig, status", [(signal.SIGINT, "user_canceled"), (signal.SIGTERM, "killed"),
                                         (signal.SIGHUP, "killed")])
def test_a_child_that_catches_the_signal_and_exits_non_zero_still_ends_as_the_signal_says(
        account, hyperdash_home, sig, status):
    code = (f"import signal, sys, time\n"
            f"signal.signal({int(sig)}, lambda *_: sys.exit(3))\n"
            "print('ready', flush=True)\n"
            "time.sleep(30)\n")
    name = f"caught {sig.name}"
    proc = subprocess.Popen([*HYPERDASH, "run", "-n", name, *py(code)], env=account.sdk_env(hyperdash_home),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    assert proc.stdout.readline() == b"ready\n"
    proc.send_signal(sig)
    proc.communicate(timeout=30)
    assert proc.returncode == 3
    run = account.wait_for_run(name, status)
    assert run["exit_code"] == 3 and run["signal"] == (None if sig == signal.SIGINT else sig.name)


def test_terminal_child_sees_a_terminal_and_keeps_its_colours(account, hyperdash_home):
    code = (
        "import os, sys; print('tty', os.isatty(0), sys.stdout.isatty(), sys.stderr.isatty());"
        "print('\\x1b[31mred\\x1b[0m')"
    )
    rc, output = run_in_terminal(
        [*HYPERDASH, "run", "-n", "in a terminal", *py(code)], account.sdk_env(hyperdash_home)
    )
    assert rc == 0, output
    assert b"tty True True True\r\n" in output  # the terminal's own \n -> \r\n, once
    assert b"\x1b[31mred\x1b[0m\r\n" in output
    run = account.wait_for_run("in a terminal", "success")
    assert texts(account.logs(run["uuid"])) == ["tty True True True", "\x1b[31mred\x1b[0m"]


def test_terminal_resize_reaches_the_childs_terminal(account, hyperdash_home):
    code = (
        "import os, signal, time\n"
        "signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGWINCH})\n"
        "print('ready', flush=True)\n"
        "signal.sigtimedwait({signal.SIGWINCH}, 20)\n"
        "time.sleep(0.3)  # hyperdash copies the new size on its own SIGWINCH\n"
        "size = os.get_terminal_size(1)\n"
        "print('size', size.columns, size.lines, flush=True)\n"
    )
    resized = []

    def resize_when_ready(output, master):
        if b"ready" in output and not resized:
            resized.append(True)
            fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 111, 0, 0))

    rc, output = run_in_terminal([*HYPERDASH, "run", "-n", "resized", *py(code)],
                                 account.sdk_env(hyperdash_home), on_output=resize_when_ready)
    assert rc == 0 and b"size 111 33" in output, output


def test_ctrl_c_in_a_terminal_reaches_the_child_once(account, hyperdash_home):
    typed = []

    def press_ctrl_c_when_ready(output, master):
        if b"ready" in output and not typed:
            typed.append(True)
            os.write(master, b"\x03")  # the terminal sends SIGINT to the whole foreground group

    rc, output = run_in_terminal(
        [*HYPERDASH, "run", "-n", "ctrl-c", *py(COUNTS_SIGNALS)],
        account.sdk_env(hyperdash_home),
        on_output=press_ctrl_c_when_ready,
    )
    assert typed and b"signals 1\r\n" in output, output
    assert rc == 130
    run = account.wait_for_run("ctrl-c", "user_canceled")
    assert run["signal"] == "SIGINT"


def test_piped_child_sees_pipes_and_is_unbuffered(hd, account):
    code = ("import os, sys; print('tty', os.isatty(1), os.isatty(2), os.environ.get('PYTHONUNBUFFERED'), "
            "type(sys.stdout.buffer).__name__)")
    result = hd("run", "-n", "piped", *py(code))
    assert result.stdout == b"tty False False 1 FileIO\n"


def test_a_python_child_keeps_its_buffering_when_told_to(account, hyperdash_home):
    # The README's way for a command that prints a storm: PYTHONUNBUFFERED set empty.
    code = ("import os, sys\n"
            "print(repr(os.environ['PYTHONUNBUFFERED']), type(sys.stdout.buffer).__name__)\n"
            "for i in range(3000): print('buffered line %04d' % i)\n")
    env = {**account.sdk_env(hyperdash_home), "PYTHONUNBUFFERED": ""}
    result = subprocess.run([*HYPERDASH, "run", "-n", "kept buffering", *py(code)], env=env,
                            capture_output=True, stdin=subprocess.DEVNULL, timeout=60)
    assert result.returncode == 0, result.stderr
    expected = ["'' BufferedWriter"] + [f"buffered line {i:04d}" for i in range(3000)]
    assert result.stdout.decode().splitlines() == expected
    run = account.wait_for_run("kept buffering", "success")
    # blocks of 8 KiB cut lines in two: the run still holds each line whole, once
    assert texts(account.logs(run["uuid"])) == expected


def test_sigkill_of_the_child_loses_no_line(hd, account):
    # 60,000 lines (1.9 MB) is more than the pipe holds (1 MB): the child blocks until they are read.
    code = (
        "import os, signal, sys\n"
        "out = sys.stdout.buffer\n"
        "for i in range(60_000): out.write(b'written before SIGKILL %06d\\n' % i)\n"
        "out.flush()\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    result = hd("run", "-n", "sigkilled", *py(code), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert result.returncode == 128 + signal.SIGKILL, result.stderr
    run = account.wait_for_run("sigkilled", "killed", timeout=60)
    assert run["signal"] == "SIGKILL"
    lines = account.wait_for(lambda: (lines := account.logs(run["uuid"])) and len(lines) >= 60_000 and lines, 60)
    assert texts(lines) == [f"written before SIGKILL {i:06d}" for i in range(60_000)]


def test_grandchild_output_is_captured(hd, account):
    code = (
        "import subprocess, sys\n"
        "print('from the child', flush=True)\n"
        "subprocess.run([sys.executable, '-c', 'import sys; print(\"from the grandchild\"); "
        "print(\"grandchild error\", file=sys.stderr)'])\n"
    )
    result = hd("run", "-n", "family", *py(code))
    assert result.returncode == 0
    assert result.stdout == b"from the child\nfrom the grandchild\n"
    run = account.wait_for_run("family", "success")
    lines = account.logs(run["uuid"])
    assert texts(lines, "stdout") == ["from the child", "from the grandchild"]
    assert texts(lines, "stderr") == ["grandchild error"]


def test_a_grandchild_left_running_does_not_hold_the_exit_and_writes_on_unrecorded(hd, account, tmp_path):
    # It inherits the child's output and keeps it open: hyperdash exits 2 s after its command,
    # and what the grandchild writes later still reaches the output, as without hyperdash (it
    # died of SIGPIPE), though no longer the run.
    marker = tmp_path / "wrote"
    later = tmp_path / "later.py"
    later.write_text(f"import time\ntime.sleep(4)\nprint('later', flush=True)\nopen({str(marker)!r}, 'w').close()\n")
    code = (
        "import subprocess, sys\n"
        f"sleeper = subprocess.Popen([sys.executable, {str(later)!r}])\n"
        "print('sleeper', sleeper.pid, flush=True)\n"
    )
    out = tmp_path / "out.txt"
    started = time.monotonic()
    with open(out, "wb") as stdout:
        result = hd("run", "-n", "left a sleeper", *py(code), stdout=stdout, stderr=subprocess.DEVNULL, timeout=30)
    elapsed = time.monotonic() - started
    assert result.returncode == 0
    assert elapsed < 4, f"hyperdash waited {elapsed:.1f}s for a grandchild's output"
    deadline = time.monotonic() + 20
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert marker.exists(), "the grandchild did not live on past its write"
    sleeper = int(out.read_text().split()[1])
    assert out.read_text() == f"sleeper {sleeper}\nlater\n"
    run = account.wait_for_run("left a sleeper", "success")
    assert texts(account.logs(run["uuid"])) == [f"sleeper {sleeper}"]


def test_command_not_found_exits_127(hd, account):
    result = hd("run", "-n", "typo", "pyhton3", "train.py")
    assert result.returncode == 127
    assert result.stderr == b"hyperdash: command not found: pyhton3\n"
    assert account.runs(name="typo") == []


def test_a_script_whose_interpreter_is_missing_says_so_and_starts_no_run(hd, account, tmp_path):
    windows = tmp_path / "windows.sh"
    windows.write_bytes(b"#!/bin/sh\r\necho hi\r\n")  # saved with Windows line endings
    nowhere = tmp_path / "nowhere.sh"
    nowhere.write_bytes(b"#!/nonexistent/interpreter -x\necho hi\n")
    for script in (windows, nowhere):
        script.chmod(0o755)
    result = hd("run", "-n", "no interpreter", str(windows))
    assert result.returncode == 127
    assert result.stderr.decode() == (
        f"hyperdash: cannot execute {windows}: the interpreter on its #! line, '/bin/sh\\r', is not found "
        "(the line ends with a carriage return: the file has Windows line endings)\n")
    result = hd("run", "-n", "no interpreter", str(nowhere))
    assert result.returncode == 127
    assert result.stderr.decode() == (
        f"hyperdash: cannot execute {nowhere}: the interpreter on its #! line, '/nonexistent/interpreter', "
        "is not found\n")
    assert account.runs(name="no interpreter") == []


@pytest.mark.slow
def test_a_child_that_prints_100_mb(account, hyperdash_home, tmp_path):
    count = 100_000  # lines of 1,000 bytes
    code = (
        "import sys\n"
        "out = sys.stdout.buffer\n"
        "tail = b'x' * 992 + b'\\n'\n"
        f"for i in range({count}): out.write(b'%07d' % i + tail)\n"
    )
    expected = hashlib.sha256()
    for i in range(count):
        expected.update(b"%07d" % i + b"x" * 992 + b"\n")
    # A small parent measures hyperdash's peak memory (a child's peak counts its parent's
    # memory at the moment it was started, so the test process itself must not be that parent).
    rss_file = tmp_path / "maxrss"
    measure = (
        "import os, sys\n"
        "pid = os.posix_spawn(sys.argv[2], sys.argv[2:], os.environ)\n"
        "_, status, usage = os.wait4(pid, 0)\n"
        "open(sys.argv[1], 'w').write(str(usage.ru_maxrss))\n"
        "sys.exit(os.waitstatus_to_exitcode(status))\n"
    )
    proc = subprocess.Popen(
        [*py(measure), str(rss_file), *HYPERDASH, "run", "-n", "100 MB", *py(code)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
        env=account.sdk_env(hyperdash_home),
    )
    seen = hashlib.sha256()
    for chunk in iter(lambda: proc.stdout.read(1 << 20), b""):
        seen.update(chunk)
    assert proc.wait(60) == 0
    assert seen.hexdigest() == expected.hexdigest()  # the terminal side got every byte, in order
    max_rss_mib = int(rss_file.read_text()) / 1024  # ru_maxrss is in KiB
    assert max_rss_mib < 100, f"peak RSS {max_rss_mib:.0f} MiB for 100 MB of output"

    run = account.wait_for_run("100 MB", "success", timeout=120)
    index, after = 0, 0
    while True:
        resp = account.get(f"/api/v1/runs/{run['uuid']}/logs", params={"after": after, "limit": 10000})
        page = resp.json()["lines"]
        if not page:
            break
        for line in page:
            assert line["text"] == f"{index:07d}" + "x" * 992
            index += 1
        after = page[-1]["seq"]
    assert index == count


def test_pipe_passes_input_through_and_monitors_it(account, hyperdash_home):
    data = b"alpha\n\x1b[32mbeta\x1b[0m\nno newline at the end"
    result = subprocess.run(
        [*HYPERDASH, "pipe", "-n", "piped in"], input=data, capture_output=True,
        env=account.sdk_env(hyperdash_home), timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == data
    run = account.wait_for_run("piped in", "success")
    assert run["api"] == "cli_pipe"
    assert texts(account.logs(run["uuid"])) == ["alpha", "\x1b[32mbeta\x1b[0m", "no newline at the end"]


def test_pipe_leaves_the_input_it_shares_as_it_found_it(account, hyperdash_home):
    # Standard input is shared with whoever else holds it (the shell, for a terminal): making
    # it non-blocking would break them after hyperdash has gone.
    read_fd, write_fd = os.pipe()
    try:
        assert os.get_blocking(read_fd)
        proc = subprocess.Popen([*HYPERDASH, "pipe", "-n", "shared input"], stdin=read_fd,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=account.sdk_env(hyperdash_home))
        os.write(write_fd, b"a line\n" * 5_000)
        time.sleep(0.5)  # read while the pipe is still open
        assert os.get_blocking(read_fd), "hyperdash pipe made the shared input non-blocking"
        os.close(write_fd)
        write_fd = None
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert out == b"a line\n" * 5_000
    finally:
        os.close(read_fd)
        if write_fd is not None:
            os.close(write_fd)
    account.wait_for_run("shared input", "success")


def test_pipe_reads_a_file_or_dev_null_as_its_input(account, hyperdash_home, tmp_path):
    data = b"".join(b"from a file %d\n" % i for i in range(3000))
    (tmp_path / "input.log").write_bytes(data)
    env = account.sdk_env(hyperdash_home)
    with open(tmp_path / "input.log", "rb") as source:
        result = subprocess.run([*HYPERDASH, "pipe", "-n", "from a file"], stdin=source,
                                capture_output=True, env=env, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout == data and b"Traceback" not in result.stderr
    run = account.wait_for_run("from a file", "success")
    assert texts(account.logs(run["uuid"])) == [f"from a file {i}" for i in range(3000)]

    result = subprocess.run([*HYPERDASH, "pipe", "-n", "from nothing"], stdin=subprocess.DEVNULL,
                            capture_output=True, env=env, timeout=30)
    assert result.returncode == 0 and result.stdout == b"" and b"Traceback" not in result.stderr
    account.wait_for_run("from nothing", "success")


@pytest.mark.parametrize("sig, status, name", [(signal.SIGINT, "user_canceled", "pipe canceled"),
                                               (signal.SIGALRM, "killed", "pipe alarmed")])
def test_pipe_ends_on_ctrl_c_or_another_signal_that_ends_cat(account, hyperdash_home, sig, status, name):
    proc = subprocess.Popen(
        [*HYPERDASH, "pipe", "-n", name], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, env=account.sdk_env(hyperdash_home),
    )
    proc.stdin.write(b"first line\n")
    proc.stdin.flush()
    assert proc.stdout.readline() == b"first line\n"
    proc.send_signal(sig)
    proc.wait(30)
    proc.stdin.close()
    assert proc.returncode == 128 + sig
    run = account.wait_for_run(name, status)
    assert run["signal"] == sig.name
    assert texts(account.logs(run["uuid"])) == ["first line"]


def test_a_script_without_a_shebang_runs_under_sh_as_a_shell_would_run_it(account, hyperdash_home, tmp_path):
    script = tmp_path / "plain.sh"
    script.write_text('echo "from sh: $0 $1"\nexit 3\n')
    script.chmod(0o755)
    binary = tmp_path / "alien"
    binary.write_bytes(b"\x7fELF\x02\x01\x01\x00not for this machine")
    binary.chmod(0o755)
    env = {**account.sdk_env(hyperdash_home), "PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}"}
    for command, name in (([str(script), "one"], "by path"), (["plain.sh", "one"], "on PATH")):
        result = subprocess.run([*HYPERDASH, "run", "-n", name, *command], env=env, capture_output=True,
                                stdin=subprocess.DEVNULL, timeout=60)
        assert result.returncode == 3, result.stderr
        assert result.stdout == f"from sh: {script} one\n".encode()
        run = account.wait_for_run(name, "failure")
        assert run["exit_code"] == 3 and texts(account.logs(run["uuid"])) == [f"from sh: {script} one"]
    result = subprocess.run([*HYPERDASH, "run", "-n", "alien", str(binary)], env=env, capture_output=True,
                            stdin=subprocess.DEVNULL, timeout=60)
    assert result.returncode == 126
    assert result.stderr.decode().splitlines()[-1] == f"hyperdash: cannot execute (not a program): {binary}"


def _into_head(command: str, env: dict) -> tuple[list[str], float]:
    """Run the shell pipeline ``command | head -1`` (bounded); the exit statuses of its parts
    (bash's PIPESTATUS) and how long it took."""
    started = time.monotonic()
    result = subprocess.run(["bash", "-c", command + ' | head -1 >/dev/null; echo "${PIPESTATUS[*]}"'],
                            capture_output=True, text=True, env=env, timeout=60)
    return result.stdout.split(), time.monotonic() - started


FOREVER = "i=0; while :; do echo line $i; i=$((i+1)); sleep 0.01; done"


def test_a_reader_that_goes_away_ends_the_job_as_it_would_without_hyperdash(account, hyperdash_home):
    env = account.sdk_env(hyperdash_home)
    hd = " ".join(HYPERDASH)
    # Without hyperdash the writer dies of SIGPIPE (141) at its next write; so it does with it.
    assert _into_head(f"sh -c '{FOREVER}'", env)[0] == ["141", "0"]
    statuses, took = _into_head(f"{hd} run -n 'into head' -- sh -c '{FOREVER}'", env)
    assert statuses == ["141", "0"] and took < 30
    run = account.wait_for_run("into head", "killed", timeout=30)
    assert (run["signal"], run["exit_code"]) == ("SIGPIPE", 141)
    assert texts(account.logs(run["uuid"]))[0] == "line 0"
    # hyperdash pipe stops as cat would, and the writer of its input meets its own SIGPIPE.
    statuses, took = _into_head(f"sh -c '{FOREVER}' | {hd} pipe -n 'piped into head'", env)
    assert statuses == ["141", "141", "0"] and took < 30
    assert account.wait_for_run("piped into head", "killed", timeout=30)["exit_code"] == 141
    # In Python code, the job's print fails as it would (BrokenPipeError), and the run says so.
    code = ("from hyperdash import monitor\n@monitor('printed into head')\ndef job():\n"
            "    for i in range(10**9): print(i, flush=True)\njob()\n")
    statuses, took = _into_head(shlex.join(py(code)), env)
    assert statuses == ["1", "0"] and took < 30
    run = account.wait_for_run("printed into head", "failure", timeout=30)
    assert "BrokenPipeError" in (run["failure"] or {}).get("summary", "")

"""A real terminal for tests: run a program with a new pseudo-terminal as its controlling
terminal, as a person's shell would; what a terminal shows of output; a busy machine."""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import select
import signal
import struct
import subprocess
import sys
import termios
import time


def run_in_terminal(argv: list[str], env: dict, *, on_output=None, timeout: float = 30) -> tuple[int, bytes]:
    """Run ``argv`` with a new pseudo-terminal (80x24) as its controlling terminal and its stdin,
    stdout and stderr; ``on_output(all_so_far, master_fd)`` may type into it or resize it.
    (exit status, output)."""
    pid, master = pty.fork()
    if pid == 0:  # the child: size its terminal and exec, nothing else (not even pytest's exit)
        try:
            fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
            os.execve(argv[0], argv, env)
        finally:
            os._exit(127)
    output = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.1)
            if not ready:
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: every holder of the terminal is gone
                break
            if not chunk:
                break
            output += chunk
            if on_output is not None:
                on_output(output, master)
        else:
            raise AssertionError(f"still running after {timeout}s; output so far: {output!r}")
    except BaseException:  # a check failed: leave nothing running
        os.kill(pid, signal.SIGKILL)
        raise
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(master)
    return os.waitstatus_to_exitcode(status), output


def shown_lines(output: bytes) -> list[str]:
    """The lines a terminal shows for ``output`` (of each line redrawn with ``\\r``, its last
    state), less empty lines and hyperdash's own messages."""
    text = output.decode().replace("\r\n", "\n")
    lines = [([state for state in line.split("\r") if state] or [""])[-1] for line in text.split("\n")]
    return [line for line in lines if line and not line.startswith("hyperdash: ")]


@contextlib.contextmanager
def busy_cpus(count: int = 2, seconds: float = 120):
    """``count`` processes that keep the CPUs busy (for ``seconds`` at most) inside the block:
    a machine under load, where the order of two channels' output used to go wrong."""
    spin = f"import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end: pass\n"
    spinners = [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(count)]
    try:
        yield
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()

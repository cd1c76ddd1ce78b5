"""Channels: what a captured descriptor is pointed at, and the terminal sizes they follow.

A channel stands in for a destination of the job's output (a terminal, a pipe, a file): a
pseudo-terminal when that destination is a terminal, so that the job still sees one (colours
and progress bars keep working), else a pipe. Whoever reads the channel (a
:class:`~hyperdash.pump.Pump`) passes each byte on to the destination.

Two descriptors that lead to the same place (the same terminal, the same pipe or file: see
:func:`same_destination`) can share one channel, as a terminal is shared: the bytes written to
either then keep the order they were written in. Two channels cannot promise that order: their
reader sees only which of them has bytes waiting, not which were written first.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Container, Sequence

__all__ = [
    "open_channel",
    "open_pipe",
    "follow_file",
    "same_destination",
    "copy_window_size",
    "PtyWindow",
    "follow_window_sizes",
    "widen_pipe",
    "pipe_size",
    "isatty",
    "wait_until_drained",
    "PIPE_SIZE",
]

PIPE_SIZE = 1 << 20
F_SETPIPE_SZ = 1031  # Linux
F_GETPIPE_SZ = 1032


def open_channel(like_fd: int) -> tuple[int, int]:
    """``(read_fd, write_fd)`` to stand in for ``like_fd``: a pty copying its window size and
    terminal modes (output post-processing off, so bytes pass unchanged) when ``like_fd`` is a
    terminal, else a pipe. The read end does not block (a :class:`~hyperdash.pump.Pump` reads it)."""
    if isatty(like_fd):
        try:
            read_fd, write_fd = _open_pty(like_fd)
        except OSError:
            pass
        else:
            os.set_blocking(read_fd, False)
            return read_fd, write_fd
    return open_pipe()


def open_pipe() -> tuple[int, int]:
    """``(read_fd, write_fd)`` of a new pipe, widened, whose read end does not block."""
    read_fd, write_fd = os.pipe()
    widen_pipe(write_fd)
    os.set_blocking(read_fd, False)
    return read_fd, write_fd


def follow_file(fd: int) -> int | None:
    """Where ``fd`` writes to a regular file (``> out.log``): a descriptor of its own that reads
    that file from where ``fd`` writes next (a new open of it: its offset is its own), so that the
    file can be read after its writer rather than stand behind a channel; else None (not a
    regular file, not Linux, or the file cannot be read)."""
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return None
        # (an appending writer's offset says nothing: it writes at the end, wherever that is)
        start = info.st_size if _appends(fd) else os.lseek(fd, 0, os.SEEK_CUR)
        read_fd = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:  # (no /proc: not Linux; a file opened write-only that we may not read)
        return None
    try:
        os.lseek(read_fd, start, os.SEEK_SET)
    except OSError:
        os.close(read_fd)
        return None
    return read_fd


def _appends(fd: int) -> bool:
    import fcntl

    return bool(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_APPEND)


def same_destination(fd_a: int, fd_b: int) -> bool:
    """Whether ``fd_a`` and ``fd_b`` write to the same place, where someone sees the order of
    what each took: the same terminal, pipe, socket or file (``2>&1``), as ``fstat`` tells by
    device and inode. False for ``/dev/null``, and when either cannot be examined."""
    try:
        a, b = os.fstat(fd_a), os.fstat(fd_b)
    except OSError:
        return False
    if (a.st_dev, a.st_ino) != (b.st_dev, b.st_ino):
        return False
    if stat.S_ISCHR(a.st_mode):
        # a terminal; not /dev/null, where no one sees the order and the streams can stay apart
        return a.st_rdev == b.st_rdev and isatty(fd_a)
    return True


def isatty(fd: int) -> bool:
    """``os.isatty``, False for a descriptor that is not open."""
    try:
        return os.isatty(fd)
    except OSError:
        return False


def widen_pipe(fd: int) -> None:
    """Let the pipe behind ``fd`` hold more (Linux): a flooding writer then needs fewer
    wake-ups of its reader. Nothing happens where ``fd`` is not a pipe or cannot be widened."""
    try:
        import fcntl

        if stat.S_ISFIFO(os.fstat(fd).st_mode):
            fcntl.fcntl(fd, F_SETPIPE_SZ, PIPE_SIZE)
    except (OSError, ImportError):
        pass  # a smaller pipe only means more wake-ups


def pipe_size(fd: int) -> int:
    """How many bytes the pipe behind ``fd`` holds (Linux); 0 where ``fd`` is no pipe or its
    size cannot be told."""
    try:
        import fcntl

        if stat.S_ISFIFO(os.fstat(fd).st_mode):
            return int(fcntl.fcntl(fd, F_GETPIPE_SZ))
    except (OSError, ImportError):
        pass
    return 0


def _open_pty(like_fd: int) -> tuple[int, int]:
    import pty
    import termios

    master, slave = pty.openpty()
    try:
        attrs = termios.tcgetattr(like_fd)
        attrs[1] &= ~termios.OPOST
        termios.tcsetattr(slave, termios.TCSANOW, attrs)
    except (OSError, termios.error):
        pass
    copy_window_size(like_fd, slave)
    os.set_inheritable(master, False)
    return master, slave


def copy_window_size(terminal_fd: int, pty_fd: int, unless: bytes | None = None) -> bytes | None:
    """Give the pty behind ``pty_fd`` the window size of the terminal ``terminal_fd`` (unless
    that is ``unless``, the size it was given last). The size, or None when it cannot be read."""
    import fcntl
    import termios

    try:
        size = fcntl.ioctl(terminal_fd, termios.TIOCGWINSZ, b"\0" * 8)
        if size != unless:
            fcntl.ioctl(pty_fd, termios.TIOCSWINSZ, size)
        return size
    except OSError:
        return None


class PtyWindow:
    """A pty standing in for the terminal ``terminal_fd``, and the window size it was given last
    (``None`` before the first). (A plain class: every monitored job imports this module, and
    the dataclasses module costs it several milliseconds to import.)"""

    __slots__ = ("terminal_fd", "pty_fd", "last_size")

    def __init__(self, terminal_fd: int, pty_fd: int, last_size: bytes | None = None):
        self.terminal_fd, self.pty_fd, self.last_size = terminal_fd, pty_fd, last_size


def follow_window_sizes(windows: Sequence[PtyWindow], open_fds: Container[int]) -> None:
    """For each pty of ``windows`` that is still open: give it its terminal's size when that
    changed."""
    changed = False
    for window in windows:
        if window.pty_fd in open_fds:
            last = window.last_size
            size = copy_window_size(window.terminal_fd, window.pty_fd, unless=last)
            changed = changed or (last is not None and size not in (None, last))
            window.last_size = size or last
    if changed:
        # The job had the terminal's SIGWINCH before its terminal, the pty, had the new size: a
        # handler of its own that read the size then read the old one. Tell it again.
        import signal

        os.kill(os.getpid(), signal.SIGWINCH)


def _unread_bytes(fd: int) -> int:
    import array
    import fcntl
    import termios

    count = array.array("i", [0])
    try:
        fcntl.ioctl(fd, termios.FIONREAD, count)
    except OSError:
        return 0
    return count[0]


def wait_until_drained(fds: Sequence[int], timeout: float) -> None:
    """Wait (at most ``timeout`` seconds) until whoever reads the pipes behind ``fds`` has
    read everything written to them."""
    deadline = time.monotonic() + timeout
    while any(_unread_bytes(fd) for fd in fds) and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(0.01)  # the reader hands on what it has just read

"""Teeing output into a run: the terminal gets every byte at once, the run gets them too.

- :func:`open_channel` makes what a captured descriptor is pointed at: a pseudo-terminal when
  the original is a terminal (so the job still sees a terminal: colours and progress bars keep
  working), else a pipe.
- :class:`Pump` is a thread that reads channels until end of file, writes each chunk to the
  original destination at once and hands it to :meth:`Run.write`.
- :class:`FdCapture` captures this process's file descriptors 1 and 2 (``dup2``): Python's
  ``print``, C extensions and child processes alike, at no cost to the print path.
- :class:`StreamCapture` replaces ``sys.stdout``/``sys.stderr`` with tees.
- :class:`KernelCapture` is both at once, for IPython kernels: there ``sys.stdout`` sends
  Python's writes to the notebook without touching descriptor 1, and the kernel forwards what
  reaches descriptors 1 and 2 (child processes, C extensions) from a pipe of its own. Each byte
  takes one of the two paths, so nothing is shown or stored twice.
"""

from __future__ import annotations

import errno
import os
import sys
import threading
import time
from typing import Any, Sequence

__all__ = [
    "open_channel",
    "copy_window_size",
    "Pump",
    "FdCapture",
    "StreamCapture",
    "KernelCapture",
    "capture_for_current_process",
    "in_ipython_kernel",
]

CHUNK_SIZE = 1 << 20  # large reads: fewer trips through the GIL when output floods
FLOOD_READ = 8 * 1024  # a read this large means output floods in: pause before the next
FLOOD_PAUSE = 0.003
FLOOD_FULL = 256 * 1024  # ...unless it is this large: then the pipe would fill during a pause
FLOOD_READS_IN_A_ROW = 4  # reads of one channel without a look at the others, while it floods
PIPE_SIZE = 1 << 20
F_SETPIPE_SZ = 1031  # Linux
KERNEL_DRAIN_TIMEOUT = 0.5
RESIZE_CHECK_INTERVAL = 0.25  # seconds between looks at a terminal's size


def open_channel(like_fd: int) -> tuple[int, int]:
    """``(read_fd, write_fd)`` to stand in for ``like_fd``: a pty copying its window size and
    terminal modes (output post-processing off, so bytes pass unchanged) when ``like_fd`` is a
    terminal, else a pipe. The read end does not block (a :class:`Pump` reads it)."""
    if _isatty(like_fd):
        try:
            read_fd, write_fd = _open_pty(like_fd)
        except OSError:
            pass
        else:
            os.set_blocking(read_fd, False)
            return read_fd, write_fd
    read_fd, write_fd = os.pipe()
    try:
        import fcntl

        fcntl.fcntl(write_fd, F_SETPIPE_SZ, PIPE_SIZE)
    except OSError:
        pass  # a smaller pipe only means more wake-ups
    os.set_blocking(read_fd, False)
    return read_fd, write_fd


def _isatty(fd: int) -> bool:
    try:
        return os.isatty(fd)
    except OSError:
        return False


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


def _follow_window_sizes(resizes: list[list], open_fds) -> None:
    """For each ``[terminal_fd, pty_fd, last size]`` whose pty is still open: give the pty the
    terminal's size when it changed."""
    changed = False
    for entry in resizes:
        terminal_fd, pty_fd, last = entry
        if pty_fd in open_fds:
            size = copy_window_size(terminal_fd, pty_fd, unless=last)
            changed = changed or (last is not None and size not in (None, last))
            entry[2] = size or last
    if changed:
        # The job had the terminal's SIGWINCH before its terminal, the pty, had the new size: a
        # handler of its own that read the size then read the old one. Tell it again.
        import signal

        os.kill(os.getpid(), signal.SIGWINCH)


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


def _write_all(fd: int, data: bytes) -> bool:
    """Write every byte to ``fd``; False when it cannot take them any more."""
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except BlockingIOError:
            import select

            select.select([], [fd], [], 1.0)
        except InterruptedError:
            continue
        except OSError:
            return False
    return True


class Pump(threading.Thread):
    """Reads each ``(read_fd, terminal_fd, stream)`` channel until end of file; every chunk goes
    to ``terminal_fd`` at once (``None``: nowhere) and to ``run.write(stream, chunk)``.

    A descriptor that cannot be polled (a regular file, ``/dev/null``) is always ready: its
    reads never wait, so it is simply read until end of file.
    The read descriptors belong to the pump, which closes them when done. With
    ``follow_resizes``, a channel that is a pty standing in for a terminal takes each new window
    size of that terminal, within a fraction of a second.
    """

    def __init__(self, run, channels: Sequence[tuple[int, int | None, str]], name: str = "hyperdash-pump",
                 follow_resizes: bool = False):
        super().__init__(name=name, daemon=True)
        self.sink = run
        self.channels = list(channels)
        self.follow_resizes = follow_resizes
        self._stopping = False
        self._open: dict[int, tuple[int | None, str]] = {}
        # descriptors to close once the last chunk is written (the terminal copies of a capture)
        self.close_when_done: list[int] = []
        self._buffer = bytearray(CHUNK_SIZE)
        self._view = memoryview(self._buffer)

    def run(self) -> None:
        import selectors

        selector = selectors.DefaultSelector()
        unpolled: list[int] = []
        never_block: set[int] = set()
        for read_fd, terminal_fd, stream in self.channels:
            self._open[read_fd] = (terminal_fd, stream)
            try:
                selector.register(read_fd, selectors.EVENT_READ)
                if not os.get_blocking(read_fd):
                    never_block.add(read_fd)
            except (OSError, ValueError):  # epoll refuses regular files (EPERM)
                unpolled.append(read_fd)
        # ptys that stand in for terminals: they take each new size of their terminal (polled,
        # so that no signal handler of ours can interrupt the job's system calls)
        resizes = [[terminal_fd, read_fd, None] for read_fd, terminal_fd, _ in self.channels
                   if self.follow_resizes and terminal_fd is not None and _isatty(read_fd) and _isatty(terminal_fd)]
        next_resize_check = 0.0
        try:
            while self._open:
                if resizes and time.monotonic() >= next_resize_check:
                    next_resize_check = time.monotonic() + RESIZE_CHECK_INTERVAL
                    _follow_window_sizes(resizes, self._open)
                for read_fd in list(unpolled):
                    if self._pump(read_fd, None) < 0:
                        unpolled.remove(read_fd)
                if not selector.get_map():
                    continue
                ready = selector.select(0 if self._stopping or unpolled else 0.2)
                if not ready and self._stopping and not unpolled:
                    break
                for key, _ in ready:
                    # While reads come back nearly full, output floods: read on without
                    # waiting in select (each return from a system call is a wait for the GIL),
                    # where a read cannot block (the channels open_channel made); a few reads
                    # at most, so that the other channels are not kept waiting.
                    for _ in range(FLOOD_READS_IN_A_ROW):
                        if self._pump(key.fd, selector) < FLOOD_FULL or key.fd not in never_block:
                            break
        finally:
            selector.close()
            for read_fd in list(self._open):
                self._close(read_fd)
            for fd in self.close_when_done:
                try:
                    os.close(fd)
                except OSError:
                    pass

    def _pump(self, read_fd: int, selector) -> int:
        """Move one chunk of ``read_fd`` on: its size, 0 when nothing was waiting, -1 at its
        end of file (then it is closed)."""
        try:
            # Into a buffer kept warm, then copied: a fresh buffer for each read would take its
            # page faults inside the read, while the kernel holds the pipe the job writes to.
            size = os.readv(read_fd, [self._buffer])
            data = bytes(self._view[:size])
        except (BlockingIOError, InterruptedError):
            return 0
        except OSError as exc:
            # EIO: the pty's other side is gone; an unpolled input (a directory, say) that
            # cannot be read has nothing more to give either
            if exc.errno not in (errno.EIO, errno.EBADF) and selector is not None:
                raise
            data = b""
        if not data:
            if selector is not None:
                selector.unregister(read_fd)
            self._close(read_fd)
            return -1
        terminal_fd, stream = self._open[read_fd]
        if terminal_fd is not None and not _write_all(terminal_fd, data):
            self._open[read_fd] = (None, stream)
        self.sink.write(stream, data)
        if FLOOD_READ <= len(data) < FLOOD_FULL and not self._stopping and selector is not None:
            # Output is flooding in: let it gather for a moment rather than being woken by
            # every write of the job (each wake-up costs the job a context switch). Not when
            # the read nearly filled the pipe: the job writes faster than a pause would let
            # the pipe hold, and it would be blocked until the pump came back.
            time.sleep(FLOOD_PAUSE)
        return len(data)

    def _close(self, read_fd: int) -> None:
        self._open.pop(read_fd, None)
        try:
            os.close(read_fd)
        except OSError:
            pass

    def stop(self, timeout: float = 2.0) -> None:
        """Take what is already written, then stop, even if writers (say, a child process that
        inherited the descriptor) still hold the channel open."""
        self._stopping = True
        self.join(timeout)


def _flush_std_streams() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except Exception:
            pass


class FdCapture:
    """Captures this process's descriptors 1 and 2 into ``run``; :meth:`stop` restores them."""

    def __init__(self, run):
        self.run = run
        self._saved: list[tuple[int, int]] = []  # (fd, saved copy of the original)
        self._pump: Pump | None = None
        self._pid = os.getpid()
        self._stop_lock = threading.Lock()

    def start(self) -> "FdCapture":
        _flush_std_streams()
        channels = []
        try:
            for fd, stream in ((1, "stdout"), (2, "stderr")):
                saved = os.dup(fd)
                self._saved.append((fd, saved))
                read_fd, write_fd = open_channel(saved)
                os.dup2(write_fd, fd)
                os.close(write_fd)
                channels.append((read_fd, saved, stream))
        except OSError as exc:
            for read_fd, _, _ in channels:
                os.close(read_fd)
            self._restore()
            self.run.warn("capture", f"output is not captured: {exc}")
            return self
        self.run.console_fd = self._saved[1][1]
        self._pump = Pump(self.run, channels, follow_resizes=True)
        self._pump.start()
        _drain_at_os_exit(self)
        return self

    def stop(self, timeout: float = 2.0, *, flush: bool = True) -> None:
        """Restore descriptors 1 and 2 and take the last output (after flushing ``sys.stdout``
        and ``sys.stderr``, unless ``flush`` is false). Idempotent; a no-op in a forked child
        (its descriptors stay on the parent's channels)."""
        if os.getpid() != self._pid:  # (before the lock, which a fork may have copied held)
            return
        with self._stop_lock:
            self._stop(timeout, flush)

    def drain_before_exit(self) -> None:
        """What :func:`os._exit` does first: restore the descriptors and take the output already
        written, within :data:`EXIT_DRAIN_TIMEOUT`, leaving Python's buffers unflushed; the
        unfinished last lines are kept too. Gives up when a stop is already under way (in this
        very thread, when a signal handler calls os._exit)."""
        if os.getpid() != self._pid or not self._stop_lock.acquire(timeout=EXIT_DRAIN_TIMEOUT):
            return
        try:
            self._stop(EXIT_DRAIN_TIMEOUT, flush=False)
        finally:
            self._stop_lock.release()
        self.run.keep_unfinished_lines()

    def _stop(self, timeout: float, flush: bool) -> None:
        if not self._saved:
            return
        _exit_drains.discard(self)
        if flush:
            _flush_std_streams()
        self.run.console_fd = 2
        copies = [copy for _, copy in self._saved]
        if self._pump is not None:
            # It still tees into the saved copies: it closes them after its last write, also
            # when that comes after the timeout (a machine under heavy load). Handed over while
            # descriptors 1 and 2 still keep its channels open, so it cannot have ended yet.
            self._pump.close_when_done = copies
        self._restore(close=False)
        if self._pump is not None:
            self._pump.stop(timeout)
            self._pump = None
            return
        for copy in copies:
            try:
                os.close(copy)
            except OSError:
                pass

    def _restore(self, close: bool = True) -> None:
        for fd, saved in self._saved:
            try:
                os.dup2(saved, fd)
                if close:
                    os.close(saved)
            except OSError:
                pass
        self._saved = []


# os._exit ends a process at once: what the job wrote last would still be in a capture's
# channel, never shown in the terminal nor kept. While a capture is on, os._exit first lets it
# take what is already written (as coverage.py, say, saves its data there). Python's own buffers
# stay unflushed, as os._exit leaves them.
EXIT_DRAIN_TIMEOUT = 1.0
_exit_drains: "set[FdCapture]" = set()
_os_exit = None  # what os._exit was when it was first wrapped: the wrapper ends with it


def _drain_at_os_exit(capture: FdCapture) -> None:
    global _os_exit
    _exit_drains.add(capture)
    if _os_exit is None:  # once: wrapping a wrapper of ours again would make a loop
        _os_exit = os._exit
        os._exit = _exit_after_draining


def _exit_after_draining(status: int) -> None:
    """``os._exit(status)``, once every capture on has taken the output already written."""
    try:
        for capture in list(_exit_drains):
            try:
                capture.drain_before_exit()
            except Exception:
                pass
    finally:  # whatever happens (a signal, say), the process ends
        _os_exit(status)


class _Tee:
    """A text stream that writes through to ``original`` and copies into a run."""

    def __init__(self, original, run, stream: str):
        self._original = original
        self._run = run
        self._stream = stream

    def write(self, text: str) -> int:
        count = self._original.write(text)
        try:
            data = text.encode("utf-8", "surrogateescape") if isinstance(text, str) else bytes(text)
            self._run.write(self._stream, data)
        except Exception:
            pass
        return count

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._original, name)


class StreamCapture:
    """Captures ``sys.stdout`` and ``sys.stderr`` (the objects) into ``run``."""

    def __init__(self, run):
        self.run = run
        self._originals: tuple[Any, Any] | None = None

    def start(self) -> "StreamCapture":
        self._originals = (sys.stdout, sys.stderr)
        sys.stdout = _Tee(sys.stdout, self.run, "stdout")
        sys.stderr = _Tee(sys.stderr, self.run, "stderr")
        return self

    def stop(self, timeout: float = 0.0) -> None:
        """Put the original streams back (unless something else replaced ours meanwhile)."""
        if self._originals is None:
            return
        out, err = self._originals
        if isinstance(sys.stdout, _Tee) and sys.stdout._run is self.run:
            sys.stdout = out
        if isinstance(sys.stderr, _Tee) and sys.stderr._run is self.run:
            sys.stderr = err
        self._originals = None


class KernelCapture:
    """Captures an IPython kernel's output: ``sys.stdout``/``sys.stderr`` (Python's writes,
    which the kernel sends to the notebook itself) and descriptors 1 and 2 (everything else,
    teed on to the kernel's own pipes, so the notebook still shows it)."""

    def __init__(self, run):
        self.run = run
        self._fds = FdCapture(run)
        self._streams = StreamCapture(run)

    def start(self) -> "KernelCapture":
        self._fds.start()
        self._streams.start()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        """Restore the streams, then the descriptors (taking their last output), and give the
        kernel a moment to show what was teed on to its pipes last, in the cell it belongs to."""
        self._streams.stop()
        self._fds.stop(timeout)
        _wait_until_drained((1, 2), KERNEL_DRAIN_TIMEOUT)
        _flush_std_streams()


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


def _wait_until_drained(fds: Sequence[int], timeout: float) -> None:
    """Wait (at most ``timeout`` seconds) until whoever reads the pipes behind ``fds`` has
    read everything written to them."""
    deadline = time.monotonic() + timeout
    while any(_unread_bytes(fd) for fd in fds) and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(0.01)  # the reader hands on what it has just read


def in_ipython_kernel() -> bool:
    """Whether this process is an IPython kernel (a notebook's), whose fds are not its output."""
    if "ipykernel" not in sys.modules or "IPython" not in sys.modules:
        return False
    try:
        from IPython import get_ipython

        shell = get_ipython()
    except Exception:
        return False
    return shell is not None and getattr(shell, "kernel", None) is not None


def capture_for_current_process(run):
    """The capture that fits this process, not yet started: streams and file descriptors
    inside an IPython kernel, file descriptors elsewhere."""
    return KernelCapture(run) if in_ipython_kernel() else FdCapture(run)

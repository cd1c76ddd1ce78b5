"""Capturing this process's output into a run: the terminal gets every byte at once, the run too.

- :class:`FdCapture` captures this process's file descriptors 1 and 2 (``dup2``): Python's
  ``print``, C extensions and child processes alike, at no cost to the print path. A
  :class:`~hyperdash.pump.Pump` thread tees what the channels (:mod:`hyperdash.channel`) take.
- :class:`StreamCapture` replaces ``sys.stdout``/``sys.stderr`` with tees.
- :class:`KernelCapture` is both at once, for IPython kernels: there ``sys.stdout`` sends
  Python's writes to the notebook without touching descriptor 1 (from a forked child too), and
  the kernel forwards what reaches descriptors 1 and 2 (child processes, C extensions) from a
  pipe of its own, where it does. Each byte takes one of the two paths, so nothing is shown or
  stored twice.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any, NoReturn, Protocol, TextIO

from .channel import follow_file, open_channel, open_pipe, same_destination, wait_until_drained
from .pump import OutputSink, Pump, write_all

__all__ = [
    "CaptureTarget",
    "FdCapture",
    "StreamCapture",
    "KernelCapture",
    "capture_for_current_process",
    "in_ipython_kernel",
    "kernel_stderr",
]

KERNEL_DRAIN_TIMEOUT = 0.5


class CaptureTarget(OutputSink, Protocol):
    """The run a capture of this process feeds (a :class:`~hyperdash.run.Run`)."""

    #: where the run's own messages go; a capture points it at the terminal it saved
    console_fd: int

    def warn(self, key: str, message: str) -> None:
        """Say ``message`` once (per ``key``) on the terminal."""

    def keep_unfinished_lines(self) -> None:
        """Store each stream's last, unterminated line: the process ends without ending the run."""


def _flush_std_streams() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except Exception:
            pass


class FdCapture:
    """Captures this process's descriptors 1 and 2 into ``run``; :meth:`stop` restores them.

    ``merge_streams``: one channel for both descriptors, so that what the job writes to either
    keeps its order, in the terminal and in the run (which then takes it all as stdout: it can
    no longer tell stderr apart); else a channel each. ``None`` (the default) merges them where
    descriptors 1 and 2 lead to the same place (one terminal, one pipe or file), as the
    terminal would show them in the order written.

    ``side_streams``: a side channel for each of these streams besides, recorded as that stream
    and shown nowhere; while the capture is on, :attr:`side_fds` holds their write ends.
    """

    def __init__(self, run: CaptureTarget, *, merge_streams: bool | None = None, side_streams: Iterable[str] = ()):
        self.run = run
        self.merge_streams = merge_streams
        self.side_streams = tuple(side_streams)
        #: the write ends of the side channels, by stream, while the capture is on
        self.side_fds: dict[str, int] = {}
        self._side_read_fds: list[int] = []  # (the pump's, which closes them)
        self._saved: list[tuple[int, int]] = []  # (fd, saved copy of the original)
        self._pump: Pump | None = None
        self._pid = os.getpid()
        self._stop_lock = threading.Lock()

    def start(self) -> FdCapture:
        _flush_std_streams()
        merge = same_destination(1, 2) if self.merge_streams is None else self.merge_streams
        channels: list[tuple[int, int | None, str]] = []  # (read_fd, terminal_fd, stream)
        followed: list[int] = []
        try:
            for fd, stream in ((1, "stdout"), (2, "stderr")):
                saved = os.dup(fd)
                self._saved.append((fd, saved))
                if merge and channels:  # descriptor 2 shares descriptor 1's channel
                    os.dup2(1, fd)
                    continue
                if followed and same_destination(1, fd):
                    # Both lead to one file (2>&1, a kernel's console log): descriptor 1's reader
                    # takes what descriptor 2 adds too (a second reader would store it twice), as
                    # stdout: the file keeps the bytes in the order written, not who wrote them, and
                    # a channel for one of them would reorder the file.
                    continue
                # A file (> out.log) the job goes on writing itself, at no cost to its writes:
                # the pump reads what it adds. (Same bytes, same order: no copy to make.)
                read_fd = follow_file(fd)
                if read_fd is not None:
                    followed.append(read_fd)
                    channels.append((read_fd, None, stream))
                    continue
                read_fd, write_fd = open_channel(saved)
                os.dup2(write_fd, fd)
                os.close(write_fd)
                channels.append((read_fd, saved, stream))
            for stream in self.side_streams:
                read_fd, self.side_fds[stream] = open_pipe()
                self._side_read_fds.append(read_fd)
                channels.append((read_fd, None, stream))
        except OSError as exc:
            for read_fd, _, _ in channels:
                os.close(read_fd)
            self._close_side_channels()
            self._restore()
            self.run.warn("capture", f"output is not captured: {exc}")
            return self
        self.run.console_fd = self._saved[1][1]
        _side_read_ends.update(self._side_read_fds)
        self._pump = Pump(self.run, channels, follow_resizes=True, followed=followed)
        # (the process goes on after its run: what it started meanwhile must not lose its output)
        self._pump.pass_on_after_stop = True
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
        self._close_side_channels()
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

    def _close_side_channels(self) -> None:
        # (their read ends are the pump's, which takes what is in them yet, then closes them)
        _side_read_ends.difference_update(self._side_read_fds)
        self._side_read_fds = []
        for write_fd in self.side_fds.values():
            os.close(write_fd)
        self.side_fds = {}

    def _restore(self, close: bool = True) -> None:
        for fd, saved in self._saved:
            try:
                os.dup2(saved, fd)
                if close:
                    os.close(saved)
            except OSError:
                pass
        self._saved = []


# The read ends of the side channels open now (see FdCapture's side_streams). A forked child
# closes its copies at once: once the parent's capture has stopped, what the child writes to a
# side channel then fails (EPIPE), rather than filling a channel no one reads and waiting there.
_side_read_ends: set[int] = set()


def _close_side_read_ends() -> None:
    for fd in _side_read_ends:
        try:
            os.close(fd)
        except OSError:
            pass
    _side_read_ends.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_side_read_ends)


# os._exit ends a process at once: what the job wrote last would still be in a capture's
# channel, never shown in the terminal nor kept. While a capture is on, os._exit first lets it
# take what is already written (as coverage.py, say, saves its data there). Python's own buffers
# stay unflushed, as os._exit leaves them.
EXIT_DRAIN_TIMEOUT = 1.0
_exit_drains: set[FdCapture] = set()
_os_exit: Callable[[int], NoReturn] | None = None  # os._exit before our wrapper: the wrapper ends with it


def _drain_at_os_exit(capture: FdCapture) -> None:
    global _os_exit
    _exit_drains.add(capture)
    if _os_exit is None:  # once: wrapping a wrapper of ours again would make a loop
        _os_exit = os._exit
        os._exit = _exit_after_draining


def _exit_after_draining(status: int) -> NoReturn:
    """``os._exit(status)``, once every capture on has taken the output already written."""
    try:
        for capture in list(_exit_drains):
            try:
                capture.drain_before_exit()
            except Exception:
                pass
    finally:  # whatever happens (a signal, say), the process ends
        assert _os_exit is not None  # saved before this wrapper was installed
        _os_exit(status)


def _encoded(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape") if isinstance(text, str) else bytes(text)


class _Tee:
    """A text stream that writes through to ``original`` and copies into a run.

    In a forked child (a data loader's worker, a pool's), whose copy of the run records nothing,
    it writes through to ``original`` all the same (a kernel's stream sends it to the notebook
    from there, as it would without the capture), and the run's copy goes to ``child_fd``, a
    side channel that the parent's capture records (``None``: none is kept): a line at a time
    (print() writes its pieces apart, and several workers' pieces would mingle in the run's
    lines), the rest when flushed."""

    def __init__(self, original: TextIO, run: OutputSink, stream: str, child_fd: int | None = None):
        self._original = original
        self._run = run
        self._stream = stream
        self._pid = os.getpid()
        self._child_fd = child_fd
        self._unfinished = b""  # (in a forked child: what it wrote since its last whole line)

    def write(self, text: str) -> int:
        count = self._original.write(text)
        if os.getpid() != self._pid:
            self._hand_on_from_child(_encoded(text))
            return count
        try:
            self._run.write(self._stream, _encoded(text))
        except Exception:
            pass
        return count

    def flush(self) -> None:
        self._original.flush()
        if os.getpid() != self._pid:
            self._hand_on_from_child(b"", flush=True)

    def _hand_on_from_child(self, data: bytes, flush: bool = False) -> None:
        if self._child_fd is None:
            return
        pending = self._unfinished + data
        cut = len(pending) if flush else pending.rfind(b"\n") + 1
        lines, self._unfinished = pending[:cut], pending[cut:]
        if lines and write_all(self._child_fd, lines) is not None:
            self._child_fd = None  # (the run has ended: its capture closed the side channel)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._original, name)


class StreamCapture:
    """Captures ``sys.stdout`` and ``sys.stderr`` (the objects) into ``run``; what a forked
    child writes to them is handed on, for the run, to the descriptor ``child_fds`` gives for
    that stream (a side channel of an :class:`FdCapture`), where it gives one."""

    def __init__(self, run: OutputSink, child_fds: dict[str, int] | None = None):
        self.run = run
        self.child_fds = child_fds or {}
        self._originals: tuple[TextIO, TextIO] | None = None

    def start(self) -> StreamCapture:
        self._originals = (sys.stdout, sys.stderr)
        sys.stdout = _Tee(sys.stdout, self.run, "stdout", self.child_fds.get("stdout"))
        sys.stderr = _Tee(sys.stderr, self.run, "stderr", self.child_fds.get("stderr"))
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
    which the kernel sends to the notebook itself, from a forked child too) and descriptors 1
    and 2 (everything else, teed on to the kernel's own pipes, so the notebook still shows it
    where the kernel forwards them, and the kernel's console otherwise)."""

    def __init__(self, run: CaptureTarget):
        self.run = run
        # apart, as the kernel keeps them: its sys.stdout and sys.stderr are apart anyway.
        # A forked child's sys.stdout goes to the notebook through the kernel's stream, as
        # without the capture (through descriptor 1, a kernel that does not forward its
        # descriptors would show it in its console alone), and to the run through a side channel.
        self._fds = FdCapture(run, merge_streams=False, side_streams=("stdout", "stderr"))
        self._streams = StreamCapture(run)

    def start(self) -> KernelCapture:
        self._fds.start()
        self._streams.child_fds = self._fds.side_fds
        self._streams.start()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        """Restore the streams, then the descriptors (taking their last output), and give the
        kernel a moment to show what was teed on to its pipes last, in the cell it belongs to."""
        self._streams.stop()
        self._fds.stop(timeout)
        wait_until_drained((1, 2), KERNEL_DRAIN_TIMEOUT)
        _flush_std_streams()


def in_ipython_kernel() -> bool:
    """Whether this process is an IPython kernel (a notebook's), whose fds are not its output."""
    if "ipykernel" not in sys.modules or "IPython" not in sys.modules:
        return False
    try:
        from IPython.core.getipython import get_ipython

        shell = get_ipython()  # type: ignore[no-untyped-call]  # IPython 8 does not annotate it
    except Exception:
        return False
    return shell is not None and getattr(shell, "kernel", None) is not None


def kernel_stderr() -> TextIO | None:
    """In an IPython kernel, its own ``sys.stderr`` (behind any capture's tee), which shows what
    is written to it in the running cell, also where descriptor 2 leads to the kernel's console
    alone; None elsewhere."""
    if not in_ipython_kernel():
        return None
    stream = sys.stderr
    while isinstance(stream, _Tee):
        stream = stream._original
    return stream


def capture_for_current_process(run: CaptureTarget) -> FdCapture | KernelCapture:
    """The capture that fits this process, not yet started: streams and file descriptors
    inside an IPython kernel, file descriptors elsewhere."""
    return KernelCapture(run) if in_ipython_kernel() else FdCapture(run)

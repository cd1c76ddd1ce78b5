"""The pump: a thread that moves output from channels to where it was going, and into a run.

:class:`Pump` reads channels (see :mod:`hyperdash.channel`) until end of file; each chunk goes
to the original destination at once and to the :class:`OutputSink` (a
:class:`~hyperdash.run.Run`). One pump reads every channel of a capture, so the sink is fed by
one thread at a time.
"""

from __future__ import annotations

import errno
import os
import select
import threading
import time
from collections.abc import Callable, Collection, Sequence
from typing import TYPE_CHECKING, Protocol

from .channel import PtyWindow, follow_window_sizes, isatty, pipe_size

if TYPE_CHECKING:
    import selectors

__all__ = ["OutputSink", "Pump"]

CHUNK_SIZE = 1 << 20  # large reads: fewer trips through the GIL when output floods
FLOOD_READ = 8 * 1024  # a read this large means output floods in: pause before the next
FLOOD_PAUSE = 0.003
FLOOD_FULL = 256 * 1024  # ...unless it is this large: then the pipe would fill during a pause
FLOOD_READS_IN_A_ROW = 4  # reads of one channel without a look at the others, while it floods
# A pty passes at most 4 KiB a read and holds some 10 to 20 KiB before its writer waits. The
# pump reads on from one as long as bytes are waiting, and while output floods through it,
# pauses a moment after each trip: a trip (a copy to the terminal, one to the run) then carries
# some 15 KiB rather than a read's one or two, and the job, which shares the pump's GIL, is
# interrupted far less often.
PTY_GATHER = 64 * 1024  # bytes read on, at most, before they are passed on (then: no pause)
PTY_FLOOD = 2 * 1024  # a trip this large means output floods through the pty
PTY_PAUSE = 0.0003  # (much longer, and the pty would fill and the job wait)
RESIZE_CHECK_INTERVAL = 0.25  # seconds between looks at a terminal's size
# Output that comes in small pieces one after the other (a training loop printing a line a
# step, unbuffered) gathers for a moment before the next read: each wake-up of the pump costs
# more than the lines it carries. A piece after a quiet spell is passed on at once.
GATHER_WINDOW = 0.02  # a read this soon after the last one (or after a pause): output streams in
GATHER_PAUSE = 0.03  # (a step of 2 ms: fifteen lines a wake-up; stop() cuts a pause short)
# Output that brings many lines at each read while it streams in is steady (a loop printing a
# line every few milliseconds): it gathers longer, and is passed on five times a second. A few
# lines now and then still go on within GATHER_PAUSE. Only when the read came after a pause and
# brought less than FLOOD_READ: then the job writes less than FLOOD_READ per GATHER_PAUSE, and
# the pipe, where it holds STEADY_ROOM, cannot fill during a longer pause (a pipe that could not
# be widened holds a few KiB). A first small read of a flood is no sign of steady output.
STEADY_PAUSE = 0.2
STEADY_LINES = 5  # lines in one read, at least
STEADY_ROOM = 256 * 1024  # bytes the pipe holds, at least
# A followed file (see Pump's ``followed``) is looked at this often for what its writer added:
# a look is one read that finds nothing, and the writer never waits for it.
FOLLOW_INTERVAL = 0.02


class OutputSink(Protocol):
    """What captured output is fed to (a :class:`~hyperdash.run.Run`)."""

    def write(self, stream: str, data: bytes) -> None:
        """Take raw output bytes of ``stream`` (``"stdout"`` or ``"stderr"``); never raise."""


def write_all(fd: int, data: bytes) -> OSError | None:
    """Write every byte to ``fd``; the error when it cannot take them any more."""
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except BlockingIOError:
            select.select([], [fd], [], 1.0)
        except InterruptedError:
            continue
        except OSError as exc:
            return exc
    return None


# The process that passes a channel on after its run (see Pump.pass_on_after_stop).
_PASS_ON = "import sys; from hyperdash.pump import pass_on; pass_on(int(sys.argv[1]), int(sys.argv[2]))"


def pass_on(read_fd: int, terminal_fd: int) -> None:
    """Copy what comes from ``read_fd`` to ``terminal_fd`` until its writers have all closed it
    (or the terminal's reader went away), then close both: a channel whose run has ended, for the
    processes that still write to it."""
    try:
        while True:
            try:
                data = os.read(read_fd, CHUNK_SIZE)
            except InterruptedError:
                continue
            except OSError:  # (EIO: a pty whose last writer left)
                break
            if not data or write_all(terminal_fd, data) is not None:
                break
    finally:
        for fd in (read_fd, terminal_fd):
            try:
                os.close(fd)
            except OSError:
                pass


class Pump(threading.Thread):
    """Reads each ``(read_fd, terminal_fd, stream)`` channel until end of file; every chunk goes
    to ``terminal_fd`` at once (``None``: nowhere) and to ``run.write(stream, chunk)``.

    A descriptor that cannot be polled (a regular file, ``/dev/null``) is always ready: its
    reads never wait, so it is simply read until end of file. The ``followed`` descriptors are
    regular files that the job writes to itself (see :func:`~hyperdash.channel.follow_file`):
    their end of file means nothing new yet, and they are read every :data:`FOLLOW_INTERVAL`
    until :meth:`stop`, then to their end.
    The read descriptors belong to the pump, which closes them when done. With
    ``follow_resizes``, a channel that is a pty standing in for a terminal takes each new window
    size of that terminal, within a fraction of a second. Each channel's bytes keep their order;
    between two channels only the order of the reads is known (one channel for both streams
    keeps their order: see :mod:`hyperdash.channel`).
    """

    def __init__(self, run: OutputSink, channels: Sequence[tuple[int, int | None, str]],
                 name: str = "hyperdash-pump", follow_resizes: bool = False, followed: Collection[int] = ()):
        super().__init__(name=name, daemon=True)
        self.sink = run
        self.channels = list(channels)
        self._followed = set(followed)
        self.follow_resizes = follow_resizes
        self._stopping = False
        self._stopped = threading.Event()  # set by stop(): a pause in progress ends at once
        # A pause on pipes waits in poll() for the last writer of one to leave (then its end of
        # file is read at once: the command under hyperdash run has exited, hyperdash pipe's
        # input has ended) or for a byte on a wake-up pipe of its own (stop() writes one), not
        # for the time alone.
        self._hangups: select.poll | None = None
        self._wake_fd: int | None = None  # the wake-up pipe's write end, while the thread runs
        self._wake_lock = threading.Lock()  # (so that no byte goes to a descriptor closed meanwhile)
        #: called by the thread as it ends (after the last chunk went on)
        self.on_end: Callable[[], None] | None = None
        #: whether a channel was closed because the reader of its destination went away
        self.reader_gone = False
        #: whether a channel that others still write to when the pump stops (a process the job
        #: started during its run) is then passed on to its terminal, unrecorded, until they
        #: close it, rather than closed under them (their next write would fail: SIGPIPE)
        self.pass_on_after_stop = False
        self._open: dict[int, tuple[int | None, str]] = {}
        # descriptors to close once the last chunk is written (the terminal copies of a capture)
        self.close_when_done: list[int] = []
        self._buffer = bytearray(CHUNK_SIZE)
        # time.monotonic() when the last read that brought bytes was done with (its pause included)
        self._last_read = float("-inf")
        self._pausable: set[int] = set()  # channels whose reads may wait for more to gather
        self._roomy: set[int] = set()  # pausable channels whose pipes hold STEADY_ROOM
        self._terminals: set[int] = set()  # open channels that are ptys: while any is, pipes never gather
        self._read_on: set[int] = set()  # those of them that never block a read: read on while bytes wait
        self._gathered = False  # whether the last read was followed by a pause to gather
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
        resizes = [PtyWindow(terminal_fd, read_fd) for read_fd, terminal_fd, _ in self.channels
                   if self.follow_resizes and terminal_fd is not None and isatty(read_fd) and isatty(terminal_fd)]
        # A pty holds a few KiB: a writer would wait on it during a pause as long as the pipes'
        # (one pump reads every channel), so no channel gathers thus while a pty is open; a pty
        # that floods pauses only PTY_PAUSE. Pipes (widened by open_channel) hold far more
        # than a pause lets gather.
        self._terminals = {fd for fd in self._open if isatty(fd)}
        self._read_on = self._terminals & never_block
        self._pausable = {fd for fd in self._open if fd not in unpolled and fd not in self._terminals}
        self._roomy = {fd for fd in self._pausable if pipe_size(fd) >= STEADY_ROOM}
        wake_read = None
        next_resize_check = 0.0
        try:
            wake_read = self._watch_hangups()
            while self._open:
                if resizes and time.monotonic() >= next_resize_check:
                    next_resize_check = time.monotonic() + RESIZE_CHECK_INTERVAL
                    follow_window_sizes(resizes, self._open)
                for read_fd in list(unpolled):
                    # (a followed file is read on while reads come back full: its writer never
                    # waits for the pump, which must keep up, not fall a read behind each look)
                    while (size := self._pump(read_fd, None)) == CHUNK_SIZE and read_fd in self._followed:
                        pass
                    if size < 0:
                        unpolled.remove(read_fd)
                # (only followed files left unpolled: they are looked at again in a moment)
                following = bool(unpolled) and not self._stopping and self._followed.issuperset(unpolled)
                if not selector.get_map():
                    if following:
                        self._stopped.wait(FOLLOW_INTERVAL)
                    continue
                ready = selector.select(FOLLOW_INTERVAL if following else 0 if self._stopping or unpolled else 0.2)
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
                if not (self.pass_on_after_stop and self._stopping and self._hand_over(read_fd)):
                    self._close(read_fd)
            for fd in self.close_when_done:
                try:
                    os.close(fd)
                except OSError:
                    pass
            with self._wake_lock:
                for end in (self._wake_fd, wake_read):
                    if end is not None:
                        os.close(end)
                self._wake_fd = self._hangups = None
            if self.on_end is not None:
                self.on_end()

    def _watch_hangups(self) -> int | None:
        """Set up the poll that pauses on pipes wait in (see ``_hangups``); the wake-up pipe's
        read end, or None where there is nothing to watch or no pipe to be had."""
        if not self._pausable:
            return None
        try:
            wake_read, wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            return None  # (pauses then wait for their time, or for stop())
        hangups = select.poll()
        hangups.register(wake_read, select.POLLIN)
        for fd in self._pausable:
            hangups.register(fd, 0)  # (a hang-up is always reported, whatever is asked)
        with self._wake_lock:
            self._wake_fd, self._hangups = wake_write, hangups
        if self._stopped.is_set():  # (stop() came before there was a pipe to wake)
            self._wake()
        return wake_read

    def _wake(self) -> None:
        """End a pause in poll() (see ``_hangups``), now or the next one."""
        with self._wake_lock:
            if self._wake_fd is not None:
                try:
                    os.write(self._wake_fd, b"\0")
                except OSError:
                    pass  # (full: a byte waits there already)

    def _pump(self, read_fd: int, selector: selectors.BaseSelector | None) -> int:
        """Move one chunk of ``read_fd`` on: its size, 0 when nothing was waiting, -1 at its
        end of file (then it is closed)."""
        # (taken before the read: a followed file's end means its last bytes only once a stop
        # came before the read that found it, not while the job may still be writing them)
        final = self._stopping
        try:
            # Into a buffer kept warm, then copied: a fresh buffer for each read would take its
            # page faults inside the read, while the kernel holds the pipe the job writes to.
            size = os.readv(read_fd, [self._buffer])
            ended = False
            if size and read_fd in self._read_on:
                size, ended = self._read_waiting(read_fd, size)
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
            if read_fd in self._followed and not final:
                return 0  # (its writer has written nothing more yet)
            self._end(read_fd, selector)
            return -1
        terminal_fd, stream = self._open[read_fd]
        error = write_all(terminal_fd, data) if terminal_fd is not None else None
        if error is not None:
            self._open[read_fd] = (None, stream)  # (the run goes on taking what comes)
        self.sink.write(stream, data)
        if error is not None and error.errno == errno.EPIPE:
            # Its reader went away (``| head``): the channel closes, so that the job's next write
            # to it fails as a write to that pipe would have (SIGPIPE), rather than its output
            # going on, unseen, for as long as it runs.
            self.reader_gone = True
            self._end(read_fd, selector)
            return -1
        if ended:
            self._end(read_fd, selector)
            return -1
        gathered = False
        if len(data) < FLOOD_FULL and not self._stopping and read_fd in self._pausable:
            if len(data) >= FLOOD_READ:
                # Output is flooding in: let it gather for a moment rather than being woken by
                # every write of the job (each wake-up costs the job a context switch). Not
                # when the read nearly filled the pipe: the job writes faster than a pause
                # would let the pipe hold, and it would be blocked until the pump came back.
                time.sleep(FLOOD_PAUSE)
            elif time.monotonic() - self._last_read < GATHER_WINDOW and not self._terminals:
                steady = self._gathered and read_fd in self._roomy and data.count(b"\n") >= STEADY_LINES
                self.gather(STEADY_PAUSE if steady else GATHER_PAUSE)
                gathered = True
        elif PTY_FLOOD <= len(data) < PTY_GATHER and not self._stopping and read_fd in self._read_on:
            self.gather(PTY_PAUSE)
        self._gathered = gathered
        # (after the pause: what came during it is read at once, and keeps the output streaming)
        self._last_read = time.monotonic()
        return len(data)

    def _read_waiting(self, read_fd: int, size: int) -> tuple[int, bool]:
        """Read on from a pty that does not block, after the ``size`` bytes in the buffer, while
        bytes are waiting, up to :data:`PTY_GATHER`: the size now in the buffer, and whether an
        end of file came after them (a terminal gives one, once, for a Ctrl-D). An error ends
        the reading; the next read meets it again."""
        while size < PTY_GATHER:
            try:
                more = os.readv(read_fd, [self._view[size:PTY_GATHER]])
            except OSError:
                break
            if not more:
                return size, True
            size += more
        return size, False

    def _end(self, read_fd: int, selector: selectors.BaseSelector | None) -> None:
        """``read_fd`` is at its end of file: no more reads of it."""
        if selector is not None:
            selector.unregister(read_fd)
        self._close(read_fd)

    def gather(self, seconds: float) -> None:
        """Let output gather for ``seconds`` before the next read (:meth:`stop` cuts it short,
        and so does the last writer of a pipe leaving)."""
        hangups = self._hangups
        if hangups is None or seconds < 0.001:  # (poll() counts whole milliseconds)
            self._stopped.wait(seconds)
        else:
            hangups.poll(seconds * 1000)

    def _close(self, read_fd: int) -> None:
        self._forget(read_fd)
        try:
            os.close(read_fd)
        except OSError:
            pass

    def _forget(self, read_fd: int) -> None:
        self._open.pop(read_fd, None)
        if self._hangups is not None and read_fd in self._pausable:
            self._hangups.unregister(read_fd)
            self._pausable.discard(read_fd)
        self._terminals.discard(read_fd)
        self._read_on.discard(read_fd)

    def _hand_over(self, read_fd: int) -> bool:
        """Pass a channel still open at the stop on to its terminal, in a small process of its
        own (see :attr:`pass_on_after_stop`), which outlives this one if need be; whether it
        was handed over."""
        terminal_fd = self._open[read_fd][0]
        if terminal_fd is None or read_fd in self._followed:
            return False
        import subprocess
        import sys

        try:
            os.set_blocking(read_fd, True)
            # (a session of its own: the terminal's Ctrl-C is for the processes that write; the
            # terminal as its stdout, whatever its number here: 1 or 2 would clash with its own)
            subprocess.Popen([sys.executable, "-c", _PASS_ON, str(read_fd), "1"],
                             pass_fds=(read_fd,), stdin=subprocess.DEVNULL,
                             stdout=terminal_fd, stderr=subprocess.DEVNULL, start_new_session=True)
        except (OSError, subprocess.SubprocessError):
            return False
        self._close(read_fd)  # (the pump's terminal copy closes as it ends)
        return True

    def stop(self, timeout: float = 2.0) -> None:
        """Take what is already written, then stop, even if writers (say, a child process that
        inherited the descriptor) still hold the channel open."""
        self._stopping = True
        self._stopped.set()
        self._wake()
        self.join(timeout)

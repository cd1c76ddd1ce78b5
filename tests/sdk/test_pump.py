"""The pump's gathering: steady output on a pipe waits a while between reads, a line now and
then does not, a terminal channel is never kept waiting for more than a moment (a flood through
one goes on in few trips), and a pause ends early at stop() and when the last writer of a pipe
leaves."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import threading
import time

import pytest

from hyperdash import pump as pump_module
from hyperdash.channel import F_SETPIPE_SZ, PIPE_SIZE, open_channel, pipe_size
from hyperdash.pump import GATHER_PAUSE, Pump

BURST = b"".join(f"step {i} loss 0.{i}\n".encode() for i in range(10))  # ten lines a write


class Received:
    """What the pump hands on (the pump's sink), in order."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.lock = threading.Lock()

    def write(self, stream: str, data: bytes) -> None:
        with self.lock:
            self.data += data


class WatchedPump(Pump):
    """A pump that notes each pause it takes to let output gather."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.pauses: list[float] = []

    def gather(self, seconds: float) -> None:
        self.pauses.append(seconds)
        super().gather(seconds)


def pipe_channel(size: int = PIPE_SIZE) -> tuple[int, int]:
    read_fd, write_fd = os.pipe()
    fcntl.fcntl(write_fd, F_SETPIPE_SZ, size)
    os.set_blocking(read_fd, False)
    return read_fd, write_fd


def write_steadily(fd: int, bursts: int, gap: float = 0.004) -> None:
    for _ in range(bursts):
        os.write(fd, BURST)
        time.sleep(gap)


def wait_for(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_steady_output_gathers_longer_and_stop_cuts_the_pause_short(monkeypatch):
    monkeypatch.setattr(pump_module, "STEADY_PAUSE", 60.0)  # longer than any test waits
    read_fd, write_fd = pipe_channel()
    received = Received()
    pump = WatchedPump(received, [(read_fd, None, "stdout")])
    pump.start()
    try:
        write_steadily(write_fd, 50)
        wait_for(lambda: 60.0 in pump.pauses)
        # The first pause is short whatever the read brought: the first small read of a flood
        # looks just the same, and the job would wait on a full pipe during a long pause.
        assert pump.pauses[0] == GATHER_PAUSE
        started = time.monotonic()
        pump.stop(timeout=10)
        assert not pump.is_alive() and time.monotonic() - started < 10
        assert bytes(received.data) == BURST * 50  # what was written before stop(), all of it
    finally:
        os.close(write_fd)
        pump.stop()


def test_the_last_writer_leaving_ends_a_pause(monkeypatch):
    # every read after the first counts as output streaming in, and pauses longer than any test
    monkeypatch.setattr(pump_module, "GATHER_WINDOW", 60.0)
    monkeypatch.setattr(pump_module, "GATHER_PAUSE", 60.0)
    read_fd, write_fd = pipe_channel()
    received = Received()
    pump = WatchedPump(received, [(read_fd, None, "stdout")])
    pump.start()
    try:
        os.write(write_fd, b"first\n")
        wait_for(lambda: received.data == b"first\n")
        os.write(write_fd, b"second\n")
        wait_for(lambda: pump.pauses == [60.0])
        os.write(write_fd, b"last\n")
        started = time.monotonic()
        os.close(write_fd)  # the command has exited (hyperdash pipe: its input has ended)
        write_fd = -1
        pump.join(10)
        assert not pump.is_alive() and time.monotonic() - started < 10
        assert bytes(received.data) == b"first\nsecond\nlast\n"  # to the end of file
    finally:
        if write_fd >= 0:
            os.close(write_fd)
        pump.stop()


def test_a_line_now_and_then_is_passed_on_at_once():
    read_fd, write_fd = pipe_channel()
    received = Received()
    pump = WatchedPump(received, [(read_fd, None, "stdout")])
    pump.start()
    try:
        for i in range(3):
            os.write(write_fd, f"epoch {i}\n".encode())
            wait_for(lambda lines=i + 1: received.data.count(b"\n") == lines)
            time.sleep(0.1)  # a quiet spell
        assert pump.pauses == []
    finally:
        os.close(write_fd)
        pump.stop()


def test_no_channel_gathers_while_a_terminal_channel_is_open():
    read_fd, write_fd = pipe_channel()
    master, slave = pty.openpty()
    os.set_blocking(master, False)
    received = Received()
    pump = WatchedPump(received, [(master, None, "stdout"), (read_fd, None, "stderr")])
    pump.start()
    try:
        write_steadily(write_fd, 30)
        os.write(slave, b"to the terminal\n")
        wait_for(lambda: received.data.count(b"\n") == 30 * 10 + 1)
        assert pump.pauses == []  # the job's writes to its terminal never wait on a pause
        os.close(slave)  # the terminal is gone: the pipe alone may gather again
        wait_for(lambda: master not in pump._open)
        write_steadily(write_fd, 30)
        wait_for(lambda: received.data.count(b"\n") == 60 * 10 + 1)
        assert pump.pauses
    finally:
        os.close(write_fd)
        pump.stop()


def test_a_pipe_that_holds_little_never_gathers_long():
    read_fd, write_fd = pipe_channel(size=16 * 1024)
    if pipe_size(read_fd) >= pump_module.STEADY_ROOM:
        pytest.skip("this kernel would not make the pipe small")
    received = Received()
    pump = WatchedPump(received, [(read_fd, None, "stdout")])
    pump.start()
    try:
        write_steadily(write_fd, 50)
        wait_for(lambda: received.data.count(b"\n") == 50 * 10)
        assert pump.pauses and set(pump.pauses) == {GATHER_PAUSE}
    finally:
        os.close(write_fd)
        pump.stop()


class CountedReceived(Received):
    """What the pump hands on, and in how many trips."""

    def __init__(self) -> None:
        super().__init__()
        self.trips = 0

    def write(self, stream: str, data: bytes) -> None:
        self.trips += 1
        super().write(stream, data)


def terminal_channel() -> tuple[int, int]:
    """A channel standing in for a terminal, as a capture opens one: (read_fd, write_fd)."""
    terminal, terminal_slave = pty.openpty()
    try:
        return open_channel(terminal_slave)
    finally:
        os.close(terminal)
        os.close(terminal_slave)


def test_a_flood_through_a_terminal_channel_goes_on_in_one_trip_then_the_pump_pauses_a_moment():
    read_fd, write_fd = terminal_channel()
    # two reads' worth (a pty passes at most 4 KiB a read), which a pty holds without its writer
    # waiting (ptys here took 11 to 18 KiB)
    output = b"".join(b"line %05d " % i + b"." * 69 + b"\n" for i in range(100))
    os.set_blocking(write_fd, False)
    try:
        written = os.write(write_fd, output)
    except BlockingIOError:
        written = 0
    if written < len(output):
        os.close(read_fd)
        os.close(write_fd)
        pytest.skip(f"this kernel's ptys hold {written} bytes")
    select.select([read_fd], [], [], 5)
    time.sleep(0.05)  # (the kernel moves a pty's bytes on to its reader in the background)
    received = CountedReceived()
    pump = WatchedPump(received, [(read_fd, None, "stdout")])
    pump.start()
    try:
        wait_for(lambda: len(received.data) == len(output))
        # The pump read on while bytes were waiting: one trip; then it paused, so that more
        # would gather in the pty before its next read.
        assert bytes(received.data) == output and received.trips == 1
        wait_for(lambda: pump.pauses == [pump_module.PTY_PAUSE])
        os.write(write_fd, b"a prompt> ")  # a little output: on at once, no pause
        wait_for(lambda: received.data.endswith(b"a prompt> "))
        time.sleep(0.05)
        assert received.trips == 2 and pump.pauses == [pump_module.PTY_PAUSE]
    finally:
        os.close(write_fd)
        pump.stop()


def test_an_end_of_file_after_the_bytes_of_a_terminal_read_ends_its_channel():
    # `hyperdash pipe` reading a terminal that does not block: a line, then Ctrl-D, which gives
    # one empty read before more input is waited for.
    terminal, stdin = pty.openpty()
    os.set_blocking(stdin, False)
    os.write(terminal, b"a line typed\n\x04")
    select.select([stdin], [], [], 5)
    time.sleep(0.05)
    received = CountedReceived()
    pump = Pump(received, [(stdin, None, "stdout")])
    pump.start()
    try:
        pump.join(10)
        assert not pump.is_alive()  # the channel ended: the pump has nothing left to read
        assert bytes(received.data) == b"a line typed\n"
    finally:
        os.close(terminal)
        pump.stop()

"""pump.Pump on descriptors that cannot be polled: regular files and /dev/null."""

from __future__ import annotations

import os

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

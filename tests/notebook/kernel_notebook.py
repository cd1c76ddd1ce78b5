"""Run a notebook in a real Jupyter kernel (ipykernel), cell by cell, driven by nbclient.

Cells are added and run one at a time, so a test can look at what the notebook showed after each
of them, and interrupt one while it runs.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager

import nbformat
from jupyter_client.utils import run_sync
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

# Seconds one cell may run before the test fails; a cell here does at most a few seconds of work.
CELL_TIMEOUT = 45
KERNEL_STARTUP_TIMEOUT = 60


class RecordingClient(NotebookClient):
    """An nbclient that also notes when each output message of the kernel arrived."""

    def __init__(self, nb, **kwargs):
        super().__init__(nb, **kwargs)
        self.arrivals: list[tuple[float, int, dict]] = []

    def process_message(self, msg, cell, cell_index):
        # Only messages whose parent is the running cell get here, as in Jupyter's own front end.
        self.arrivals.append((time.monotonic(), cell_index, msg))
        return super().process_message(msg, cell, cell_index)


class Notebook:
    """A notebook open in a running kernel: ``run`` appends a code cell and executes it."""

    def __init__(self, client: RecordingClient):
        self.client = client
        self.nb = client.nb
        #: the file the kernel's own stdout and stderr go to, where it was started with one
        self.console_log = None

    def run(self, source: str, *, error: bool = False, timeout: float = CELL_TIMEOUT):
        """Run one cell and return it, outputs filled in as Jupyter would show them.

        A cell whose execution ends in an error must be expected with ``error=True``; one that
        was expected to fail but succeeded fails the test.
        """
        cell = nbformat.v4.new_code_cell(source)
        self.nb.cells.append(cell)
        self.client.timeout = timeout
        try:
            self.client.execute_cell(cell, len(self.nb.cells) - 1)
        except CellExecutionError:
            if not error:
                raise
        else:
            assert not error, f"the cell was expected to fail but did not; outputs: {cell.outputs}"
        return cell

    @contextmanager
    def interrupt_when(self, condition, timeout: float = 20.0):
        """Interrupt the kernel (as Jupyter's stop button does) once ``condition()`` is true.

        Meant to wrap ``run``: the condition is polled from a thread while the cell runs.
        """
        failures: list[BaseException] = []

        def watch():
            deadline = time.monotonic() + timeout
            try:
                while not condition():
                    if time.monotonic() > deadline:
                        raise AssertionError(f"interrupt condition not met within {timeout}s")
                    time.sleep(0.1)
                run_sync(self.client.km.interrupt_kernel)()
            except BaseException as exc:  # reported in the test's own thread below
                failures.append(exc)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            yield
        finally:
            watcher.join(timeout + 5)
        if failures:
            raise failures[0]

    def stream_messages(self, cell, name: str = "stdout") -> list[tuple[float, str]]:
        """(arrival time, text) of each stream message the kernel sent for ``cell``."""
        index = next(i for i, other in enumerate(self.nb.cells) if other is cell)
        return [
            (arrived, msg["content"]["text"])
            for arrived, cell_index, msg in self.client.arrivals
            if cell_index == index and msg["msg_type"] == "stream" and msg["content"]["name"] == name
        ]


def shown(cell, name: str = "stdout") -> str:
    """The text the notebook shows for ``cell`` on stream ``name``."""
    return "".join(out["text"] for out in cell.outputs if out["output_type"] == "stream" and out["name"] == name)


def errors(cell) -> list[dict]:
    """The error outputs (tracebacks) the notebook shows for ``cell``."""
    return [out for out in cell.outputs if out["output_type"] == "error"]


def log_texts(account, run_uuid: str, stream: str | None = None) -> list[str]:
    """The log lines the server stored for a run, in order, optionally of one stream only."""
    return [line["text"] for line in account.logs(run_uuid) if stream is None or line["stream"] == stream]

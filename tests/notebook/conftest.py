"""Fixtures for the notebook tests: a real kernel that reports to the test server."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import nbformat
import pytest
from kernel_notebook import CELL_TIMEOUT, KERNEL_STARTUP_TIMEOUT, Notebook, RecordingClient


@pytest.fixture
def notebook(account, hyperdash_home: Path, tmp_path: Path):
    """An empty notebook in a fresh kernel that reports to the test server as ``account``."""
    with _open_notebook(account, hyperdash_home, tmp_path) as nb:
        yield nb


@pytest.fixture
def notebook_without_fd_forwarding(account, hyperdash_home: Path, tmp_path: Path):
    """As ``notebook``, in a kernel that leaves its descriptors 1 and 2 to its console (ipykernel's
    ``capture_fd_output`` off, as it is under pytest): the notebook shows Python's writes alone."""
    with _open_notebook(account, hyperdash_home, tmp_path, ["--IPKernelApp.capture_fd_output=False"]) as nb:
        yield nb


@pytest.fixture
def notebook_logging_to_a_file(account, hyperdash_home: Path, tmp_path: Path):
    """As ``notebook_without_fd_forwarding``, in a kernel whose stdout and stderr both go to one
    regular file, as under ``jupyter lab > jupyter.log 2>&1``; the file is ``nb.console_log``."""
    console_log = tmp_path / "jupyter.log"
    with open(console_log, "wb") as console, _open_notebook(
            account, hyperdash_home, tmp_path, ["--IPKernelApp.capture_fd_output=False"],
            stdout=console, stderr=console) as nb:
        nb.console_log = console_log
        yield nb


@contextmanager
def _open_notebook(account, hyperdash_home: Path, tmp_path: Path, kernel_arguments: Sequence[str] = (),
                   **launch_options: Any) -> Iterator[Notebook]:
    workdir = tmp_path / "notebook"
    workdir.mkdir()
    nb = nbformat.v4.new_notebook()
    client = RecordingClient(
        nb,
        timeout=CELL_TIMEOUT,
        startup_timeout=KERNEL_STARTUP_TIMEOUT,
        kernel_name="python3",
        resources={"metadata": {"path": str(workdir)}},
        record_timing=False,
        extra_arguments=list(kernel_arguments),
    )
    env = account.sdk_env(hyperdash_home)
    # ipykernel forwards what reaches descriptors 1 and 2 to the notebook, as in Jupyter,
    # unless it believes it runs under pytest.
    env.pop("PYTEST_CURRENT_TEST", None)
    with client.setup_kernel(env=env, **launch_options):
        yield Notebook(client)

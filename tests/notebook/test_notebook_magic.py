"""The %%monitor_cell magic in a real Jupyter kernel, against the real server."""

from __future__ import annotations

from kernel_notebook import errors, log_texts, shown

MAGIC_CELL = """\
%%monitor_cell dogs vs. cats
import sys, time
print("Epoch 1, accuracy: 50%")
time.sleep(2)
print("Epoch 2, accuracy: 75%")
print("loss is noisy", file=sys.stderr)
!echo from a shell escape
learning_rate = exp.param("learning rate", 0.01)
exp.metric("accuracy", 0.75)
answer = 42
"""


def test_cell_output_shows_live_and_reaches_the_server_as_a_run(notebook, account):
    assert notebook.run("from hyperdash import monitor_cell").outputs == []
    notebook.run("exp = 'my own exp'")

    cell = notebook.run(MAGIC_CELL)

    # The notebook shows the cell's output as usual, and the first line while the cell still ran.
    assert "Epoch 1, accuracy: 50%\n" in shown(cell)
    assert "Epoch 2, accuracy: 75%\n" in shown(cell)
    assert "loss is noisy\n" in shown(cell, "stderr")
    # Where to watch the run, once, as it starts (first of what the cell shows on stderr).
    assert shown(cell, "stderr").count("hyperdash: follow this run at ") == 1
    assert shown(cell, "stderr").startswith("hyperdash: follow this run at " + account.server.url + "/runs/")
    assert "from a shell escape" in shown(cell)  # IPython's own syntax works in the cell
    assert errors(cell) == []
    arrivals = notebook.stream_messages(cell)
    first = min(t for t, text in arrivals if "Epoch 1" in text)
    second = min(t for t, text in arrivals if "Epoch 2" in text)
    assert second - first > 1.0, "the first line was not shown until the cell had finished"

    # The cell's names stay in the notebook; the user's own `exp` is back.
    after = notebook.run("print(answer, learning_rate, exp)")
    assert shown(after) == "42 0.01 my own exp\n"

    run = account.wait_for_run("dogs vs. cats", status="success")
    texts = log_texts(account, run["uuid"])
    assert texts.index("Epoch 1, accuracy: 50%") < texts.index("Epoch 2, accuracy: 75%")
    assert texts.count("Epoch 1, accuracy: 50%") == 1
    assert "loss is noisy" in log_texts(account, run["uuid"], "stderr")
    assert "from a shell escape" in texts
    assert "hyperdash: follow this run at " + account.server.url + "/runs/" + run["uuid"][:8] in shown(cell, "stderr")
    assert not any("follow this run" in text for text in texts)  # said to the person, not logged
    details = account.run(run["uuid"])
    assert details["api"] == "jupyter"
    assert details["params"]["learning rate"] == 0.01
    assert details["metrics"]["accuracy"]["value"] == 0.75


def test_a_raising_cell_shows_its_traceback_and_the_run_fails(notebook, account):
    notebook.run("from hyperdash import monitor_cell")

    cell = notebook.run(
        "%%monitor_cell broken\nprint('about to fail')\nraise ValueError('bad batch')", error=True
    )

    # The notebook marks the cell failed and shows the traceback once, with the cell's own frame.
    [error] = errors(cell)
    assert (error["ename"], error["evalue"]) == ("ValueError", "bad batch")
    assert "about to fail\n" in shown(cell)
    assert "hyperdash" not in "".join(error["traceback"])
    # The kernel goes on.
    assert shown(notebook.run("print('next cell')")) == "next cell\n"

    run = account.wait_for_run("broken", status="failure")
    texts = log_texts(account, run["uuid"])
    assert "about to fail" in texts
    stderr = log_texts(account, run["uuid"], "stderr")
    assert "Traceback (most recent call last):" in stderr
    assert "ValueError: bad batch" in stderr
    assert "    raise ValueError('bad batch')" in stderr
    # From the cell's frame down, as a script's: not the kernel's frames that ran the cell.
    assert not any("/IPython/" in line or "/ipykernel/" in line for line in stderr)


def test_interrupting_the_kernel_cancels_the_run(notebook, account):
    notebook.run("from hyperdash import monitor_cell")

    def waiting_line_on_server():
        runs = account.runs(name="patience")
        return runs and "waiting" in log_texts(account, runs[0]["uuid"])

    with notebook.interrupt_when(waiting_line_on_server):
        cell = notebook.run(
            "%%monitor_cell patience\nimport time\nprint('waiting', flush=True)\ntime.sleep(60)",
            error=True,
            timeout=40,
        )

    assert [e["ename"] for e in errors(cell)] == ["KeyboardInterrupt"]
    run = account.wait_for_run("patience", status="user_canceled")
    assert "waiting" in log_texts(account, run["uuid"])
    assert shown(notebook.run("print('still alive')")) == "still alive\n"


def test_a_cell_with_a_top_level_await_gets_a_usage_message_and_creates_no_run(notebook, account):
    # It used to start a run that failed with "This event loop is already running".
    notebook.run("from hyperdash import monitor_cell")
    cell = notebook.run("%%monitor_cell waits\nimport asyncio\nprint('must not run')\nawait asyncio.sleep(0)",
                        error=True)
    assert shown(cell, "stderr") == (
        "UsageError: %%monitor_cell cannot run a cell with a top-level await (a cell magic's cell runs inside "
        "the running cell, whose event loop is busy): start the run in a cell before, exp = Experiment('waits'), "
        "and end it in a cell after, exp.end()\n")
    assert "must not run" not in shown(cell)
    # What it says works: a plain cell awaits inside the open experiment's run.
    notebook.run("from hyperdash import Experiment\nexp = Experiment('waits')")
    notebook.run("import asyncio\nawait asyncio.sleep(0)\nprint('awaited')")
    notebook.run("exp.end()")
    run = account.wait_for_run("waits", status="success")
    assert [r["name"] for r in account.runs()] == ["waits"]
    assert log_texts(account, run["uuid"]) == ["awaited"]


def test_an_empty_name_gets_a_usage_message_and_creates_no_run(notebook, account):
    notebook.run("from hyperdash import monitor_cell")

    for magic_line in ("%%monitor_cell", "%%monitor_cell    "):
        cell = notebook.run(f"{magic_line}\nprint('must not run')", error=True)
        # IPython shows a UsageError as one line, without a traceback.
        assert shown(cell, "stderr") == (
            "UsageError: %%monitor_cell needs the run's name: %%monitor_cell NAME, "
            "for example %%monitor_cell dogs vs. cats\n"
        )
        assert "must not run" not in shown(cell)

    # A named cell afterwards works, and it is the account's only run.
    notebook.run("%%monitor_cell named\nprint('ran')")
    account.wait_for_run("named", status="success")
    assert [run["name"] for run in account.runs()] == ["named"]


def test_load_ext_registers_the_magic(notebook, account):
    before = notebook.run("%%monitor_cell too early\nprint('x')", error=True)
    assert shown(before, "stderr") == "UsageError: Cell magic `%%monitor_cell` not found.\n"

    assert notebook.run("%load_ext hyperdash").outputs == []
    cell = notebook.run("%%monitor_cell loaded as an extension\nprint('via load_ext')")

    assert shown(cell) == "via load_ext\n"
    run = account.wait_for_run("loaded as an extension", status="success")
    assert log_texts(account, run["uuid"]) == ["via load_ext"]


def test_output_written_to_the_kernels_file_descriptors_reaches_the_run(notebook, account):
    notebook.run("from hyperdash import monitor_cell")

    cell = notebook.run(
        "%%monitor_cell child processes\nimport os\nprint('from python')\nos.system('echo from a child')\n"
        "_ = os.write(2, b'straight to fd 2\\n')"
    )

    assert "from python\n" in shown(cell) and "from a child\n" in shown(cell)
    assert shown(cell).count("from a child") == 1 and shown(cell).count("from python") == 1
    assert "straight to fd 2\n" in shown(cell, "stderr")
    run = account.wait_for_run("child processes", status="success")
    texts = log_texts(account, run["uuid"])
    assert texts.count("from python") == 1
    assert texts.count("from a child") == 1
    assert log_texts(account, run["uuid"], "stderr").count("straight to fd 2") == 1


def test_what_reaches_the_descriptors_is_stored_once_where_the_kernels_stdout_and_stderr_share_a_file(
        notebook_logging_to_a_file, account):
    # Under `jupyter lab > jupyter.log 2>&1` the run followed that file once for each descriptor:
    # each line written straight to them was stored twice.
    notebook = notebook_logging_to_a_file
    notebook.run("%load_ext hyperdash")

    cell = notebook.run(
        "%%monitor_cell one console file\n"
        "import os, subprocess, sys\n"
        "print('from python')\n"
        "_ = os.write(1, b'straight to fd 1\\n')\n"
        "_ = subprocess.run(['echo', 'from a child'])\n"
        "_ = os.write(2, b'straight to fd 2\\n')\n"
        "print('python warns', file=sys.stderr)\n"
    )

    assert errors(cell) == []
    run = account.wait_for_run("one console file", status="success")
    texts = log_texts(account, run["uuid"])
    through_descriptors = ["straight to fd 1", "from a child", "straight to fd 2"]
    assert sorted(texts) == sorted(["from python", "python warns", *through_descriptors])
    assert [text for text in texts if text in through_descriptors] == through_descriptors
    assert log_texts(account, run["uuid"], "stderr") == ["python warns"]
    # The file still gets what the descriptors took, once, in order.
    assert notebook.console_log.read_text().count("straight to fd 1\nfrom a child\nstraight to fd 2\n") == 1


def test_the_runs_notices_show_in_the_cell_where_the_kernel_leaves_its_descriptors_to_its_console(
        notebook_without_fd_forwarding, account, hyperdash_home):
    # They were written to descriptor 2, which such a kernel leaves to its console: the cell
    # never said where to follow the run.
    notebook = notebook_without_fd_forwarding
    notebook.run("%load_ext hyperdash")

    cell = notebook.run("%%monitor_cell noticed\n"
                        "exp.params({'optim': {'lr': 0.2}, 'optim.lr': 0.3}, log=False)\n"
                        "print('ran')")

    run = account.wait_for_run("noticed", status="success")
    said = shown(cell, "stderr")
    assert said.startswith("hyperdash: follow this run at " + account.server.url + "/runs/" + run["uuid"][:8] + "\n")
    assert said.count("hyperdash: param 'optim.lr' is given twice; the last value is recorded\n") == 1
    # (and where its log is, as it ends)
    logs = hyperdash_home / "logs" / "noticed"
    assert said.splitlines()[-1].startswith(f"hyperdash: the log of this run is at {logs}/")
    assert shown(cell) == "ran\n"
    assert log_texts(account, run["uuid"]) == ["ran"]  # said to the person, not logged

    notebook.run("from hyperdash import Experiment\nexp = Experiment('first')")
    again = notebook.run("exp = Experiment('second')\nexp.end()")
    assert shown(again, "stderr").count("hyperdash: the run 'first' was ended (success) because a new Experiment") == 1


def test_stall_after_sets_the_runs_stall_window(notebook, account):
    notebook.run("from hyperdash import monitor_cell")

    cell = notebook.run("%%monitor_cell --stall-after 90s windowed cell\nprint('ran')")
    assert shown(cell) == "ran\n" and errors(cell) == []
    run = account.wait_for_run("windowed cell", status="success")
    stall = account.get(f"/api/v1/runs/{run['uuid']}/stall").json()
    assert (stall["stall_after_s"], stall["source"]) == (90.0, "run")

    notebook.run("%%monitor_cell after the name --stall-after=off\nprint('ran')")
    run = account.wait_for_run("after the name", status="success")
    stall = account.get(f"/api/v1/runs/{run['uuid']}/stall").json()
    assert (stall["stall_after_s"], stall["source"]) == (0.0, "run")


def test_a_bad_stall_after_gets_a_usage_message_and_creates_no_run(notebook, account):
    notebook.run("from hyperdash import monitor_cell")

    said = {
        "--stall-after soon bad window": "%%monitor_cell --stall-after: a duration is a number with an optional "
        "unit (ms, s, m, h, d) such as 90s, 10m or 1h, not 'soon'",
        "bad window --stall-after": "%%monitor_cell --stall-after needs a duration: %%monitor_cell "
        "--stall-after 10m NAME (90s, 10m, 1h; 0 or off never)",
        "--stall-after 90d bad window": "%%monitor_cell --stall-after: a stall window is at most 30 days",
        "--stall-after= bad window": "%%monitor_cell --stall-after needs a duration: %%monitor_cell "
        "--stall-after 10m NAME (90s, 10m, 1h; 0 or off never)",
        "bad window --stall-after=--x": "%%monitor_cell --stall-after: a duration is a number with an optional "
        "unit (ms, s, m, h, d) such as 90s, 10m or 1h, not '--x'",
        "--stall-after 10m": "%%monitor_cell needs the run's name: %%monitor_cell NAME, "
        "for example %%monitor_cell dogs vs. cats",
    }
    for magic_line, message in said.items():
        cell = notebook.run(f"%%monitor_cell {magic_line}\nprint('must not run')", error=True)
        assert shown(cell, "stderr") == f"UsageError: {message}\n"
        assert "must not run" not in shown(cell)
    assert account.runs() == []

"""An Experiment that spans cells, and @monitor, in a real Jupyter kernel against the real server."""

from __future__ import annotations

import os
import signal
import threading
import time

from jupyter_client.utils import run_sync
from kernel_notebook import errors, log_texts, shown


def test_an_experiment_spans_cells_and_captures_only_while_open(notebook, account):
    notebook.run("print('before the experiment')")
    opening = notebook.run("from hyperdash import Experiment\nexp = Experiment('across cells')")
    assert errors(opening) == []

    # Each cell's output shows in that cell, live, while the experiment captures it.
    epoch = notebook.run(
        "import time\nprint('epoch 1')\ntime.sleep(2)\nprint('epoch 2')\n"
        "exp.metric('loss', 0.5)"
    )
    assert "epoch 1\nepoch 2\n" in shown(epoch)
    arrivals = notebook.stream_messages(epoch)
    first = min(t for t, text in arrivals if "epoch 1" in text)
    second = min(t for t, text in arrivals if "epoch 2" in text)
    assert second - first > 1.0, "the cell's first line was not shown until the cell had finished"

    warning = notebook.run("import sys\nprint('a warning', file=sys.stderr)\nexp.param('batch size', 64)")
    assert "a warning\n" in shown(warning, "stderr")

    assert errors(notebook.run("exp.end()")) == []
    after = notebook.run("print('after the experiment')")
    assert shown(after) == "after the experiment\n"

    run = account.wait_for_run("across cells", status="success")
    texts = log_texts(account, run["uuid"])
    assert texts.index("epoch 1") < texts.index("epoch 2")
    assert "a warning" in log_texts(account, run["uuid"], "stderr")
    assert "before the experiment" not in texts
    assert "after the experiment" not in texts
    details = account.run(run["uuid"])
    assert details["metrics"]["loss"]["value"] == 0.5
    assert details["params"]["batch size"] == 64
    assert len(account.runs(name="across cells")) == 1


def test_monitor_decorator_works_in_a_notebook(notebook, account):
    notebook.run(
        "from hyperdash import monitor\n\n"
        "@monitor('decorated in a notebook')\n"
        "def train(exp):\n"
        "    print('training')\n"
        "    exp.metric('accuracy', 0.9)\n"
        "    return 'trained'\n"
    )

    cell = notebook.run("train()")

    assert "training\n" in shown(cell)
    [result] = [out for out in cell.outputs if out["output_type"] == "execute_result"]
    assert result["data"]["text/plain"] == "'trained'"
    run = account.wait_for_run("decorated in a notebook", status="success")
    assert "training" in log_texts(account, run["uuid"])
    assert account.run(run["uuid"])["metrics"]["accuracy"]["value"] == 0.9

    failing = notebook.run(
        "@monitor('decorated and failing')\ndef broken():\n    raise RuntimeError('no data')\n\nbroken()",
        error=True,
    )
    assert [(e["ename"], e["evalue"]) for e in errors(failing)] == [("RuntimeError", "no data")]
    run = account.wait_for_run("decorated and failing", status="failure")
    assert "RuntimeError: no data" in log_texts(account, run["uuid"], "stderr")


def test_rerunning_the_cell_that_creates_an_experiment_ends_the_previous_one(notebook, account):
    creating = "from hyperdash import Experiment\nexp = Experiment('rerun {}')"
    notebook.run(creating.format("first"))
    notebook.run("print('for the first run')\nexp.metric('loss', 1.0)")

    rerun = notebook.run(creating.format("second"))

    assert errors(rerun) == []
    assert shown(rerun, "stderr").count("was ended (success) because a new Experiment") == 1
    assert "'rerun first'" in shown(rerun, "stderr")
    later = notebook.run("import os\nprint('for the second run')\n_ = os.system('echo second child')")
    assert shown(later) == "for the second run\nsecond child\n"
    notebook.run("exp.end()")
    after = notebook.run("print('after both')")
    assert shown(after) == "after both\n"

    first = account.wait_for_run("rerun first", status="success")
    second = account.wait_for_run("rerun second", status="success")
    assert log_texts(account, first["uuid"]) == ["for the first run", "| loss:   1.000000 |"]
    assert log_texts(account, second["uuid"]) == ["for the second run", "second child"]



def test_a_stop_ends_the_run_and_never_the_kernel(notebook, account):
    # An idle kernel ignores SIGINT: a stop used to end in the kernel's SIGTERM, and every
    # variable of the notebook was lost; a busy one had its cell interrupted, and the run went on.
    notebook.run("from hyperdash import Experiment\nexp = Experiment('stopped while idle')\nmodel = 'precious'")
    idle = account.wait_for_run("stopped while idle", "running", timeout=30)
    account.stop_run(idle["uuid"])
    ended = account.wait_until_ended(idle["uuid"], timeout=30)
    assert ended["status"] == "user_canceled" and ended["stop"]["by"] == account.email
    time.sleep(1)
    assert shown(notebook.run("print(model)")) == "precious\n"

    notebook.run("exp = Experiment('stopped while busy')")
    busy = account.wait_for_run("stopped while busy", "running", timeout=30)

    def stop_once_ready() -> None:
        account.wait_for(lambda: "ready" in log_texts(account, busy["uuid"]), timeout=30)
        account.stop_run(busy["uuid"])

    stopper = threading.Thread(target=stop_once_ready)
    stopper.start()
    cell = notebook.run("import time\nprint('ready', flush=True)\nfor _ in range(600):\n    time.sleep(0.1)",
                        error=True)
    stopper.join()
    assert "KeyboardInterrupt" in str(errors(cell))
    ended = account.wait_until_ended(busy["uuid"], timeout=30)
    assert ended["status"] == "user_canceled"
    assert shown(notebook.run("print(model)")) == "precious\n"


def test_a_cells_sys_exit_or_error_does_not_decide_how_the_run_ends(notebook, account):
    # A cell's sys.exit (argparse's, say) ends the cell, not the kernel: it used to leave its
    # code to the run, which ended failure when the kernel shut down after good work.
    notebook.run("from hyperdash import Experiment\nexp = Experiment('kernel goes on')")
    notebook.run("import argparse\nargparse.ArgumentParser().parse_args(['--no-such-option'])", error=True)
    notebook.run("raise ValueError('a typo, mended in the next cell')", error=True)
    notebook.run("exp.metric('loss', 0.1)\nprint('trained')")
    run = account.wait_for_run("kernel goes on", "running", timeout=30)
    run_sync(notebook.client.km.shutdown_kernel)(now=False)  # (as Jupyter's Shut Down does)
    ended = account.wait_until_ended(run["uuid"], timeout=30)
    assert ended["status"] == "success" and ended["exit_code"] is None


def test_a_monitored_cell_inside_an_open_experiment_leaves_it_recording(notebook, account):
    # The open experiment used to end success at the first monitored cell, and its later
    # metrics were dropped though the notebook showed them.
    notebook.run("%load_ext hyperdash")
    notebook.run("from hyperdash import Experiment\nspan = Experiment('spanning')\nprint('setting up')")
    notebook.run("%%monitor_cell one cell\nprint('in the cell')")
    notebook.run("span.metric('train_loss', 0.25)\nprint('after the cell')\nspan.end()")
    cell = account.wait_for_run("one cell", status="success")
    assert log_texts(account, cell["uuid"]) == ["in the cell"]
    spanning = account.wait_for_run("spanning", status="success")
    assert log_texts(account, spanning["uuid"]) == ["setting up", "| train_loss:   0.250000 |", "after the cell"]
    assert account.run(spanning["uuid"])["metrics"]["train_loss"]["value"] == 0.25


def test_what_forked_workers_print_is_in_the_run_and_shown_once(notebook, account):
    # A data loader's or a pool's forked workers print through the kernel's streams, which sent
    # it to the notebook alone: the run's log missed it.
    notebook.run("%load_ext hyperdash")
    cell = notebook.run(
        "%%monitor_cell forked workers\n"
        "import multiprocessing\n"
        "def work(i):\n"
        "    print(f'worker {i}', flush=True)\n"
        "    return i\n"
        "import time\n"
        "with multiprocessing.get_context('fork').Pool(2) as pool:\n"
        "    results = sorted(pool.map(work, range(4)))\n"
        # (the run takes the workers' lines from a channel of their own, a moment later than
        # the cell's: printing at once could come between the pieces of a print)
        "time.sleep(0.5)\n"
        "print('results', results)\n"
    )
    # Each worker's print shows once; the kernel may show the pieces of two workers' prints
    # (a line, its end) interleaved, as it does without the magic.
    assert [shown(cell).count(f"worker {i}") for i in range(4)] == [1, 1, 1, 1]
    assert sorted(shown(cell)) == sorted("".join(f"worker {i}\n" for i in range(4)) + "results [0, 1, 2, 3]\n")
    run = account.wait_for_run("forked workers", status="success")
    assert sorted(log_texts(account, run["uuid"])) == ["results [0, 1, 2, 3]", "worker 0", "worker 1", "worker 2",
                                                        "worker 3"]


POOL_CELL = """\
import multiprocessing, sys
def work(i):
    print(f'worker {i}', flush=True)
    print(f'worker {i} warns', file=sys.stderr)
    return i
with multiprocessing.get_context('fork').Pool(2) as pool:
    results = pool.map(work, range(4))
"""


def test_forked_workers_print_in_the_cell_where_the_kernel_leaves_its_descriptors_to_its_console(
        notebook_without_fd_forwarding, account):
    # Their prints went to the kernel's descriptors, which such a kernel does not forward: they
    # showed in the kernel's console instead of in the cell, where the cell shows them without
    # the magic.
    notebook = notebook_without_fd_forwarding
    notebook.run("%load_ext hyperdash")

    plain = notebook.run(POOL_CELL)
    monitored = notebook.run("%%monitor_cell forked workers\n" + POOL_CELL)

    for cell in (plain, monitored):
        assert [shown(cell).count(f"worker {i}") for i in range(4)] == [1, 1, 1, 1], shown(cell)
        assert [shown(cell, "stderr").count(f"worker {i} warns") for i in range(4)] == [1, 1, 1, 1]
    # (the same characters: the workers' pieces may come in another order)
    assert sorted(shown(monitored)) == sorted(shown(plain))
    run = account.wait_for_run("forked workers", status="success")
    assert sorted(log_texts(account, run["uuid"], "stdout")) == [f"worker {i}" for i in range(4)]
    assert sorted(log_texts(account, run["uuid"], "stderr")) == [f"worker {i} warns" for i in range(4)]


def test_a_kernel_terminated_ends_its_open_run_killed(notebook, account):
    notebook.run("from hyperdash import Experiment\nexp = Experiment('kernel terminated')")
    pid = int(shown(notebook.run("import os\nprint(os.getpid())")).strip())
    run = account.wait_for_run("kernel terminated", "running", timeout=30)
    os.kill(pid, signal.SIGTERM)
    ended = account.wait_until_ended(run["uuid"], timeout=30)
    assert (ended["status"], ended["signal"]) == ("killed", "SIGTERM")

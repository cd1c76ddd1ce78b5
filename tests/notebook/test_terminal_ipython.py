"""The %%monitor_cell magic in terminal IPython (a real `ipython` process), against the real server."""

from __future__ import annotations

import subprocess
import sys

from kernel_notebook import log_texts

SESSION = """\
from hyperdash import monitor_cell
%%monitor_cell broken in a terminal
print('about to fail')
raise ValueError('bad batch')



print('the shell goes on')
"""


# A terminal IPython that reads its cells from standard input, plain, and keeps no history.
IPYTHON = [sys.executable, "-m", "IPython", "--simple-prompt", "--colors=NoColor", "--no-banner",
           "--HistoryManager.hist_file=:memory:"]


def ipython_env(account, hyperdash_home, tmp_path) -> dict[str, str]:
    return {**account.sdk_env(hyperdash_home), "IPYTHONDIR": str(tmp_path / "ipython")}


def test_a_raising_cell_logs_its_traceback_once(account, hyperdash_home, tmp_path):
    shell = subprocess.run(IPYTHON, input=SESSION, capture_output=True, text=True, timeout=60,
                           env=ipython_env(account, hyperdash_home, tmp_path))

    assert shell.returncode == 0, shell.stderr
    # The terminal shows the shell's own traceback, once, and the shell goes on.
    assert shell.stdout.count("ValueError: bad batch") == 1
    assert "the shell goes on" in shell.stdout
    run = account.wait_for_run("broken in a terminal", status="failure")
    texts = log_texts(account, run["uuid"])
    assert "about to fail" in texts
    # The log holds what the terminal showed, the traceback included, and nothing twice.
    assert texts.count("ValueError: bad batch") == 1
    assert "----> 2 raise ValueError('bad batch')" in texts


def test_a_stop_at_the_idle_prompt_ends_the_run_and_interrupts_nothing(account, hyperdash_home, tmp_path):
    # Terminal IPython handles SIGINT at its prompt too: an idle session used to be taken for a
    # busy one, and the stop's KeyboardInterrupt escaped its prompt.
    shell = subprocess.Popen(IPYTHON, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=ipython_env(account, hyperdash_home, tmp_path))
    try:
        shell.stdin.write("from hyperdash import Experiment\nexp = Experiment('idle at the prompt')\n")
        shell.stdin.flush()
        run = account.wait_for_run("idle at the prompt", "running", timeout=30)
        account.stop_run(run["uuid"])
        ended = account.wait_until_ended(run["uuid"], timeout=30)
        assert ended["status"] == "user_canceled"
        out, err = shell.communicate("print('the shell goes on')\nexit()\n", timeout=60)
    finally:
        shell.kill()
    assert shell.returncode == 0, err
    assert "the shell goes on" in out
    assert "KeyboardInterrupt" not in out + err
    assert "no cell runs: the run ends" in err

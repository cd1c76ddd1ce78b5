"""``hyperdash run`` keeps the order in which the job wrote to stdout and stderr: in the terminal
(or the pipe it writes to) and in the stored log, read back from the real server.

Reading two channels cannot tell which of their bytes were written first; the order only went
wrong when the machine was busy, so these tests keep two other processes busy beside the job.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from cli_support import HYPERDASH, py
from terminal_support import busy_cpus, run_in_terminal, shown_lines

from hyperdash.plaintext import plain_lines

PAIRS = 300
EXPECTED = [text for i in range(PAIRS) for text in (f"out {i}", f"err {i}")]

ALTERNATING = """
import sys
flush = sys.argv[1] == "flush"
for i in range({pairs}):
    print(f"out {{i}}", flush=flush)
    print(f"err {{i}}", file=sys.stderr, flush=flush)
"""

# Two epochs of a tqdm bar (stderr), a line on stdout, a warning on stderr: as in training.
TQDM_EPOCHS = """
import sys, time, warnings
from tqdm import tqdm
warnings.simplefilter("always")
for epoch in range(3):
    for _ in tqdm(range(40), desc=f"epoch {epoch}", mininterval=0, miniters=1):
        time.sleep(0.002)
    print(f"epoch {epoch} done, loss=1.000", flush=True)
    warnings.warn(f"slow epoch {epoch}")
"""


# Nested bars: epochs, and within each a bar of batches that does not stay (leave=False).
NESTED_BARS = """
import time
from tqdm import tqdm
for epoch in tqdm(range(3), desc="epochs", mininterval=0):
    for _ in tqdm(range(30), desc="batches", leave=False, mininterval=0):
        time.sleep(0.002)
    tqdm.write(f"epoch {epoch} done")
print("finished", flush=True)
"""


# rich's Progress with three tasks: the rows of validation and of its batches drawn under the
# bar of epochs, each refresh climbing back over all of them (Lightning's RichProgressBar while it
# validates), and a line printed above them after each validation.
RICH_ROWS = """
import time
from rich.progress import Progress
with Progress() as progress:
    for epoch in range(3):
        train = progress.add_task(f"epoch {epoch}", total=4)
        for _ in range(4):
            progress.advance(train)
            time.sleep(0.03)
        valid = progress.add_task("validation", total=3)
        batches = progress.add_task("batches", total=3)
        for _ in range(3):
            progress.advance(valid)
            progress.advance(batches)
            time.sleep(0.15)  # (several refreshes of all the rows)
        progress.remove_task(batches)
        progress.remove_task(valid)
        progress.console.print(f"epoch {epoch} validated")
        if epoch < 2:
            progress.remove_task(train)
print("finished", flush=True)
"""


def check_nested(lines: list[str]) -> None:
    """What a terminal shows once the nested bars are done: each epoch's line, the epochs' bar
    at 100%, the last line; no state of the bar of batches, no escape."""
    lines = [line for line in lines if line.strip()]
    assert [line for line in lines if "done" in line or line == "finished"] == [
        "epoch 0 done", "epoch 1 done", "epoch 2 done", "finished"], lines
    bars = [line for line in lines if line.startswith("epochs:")]
    assert len(bars) == 1 and "100%" in bars[0] and "3/3" in bars[0], lines
    assert not [line for line in lines if "batches" in line or "\x1b" in line], lines


def run_where(where: str, command: list[str], env: dict[str, str], *, apart: bool = False) -> tuple[int, bytes]:
    """Run ``command`` in a terminal, or with its output to a pipe (stderr to the same one, as
    ``2>&1 |`` does, or ``apart``: a pipe each). (exit status, output)."""
    if where == "terminal":
        return run_in_terminal(command, env, timeout=120)
    result = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE if apart else subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, env=env, timeout=120)
    return result.returncode, result.stdout + (result.stderr or b"")


@pytest.mark.parametrize("where", ["terminal", "pipe"])
def test_nested_tqdm_bars_leave_what_a_terminal_shows(account, hyperdash_home, where):
    name = f"nested bars in a {where}"
    rc, output = run_where(where, [*HYPERDASH, "run", "-n", name, *py(NESTED_BARS)],
                           account.sdk_env(hyperdash_home), apart=True)
    assert rc == 0, output[-2000:]
    run = account.wait_for_run(name, "success", timeout=60)
    check_nested(texts(account.logs(run["uuid"])))


# Nested bars (the inner one left behind in epoch 1 only), with tqdm.write and print to a
# block-buffered stdout: what they write comes out at the next bar's start, after the outer bar's
# state. One blank line of the job's own.
BUFFERED_PRINTS_AND_NESTED_BARS = """
import time
from tqdm import tqdm
for epoch in tqdm(range(3), desc="epochs"):
    for _ in tqdm(range(20), desc=f"batches {epoch}", leave=epoch == 1):
        time.sleep(0.005)
    tqdm.write(f"epoch {epoch} done")
    print(f"loss {epoch}")
    if epoch == 0:
        print()
print("finished")
"""


def test_nested_bars_after_buffered_prints_leave_no_blank_line_a_terminal_does_not_show(account, hyperdash_home,
                                                                                        tmp_path):
    # Each inner bar opens its row with a newline below the prints, and climbs back to draw over
    # the blank row above it: that row used to stay in the log as an empty line.
    name = "buffered prints and nested bars"
    with open(tmp_path / "output", "wb") as output:
        result = subprocess.run([*HYPERDASH, "run", "-n", name, *py(BUFFERED_PRINTS_AND_NESTED_BARS)],
                                stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=dict(account.sdk_env(hyperdash_home), PYTHONUNBUFFERED=""), timeout=120)
    assert result.returncode == 0, (tmp_path / "output").read_bytes()[-2000:]
    run = account.wait_for_run(name, "success", timeout=60)
    lines = account.wait_for(lambda: (lines := texts(account.logs(run["uuid"]))) and "finished" in lines and lines, 30)
    assert [line[:15] if "|" in line else line for line in lines] == [
        "epochs:  33%|██", "loss 0", "", "batches 1: 100%", "epochs:  67%|██", "loss 1", "epochs: 100%|██",
        "epoch 2 done", "loss 2", "finished"], lines
    assert lines[0].endswith("]epoch 0 done") and lines[4].endswith("]epoch 1 done"), lines  # (glued, as shown)


# Nested bars, the inner one kept (leave=True, as by default), and a print after it.
KEPT_INNER_BARS = """
import time
from tqdm import tqdm
for epoch in tqdm(range(3), desc="epochs"):
    for _ in tqdm(range(50), desc="batch", position=1):
        time.sleep(0.001)
    print(f"epoch {epoch} loss 0.1")
"""


@pytest.mark.parametrize("where", ["terminal", "pipe"])
def test_a_print_after_a_kept_inner_bar_follows_its_last_state_as_a_terminal_shows(account, hyperdash_home, where):
    # The kept bar draws its last state on the outer bar's row and comes down onto its own row,
    # where the print is written over an earlier state of it: that state used to be a line,
    # after the print, and the last state too.
    name = f"kept inner bars in a {where}"
    rc, output = run_where(where, [*HYPERDASH, "run", "-n", name, *py(KEPT_INNER_BARS)],
                           account.sdk_env(hyperdash_home))
    assert rc == 0, output[-2000:]
    run = account.wait_for_run(name, "success", timeout=60)
    lines = account.wait_for(lambda: (lines := texts(account.logs(run["uuid"]))) and "epochs: 100" in lines[-1][:11]
                             and lines, 30)
    assert [line[:11] if "|" in line else line for line in lines] == [
        "batch: 100%", "epoch 0 loss 0.1", "batch: 100%", "epoch 1 loss 0.1", "batch: 100%", "epoch 2 loss 0.1",
        "epochs: 100"], lines
    assert all("50/50" in line for line in lines if line.startswith("batch"))


def test_a_live_display_of_several_rows_leaves_what_a_terminal_shows(account, hyperdash_home):
    pytest.importorskip("rich")
    rc, output = run_in_terminal([*HYPERDASH, "run", "-n", "rich rows", *py(RICH_ROWS)],
                                 account.sdk_env(hyperdash_home), timeout=120)
    assert rc == 0, output[-2000:]
    run = account.wait_for_run("rich rows", "success", timeout=60)
    lines = [line for line in plain_lines(texts(account.logs(run["uuid"]))) if line.strip()]
    # the terminal keeps the printed lines, the last epoch's row and the line after the display:
    # no row of an earlier refresh
    assert lines[:3] == ["epoch 0 validated", "epoch 1 validated", "epoch 2 validated"], lines
    assert len(lines) == 5 and lines[3].startswith("epoch 2") and "100%" in lines[3] and lines[4] == "finished", lines


# rich's Progress with a bar per shard downloading: more rows than a few nested bars, as many
# as the 24 rows of the terminal (20) or more (40: cropped to the terminal until its last refresh).
RICH_SHARDS = """
import time
from rich.progress import BarColumn, Progress, TextColumn
columns = TextColumn("{{task.description}}"), BarColumn(), TextColumn("{{task.completed}}/{{task.total}}")
with Progress(*columns) as progress:
    shards = [progress.add_task(f"shard {{row:02d}}", total=10) for row in range({rows})]
    for _ in range(10):
        for shard in shards:
            progress.advance(shard)
        time.sleep(0.05)
print("finished", flush=True)
"""


def shown_in_the_log(account, hyperdash_home, name: str, code: str) -> list[str]:
    """The non-blank lines, as plain text, that the run of ``code`` under ``hyperdash run`` in a
    terminal stored, once its last one ("finished") is there."""
    rc, output = run_in_terminal([*HYPERDASH, "run", "-n", name, *py(code)], account.sdk_env(hyperdash_home),
                                 timeout=120)
    assert rc == 0, output[-2000:]
    run = account.wait_for_run(name, "success", timeout=60)
    return account.wait_for(lambda: (lines := [line.rstrip() for line in plain_lines(texts(account.logs(run["uuid"])))
                                               if line.strip()]) and lines[-1] == "finished" and lines, 30)


@pytest.mark.parametrize("rows", [20, 40])
def test_a_live_display_taller_than_a_few_bars_leaves_each_rows_last_state_once(account, hyperdash_home, rows):
    pytest.importorskip("rich")
    lines = shown_in_the_log(account, hyperdash_home, f"rich display of {rows} rows", RICH_SHARDS.format(rows=rows))
    # what the terminal keeps once the display ends: each shard's row at 10/10, once, in order
    assert [line.split()[:2] for line in lines[:-1]] == [["shard", f"{row:02d}"] for row in range(rows)], lines
    assert all(line.endswith(" 10/10") for line in lines[:-1]) and lines[-1] == "finished", lines


# rich's Live as its documentation starts it: with its table, which its first refresh draws as
# lines of plain text, the cursor hidden; a line printed above it along the way.
RICH_LIVE_TABLE = """
import time
from rich.live import Live
from rich.table import Table
def metrics(step):
    table = Table.grid()
    for row in range({rows}):
        table.add_row(f"metric {{row:02d}}: {{step * row}}")
    return table
with Live(metrics(0), refresh_per_second=4) as live:
    for step in range(1, 9):
        time.sleep(0.1)
        live.update(metrics(step))
        if step == 4:
            live.console.print("checkpoint saved")
print("finished", flush=True)
"""


@pytest.mark.parametrize("rows", [3, 20])
def test_a_live_table_started_with_its_table_leaves_each_rows_last_state_once(account, hyperdash_home, rows):
    # The rows of its first refresh, all but the last, used to stay in the log as lines.
    pytest.importorskip("rich")
    lines = shown_in_the_log(account, hyperdash_home, f"rich live table of {rows} rows",
                             RICH_LIVE_TABLE.format(rows=rows))
    assert lines == ["checkpoint saved", *(f"metric {row:02d}: {8 * row}" for row in range(rows)), "finished"], lines


@pytest.fixture
def busy_cpu():
    with busy_cpus():
        yield


def log_path(output: bytes) -> Path:
    return Path(re.search(rb"the log of this run is at (\S+)", output).group(1).decode())


def texts(lines: list[dict]) -> list[str]:
    return [line["text"] for line in lines]


@pytest.mark.parametrize("flush", ["flush", "no-flush"])
def test_alternating_streams_keep_their_order_in_a_pipe(account, hyperdash_home, busy_cpu, flush):
    name = f"alternating in a pipe, {flush}"
    result = subprocess.run(
        [*HYPERDASH, "run", "-n", name, *py(ALTERNATING.format(pairs=PAIRS)), flush],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,  # 2>&1 | ...
        env=account.sdk_env(hyperdash_home), timeout=120,
    )
    assert result.returncode == 0, result.stdout[-2000:]
    assert shown_lines(result.stdout) == EXPECTED
    assert log_path(result.stdout).read_text().splitlines() == EXPECTED  # the local copy
    run = account.wait_for_run(name, "success", timeout=60)
    lines = account.wait_for(lambda: (lines := account.logs(run["uuid"])) and len(lines) >= 2 * PAIRS and lines, 60)
    assert texts(lines) == EXPECTED
    # one channel: the run can no longer tell stderr apart
    assert {line["stream"] for line in lines} == {"stdout"}


@pytest.mark.parametrize("flush", ["flush", "no-flush"])
def test_alternating_streams_keep_their_order_in_a_terminal(account, hyperdash_home, busy_cpu, flush):
    name = f"alternating in a terminal, {flush}"
    rc, output = run_in_terminal(
        [*HYPERDASH, "run", "-n", name, *py(ALTERNATING.format(pairs=PAIRS)), flush],
        account.sdk_env(hyperdash_home), timeout=120,
    )
    assert rc == 0, output[-2000:]
    assert shown_lines(output) == EXPECTED
    assert log_path(output).read_text().splitlines() == EXPECTED
    run = account.wait_for_run(name, "success", timeout=60)
    lines = account.wait_for(lambda: (lines := account.logs(run["uuid"])) and len(lines) >= 2 * PAIRS and lines, 60)
    assert texts(lines) == EXPECTED


def test_separate_streams_keep_stderr_apart(account, hyperdash_home):
    name = "alternating, separate streams"
    result = subprocess.run(
        [*HYPERDASH, "run", "-n", name, "--separate-streams", *py(ALTERNATING.format(pairs=50)), "flush"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        env=account.sdk_env(hyperdash_home), timeout=60,
    )
    assert result.returncode == 0, result.stdout[-2000:]
    run = account.wait_for_run(name, "success", timeout=30)
    lines = account.wait_for(lambda: (lines := account.logs(run["uuid"])) and len(lines) >= 100 and lines, 30)
    # each stream in order and told apart; their order against each other is not promised
    assert [line["text"] for line in lines if line["stream"] == "stdout"] == [f"out {i}" for i in range(50)]
    assert [line["text"] for line in lines if line["stream"] == "stderr"] == [f"err {i}" for i in range(50)]


def check_epochs(shown: list[str]) -> None:
    """Each epoch: its finished bar, then its stdout line whole, then its warning."""
    for epoch in range(3):
        done = shown.index(f"epoch {epoch} done, loss=1.000")
        assert f"epoch {epoch}: 100%" in shown[done - 1] and "40/40" in shown[done - 1], shown
        assert f"UserWarning: slow epoch {epoch}" in shown[done + 1], shown
    assert not [line for line in shown if "it/s]" in line and "done" in line], shown  # nothing glued


def test_tqdm_bars_with_a_stdout_line_between_them_in_a_terminal(account, hyperdash_home, busy_cpu):
    rc, output = run_in_terminal([*HYPERDASH, "run", "-n", "tqdm epochs", *py(TQDM_EPOCHS)],
                                 account.sdk_env(hyperdash_home), timeout=120)
    assert rc == 0, output[-2000:]
    check_epochs(shown_lines(output))
    run = account.wait_for_run("tqdm epochs", "success", timeout=60)
    lines = account.wait_for(
        lambda: (lines := account.logs(run["uuid"])) and any("slow epoch 2" in t for t in texts(lines)) and lines, 60)
    check_epochs([text for text in texts(lines) if text])


def test_tqdm_bars_with_a_stdout_line_between_them_in_a_pipe(account, hyperdash_home, busy_cpu):
    result = subprocess.run(
        [*HYPERDASH, "run", "-n", "tqdm epochs piped", *py(TQDM_EPOCHS)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        env=account.sdk_env(hyperdash_home), timeout=120,
    )
    assert result.returncode == 0, result.stdout[-2000:]
    check_epochs(shown_lines(result.stdout))
    check_epochs(shown_lines(log_path(result.stdout).read_bytes()))  # the local copy too


def test_tqdm_bars_and_stdout_lines_captured_apart_are_never_glued(account, hyperdash_home, busy_cpu):
    name = "tqdm epochs apart"
    result = subprocess.run(
        [*HYPERDASH, "run", "-n", name, "--separate-streams", *py(TQDM_EPOCHS)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        env=account.sdk_env(hyperdash_home), timeout=120,
    )
    assert result.returncode == 0, result.stdout[-2000:]
    done = [f"epoch {epoch} done, loss=1.000" for epoch in range(3)]
    local = shown_lines(log_path(result.stdout).read_bytes())
    assert [line for line in local if "done" in line] == done, local
    run = account.wait_for_run(name, "success", timeout=60)
    lines = account.wait_for(
        lambda: (lines := account.logs(run["uuid"])) and len([t for t in texts(lines) if "slow epoch" in t]) == 3
        and lines, 60)
    assert [line["text"] for line in lines if line["stream"] == "stdout"] == done
    assert not [line for line in lines if line["stream"] == "stderr" and "done" in line["text"]]


def test_an_erased_progress_bar_leaves_no_line(hd, account):
    code = (
        "import sys, time\n"
        "from tqdm import tqdm\n"
        "print('before', flush=True)\n"
        "for _ in tqdm(range(20), leave=False, mininterval=0, miniters=1):\n"
        "    time.sleep(0.01)\n"
    )
    result = hd("run", "-n", "erased bar", *py(code))  # stdout and stderr apart: separate streams
    assert result.returncode == 0, result.stderr
    assert result.stderr.count(b"\r") >= 20  # the terminal saw the bar, and its erasure
    run = account.wait_for_run("erased bar", "success")
    lines = account.logs(run["uuid"])
    # no line of spaces, no state of the bar left standing, and no emptied row in its place
    assert [(line["stream"], line["text"]) for line in lines] == [("stdout", "before")], lines

"""A failed run's one-line summary and the lines that show where it went wrong."""

from __future__ import annotations

import uuid

from server_helpers import Api, env, log

TRACEBACK = [
    "Traceback (most recent call last):",
    '  File "train.py", line 3, in <module>',
    "    1 / 0",
    "    ~~^~~",
    "ZeroDivisionError: division by zero",
]


def _end(run, seq, status, exit_code=None, signal=None):
    return env("run_ended", run, {"final_status": status, "exit_code": exit_code, "signal": signal}, seq=seq)


def _run(api: Api, lines: list[tuple[str, str]], status: str, exit_code=None, signal=None) -> dict:
    run = str(uuid.uuid4())
    body = [env("run_started", run, {"job_name": "fails", "host": "h", "pid": 1, "api": "cli_run"}, seq=1)]
    body += [log(run, 2 + k, text, stream=stream) for k, (stream, text) in enumerate(lines)]
    body.append(_end(run, 2 + len(lines), status, exit_code, signal))
    api.ok(body)
    return api.json(f"/api/v1/runs/{run}")


def test_a_traceback_is_summed_up_by_its_last_line(api: Api):
    lines = [("stdout", "epoch 1"), ("stderr", "a warning")] + [("stderr", t) for t in TRACEBACK] + \
        [("stdout", "bye")]
    run = _run(api, lines, "failure", exit_code=1)
    assert run["failure"] == {"summary": "ZeroDivisionError: division by zero", "first_seq": 4, "last_seq": 8}
    listed = api.json("/api/v1/runs")["runs"][0]
    assert listed["failure"]["summary"] == "ZeroDivisionError: division by zero"


def test_the_last_of_chained_tracebacks_counts_and_colours_do_not_matter(api: Api):
    first = [("stderr", t) for t in TRACEBACK]
    second = [("stderr", "\x1b[31mTraceback (most recent call last):\x1b[0m"), ("stderr", '  File "x", line 1'),
              ("stderr", "\x1b[1mValueError\x1b[0m: bad value: 'x'")]
    run = _run(api, first + [("stderr", ""), ("stderr", "During handling of the above exception, another "
                                                         "exception occurred:"), ("stderr", "")] + second, "failure")
    assert run["failure"]["summary"] == "ValueError: bad value: 'x'"
    assert (run["failure"]["first_seq"], run["failure"]["last_seq"]) == (10, 12)


def test_an_exit_code_without_a_traceback(api: Api):
    run = _run(api, [("stdout", "working"), ("stderr", "config missing"), ("stdout", "more")], "failure", exit_code=3)
    assert run["failure"] == {"summary": "exit code 3", "first_seq": 3, "last_seq": 3}


def test_a_signal(api: Api):
    run = _run(api, [("stdout", "working")], "killed", exit_code=137, signal="SIGKILL")
    assert run["failure"]["summary"] == "killed by SIGKILL"
    assert run["failure"]["first_seq"] == 2  # (no stderr: the last lines of the output)


def test_a_failure_with_neither_says_the_last_error_line(api: Api):
    run = _run(api, [("stderr", "fatal: cannot open data.csv")], "failure")
    assert run["failure"]["summary"] == "fatal: cannot open data.csv"
    assert _run(api, [], "failure")["failure"] == {"summary": "failed", "first_seq": None, "last_seq": None}


def test_runs_that_did_not_fail_have_no_summary(api: Api):
    assert _run(api, [("stderr", t) for t in TRACEBACK], "success", exit_code=0)["failure"] is None
    assert _run(api, [("stderr", "x")], "user_canceled", exit_code=130)["failure"] is None

"""A run keeps its latest progress: from a tqdm-style bar's progress lines and from exp.iter."""

from __future__ import annotations

import uuid

import pytest
from server_helpers import Api, env, log

from hyperdash.server.progress import parse_bar


@pytest.mark.parametrize("text, done, total, percent, rate, eta_s", [
    ("37%|███▋      | 370/1000 [01:02<01:45,  5.95it/s]", 370, 1000, 37.0, 5.95, 105.0),
    ("\x1b[32mtrain:  37%|###7      | 370/1000 [01:02<?, ?it/s]\x1b[0m", 370, 1000, 37.0, 5.9677, 105.6),
    ("  5%|5         | 5/100 [00:07<02:22,  1.50s/it, loss=0.3]", 5, 100, 5.0, 0.6667, 142.0),
    ("370it [01:02,  5.95it/s]", 370, None, None, 5.95, None),
    ("12.3M/100M [00:02<00:15, 5.60MB/s]", 12_300_000, 100_000_000, 12.3, 5_600_000.0, 15.0),
    ("Epoch 3: 50%|#####     | 1/2 [1:02:03<1:02:03, 3723.00s/it]", 1, 2, 50.0, 0.0003, 3723.0),
    ("\r 10%|#         | 10/100 [00:01<00:09, 10.00it/s]\r 20%|##        | 20/100 [00:02<00:08, 10.00it/s]",
     20, 100, 20.0, 10.0, 8.0),
])
def test_a_bar_is_read_with_its_eta(text, done, total, percent, rate, eta_s):
    progress = parse_bar(text, 0)
    assert progress is not None
    assert (progress["done"], progress["total"], progress["percent"], progress["rate"], progress["eta_s"]) == \
        (done, total, percent, rate, eta_s)


@pytest.mark.parametrize("text", ["hello [world]", "Epoch 3 done", "50% of the way [really]", ""])
def test_lines_that_are_no_bar(text):
    assert parse_bar(text, 0) is None


def _bar(run, seq, n, total=1000, **flags):
    text = f"{100 * n // total:3d}%|#         | {n}/{total} [00:{n // 100:02d}<00:{(total - n) // 100:02d}, 100.00it/s]"
    return log(run, seq, text, stream="stderr", **flags)


def test_the_run_keeps_the_last_bar_of_a_batch_and_its_finished_state(api: Api):
    run = str(uuid.uuid4())
    api.ok([env("run_started", run, {"job_name": "bar", "host": "h", "pid": 1, "api": "cli_run"}, seq=1),
            _bar(run, 2, 100, progress=True), _bar(run, 3, 370, progress=True), log(run, 4, "out line")])
    progress = api.json(f"/api/v1/runs/{run}")["progress"]
    assert progress["done"] == 370 and progress["total"] == 1000 and progress["percent"] == 37.0
    assert progress["rate"] == 100.0 and progress["eta_s"] == 6.0 and progress["source"] == "bar"
    # The bar's last state arrives as a finished line (tqdm's close): that one counts.
    api.ok([_bar(run, 5, 1000)])
    progress = api.json(f"/api/v1/runs/{run}")["progress"]
    assert (progress["done"], progress["percent"], progress["eta_s"]) == (1000, 100.0, 0.0)
    # Output that is no bar leaves the progress as it was.
    api.ok([log(run, 6, "evaluating", stream="stderr")])
    assert api.json(f"/api/v1/runs/{run}")["progress"]["done"] == 1000
    listed = api.json("/api/v1/runs")["runs"][0]
    assert listed["uuid"] == run and listed["progress"]["percent"] == 100.0


@pytest.mark.parametrize("batches", ["one batch", "next batch"])
def test_a_nested_bars_final_state_after_lines_written_above_it_counts(api: Api, batches):
    # The outer bar's last progress state, then the lines that stood above its row (a
    # tqdm.write, say) before the line of its final state, as the SDK sends nested bars' rows.
    run = str(uuid.uuid4())
    api.ok([env("run_started", run, {"job_name": "nested", "host": "h", "pid": 1, "api": "cli_run"}, seq=1),
            _bar(run, 2, 660, progress=True)])
    finished = [log(run, 3, "epoch 2 done", stream="stderr"), log(run, 4, "checkpoint saved", stream="stderr"),
                _bar(run, 5, 1000)]
    if batches == "one batch":
        api.ok(finished)
    else:
        api.ok(finished[:1])
        api.ok(finished[1:])
    assert api.json(f"/api/v1/runs/{run}")["progress"]["done"] == 1000


def test_a_bar_begun_and_finished_within_one_batch_is_read(api: Api):
    # A short loop's bar comes whole, as one line of its \r-redrawn states: it used to leave
    # the progress null.
    run = str(uuid.uuid4())
    states = "".join(f"\r{100 * n // 20:3d}%|#         | {n}/20 [00:00<00:00, 99.00it/s]" for n in range(21))
    api.ok([env("run_started", run, {"job_name": "short bar", "host": "h", "pid": 1, "api": "cli_run"}, seq=1),
            log(run, 2, states, stream="stderr"), log(run, 3, "done", stream="stdout")])
    progress = api.json(f"/api/v1/runs/{run}")["progress"]
    assert (progress["done"], progress["total"], progress["percent"]) == (20, 20, 100.0)
    # ...or as its last state alone, as the SDK sends a line it has seen redrawn to its end.
    other = str(uuid.uuid4())
    api.ok([env("run_started", other, {"job_name": "short bar", "host": "h", "pid": 1, "api": "monitor"}, seq=1),
            log(other, 2, "\x1b[32m100%|##########| 20/20 [00:00<00:00, 302837.83it/s]\x1b[0m", stream="stderr"),
            log(other, 3, "evaluating", stream="stdout")])
    progress = api.json(f"/api/v1/runs/{other}")["progress"]
    assert (progress["done"], progress["total"], progress["rate"]) == (20, 20, 302837.83)


def test_exp_iter_is_progress_with_a_derived_eta(api: Api):
    run = str(uuid.uuid4())
    t0 = 1_700_000_000_000
    api.ok([env("run_started", run, {"job_name": "iter", "host": "h", "pid": 1, "api": "experiment"}, seq=1,
                timestamp=t0),
            env("param", run, {"params": {"hd_iter_0_epochs": 200}, "is_internal": True}, seq=2, timestamp=t0)])
    progress = api.json(f"/api/v1/runs/{run}")["progress"]
    assert (progress["done"], progress["total"], progress["percent"], progress["source"]) == (0, 200, 0.0, "iter")
    # Index 49 after 10 s: 50 steps done, 5 a second, 150 left: 30 s.
    api.ok([env("metric", run, {"name": "hd_iter_0", "value": 49, "timestamp": t0 + 10_000, "is_internal": True,
                                "step": None}, seq=3, timestamp=t0 + 10_000)])
    progress = api.json(f"/api/v1/runs/{run}")["progress"]
    assert (progress["done"], progress["percent"], progress["rate"], progress["eta_s"]) == (50, 25.0, 5.0, 30.0)
    # A user's metric of the same shape that is not internal is no progress.
    api.ok([env("metric", run, {"name": "hd_iter_0", "value": 199, "timestamp": t0 + 11_000, "is_internal": False,
                                "step": None}, seq=4)])
    assert api.json(f"/api/v1/runs/{run}")["progress"]["done"] == 50


def test_iter_after_a_restart_finds_its_total_in_the_store(make_client):
    first = make_client()
    api = Api(first)
    run = str(uuid.uuid4())
    t0 = 1_700_000_000_000
    api.ok([env("param", run, {"params": {"hd_iter_0_epochs": 10}, "is_internal": True}, seq=1, timestamp=t0)])
    # A new app on the same store knows nothing of the loop in memory.
    fresh_api = Api.__new__(Api)  # (the same account and key, on the new app)
    fresh_api.client, fresh_api.headers = make_client(), api.headers
    fresh_api.ok([env("metric", run, {"name": "hd_iter_0", "value": 4, "timestamp": t0 + 5000, "is_internal": True,
                                      "step": None}, seq=2, timestamp=t0 + 5000)])
    progress = fresh_api.json(f"/api/v1/runs/{run}")["progress"]
    assert (progress["done"], progress["total"], progress["rate"], progress["eta_s"]) == (5, 10, 1.0, 5.0)


def test_progress_is_announced_at_most_once_a_second_and_when_done(api: Api):
    from hyperdash.server.facts import ProgressChanged

    run = str(uuid.uuid4())
    seen = []
    store = api.client.app.state.store
    store.dispatcher.subscribe(seen.extend, name="test")
    api.ok([env("run_started", run, {"job_name": "fast", "host": "h", "pid": 1, "api": "cli_run"}, seq=1)])
    # A fast bar: ten batches as fast as they go, then its end.
    import time

    started = time.monotonic()
    for k in range(10):
        api.ok([_bar(run, 2 + k, 10 * (k + 1), progress=True)])
    elapsed = time.monotonic() - started
    api.ok([_bar(run, 12, 1000)])
    store.writer.call(lambda conn: None)
    store.dispatcher.close()
    told = [f.run.progress for f in seen if isinstance(f, ProgressChanged)]
    # The first state, at most one more a second, and the bar done.
    assert 2 <= len(told) <= 2 + int(elapsed), (elapsed, told)
    assert '"done":10,' in told[0] and '"done":1000,' in told[-1]
    assert api.json(f"/api/v1/runs/{run}")["progress"]["done"] == 1000  # (stored every time)


_HUGE = "9" * 400  # (no float holds it)


@pytest.mark.parametrize("text", [
    f"result {_HUGE} [00:01]",
    f"5/{_HUGE} [00:01<00:00, 1.00it/s]",
    f"5/10 [{_HUGE}:00]",
], ids=["count", "total", "clock"])
def test_a_number_too_long_for_a_float_is_no_bar(text):
    assert parse_bar(text, 0) is None


@pytest.mark.parametrize("progress", [False, True], ids=["line", "progress-line"])
@pytest.mark.parametrize("text", [
    f"result {_HUGE} [00:01]",
    f"5/{_HUGE} [00:01<00:00, 1.00it/s]",
    f"5/10 [{_HUGE}:00]",
], ids=["count", "total", "clock"])
def test_a_line_with_an_absurd_number_is_stored_and_leaves_the_progress(api: Api, text, progress):
    run = str(uuid.uuid4())
    bar = "  1%|          | 10/1000 [00:01<01:39, 10.00it/s]"
    api.ok([env("run_started", run, {"job_name": "huge", "host": "h", "pid": 1, "api": "cli_run"}, seq=1),
            log(run, 2, bar, progress=True)])
    # After a bar on stdout, the line (the bar's next state, or the line that replaced it) is
    # stored like any other, and so is whatever comes after it.
    api.ok([log(run, 3, text, progress=progress)])
    assert api.lines(run)[-1] == text
    api.ok([log(run, 4, "after")])
    assert api.lines(run)[-1] == "after"
    assert api.json(f"/api/v1/runs/{run}")["progress"]["done"] == 10


def test_a_failure_in_reading_progress_never_fails_a_batch(api: Api, monkeypatch):
    import hyperdash.server.progress as progress

    def broken(text, ts=0):
        raise RuntimeError("a parser that fails")

    run = str(uuid.uuid4())
    monkeypatch.setattr(progress, "parse_bar", broken)
    # Progress is a hint: the bar's line is stored all the same, and so are later batches.
    api.ok([env("run_started", run, {"job_name": "broken", "host": "h", "pid": 1, "api": "cli_run"}, seq=1),
            _bar(run, 2, 10, progress=True)])
    api.ok([_bar(run, 3, 1000), log(run, 4, "after")])
    assert api.lines(run)[-2:] == [_bar(run, 3, 1000)["payload"]["body"], "after"]
    assert api.json(f"/api/v1/runs/{run}")["progress"] is None

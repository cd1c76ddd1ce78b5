"""Ingest: both envelope forms, exactly-once storage, out-of-order events, bad input, run states."""

from __future__ import annotations

import time
import uuid

import orjson
import pytest
from server_helpers import REPLY_FLAGS, Api, env, log

from hyperdash import events
from hyperdash.server.batch import NUMBERED_FROM, Line
from hyperdash.server.ingest import _text_bytes, mark_lost
from hyperdash.server.views import iso


def new_run() -> str:
    return str(uuid.uuid4())


def test_original_single_envelopes_make_a_run(api):
    run = new_run()
    headers = {events.API_HEADER: "monitor", events.VERSION_HEADER: "0.15.3"}
    assert api.ok(env("run_started", run, {"job_name": "mnist"}), headers) == {
        "stored": 1, "duplicates": 0, **REPLY_FLAGS}
    api.ok(env("log", run, {"uuid": "a", "level": "INFO", "body": "epoch 1\nepoch 2\n"}), headers)
    api.ok(env("log", run, {"uuid": "b", "level": "ERROR", "body": "warning: slow\r\n"}), headers)
    api.ok(env("heartbeat", run, {}), headers)
    api.ok(env("param", run, {"params": {"lr": 0.01, "opt": "adam"}, "is_internal": False}), headers)
    api.ok(env("metric", run, {"name": "loss", "value": 0.5, "timestamp": events.now_ms(), "is_internal": False}))
    api.ok(env("metric", run, {"name": "loss", "value": 0.25, "timestamp": events.now_ms(), "is_internal": False}))
    api.ok(env("run_ended", run, {"final_status": "success"}), headers)

    detail = api.json(f"/api/v1/runs/{run}")
    assert detail["name"] == "mnist"
    assert detail["status"] == "success"
    assert detail["api"] == "monitor"
    assert detail["ended_at"].endswith("Z") and detail["started_at"].endswith("Z")
    assert detail["params"] == {"lr": 0.01, "opt": "adam"}
    assert detail["metrics"]["loss"]["value"] == 0.25
    lines = api.json(f"/api/v1/runs/{run}/logs")["lines"]
    assert [(line["text"], line["stream"]) for line in lines] == [
        ("epoch 1", "stdout"), ("epoch 2", "stdout"), ("warning: slow", "stderr")]
    assert [line["seq"] for line in lines] == sorted(line["seq"] for line in lines)
    series = api.json(f"/api/v1/runs/{run}/metrics/loss")
    assert [p["value"] for p in series["points"]] == [0.5, 0.25]


def test_events_without_seq_are_numbered_in_the_order_they_came(api):
    run = new_run()
    batch = [env("run_started", run, {"job_name": "numbered"}),
             env("log", run, {"uuid": "a", "level": "INFO", "body": "a\nb\n"}),
             env("metric", run, {"name": "m", "value": 1, "timestamp": 5, "is_internal": False}),
             env("log", run, {"uuid": "b", "level": "INFO", "body": "c"})]
    assert api.ok(batch) == {"stored": 4, "duplicates": 0, **REPLY_FLAGS}
    lines = api.json(f"/api/v1/runs/{run}/logs")["lines"]
    # "c" has no newline yet: it waits for the rest of its line. (The server's numbers are
    # its own range's, above every seq a sender may send.)
    assert [(line["seq"] - NUMBERED_FROM, line["text"]) for line in lines] == [(2, "a"), (3, "b")]
    assert api.json(f"/api/v1/runs/{run}")["last_seq"] == NUMBERED_FROM + 4
    # The next original envelope goes on after them, and finishes the line.
    api.ok(env("log", run, {"uuid": "c", "level": "INFO", "body": "d\n"}))
    lines = api.json(f"/api/v1/runs/{run}/logs", after=NUMBERED_FROM + 4)["lines"]
    assert [(line["seq"] - NUMBERED_FROM, line["text"]) for line in lines] == [(5, "cd")]


def test_a_run_mixing_numbered_and_unnumbered_events_loses_none(api):
    """Events with a seq and events without one (another sender of the same run) keep apart:
    the server's numbers are none a sender may send, so nothing is taken for a copy."""
    run = new_run()
    unnumbered = env("log", run, {"uuid": "b", "level": "INFO", "body": "b1\nb2\n"})
    assert api.ok([env("run_started", run, {"job_name": "mixed"}, seq=1), log(run, 2, "a1")])["stored"] == 2
    assert api.ok(unnumbered)["stored"] == 1
    # The sender with seqs goes on where it was, and sends a batch twice.
    later = [log(run, 3, "a2"), log(run, 4, "a3"), env("metric", run, {"name": "m", "value": 1}, seq=5)]
    assert api.ok(later) == {"stored": 3, "duplicates": 0, **REPLY_FLAGS}
    assert api.ok(later) == {"stored": 0, "duplicates": 3, **REPLY_FLAGS}
    assert api.ok(unnumbered) == {"stored": 0, "duplicates": 1, **REPLY_FLAGS}
    assert api.ok(env("log", run, {"uuid": "c", "level": "INFO", "body": "b3\n"}))["stored"] == 1
    assert api.ok([log(run, 6, "a4")])["stored"] == 1
    lines = api.lines(run)
    assert sorted(lines) == ["a1", "a2", "a3", "a4", "b1", "b2", "b3"]
    # Each sender's lines in its own order.
    assert [t for t in lines if t[0] == "a"] == ["a1", "a2", "a3", "a4"]
    assert [t for t in lines if t[0] == "b"] == ["b1", "b2", "b3"]
    assert [p["value"] for p in api.json(f"/api/v1/runs/{run}/metrics/m")["points"]] == [1]


def test_output_chunks_are_joined_into_lines_and_stored_once(api):
    run = new_run()
    first = env("log", run, {"uuid": str(uuid.uuid4()), "level": "INFO", "body": "one\ntwo\npart"})
    second = env("log", run, {"uuid": str(uuid.uuid4()), "level": "INFO", "body": "ial three\n"})
    error = env("log", run, {"uuid": str(uuid.uuid4()), "level": "ERROR", "body": "an err"})
    assert api.ok(first) == {"stored": 1, "duplicates": 0, **REPLY_FLAGS}
    assert api.ok(error) == {"stored": 1, "duplicates": 0, **REPLY_FLAGS}
    assert api.lines(run) == ["one", "two"]
    assert api.ok(second) == {"stored": 1, "duplicates": 0, **REPLY_FLAGS}
    assert api.lines(run) == ["one", "two", "partial three"]
    # The original client resends an envelope it got no answer for: stored once.
    assert api.ok(second) == {"stored": 0, "duplicates": 1, **REPLY_FLAGS}
    assert api.ok([first, second]) == {"stored": 0, "duplicates": 2, **REPLY_FLAGS}
    assert api.lines(run) == ["one", "two", "partial three"]
    # Output still waiting for a newline is stored when the run ends, before its end.
    api.ok(env("log", run, {"uuid": str(uuid.uuid4()), "level": "ERROR", "body": "or\r\nlast words"}))
    api.ok(env("run_ended", run, {"final_status": "success"}))
    lines = api.json(f"/api/v1/runs/{run}/logs")["lines"]
    assert [(line["text"], line["stream"]) for line in lines] == [
        ("one", "stdout"), ("two", "stdout"), ("partial three", "stdout"), ("an error", "stderr"),
        ("last words", "stderr")]
    assert lines[-1]["seq"] < api.json(f"/api/v1/runs/{run}")["last_seq"]


def test_output_without_newlines_is_held_only_up_to_a_bound(api):
    run = new_run()
    endless = "x" * (events.MAX_LINE_BYTES + 1)
    api.ok(env("log", run, {"uuid": str(uuid.uuid4()), "level": "INFO", "body": endless}))
    lines = api.json(f"/api/v1/runs/{run}/logs")["lines"]
    assert [(line["text"], line["partial"]) for line in lines] == [(endless, True)]
    api.ok(env("log", run, {"uuid": str(uuid.uuid4()), "level": "INFO", "body": "y\n"}))
    assert api.get(f"/api/v1/runs/{run}/logs.txt").text == endless + "y\n"


def test_run_uuids_are_read_in_any_case(api):
    run = new_run().upper()
    api.ok([env("run_started", run, {"job_name": "shouting"}, seq=1)])
    assert api.json(f"/api/v1/runs/{run}")["uuid"] == run.lower()
    assert api.json(f"/api/v1/runs/{run.lower()}")["name"] == "shouting"


def test_batch_is_stored_once_however_often_it_is_sent(api):
    run = new_run()
    batch = [env("run_started", run, {"job_name": "train", "host": "box", "pid": 42, "api": "cli_run"}, seq=1)]
    batch += [log(run, seq, f"line {seq}") for seq in range(2, 102)]
    assert api.ok(batch) == {"stored": 101, "duplicates": 0, **REPLY_FLAGS}
    assert api.ok(batch) == {"stored": 0, "duplicates": 101, **REPLY_FLAGS}
    # A retry overlapping what is stored, with a repeat inside the batch itself.
    overlap = [log(run, seq, f"line {seq}") for seq in (100, 101, 102, 103, 103)]
    assert api.ok(overlap) == {"stored": 2, "duplicates": 3, **REPLY_FLAGS}
    assert api.lines(run) == [f"line {seq}" for seq in range(2, 104)]
    detail = api.json(f"/api/v1/runs/{run}")
    assert (detail["host"], detail["pid"], detail["api"]) == ("box", 42, "cli_run")


def block(run: str, seq: int, texts: list[str], stream: str = "stdout") -> dict:
    """A block of lines (our SDK's form of a flood of output): ``texts`` numbered from ``seq``."""
    return log(run, seq, "".join(t + "\n" for t in texts), stream=stream, lines=len(texts))


def test_a_block_of_lines_is_stored_as_its_lines_once(api):
    run = new_run()
    batch = [env("run_started", run, {"job_name": "flood"}, seq=1), block(run, 2, ["a", "", "c \u00e9"]),
             log(run, 5, "one alone"), block(run, 6, ["err 1", "err 2"], stream="stderr")]
    assert api.ok(batch) == {"stored": 7, "duplicates": 0, **REPLY_FLAGS}
    assert api.ok(batch) == {"stored": 0, "duplicates": 7, **REPLY_FLAGS}
    # A block overlapping what is stored: only its new lines are kept.
    assert api.ok([block(run, 6, ["err 1", "err 2", "err 3"], stream="stderr")]) == {
        "stored": 1, "duplicates": 2, **REPLY_FLAGS}
    got = api.json(f"/api/v1/runs/{run}/logs")["lines"]
    assert [(line["seq"], line["stream"], line["text"]) for line in got] == [
        (2, "stdout", "a"), (3, "stdout", ""), (4, "stdout", "c \u00e9"), (5, "stdout", "one alone"),
        (6, "stderr", "err 1"), (7, "stderr", "err 2"), (8, "stderr", "err 3")]
    assert api.json(f"/api/v1/runs/{run}")["last_seq"] == 8


@pytest.mark.parametrize("per_statement", [3, None], ids=["statements of 3 lines", "one statement"])
def test_blocks_of_one_stretch_are_stored_line_for_line(api, db_url, monkeypatch, per_statement):
    # Blocks cut from one read of output, as the SDK sends them: one time, one stream, each
    # block's first seq after the last line of the one before. They are stored the short way
    # (what the lines share bound once), across statements too.
    from hyperdash.server import dialect

    if per_statement is not None:
        monkeypatch.setattr(dialect, "RUN_LINES_PER_STATEMENT", per_statement)
    run = new_run()
    api.ok([env("run_started", run, {"job_name": "stretch"}, seq=1)])
    texts = [f"line {i} \u00e9" if i % 3 else "" for i in range(10)]

    def stretch(seq: int, part: list[str]) -> dict:
        return env(events.LOG, run, {"level": "INFO", "stream": "stderr", "lines": len(part),
                                     "body": "".join(t + "\n" for t in part)}, seq=seq, timestamp=1_700_000_000_000)

    before = dialect._sqlite_run_sql.cache_info()
    assert api.ok([stretch(2, texts[:4]), stretch(6, texts[4:])]) == {
        "stored": 10, "duplicates": 0, **REPLY_FLAGS}
    if db_url.startswith("sqlite"):  # (the short way was taken, a statement for each 3 lines or one)
        after = dialect._sqlite_run_sql.cache_info()
        assert after.hits + after.misses - before.hits - before.misses == (4 if per_statement == 3 else 1)
    got = api.json(f"/api/v1/runs/{run}/logs")["lines"]
    assert [(line["seq"], line["stream"], line["text"]) for line in got] == [
        (seq, "stderr", text) for seq, text in enumerate(texts, start=2)]
    assert {line["timestamp"] for line in got} == {"2023-11-14T22:13:20.000Z"}  # (1,700,000,000,000 ms)
    assert api.json(f"/api/v1/runs/{run}")["last_seq"] == 11
    assert api.ok([stretch(2, texts[:4])]) == {"stored": 0, "duplicates": 4, **REPLY_FLAGS}


def test_a_batch_whose_texts_follow_its_json_is_stored_as_the_same_batch_in_json(api):
    # What the SDK sends to a server that says it takes it: blocks' texts as bytes after the JSON.
    run = new_run()
    texts = [b"epoch 1 caf\xc3\xa9", b"", b"bad \xff byte", b"last"]
    blocks = [b"".join(t + b"\n" for t in texts[:3]), texts[3] + b"\n"]
    head = orjson.dumps([
        env("run_started", run, {"job_name": "attached"}, seq=1),
        env(events.LOG, run, {"stream": "stdout", "lines": 3, "bytes": len(blocks[0])}, seq=2, timestamp=5),
        env(events.LOG, run, {"stream": "stdout", "lines": 1, "bytes": len(blocks[1])}, seq=5, timestamp=5),
    ])
    body = head + b"\n" + b"".join(blocks)
    attached = {"content-type": events.ATTACHED_TEXT_TYPE + "; charset=utf-8"}
    # Taken for JSON (no such content type), it is not JSON: refused, nothing stored.
    resp = api.ingest(body, {"content-type": "application/json"})
    assert (resp.status_code, resp.json()["code"]) == (400, "invalid_utf8")  # (the \xff, before the rest)
    resp = api.ingest(body.replace(b"\xff", b"?"), {"content-type": "application/json"})
    assert (resp.status_code, resp.json()["code"]) == (400, "invalid_json")
    assert api.get(f"/api/v1/runs/{run}").status_code == 404
    # Text left over after the events that name it: refused, nothing stored.
    resp = api.ingest(body + b"more", attached)
    assert (resp.status_code, resp.json()["code"]) == (400, "invalid_request")
    assert "the text after the JSON holds" in resp.json()["message"]
    assert api.get(f"/api/v1/runs/{run}").status_code == 404
    assert api.ok(body, attached) == {"stored": 5, "duplicates": 0, **REPLY_FLAGS}
    assert api.lines(run) == ["epoch 1 café", "", "bad \ufffd byte", "last"]
    assert api.ok(body, attached) == {"stored": 0, "duplicates": 5, **REPLY_FLAGS}


def test_a_stretch_partly_stored_already_keeps_each_text_at_its_own_seq(api):
    # Seqs 2 and 4 stored, then a stretch 2..6: the lines left (3, 5, 6) are not one stretch.
    run = new_run()

    def stretch(seq: int, part: list[str]) -> dict:
        return env(events.LOG, run, {"level": "INFO", "stream": "stdout", "lines": len(part),
                                     "body": "".join(t + "\n" for t in part)}, seq=seq, timestamp=1_700_000_000_000)

    assert api.ok([log(run, 2, "line 2"), log(run, 4, "line 4")])["stored"] == 2
    assert api.ok([stretch(2, [f"line {seq}" for seq in range(2, 7)])]) == {
        "stored": 3, "duplicates": 2, **REPLY_FLAGS}
    got = api.json(f"/api/v1/runs/{run}/logs")["lines"]
    assert [(line["seq"], line["text"]) for line in got] == [(seq, f"line {seq}") for seq in range(2, 7)]


def test_a_bad_block_of_lines_stores_nothing_of_its_batch(api):
    run = new_run()
    resp = api.ingest([block(run, 1, ["x", "y"]), log(run, 3, "a\nb\n", lines=3)])
    assert resp.status_code == 400
    assert resp.json()["message"].startswith("event 1: log 'body' must hold exactly 3 lines")
    assert api.get(f"/api/v1/runs/{run}").status_code == 404


def test_a_full_batch_of_lines_is_stored_whole_and_in_order(api):
    # A run with more lines than one SQLite statement may carry, beside another, both streams.
    counts = {new_run(): events.MAX_BATCH_EVENTS * 7 // 10, new_run(): events.MAX_BATCH_EVENTS * 3 // 10}
    batch = [log(run, seq, f"{run[:4]} {seq}", stream="stderr" if seq % 3 else "stdout")
             for run, count in counts.items() for seq in range(1, count + 1)]
    assert len(batch) == events.MAX_BATCH_EVENTS
    assert api.ok(batch) == {"stored": len(batch), "duplicates": 0, **REPLY_FLAGS}
    assert api.ok(batch[-10:]) == {"stored": 0, "duplicates": 10, **REPLY_FLAGS}
    for run, count in counts.items():
        got = api.json(f"/api/v1/runs/{run}/logs", limit=count)["lines"]
        assert [(line["seq"], line["text"]) for line in got] == [(seq, f"{run[:4]} {seq}")
                                                                 for seq in range(1, count + 1)]
        assert {line["stream"] for line in got if line["seq"] % 3} == {"stderr"}


def test_events_out_of_order_still_land(api):
    run = new_run()
    api.ok([log(run, 5, "late line"), log(run, 3, "early line")])
    runs = api.json("/api/v1/runs")["runs"]
    assert [r["uuid"] for r in runs] == [run] and runs[0]["status"] == "running"
    api.ok([env("run_ended", run, {"final_status": "failure", "exit_code": 3}, seq=9)])
    api.ok([env("run_started", run, {"job_name": "late start"}, seq=1), log(run, 4, "middle line")])
    assert api.lines(run) == ["early line", "middle line", "late line"]
    detail = api.json(f"/api/v1/runs/{run}")
    assert (detail["name"], detail["status"], detail["exit_code"]) == ("late start", "failure", 3)


def test_killed_run_keeps_its_signal(api):
    run = new_run()
    api.ok([env("run_started", run, {"job_name": "k"}, seq=1),
            env("run_ended", run, {"final_status": "killed", "signal": "SIGTERM", "exit_code": -15}, seq=2)])
    detail = api.json(f"/api/v1/runs/{run}")
    assert (detail["status"], detail["signal"], detail["exit_code"]) == ("killed", "SIGTERM", -15)


@pytest.mark.parametrize("name", ["SIGRTMIN+6", "SIGRTMAX-1", "SIGRTMIN", "SIGALRM"])
def test_a_run_killed_by_a_real_time_or_other_signal_keeps_its_name(api, name):
    run = new_run()
    api.ok([env("run_started", run, {"job_name": "k"}, seq=1),
            env("run_ended", run, {"final_status": "killed", "signal": name, "exit_code": 168}, seq=2)])
    assert api.json(f"/api/v1/runs/{run}")["signal"] == name


def test_progress_lines_keep_only_the_newest(api):
    run = new_run()
    api.ok([log(run, 1, "start"),
            log(run, 2, " 10%", progress=True), log(run, 3, " 20%", progress=True),
            log(run, 4, "an error line", stream="stderr")])
    assert api.lines(run) == ["start", " 20%", "an error line"]
    api.ok([log(run, 5, " 30%", progress=True)])
    assert api.lines(run) == ["start", "an error line", " 30%"]
    api.ok([log(run, 6, "100% done")])
    assert api.lines(run) == ["start", "an error line", "100% done"]
    # A resent progress line is a duplicate, not a line that comes back.
    assert api.ok([log(run, 3, " 20%", progress=True)]) == {"stored": 0, "duplicates": 1, **REPLY_FLAGS}
    assert api.lines(run) == ["start", "an error line", "100% done"]


def test_an_erased_progress_line_leaves_no_row(api):
    run = new_run()
    api.ok([log(run, 1, "start"), log(run, 2, " 10%", progress=True)])
    # The bar erased (tqdm's leave=False): an empty state replaces the one stored.
    assert api.ok([log(run, 3, "", progress=True)]) == {"stored": 1, "duplicates": 0, **REPLY_FLAGS}
    assert api.lines(run) == ["start"]
    assert api.json(f"/api/v1/runs/{run}")["last_seq"] == 3
    # Either one resent is a duplicate, and nothing comes back.
    assert api.ok([log(run, 2, " 10%", progress=True), log(run, 3, "", progress=True)]) == {
        "stored": 0, "duplicates": 2, **REPLY_FLAGS}
    assert api.lines(run) == ["start"]
    assert "10%" not in api.get(f"/api/v1/runs/{run}/logs.txt").text
    # The next line is a line of its own, not the erased bar's.
    api.ok([log(run, 4, "after")])
    assert api.lines(run) == ["start", "after"]

    # A bar drawn and erased within one batch, and an erasure that came before the bar it erased.
    other = new_run()
    api.ok([log(other, 1, " 50%", progress=True), log(other, 2, "", progress=True),
            log(other, 4, "", progress=True, stream="stderr")])
    api.ok([log(other, 3, " 70%", progress=True, stream="stderr")])
    assert api.lines(other) == []
    assert api.ok([log(other, 5, "end")]) == {"stored": 1, "duplicates": 0, **REPLY_FLAGS}
    assert api.lines(other) == ["end"]


def test_log_queries(api):
    run = new_run()
    api.ok([log(run, seq, f"line {seq}" + (" ERROR" if seq % 10 == 0 else "")) for seq in range(1, 51)])
    base = f"/api/v1/runs/{run}/logs"
    page = api.json(base, after=10, limit=5)["lines"]
    assert [line["seq"] for line in page] == [11, 12, 13, 14, 15]
    assert set(page[0]) >= {"seq", "stream", "text", "timestamp", "partial", "progress"}
    assert [line["seq"] for line in api.json(base, tail=3)["lines"]] == [48, 49, 50]
    assert [line["seq"] for line in api.json(base, before=20, limit=3)["lines"]] == [17, 18, 19]
    # the bounds combine: a window, read from its start, or from its end with `before` or `tail`
    assert [line["seq"] for line in api.json(base, after=3, before=6)["lines"]] == [4, 5]
    assert [line["seq"] for line in api.json(base, after=3, before=20, limit=2)["lines"]] == [18, 19]
    assert [line["seq"] for line in api.json(base, tail=3, before=5)["lines"]] == [2, 3, 4]
    assert [line["seq"] for line in api.json(base, tail=3, after=48)["lines"]] == [49, 50]
    assert [line["seq"] for line in api.json(base, after=45, q="error")["lines"]] == [50]
    assert [line["seq"] for line in api.json(base, q="error")["lines"]] == [10, 20, 30, 40, 50]
    text = api.get(f"/api/v1/runs/{run}/logs.txt")
    assert text.status_code == 200 and text.headers["content-type"].startswith("text/plain")
    assert text.text.splitlines()[:2] == ["line 1", "line 2"] and len(text.text.splitlines()) == 50


def test_searches_fold_the_case_of_every_script(api):
    names = ["Épreuve finale", "ЁЛКА и сосна", "Δοκιμή", "plain ascii"]
    for name in names:
        api.ok([env("run_started", new_run(), {"job_name": name}, seq=1)])

    def found(q):
        return {r["name"] for r in api.json("/api/v1/runs", q=q)["runs"]}

    assert found("éPREUVE") == {"Épreuve finale"}
    assert found("ёлка") == found("СОСНА") == {"ЁЛКА и сосна"}
    assert found("δοκ") == {"Δοκιμή"}
    assert found("Ascii") == {"plain ascii"}
    assert found("ё%") == set()  # a wildcard is text here too

    run = new_run()
    api.ok([log(run, 1, "Ошибка: loss is NaN"), log(run, 2, "epoch 2"), log(run, 3, "ОШИБКА снова")])
    base = f"/api/v1/runs/{run}/logs"
    assert [line["seq"] for line in api.json(base, q="ошибка")["lines"]] == [1, 3]
    assert [line["seq"] for line in api.json(base, q="NAN")["lines"]] == [1]


def test_runs_listing_pages_and_filters(api):
    for k in range(5):
        run = new_run()
        api.ok([env("run_started", run, {"job_name": f"job-{k % 2}"}, seq=1, timestamp=1_700_000_000_000 + k)])
        if k == 4:
            api.ok([env("run_ended", run, {"final_status": "success"}, seq=2)])
    first = api.json("/api/v1/runs", limit=2)
    second = api.json("/api/v1/runs", limit=2, cursor=first["next"])
    third = api.json("/api/v1/runs", limit=2, cursor=second["next"])
    names = [r["started_at"] for page in (first, second, third) for r in page["runs"]]
    assert len(names) == 5 and names == sorted(names, reverse=True) and third["next"] is None
    assert {r["name"] for r in api.json("/api/v1/runs", name="job-1")["runs"]} == {"job-1"}
    assert len(api.json("/api/v1/runs", name="job-0")["runs"]) == 3
    assert api.json("/api/v1/runs", name="job")["runs"] == []  # the whole name
    assert len(api.json("/api/v1/runs", q="JOB")["runs"]) == 5  # or any part of it, in any case
    assert {r["name"] for r in api.json("/api/v1/runs", q="b-1")["runs"]} == {"job-1"}
    assert api.json("/api/v1/runs", q="%")["runs"] == [] and api.json("/api/v1/runs", q="_")["runs"] == []
    assert [r["status"] for r in api.json("/api/v1/runs", status="success")["runs"]] == ["success"]
    assert api.get("/api/v1/runs", status="nonsense").json()["code"] == "invalid_status"
    assert api.get("/api/v1/runs", cursor="garbage").status_code == 400


def test_silent_run_goes_lost_on_its_own(make_client):
    api = Api(make_client(lost_timeout=0.3))
    run = new_run()
    api.ok([env("run_started", run, {"job_name": "quiet"}, seq=1)])
    deadline = time.monotonic() + 10
    while api.json(f"/api/v1/runs/{run}")["status"] != "lost":
        assert time.monotonic() < deadline, "the run never became lost"
        time.sleep(0.1)


def check_lost_later(api: Api, seconds: float) -> None:
    """Run the check that marks runs lost with a clock set ahead, so that no timing matters."""
    app = api.client.app
    later = events.now_ms() + int(seconds * 1000)
    app.state.store.writer.call(
        lambda conn: mark_lost(conn, app.state.lost_timeout, app.state.run_cache, now_ms=later))


def test_lost_run_comes_back_and_an_ended_one_stays_ended(api):
    timeout = api.client.app.state.lost_timeout

    def check_later(seconds: float) -> None:
        check_lost_later(api, seconds)

    run = new_run()
    api.ok([env("run_started", run, {"job_name": "quiet"}, seq=1)])
    check_later(timeout / 2)
    assert api.json(f"/api/v1/runs/{run}")["status"] == "running"
    check_later(timeout + 1)
    assert api.json(f"/api/v1/runs/{run}")["status"] == "lost"
    api.ok(env("heartbeat", run, {}))
    assert api.json(f"/api/v1/runs/{run}")["status"] == "running"
    api.ok([env("run_ended", run, {"final_status": "success"}, seq=2)])
    check_later(timeout + 1)
    assert api.json(f"/api/v1/runs/{run}")["status"] == "success"


def test_a_replayed_spool_is_no_sign_of_life(api):
    timeout = api.client.app.state.lost_timeout
    replay = {events.REPLAY_HEADER: "1"}
    run = new_run()
    api.ok([env("run_started", run, {"job_name": "killed"}, seq=1), log(run, 2, "first")])
    check_lost_later(api, timeout + 1)
    before = api.json(f"/api/v1/runs/{run}")
    assert before["status"] == "lost"
    # The spool of the dead process uploaded: its lines are stored, the run stays lost.
    assert api.ok([log(run, 2, "first"), log(run, 3, "last words")], replay) == {
        "stored": 1, "duplicates": 1, **REPLY_FLAGS}
    after = api.json(f"/api/v1/runs/{run}")
    assert (after["status"], after["last_seen_at"], after["last_seq"]) == ("lost", before["last_seen_at"], 3)
    assert api.lines(run) == ["first", "last words"]
    # A replay's run_ended still ends the run.
    api.ok([env("run_ended", run, {"final_status": "failure", "exit_code": 1}, seq=4)], replay)
    assert api.json(f"/api/v1/runs/{run}")["status"] == "failure"

    # A run the server first hears of through a replay (it was down all along) was last seen
    # when its last event was recorded: a dead job's run is lost at the next sweep, not only
    # once the timeout has passed again, and its duration is what the job ran.
    unheard = new_run()
    began = events.now_ms() - 600_000
    api.ok([env("run_started", unheard, {"job_name": "offline"}, seq=1, timestamp=began),
            env(events.LOG, unheard, {"uuid": "u", "level": "INFO", "stream": "stdout", "body": "x"}, seq=2,
                timestamp=began + 3_000)], replay)
    shown = api.json(f"/api/v1/runs/{unheard}")
    assert (shown["started_at"], shown["last_seen_at"]) == (iso(began), iso(began + 3_000))
    check_lost_later(api, 0)
    assert api.json(f"/api/v1/runs/{unheard}")["status"] == "lost"

    # Another value of the header (or none, as old clients send) is a sign of life as before.
    other = new_run()
    api.ok([env("run_started", other, {"job_name": "alive"}, seq=1)])
    check_lost_later(api, timeout + 1)
    assert api.json(f"/api/v1/runs/{other}")["status"] == "lost"
    api.ok([log(other, 2, "alive after all")], {events.REPLAY_HEADER: "0"})
    assert api.json(f"/api/v1/runs/{other}")["status"] == "running"


def test_keys_and_accounts_are_scoped(client):
    alice, bob = Api(client), Api(client)
    run = new_run()
    alice.ok([env("run_started", run, {"job_name": "secret"}, seq=1), log(run, 2, "alice's line")])
    for path in (f"/api/v1/runs/{run}", f"/api/v1/runs/{run}/logs", f"/api/v1/runs/{run}/logs.txt",
                 f"/api/v1/runs/{run}/metrics/loss", f"/api/v1/runs/{run}/events"):
        resp = bob.get(path)
        assert resp.status_code == 404, (path, resp.text)
        assert resp.json()["code"] == "not_found"
    assert bob.json("/api/v1/runs")["runs"] == []
    # Bob sending to the same uuid makes his own run; Alice's is untouched.
    bob.ok([log(run, 2, "bob's line")])
    assert alice.lines(run) == ["alice's line"] and bob.lines(run) == ["bob's line"]


@pytest.mark.parametrize("key", [None, "", "hd_wrong-key"])
def test_ingest_without_a_valid_key_is_refused(api, key):
    run = new_run()
    headers = {} if key is None else {events.AUTH_HEADER: key}
    resp = api.client.post(events.INGEST_PATH, headers=headers, json=[log(run, 1, "x")])
    assert resp.status_code == 401
    assert resp.json()["code"] == "api_key_requred" and resp.json()["message"]
    assert api.json("/api/v1/runs")["runs"] == []


def _bad_bodies():
    run = "11111111-2222-3333-4444-555555555555"
    good = log(run, 1, "fine")

    def with_(**changes):
        bad = dict(good, **changes)
        return [good, bad]

    def payload(**changes):
        return with_(payload=dict(good["payload"], **changes))

    too_long = "x" * (events.MAX_LOG_BODY_BYTES + 1)
    return [
        ("malformed JSON", b'[{"type": "log",', 400, "invalid_json"),
        ("invalid UTF-8", b'[{"type": "log", "sdk_run_uuid": "\xff\xfe"}]', 400, "invalid_utf8"),
        ("empty body", b"", 400, "invalid_json"),
        ("not an object", b"42", 400, "invalid_request"),
        ("unknown type", with_(type="telemetry"), 400, "unknown_type"),
        ("type not a string", with_(type=7), 400, "invalid_event"),
        ("envelope not an object", [good, "log"], 400, "invalid_event"),
        ("missing run uuid", with_(sdk_run_uuid=None), 400, "invalid_event"),
        ("timestamp a string", with_(timestamp="now"), 400, "invalid_event"),
        ("payload a list", with_(payload=[]), 400, "invalid_event"),
        ("seq zero", with_(seq=0), 400, "invalid_event"),
        ("seq a string", with_(seq="2"), 400, "invalid_event"),
        ("body missing", payload(body=None), 400, "invalid_event"),
        ("body a number", payload(body=5), 400, "invalid_event"),
        ("unknown stream", payload(stream="stdin"), 400, "invalid_event"),
        ("partial not a bool", payload(partial="yes"), 400, "invalid_event"),
        ("log body too long", payload(body=too_long), 400, "log_too_large"),
        ("metric without value", [good, env("metric", run, {"name": "loss"}, seq=2)], 400, "invalid_event"),
        ("metric value a string", [good, env("metric", run, {"name": "m", "value": "1"}, seq=2)], 400, "invalid_event"),
        ("timestamp before 1970", with_(timestamp=-99999999999999999), 400, "invalid_event"),
        ("timestamp past year 9999", with_(timestamp=2**63 - 1), 400, "invalid_event"),
        ("timestamp a huge float", with_(timestamp=1e300), 400, "invalid_event"),
        ("metric timestamp out of range",
         [good, env("metric", run, {"name": "m", "value": 1, "timestamp": -99999999999999999}, seq=2)],
         400, "invalid_event"),
        ("metric step over 64 bits", [good, env("metric", run, {"name": "m", "value": 1, "step": 2**63}, seq=2)],
         400, "invalid_event"),
        ("pid over 64 bits", [good, env("run_started", run, {"job_name": "j", "pid": 2**63}, seq=2)],
         400, "invalid_event"),
        ("pid negative", [good, env("run_started", run, {"job_name": "j", "pid": -1}, seq=2)], 400, "invalid_event"),
        ("exit code over 255", [good, env("run_ended", run, {"final_status": "failure", "exit_code": 256}, seq=2)],
         400, "invalid_event"),
        ("exit code below int32",
         [good, env("run_ended", run, {"final_status": "killed", "exit_code": -(2**31) - 1}, seq=2)],
         400, "invalid_event"),
        ("unknown signal", [good, env("run_ended", run, {"final_status": "killed", "signal": "SIGNOPE"}, seq=2)],
         400, "invalid_event"),
        ("signal a number", [good, env("run_ended", run, {"final_status": "killed", "signal": 9}, seq=2)],
         400, "invalid_event"),
        ("real-time signal past the end", [good, env("run_ended", run, {"final_status": "killed",
                                                                         "signal": "SIGRTMIN+99"}, seq=2)],
         400, "invalid_event"),
        ("run uuid a path", with_(sdk_run_uuid="../../x"), 400, "invalid_event"),
        ("run uuid not a uuid", with_(sdk_run_uuid="11111111-2222-3333-4444-55555555555g"), 400, "invalid_event"),
        ("log uuid a number", [good, env("log", run, {"uuid": 5, "level": "INFO", "body": "x"})],
         400, "invalid_event"),
        ("lone surrogate", b'[{"type": "log", "sdk_run_uuid": "\\ud800", "timestamp": 1, "payload": {}}]',
         400, "invalid_json"),
        ("param value a list", [good, env("param", run, {"params": {"a": [1]}}, seq=2)], 400, "invalid_event"),
        ("bad final status", [good, env("run_ended", run, {"final_status": "great"}, seq=2)], 400, "invalid_event"),
        ("job name a number", [good, env("run_started", run, {"job_name": 3}, seq=2)], 400, "invalid_event"),
        ("batch over the count limit", [good] * (events.MAX_BATCH_EVENTS + 1), 413, "batch_too_large"),
    ]


@pytest.mark.parametrize("body,status,code", [b[1:] for b in _bad_bodies()], ids=[b[0] for b in _bad_bodies()])
def test_bad_input_changes_nothing(api, body, status, code):
    resp = api.ingest(orjson.dumps(body) if isinstance(body, list) else body,
                      headers={"content-type": "application/json"})
    assert resp.status_code == status, resp.text
    assert resp.json()["code"] == code and resp.json()["message"]
    assert api.json("/api/v1/runs")["runs"] == []


def test_body_over_the_size_limit_is_refused_before_reading(api):
    too_long = str(events.MAX_REQUEST_BYTES + 1)
    resp = api.client.post(events.INGEST_PATH, headers={**api.headers, "content-length": too_long}, content=b"[]")
    assert resp.status_code == 413 and resp.json()["code"] == "body_too_large"
    big = b"[" + b",".join([orjson.dumps(log(new_run(), None, "y" * 60000))] * 300) + b"]"
    assert len(big) > events.MAX_REQUEST_BYTES
    resp = api.ingest(big)
    assert resp.status_code == 413
    assert api.json("/api/v1/runs")["runs"] == []


def test_chunked_body_over_the_limit_is_refused_on_any_route(api):
    def chunks():
        for _ in range(events.MAX_REQUEST_BYTES // 65536 + 2):
            yield b"x" * 65536

    for path in (events.INGEST_PATH, "/api/v1/users"):
        resp = api.client.post(path, headers={**api.headers, "content-type": "application/json"}, content=chunks())
        assert resp.status_code == 413 and resp.json()["code"] == "body_too_large", path


def test_ingest_taken_before_the_framework_answers_as_the_rest_of_the_api(api, monkeypatch, caplog):
    # A failure nobody expected: a 500 in JSON, saying no more, its traceback logged.
    def broken(*args, **kwargs):
        raise RuntimeError("a bug in checking")

    monkeypatch.setattr("hyperdash.server.api.checked_batch", broken)
    resp = api.ingest([log(new_run(), 1, "x")])
    assert (resp.status_code, resp.json()) == (500, {"code": "internal", "message": "internal server error"})
    assert "a bug in checking" in caplog.text
    monkeypatch.undo()
    # Other methods still meet the route in the router; a bad key its usual answer.
    resp = api.client.get(events.INGEST_PATH, headers=api.headers)
    assert resp.status_code == 405 and resp.json()["code"] == "method_not_allowed"
    resp = api.client.post(events.INGEST_PATH, headers={events.AUTH_HEADER: "hd_not-a-key"}, json=[])
    assert resp.status_code == 401 and resp.json()["code"] == events.API_KEY_REQUIRED
    assert api.ok([log(new_run(), 1, "x")])["stored"] == 1


def test_lost_timeout_from_the_environment(monkeypatch, db_url):
    from hyperdash.server.app import create_app

    monkeypatch.setenv("HYPERDASH_LOST_TIMEOUT", "7.5")
    app = create_app(db_url)
    app.state.store.close()
    assert app.state.lost_timeout == 7.5
    monkeypatch.setenv("HYPERDASH_LOST_TIMEOUT", "soon")
    with pytest.raises(ValueError, match="HYPERDASH_LOST_TIMEOUT"):
        create_app(db_url)


def test_nul_characters_are_stored_as_replacement(api):
    run = new_run()
    api.ok([log(run, 1, "a\x00b")])
    assert api.lines(run) == ["a\ufffdb"]


def test_a_stopped_store_answers_503_with_retry_after(api):
    api.client.app.state.store.writer.stop()
    resp = api.ingest([log(new_run(), 1, "too late")])
    assert resp.status_code == 503 and resp.json()["code"] == "unavailable"
    assert int(resp.headers["retry-after"]) > 0


def test_the_text_counted_is_its_size_in_utf8_line_by_line():
    texts = ["plain", "", "épais 😀", "\x1b[31mred\x1b[0m", "a lone \ud83d", "\ude00 half of a pair", "x" * 1000]
    lines = [Line(seq, 0, "stdout", text, 0, 0) for seq, text in enumerate(texts, 1)]
    expected = sum(len(text.encode("utf-8", "replace")) for text in texts)
    assert _text_bytes(lines) == expected
    assert _text_bytes(lines[:1]) == 5 and _text_bytes([]) == 0

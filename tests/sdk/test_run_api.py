"""The Run API that every front end (decorator, Experiment, CLI, notebook) builds on."""

from __future__ import annotations

import threading
import uuid
from decimal import Decimal
from fractions import Fraction

import pytest
from sdk_support import texts

from hyperdash.capture import StreamCapture
from hyperdash.run import Run, new_run_uuid


def test_write_from_threads_then_end_with_an_exit_code(reporting, capfd):
    run = Run("raw bytes", api="cli_run", echo=False).start()

    def feed(stream: str, tag: str):
        for i in range(200):
            run.write(stream, f"{tag} {i}\n".encode())

    threads = [threading.Thread(target=feed, args=(s, s[3:])) for s in ("stdout", "stderr")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    run.write("stdout", b"no newline at the end")
    run.end("failure", exit_code=2)
    run.end("success")  # idempotent: the first end stands
    run.write("stdout", b"after the end\n")  # ignored
    assert "the log of this run is at" in capfd.readouterr().err
    detail = reporting.wait_for_run("raw bytes", status="failure")
    assert detail["exit_code"] == 2 and detail["api"] == "cli_run"
    lines = reporting.logs(detail["uuid"])
    assert texts(lines, "stdout") == [f"out {i}" for i in range(200)] + ["no newline at the end"]
    assert texts(lines, "stderr") == [f"err {i}" for i in range(200)]
    log = run.log_path.read_text().splitlines()
    assert len(log) == 401 and log[-1] == "no newline at the end"


def test_stream_capture_tees_the_python_streams(reporting, capsys):
    run = Run("streams").start()
    capture = StreamCapture(run).start()
    print("to both")
    run.param("p", 1)
    capture.stop()
    print("to the terminal only")
    run.end()
    out = capsys.readouterr().out
    assert out.splitlines()[:3] == ["to both", "{ p: 1 }", "to the terminal only"]
    detail = reporting.wait_for_run("streams", status="success")
    assert texts(reporting.logs(detail["uuid"])) == ["to both", "{ p: 1 }"]


def test_bad_arguments_raise_clearly_and_record_nothing():
    run = Run("validation", echo=False)
    with pytest.raises(TypeError, match="metric 'loss' must be a real number, not str"):
        run.metric("loss", "low")
    with pytest.raises(TypeError, match="must be a real number, not complex"):
        run.metric("loss", 1j)
    with pytest.raises(TypeError, match="step must be an integer"):
        run.metric("loss", 1.0, step=1.5)
    with pytest.raises(TypeError, match="param name must be a string"):
        run.param(3, 1)
    with pytest.raises(ValueError, match="must not be empty"):
        run.param(" ", 1)
    with pytest.raises(ValueError, match="status must be one of"):
        run.end("done")
    assert run._next_seq == 1  # nothing was numbered
    run.end()  # never started: nothing to end, no error


def test_any_real_number_is_a_metric_as_the_original_sdk_took_it(reporting):
    # bool, Fraction and Decimal used to raise TypeError in the middle of the job.
    run = Run("real numbers", echo=False).start()
    for name, value in (("flag", True), ("third", Fraction(1, 3)), ("price", Decimal("2.5")), ("off", False),
                        ("huge", Fraction(10**400, 3))):  # (beyond a float: infinite, said once)
        assert run.metric(name, value) is value
    run.end()
    metrics = reporting.run(reporting.wait_for_run("real numbers", status="success")["uuid"])["metrics"]
    assert {name: metrics[name]["value"] for name in metrics} == {"flag": 1, "third": 1 / 3, "price": 2.5, "off": 0,
                                                                  "huge": None}
    assert metrics["huge"]["value_text"] == "Infinity"  # (listed, though JSON has no such number)


def test_what_is_recorded_after_the_end_is_said_once_not_dropped_unseen(reporting, capfd):
    run = Run("ended early").start()
    run.end()
    capfd.readouterr()
    for step in range(3):
        assert run.metric("late", step) == step
        run.param("late param", 1)
    shown = capfd.readouterr()
    assert "late" not in shown.out  # (not shown as if it were recorded)
    said = [line for line in shown.err.splitlines() if "has ended" in line]
    assert said == ["hyperdash: the run 'ended early' has ended: 'late' is not recorded, nor what comes after it"]
    detail = reporting.run(reporting.wait_for_run("ended early", status="success")["uuid"])
    assert detail["metrics"] == {} and detail["params"] == {}


def test_new_run_uuid_is_a_version_4_uuid():
    seen = set()
    for _ in range(200):
        value = uuid.UUID(new_run_uuid())
        assert value.version == 4 and value.variant == uuid.RFC_4122
        seen.add(value)
    assert len(seen) == 200


def test_a_stop_that_nothing_here_can_carry_out_is_not_claimed(reporting, capfd):
    run = Run("unstoppable", echo=False).start()  # (no on_stop: a face that cannot stop its job)
    said: list[str] = []
    try:
        reporting.wait_for_run("unstoppable", status="running", timeout=30)
        resp = reporting.server.session.post(f"{reporting.server.url}/api/v1/runs/{run.uuid}/stop",
                                             headers={"x-hyperdash-auth": reporting.api_key}, timeout=10)
        assert resp.status_code == 202, resp.text
        # (heard in the reply to the next heartbeat)
        reporting.wait_for(lambda: said.append(capfd.readouterr().err) or "asked this run" in "".join(said),
                           timeout=30)
    finally:
        run.end("success")
    assert (f"hyperdash: {reporting.email} asked this run to stop, from the API, but nothing here can stop "
            "its job: stop it where it runs\n") in "".join(said)
    assert "stopping the job" not in "".join(said)

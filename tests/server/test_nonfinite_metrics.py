"""A metric whose every value is NaN or infinite (a loss that diverged from its first step) is
listed wherever a run's metrics are, on SQLite and PostgreSQL, its points shown as the API
shows a NaN: ``value`` null and ``value_text`` saying which."""

from __future__ import annotations

import csv
import io
import uuid

from server_helpers import Api, env
from sqlalchemy import delete, select

from hyperdash.server import store as store_module

T0 = 1_700_000_000_000


def _point(run: str, seq: int, name: str, value, step: int, internal: bool = False) -> dict:
    t = T0 + seq * 1000
    return env("metric", run, {"name": name, "value": value, "timestamp": t, "is_internal": internal, "step": step},
               seq=seq, timestamp=t)


def _diverged_run(api: Api, name: str = "diverged") -> str:
    """A run whose loss is NaN at each of its 3 steps, beside a finite accuracy."""
    run = str(uuid.uuid4())
    api.ok([env("run_started", run, {"job_name": name, "host": "box", "pid": 1, "api": "monitor"}, seq=1,
                timestamp=T0),
            _point(run, 2, "loss", "NaN", 1), _point(run, 3, "acc", 0.5, 1),
            _point(run, 4, "loss", "NaN", 2), _point(run, 5, "loss", "NaN", 3)])
    return run


def test_a_metric_with_only_nan_points_is_listed_with_its_nan_points(api):
    run = _diverged_run(api)
    metrics = api.json(f"/api/v1/runs/{run}")["metrics"]
    assert set(metrics) == {"acc", "loss"}
    assert metrics["loss"] == {"value": None, "value_text": "NaN", "step": 3, "timestamp": "2023-11-14T22:13:25.000Z",
                               "internal": False}
    assert metrics["acc"]["value"] == 0.5 and "value_text" not in metrics["acc"]  # (a number, as before)

    # Its series has no number to chart, and says how many points were NaN, and the last.
    assert api.json(f"/api/v1/runs/{run}/metrics/loss") == {
        "name": "loss", "internal": False, "points": [],
        "nonfinite": {"count": 3, "last": {"step": 3, "value": None, "value_text": "NaN",
                                           "timestamp": "2023-11-14T22:13:25.000Z"}}}
    assert api.json(f"/api/v1/runs/{run}/metrics/acc")["nonfinite"] is None


def test_the_last_nonfinite_point_is_the_latest_recorded(api):
    run = str(uuid.uuid4())
    # The later point arrives first (a batch resent after a gap): the last is still seq 6's.
    api.ok([_point(run, 6, "grad", "-Infinity", 6), _point(run, 3, "grad", 2.5, 3)])
    api.ok([_point(run, 4, "grad", "Infinity", 4), _point(run, 2, "gpu", "NaN", 2, internal=True)])
    grad = api.json(f"/api/v1/runs/{run}/metrics/grad")
    assert [p["value"] for p in grad["points"]] == [2.5]  # charts get numbers, as before
    assert grad["nonfinite"]["count"] == 2 and grad["nonfinite"]["last"]["value_text"] == "-Infinity"
    metrics = api.json(f"/api/v1/runs/{run}")["metrics"]
    # (its latest point, seq 6, is not a number: the run's metrics say so, not its last number)
    assert (metrics["grad"]["value"], metrics["grad"]["value_text"], metrics["grad"]["step"]) == (None, "-Infinity", 6)
    assert metrics["gpu"] == {"value": None, "value_text": "NaN", "step": 2, "timestamp": "2023-11-14T22:13:22.000Z",
                              "internal": True}
    assert api.json(f"/api/v1/runs/{run}/metrics/gpu")["internal"] is True


def test_a_metric_whose_latest_point_is_nan_shows_that_point_not_its_last_number(api):
    # A loss that diverged part-way must not look fine in the run's metrics.
    run = str(uuid.uuid4())
    api.ok([_point(run, 1, "loss", 0.9, 1), _point(run, 2, "loss", 0.5, 2), _point(run, 3, "loss", "Infinity", 3),
            _point(run, 4, "acc", "NaN", 1), _point(run, 5, "acc", 0.7, 2)])
    metrics = api.json(f"/api/v1/runs/{run}")["metrics"]
    assert metrics["loss"] == {"value": None, "value_text": "Infinity", "step": 3,
                               "timestamp": "2023-11-14T22:13:23.000Z", "internal": False}
    assert metrics["acc"] == {"value": 0.7, "step": 2, "timestamp": "2023-11-14T22:13:25.000Z", "internal": False}
    series = api.json(f"/api/v1/runs/{run}/metrics/loss")
    assert [p["value"] for p in series["points"]] == [0.9, 0.5] and series["nonfinite"]["count"] == 1


def test_the_comparison_table_and_its_downloads_list_it(api):
    run = _diverged_run(api, "sweep")
    table = api.json("/api/v1/compare", name="sweep")
    assert [m["name"] for m in table["metrics"]] == ["acc", "loss"]
    assert table["runs"][0]["metrics"]["loss"] == {"count": 3, "min": None, "max": None, "last": None,
                                                   "last_text": "NaN", "last_step": 3}

    rows = list(csv.DictReader(io.StringIO(api.get("/api/v1/compare/export.csv", name="sweep").text)))
    assert rows[0]["uuid"] == run and rows[0]["loss (last)"] == "NaN" and rows[0]["loss (min)"] == ""
    exported = api.json("/api/v1/compare/export.json", name="sweep")
    assert "loss (last)" in exported["columns"] and exported["rows"][0]["loss (last)"] == "NaN"


def test_the_comparison_table_gives_a_diverged_metric_its_nan_last_value(api):
    # A loss finite, then NaN: its last value is NaN (its min and max are of its numbers); one
    # NaN, then finite again, keeps its last number.
    run = str(uuid.uuid4())
    api.ok([env("run_started", run, {"job_name": "diverging sweep", "host": "box", "pid": 1, "api": "monitor"},
                seq=1, timestamp=T0),
            _point(run, 2, "loss", 0.9, 1), _point(run, 3, "loss", 0.5, 2), _point(run, 4, "loss", "NaN", 3),
            _point(run, 5, "acc", "NaN", 1), _point(run, 6, "acc", 0.7, 2)])
    metrics = api.json("/api/v1/compare", name="diverging sweep")["runs"][0]["metrics"]
    assert metrics["loss"] == {"count": 3, "min": 0.5, "max": 0.9, "last": None, "last_text": "NaN", "last_step": 3}
    assert metrics["acc"] == {"count": 2, "min": 0.7, "max": 0.7, "last": 0.7, "last_step": 2}
    rows = list(csv.DictReader(io.StringIO(api.get("/api/v1/compare/export.csv", name="diverging sweep").text)))
    assert (rows[0]["loss (last)"], rows[0]["acc (last)"]) == ("NaN", "0.7")


def test_runs_stored_before_the_count_are_counted_by_the_upgrade(api, db_url):
    run = _diverged_run(api)
    store = store_module.Store(db_url)
    try:
        with store.engine.begin() as conn:
            conn.execute(delete(store_module.odd_metrics))  # as an older server left it
            store_module._add_odd_metrics(conn)
            assert conn.execute(select(store_module.odd_metrics.c.name, store_module.odd_metrics.c.count)).all() \
                == [("loss", 3)]
    finally:
        store.close()
    assert api.json(f"/api/v1/runs/{run}")["metrics"]["loss"]["value_text"] == "NaN"

"""Comparing the runs of one name through the API, on SQLite and PostgreSQL: the table of params
and metric summaries, overlaid series thinned with their shape kept, the CSV and JSON exports,
and another account's runs kept out."""

from __future__ import annotations

import csv
import io
import re
import uuid

import pytest
from server_helpers import Api, env
from sqlalchemy import inspect, text

from hyperdash import events
from hyperdash.server import store as store_module
from hyperdash.server.comparison import MAX_OVERLAY_RUNS, best_direction, name_table

T0 = 1_700_000_000_000


def _run(api: Api, name: str, *, params: dict | None = None, points: dict | None = None, host: str = "box",
         start: int = T0, end: str | None = "success", internal: dict | None = None) -> str:
    """A run named ``name`` with ``params`` and ``points`` ({metric: [(step, value), ...]}) one
    second apart; ended with ``end`` unless None."""
    run = str(uuid.uuid4())
    seq = 1
    batch = [env("run_started", run, {"job_name": name, "host": host, "pid": 1, "api": "monitor"},
                 seq=seq, timestamp=start)]
    if params:
        seq += 1
        batch.append(env("param", run, {"params": params, "is_internal": False}, seq=seq, timestamp=start))
    t = start
    for is_internal, series in ((False, points or {}), (True, internal or {})):
        for metric, values in series.items():
            for step, value in values:
                seq += 1
                t += 1000
                batch.append(env("metric", run, {"name": metric, "value": value, "timestamp": t,
                                                 "is_internal": is_internal, "step": step}, seq=seq, timestamp=t))
    if end:
        seq += 1
        t += 1000
        batch.append(env("run_ended", run, {"final_status": end, "exit_code": 0, "signal": None},
                         seq=seq, timestamp=t))
    for start_at in range(0, len(batch), 5000):
        api.ok(batch[start_at:start_at + 5000])
    return run


def test_the_table_holds_each_run_with_params_and_each_metrics_last_min_and_max(api):
    a = _run(api, "sweep", params={"lr": 0.1, "opt": "adam"}, host="gpu-1",
             points={"loss": [(1, 0.9), (2, 0.3), (3, 0.5)], "acc": [(1, 0.5), (2, 0.7)]},
             internal={"hd_cpu": [(None, 50.0)]})
    b = _run(api, "sweep", params={"lr": 0.01, "opt": "adam", "layers": 4}, start=T0 + 60_000,
             points={"loss": [(1, 0.8)]}, end=None)
    _run(api, "other", params={"lr": 1}, points={"loss": [(1, 0.1)]})

    table = api.json("/api/v1/compare", name="sweep")
    assert table["name"] == "sweep"
    assert [r["uuid"] for r in table["runs"]] == [b, a], "newest first"
    assert table["params"] == ["layers", "lr", "opt"]
    assert table["metrics"] == [{"name": "acc", "best": "max"}, {"name": "loss", "best": "min"}]
    assert table["truncated"] is False
    first, second = table["runs"]
    assert second["status"] == "success" and second["host"] == "gpu-1"
    assert second["started_at"] == "2023-11-14T22:13:20.000Z"
    assert second["duration_s"] == 7.0  # five points a second apart, the end a second later
    assert second["params"] == {"lr": 0.1, "opt": "adam"}
    assert second["metrics"] == {
        "loss": {"count": 3, "min": 0.3, "max": 0.9, "last": 0.5, "last_step": 3},
        "acc": {"count": 2, "min": 0.5, "max": 0.7, "last": 0.7, "last_step": 2},
    }, "internal metrics are left out"
    assert first["status"] == "running" and first["metrics"]["loss"]["last"] == 0.8
    assert first["duration_s"] > 0

    with_internal = api.json("/api/v1/compare", name="sweep", internal="true")
    assert "hd_cpu" in with_internal["runs"][1]["metrics"]


def test_a_name_without_runs_is_an_empty_table_and_bad_names_are_refused(api):
    assert api.json("/api/v1/compare", name="nothing") == {
        "name": "nothing", "runs": [], "params": [], "metrics": [], "truncated": False}
    for params in ({}, {"name": ""}, {"name": "x" * (events.MAX_NAME_CHARS + 1)}, {"name": "a\x00b"}):
        resp = api.get("/api/v1/compare", **params)
        assert resp.status_code == 400, (params, resp.text)
        assert resp.json()["code"]


def test_the_table_holds_the_newest_runs_and_says_when_there_are_more(api, client):
    made = [_run(api, "capped", start=T0 + i * 1000) for i in range(3)]
    with client.app.state.store.read() as conn:
        user_id = conn.execute(text("SELECT id FROM users WHERE email = :e"), {"e": api.email}).scalar()
        capped = name_table(conn, user_id, "capped", limit=2)
        whole = name_table(conn, user_id, "capped", limit=3)
    assert [r["uuid"] for r in capped["runs"]] == made[:0:-1] and capped["truncated"] is True
    assert len(whole["runs"]) == 3 and whole["truncated"] is False


def test_another_accounts_runs_never_appear(client):
    mine, theirs = Api(client), Api(client)
    my_run = _run(mine, "shared-name", params={"who": "me"}, points={"loss": [(1, 1.0)]})
    their_run = _run(theirs, "shared-name", params={"who": "them"}, points={"loss": [(1, 2.0)]})
    table = mine.json("/api/v1/compare", name="shared-name")
    assert [r["uuid"] for r in table["runs"]] == [my_run]
    assert their_run not in mine.get("/api/v1/compare/export.csv", name="shared-name").text
    assert "them" not in mine.get("/api/v1/compare/export.json", name="shared-name").text
    resp = mine.get("/api/v1/compare/series", run=[my_run, their_run])
    assert resp.status_code == 404, "another account's run is not found, not shown"
    assert client.get("/api/v1/compare", params={"name": "shared-name"}).status_code == 401
    assert client.get("/api/v1/compare/export.csv", params={"name": "shared-name"}).status_code == 401


def test_overlay_series_come_per_run_and_metric_with_steps_and_times(api):
    a = _run(api, "sweep", points={"loss": [(10, 0.9), (20, 0.4)], "acc": [(10, 0.1)]},
             internal={"hd_gpu": [(None, 3.0)]})
    b = _run(api, "sweep", points={"loss": [(None, 0.7)]})
    reply = api.json("/api/v1/compare/series", run=[b, a])
    assert reply["runs"] == [b, a]
    shapes = [(s["run"], s["metric"], s["steps"], s["values"], s["count"]) for s in reply["series"]]
    assert shapes == [
        (a, "acc", [10], [0.1], 1),
        (b, "loss", [None], [0.7], 1),
        (a, "loss", [10, 20], [0.9, 0.4], 2),
    ]
    loss_a = reply["series"][2]
    assert loss_a["times"] == [1.0, 2.0], "seconds since the run started"

    only = api.json("/api/v1/compare/series", run=[a], metric=["acc"])
    assert [s["metric"] for s in only["series"]] == ["acc"]
    internal = api.json("/api/v1/compare/series", run=[a], internal="true")
    assert "hd_gpu" in [s["metric"] for s in internal["series"]]


def test_a_long_series_is_thinned_keeping_its_lowest_and_highest_points(api):
    values = [float(i % 100) for i in range(20_000)]
    values[12_345] = -50.0  # one dip the chart must still show
    values[777] = 1e6       # and one spike
    run = _run(api, "long", points={"loss": list(enumerate(values))})
    series = api.json("/api/v1/compare/series", run=[run], points=1000)["series"][0]
    assert series["count"] == 20_000
    assert 500 <= len(series["values"]) <= 1000
    assert min(series["values"]) == -50.0 and max(series["values"]) == 1e6
    assert series["steps"] == sorted(series["steps"]), "in the order recorded"
    assert series["steps"][0] in (0, 1) and series["steps"][-1] >= 19_900


def test_overlay_input_is_checked(api):
    run = _run(api, "x", points={"m": [(1, 1.0)]})
    assert api.get("/api/v1/compare/series").status_code == 400
    assert api.get("/api/v1/compare/series", run=str(uuid.uuid4())).status_code == 404
    too_many = [str(uuid.uuid4()) for _ in range(MAX_OVERLAY_RUNS + 1)]
    resp = api.get("/api/v1/compare/series", run=too_many)
    assert resp.status_code == 400 and resp.json()["code"] == "too_many_runs"
    assert api.get("/api/v1/compare/series", run=run, points=10).status_code == 400
    assert api.get("/api/v1/compare/series", run="a\x00").status_code == 400


HOSTILE = ["=HYPERLINK(\"http://evil\")", "+1+2", "-cmd|' /C calc'!A0", "@SUM(A1)", "a,b", 'say "hi"',
           "two\nlines"]


def test_csv_export_opens_with_pythons_csv_module_and_never_starts_a_formula(api):
    run = _run(api, "=cmd|calc", params={"note": HOSTILE[0], "a": HOSTILE[1], "b": HOSTILE[2], "c": HOSTILE[3],
                                         "d": HOSTILE[4], "e": HOSTILE[5], "f": HOSTILE[6], "lr": -0.5,
                                         "flag": True},
               host="@host", points={"val_loss": [(1, -1.5), (2, -2.5)], "acc": [(1, 0.25)]})
    resp = api.get("/api/v1/compare/export.csv", name="=cmd|calc")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/csv")
    assert resp.headers["content-disposition"].startswith("attachment;")
    rows = list(csv.reader(io.StringIO(resp.text, newline="")))
    header, row = rows[0], rows[1]
    assert len(rows) == 2
    cells = dict(zip(header, row, strict=True))
    assert header[:7] == ["uuid", "name", "status", "started_at", "ended_at", "duration_s", "host"]
    assert cells["uuid"] == run and cells["name"] == "'=cmd|calc" and cells["host"] == "'@host"
    assert [cells[f"param:{k}"] for k in "abcdef"] == ["'" + h for h in HOSTILE[1:4]] + HOSTILE[4:]
    assert cells["param:note"] == "'" + HOSTILE[0]
    assert cells["param:lr"] == "-0.5", "numbers stay numbers"
    assert cells["param:flag"] == "true"
    assert cells["val_loss (last)"] == "-2.5" and cells["val_loss (min)"] == "-2.5"
    assert cells["acc (max)"] == "0.25"
    for cell in row:
        assert not cell.startswith(("=", "+", "@")) and not (cell.startswith("-") and not _number(cell))

    # The best value of a metric can be the other extreme.
    flipped = api.get("/api/v1/compare/export.csv", name="=cmd|calc", best=["val_loss:max", "acc:min"])
    header = next(csv.reader(io.StringIO(flipped.text, newline="")))
    assert "val_loss (max)" in header and "acc (min)" in header
    bad = api.get("/api/v1/compare/export.csv", name="=cmd|calc", best="val_loss:best")
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_best"


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def test_json_export_holds_the_same_table(api):
    run = _run(api, "sweep", params={"lr": 0.1}, points={"loss": [(1, 0.5), (2, 0.25)]})
    resp = api.get("/api/v1/compare/export.json", name="sweep")
    assert resp.status_code == 200
    assert resp.headers["content-disposition"].startswith('attachment; filename="sweep.json"')
    data = resp.json()
    assert data["columns"] == ["uuid", "name", "status", "started_at", "ended_at", "duration_s", "host",
                               "param:lr", "loss (last)", "loss (min)"]
    assert data["rows"] == [{"uuid": run, "name": "sweep", "status": "success",
                             "started_at": "2023-11-14T22:13:20.000Z", "ended_at": "2023-11-14T22:13:23.000Z",
                             "duration_s": 3.0, "host": "box", "param:lr": 0.1, "loss (last)": 0.25,
                             "loss (min)": 0.25}]


def test_the_table_is_a_few_queries_whatever_the_number_of_runs(client, db_url):
    api = Api(client)
    for i in range(30):
        _run(api, "many", params={"i": i}, points={"loss": [(1, float(i)), (2, i / 2)], "acc": [(1, 0.5)]})
    store = client.app.state.store
    statements: list[str] = []

    from sqlalchemy import event

    def count(conn, cursor, statement, *args):
        statements.append(statement)

    event.listen(store.engine, "before_cursor_execute", count)
    try:
        table = api.json("/api/v1/compare", name="many")
    finally:
        event.remove(store.engine, "before_cursor_execute", count)
    assert len(table["runs"]) == 30
    touching_metrics = [s for s in statements if re.search(r"\bmetrics\b", s)]
    assert len(touching_metrics) == 1, touching_metrics
    assert len([s for s in statements if "odd_metrics" in s]) == 1  # (metrics with no number)
    assert len([s for s in statements if "run_events" in s]) == 1


def _name_index(engine) -> list[dict]:
    return [ix for ix in inspect(engine).get_indexes("runs") if ix["column_names"][:2] == ["user_id", "name"]]


def test_the_runs_of_a_name_are_found_through_an_index(client):
    engine = client.app.state.store.engine
    assert _name_index(engine)
    # A store made before the index gets it when it migrates, and migrating twice is harmless.
    with engine.begin() as conn:
        conn.execute(text("DROP INDEX ix_runs_user_name"))
    assert not _name_index(engine)
    for _ in range(2):
        with engine.begin() as conn:
            store_module._add_runs_by_name_index(conn)
    assert _name_index(engine)
    assert store_module._add_runs_by_name_index in store_module.MIGRATIONS


@pytest.mark.parametrize("metric,direction", [("loss", "min"), ("val_loss", "min"), ("train/Error", "min"),
                                              ("mse", "min"), ("accuracy", "max"), ("f1", "max")])
def test_best_is_min_for_losses_and_errors_and_max_otherwise(metric, direction):
    assert best_direction(metric) == direction

"""Comparing the runs of one name: their table (params, each metric's last and best value),
their series overlaid, and the table exported as CSV or JSON. Each read is scoped to one account.

Everything is aggregated in SQL, a few queries whatever the number of runs: one for the runs,
one for their params, one for every (run, metric)'s count, min, max and last point, one for the
metrics whose points are all NaN or infinite. Overlaid series are thinned in SQL too: a long
series keeps, of each of its buckets, the points with the lowest and the highest value, so its
shape (spikes included) survives.
"""

from __future__ import annotations

import csv
import io
import re
import time
from collections.abc import Iterable
from itertools import groupby
from operator import itemgetter
from typing import Any

import orjson
from sqlalchemy import and_, func, or_, select, tuple_
from sqlalchemy.engine import Connection
from sqlalchemy.sql import ColumnElement

from .. import events as ev
from .deletion import not_deleted
from .errors import BadRequest, NotFound
from .store import metrics, odd_metrics, run_events, runs
from .views import iso

__all__ = ["name_table", "overlay", "export_table", "csv_text", "best_direction", "parse_best",
           "MAX_RUNS", "MAX_OVERLAY_RUNS", "POINTS_PER_SERIES", "MAX_OVERLAY_POINTS"]

# The newest runs of a name the table holds (the reply says when there were more).
MAX_RUNS = 500
# Runs overlaid at once, points per overlaid series, and points in one overlay reply.
MAX_OVERLAY_RUNS = 50
POINTS_PER_SERIES = 1000
MAX_OVERLAY_POINTS = 200_000

# A metric whose name says it measures a loss or an error is best at its minimum.
_LOWER_IS_BETTER = re.compile(r"loss|err|mse|mae|perplexity|ppl|latency|regret|wer|cer", re.IGNORECASE)

# Spreadsheet apps run a cell that starts with one of these as a formula.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def best_direction(metric: str) -> str:
    """``"min"`` for a metric named like a loss or an error, else ``"max"``."""
    return "min" if _LOWER_IS_BETTER.search(metric) else "max"


def parse_best(choices: Iterable[str]) -> dict[str, str]:
    """``["loss:max", "acc:min"]`` (the metric name may itself hold colons) -> ``{metric: min|max}``."""
    found = {}
    for choice in choices:
        metric, sep, direction = choice.rpartition(":")
        if not sep or not metric or direction not in ("min", "max"):
            raise BadRequest(f"best must be METRIC:min or METRIC:max, not {choice[:100]!r}", code="invalid_best")
        found[metric] = direction
    return found


def _duration_s(row, now_ms: int) -> float:
    end = row.ended_at
    if end is None:
        end = now_ms if row.status == ev.RUNNING else row.last_seen_at
    return max(0, end - row.started_at) / 1000


def _name_runs(conn: Connection, user_id: int, name: str, limit: int) -> list:
    return list(conn.execute(
        select(runs).where(runs.c.user_id == user_id, runs.c.name == name, not_deleted())
        .order_by(runs.c.started_at.desc(), runs.c.id.desc()).limit(limit)
    ))


def _params(conn: Connection, run_ids: list[int]) -> dict[int, dict]:
    """Each run's params, merged in the order recorded (the latest value of a name wins)."""
    found: dict[int, dict] = {run_id: {} for run_id in run_ids}
    if not run_ids:
        return found
    for run_id, payload in conn.execute(
        select(run_events.c.run_id, run_events.c.payload)
        .where(run_events.c.run_id.in_(run_ids), run_events.c.type == ev.PARAM)
        .order_by(run_events.c.run_id, run_events.c.seq)
    ):
        found[run_id].update(orjson.loads(payload)["params"])
    return found


def _summaries(conn: Connection, run_ids: list[int], internal: bool) -> dict[int, dict]:
    """Per run, per metric: its number of points, min, max, and last value and step."""
    found: dict[int, dict] = {run_id: {} for run_id in run_ids}
    if not run_ids:
        return found
    where: list[ColumnElement[bool]] = [metrics.c.run_id.in_(run_ids)]
    if not internal:
        where.append(metrics.c.is_internal == 0)
    agg = (
        select(metrics.c.run_id, metrics.c.name, func.count().label("count"),
               func.min(metrics.c.value).label("min"), func.max(metrics.c.value).label("max"),
               func.max(metrics.c.seq).label("last_seq"))
        .where(*where).group_by(metrics.c.run_id, metrics.c.name).subquery()
    )
    # The last point of each: found through the (run_id, name, seq) index.
    rows = conn.execute(
        select(agg.c.run_id, agg.c.name, agg.c.count, agg.c.min, agg.c.max, agg.c.last_seq,
               metrics.c.value.label("last"), metrics.c.step.label("last_step"))
        .join(metrics, and_(metrics.c.run_id == agg.c.run_id, metrics.c.seq == agg.c.last_seq))
    )
    last_seqs: dict[tuple[int, str], int] = {}
    for r in rows:
        found[r.run_id][r.name] = {"count": r.count, "min": r.min, "max": r.max, "last": r.last,
                                   "last_step": r.last_step}
        last_seqs[(r.run_id, r.name)] = r.last_seq
    # A metric whose last point is NaN or infinite (a loss that diverged, or was NaN from its first
    # step): that point is its last, as text; its count takes in those points, min and max do not.
    odd = select(odd_metrics).where(odd_metrics.c.run_id.in_(run_ids))
    if not internal:
        odd = odd.where(odd_metrics.c.is_internal == 0)
    for r in conn.execute(odd):
        summary = found[r.run_id].setdefault(r.name, {"count": 0, "min": None, "max": None})
        summary["count"] += r.count
        if r.last_seq > last_seqs.get((r.run_id, r.name), 0):
            summary.update(last=None, last_text=r.last_value, last_step=r.last_step)
    return found


def name_table(conn: Connection, user_id: int, name: str, *, internal: bool = False,
               limit: int = MAX_RUNS) -> dict:
    """The runs named ``name`` (newest first, at most ``limit``), each with its params and a
    summary of each metric (internal metrics only when ``internal``)."""
    rows = _name_runs(conn, user_id, name, limit + 1)
    truncated = len(rows) > limit
    rows = rows[:limit]
    ids = [r.id for r in rows]
    params = _params(conn, ids)
    summaries = _summaries(conn, ids, internal)
    now = int(time.time() * 1000)
    param_names: set[str] = set()
    metric_names: set[str] = set()
    table = []
    for r in rows:
        param_names.update(params[r.id])
        metric_names.update(summaries[r.id])
        table.append({
            "uuid": r.uuid, "status": r.status, "started_at": iso(r.started_at), "ended_at": iso(r.ended_at),
            "duration_s": _duration_s(r, now), "host": r.host, "params": params[r.id],
            "metrics": summaries[r.id],
        })
    return {
        "name": name,
        "runs": table,
        "params": sorted(param_names),
        "metrics": [{"name": m, "best": best_direction(m)} for m in sorted(metric_names)],
        "truncated": truncated,
    }


def overlay(conn: Connection, user_id: int, run_uuids: list[str], *, metric_names: list[str] | None = None,
            internal: bool = False, points: int = POINTS_PER_SERIES) -> dict:
    """Series of the runs ``run_uuids`` (the account's: NotFound names one that is not), one per
    (run, metric), each thinned to about ``points`` points (fewer when many series share a reply).
    Each series: ``steps`` (null where a point has none), ``times`` (seconds since the run
    started) and ``values``, in the order recorded; ``count`` is how many points it holds in all."""
    wanted = list(dict.fromkeys(u.lower() for u in run_uuids))
    if not wanted:
        raise BadRequest("name at least one run", code="no_runs")
    if len(wanted) > MAX_OVERLAY_RUNS:
        raise BadRequest(f"at most {MAX_OVERLAY_RUNS} runs can be overlaid at once", code="too_many_runs")
    found = {r.uuid: r for r in conn.execute(
        select(runs.c.id, runs.c.uuid, runs.c.started_at)
        .where(runs.c.user_id == user_id, runs.c.uuid.in_(wanted), not_deleted())
    )}
    missing = [u for u in wanted if u not in found]
    if missing:
        raise NotFound(f"no run {missing[0]}")
    by_id = {found[u].id: found[u] for u in wanted}
    where: list[ColumnElement[bool]] = [metrics.c.run_id.in_(list(by_id))]
    if not internal:
        where.append(metrics.c.is_internal == 0)
    if metric_names:
        where.append(metrics.c.name.in_(metric_names))

    # How many series, to share out the reply's points.
    counts = {(r.run_id, r.name): r.n for r in conn.execute(
        select(metrics.c.run_id, metrics.c.name, func.count().label("n")).where(*where)
        .group_by(metrics.c.run_id, metrics.c.name)
    )}
    if counts:
        points = max(50, min(points, MAX_OVERLAY_POINTS // len(counts)))
    # Short series come whole; only long ones pay for thinning.
    short = [key for key, n in counts.items() if n <= points]
    long = [key for key, n in counts.items() if n > points]
    pair = tuple_(metrics.c.run_id, metrics.c.name)
    found_points: list = []
    if short:
        found_points += conn.execute(
            select(metrics.c.run_id, metrics.c.name, metrics.c.step, metrics.c.ts, metrics.c.value)
            .where(*where, pair.in_(short)).order_by(metrics.c.run_id, metrics.c.name, metrics.c.seq)
        ).all()
    if long:
        found_points += conn.execute(_thinned([*where, pair.in_(long)], points)).all()
    series: dict[tuple[int, str], dict] = {}
    for (run_id, metric), group in groupby(found_points, key=itemgetter(0, 1)):
        rows = list(group)
        start = by_id[run_id].started_at
        series[(run_id, metric)] = {
            "run": by_id[run_id].uuid, "metric": metric, "count": counts[(run_id, metric)],
            "steps": [r[2] for r in rows], "times": [(r[3] - start) / 1000 for r in rows],
            "values": [r[4] for r in rows],
        }
    order = {run_id: i for i, run_id in enumerate(by_id)}
    ordered = sorted(series.items(), key=lambda item: (item[0][1], order[item[0][0]]))
    return {"runs": [found[u].uuid for u in wanted], "points_per_series": points,
            "series": [one for _, one in ordered]}


def _thinned(where: list[ColumnElement[bool]], points: int):
    """The points of the series ``where`` selects, each series cut into ``points / 2`` buckets of
    as many consecutive points, of which the lowest and the highest point are kept, in the order
    recorded. Two window passes: numbering in seq order (which the (run_id, name, seq) index
    gives), and a sort by value within each bucket."""
    buckets = max(1, points // 2)
    series = (metrics.c.run_id, metrics.c.name)
    numbered = select(
        metrics.c.run_id, metrics.c.name, metrics.c.seq, metrics.c.step, metrics.c.ts, metrics.c.value,
        func.row_number().over(partition_by=series, order_by=metrics.c.seq).label("rn"),
        func.count().over(partition_by=series).label("n"),
    ).where(*where).subquery()
    placed = select(numbered, ((numbered.c.rn - 1) * buckets // numbered.c.n).label("bucket")).subquery()
    part = (placed.c.run_id, placed.c.name, placed.c.bucket)
    ranked = select(
        placed,
        func.row_number().over(partition_by=part, order_by=(placed.c.value, placed.c.seq)).label("rank"),
        func.count().over(partition_by=part).label("size"),
    ).subquery()
    return (select(ranked.c.run_id, ranked.c.name, ranked.c.step, ranked.c.ts, ranked.c.value)
            .where(or_(ranked.c.rank == 1, ranked.c.rank == ranked.c.size))
            .order_by(ranked.c.run_id, ranked.c.name, ranked.c.seq))


def export_table(conn: Connection, user_id: int, name: str, *, best: dict[str, str] | None = None,
                 internal: bool = False) -> dict:
    """The name's table as the page shows it, flat: ``columns`` and one ``rows`` entry per run
    (column -> value). Params are ``param:NAME``; each metric has ``NAME (last)`` and
    ``NAME (min)`` or ``NAME (max)``, its best as ``best`` chooses (else :func:`best_direction`)."""
    table = name_table(conn, user_id, name, internal=internal)
    best = best or {}
    columns = ["uuid", "name", "status", "started_at", "ended_at", "duration_s", "host"]
    columns += [f"param:{p}" for p in table["params"]]
    chosen = [(m["name"], best.get(m["name"], m["best"])) for m in table["metrics"]]
    for metric, direction in chosen:
        columns += [f"{metric} (last)", f"{metric} ({direction})"]
    rows = []
    for run in table["runs"]:
        row = {"uuid": run["uuid"], "name": name, "status": run["status"], "started_at": run["started_at"],
               "ended_at": run["ended_at"], "duration_s": run["duration_s"], "host": run["host"]}
        for p in table["params"]:
            row[f"param:{p}"] = run["params"].get(p)
        for metric, direction in chosen:
            summary = run["metrics"].get(metric)
            row[f"{metric} (last)"] = summary.get("last_text", summary["last"]) if summary else None
            row[f"{metric} ({direction})"] = summary[direction] if summary else None
        rows.append(row)
    return {"name": name, "columns": columns, "rows": rows, "truncated": table["truncated"]}


def _csv_cell(value: Any) -> Any:
    """A cell as text a spreadsheet app shows and never runs: text that would start a formula
    gets a leading ``'`` (numbers are written as numbers)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def csv_text(export: dict) -> str:
    """:func:`export_table`'s table as CSV (RFC 4180 quoting, CRLF line ends); header cells are
    protected from formulas like the rest."""
    out = io.StringIO()
    writer = csv.writer(out, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")
    writer.writerow([_csv_cell(c) for c in export["columns"]])
    for row in export["rows"]:
        writer.writerow([_csv_cell(row[c]) for c in export["columns"]])
    return out.getvalue()

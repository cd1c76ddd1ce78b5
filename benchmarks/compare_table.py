"""The comparison page's two reads against the per-run reads they replace.

A fresh store (SQLite in a temporary folder, or ``--db URL``, e.g. an empty PostgreSQL
database) gets ``--runs`` runs of one name, each with three params and ``--metrics`` metrics of
``--points`` points. Then, ``--rounds`` times after one warm-up round, medians of:

- **table**: the name's table (every run's params and each metric's count, min, max and last
  value, aggregated in SQL), against the baseline of one ``run_detail`` per run (params and
  each metric's latest value only: what a page listing the runs one by one would read);
- **overlay**: ``--overlay`` runs' series thinned to 1,000 points each, against reading those
  series whole, one metric of one run at a time (what a run's page reads).

Each figure is printed with its baseline and the ratio. Targets: the table at most 1 (cheaper
than the reads it replaces); the overlay at most 1.5 (thinning in SQL costs about what reading
the series whole costs, and sends the browser a fraction of the points, printed beside it).
Every reply is checked to hold every run and metric.

    python benchmarks/compare_table.py [--runs 200] [--metrics 4] [--points 2000] [--overlay 20]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from hyperdash import events as ev  # noqa: E402
from hyperdash.server import comparison, queries  # noqa: E402
from hyperdash.server.store import Store, metrics, run_events, runs, users  # noqa: E402

NAME = "bench-sweep"
T0 = 1_700_000_000_000


def fill(store: Store, n_runs: int, n_metrics: int, n_points: int) -> tuple[int, list[tuple[int, str]]]:
    """The user's id and each run's (id, uuid)."""
    with store.engine.begin() as conn:
        user_id = conn.execute(users.insert().values(
            email=f"bench-{uuid.uuid4().hex[:8]}@example.com", password_hash=None, is_local=False,
            created_at=T0)).inserted_primary_key[0]
        made = []
        for i in range(n_runs):
            run_uuid = str(uuid.uuid4())
            start = T0 + i * 60_000
            run_id = conn.execute(runs.insert().values(
                user_id=user_id, uuid=run_uuid, name=NAME, status=ev.SUCCESS, started_at=start,
                ended_at=start + n_points * 1000, last_seen_at=start + n_points * 1000, host=f"gpu-{i % 8}",
                api="monitor", max_seq=0)).inserted_primary_key[0]
            conn.execute(run_events.insert().values(
                run_id=run_id, seq=1, type=ev.PARAM, ts=start,
                payload=orjson.dumps({"params": {"lr": 10 ** -(i % 5), "batch": 32, "seed": i}}).decode()))
            rows = []
            seq = 1
            for m in range(n_metrics):
                for p in range(n_points):
                    seq += 1
                    rows.append({"run_id": run_id, "seq": seq, "name": f"metric_{m}", "value": (p * 7919 % 1000) / 10,
                                 "step": p, "ts": start + p * 1000, "is_internal": 0})
            conn.execute(metrics.insert(), rows)
            made.append((run_id, run_uuid))
    return user_id, made


def median_ms(fn, rounds: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--metrics", type=int, default=4)
    parser.add_argument("--points", type=int, default=2000)
    parser.add_argument("--overlay", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--db", default=None, help="a database URL (default: SQLite in a temporary folder)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        store = Store(args.db or f"sqlite:///{Path(tmp) / 'bench.db'}")
        try:
            started = time.perf_counter()
            user_id, made = fill(store, args.runs, args.metrics, args.points)
            print(f"stored {args.runs} runs x {args.metrics} metrics x {args.points} points "
                  f"in {time.perf_counter() - started:.1f} s ({store.engine.dialect.name})")

            def table():
                with store.read() as conn:
                    reply = comparison.name_table(conn, user_id, NAME)
                assert len(reply["runs"]) == args.runs and len(reply["metrics"]) == args.metrics
                assert all(r["metrics"]["metric_0"]["count"] == args.points for r in reply["runs"])

            def per_run():
                with store.read() as conn:
                    for _, run_uuid in made:
                        detail = queries.run_detail(conn, user_id, run_uuid)
                        assert len(detail["metrics"]) == args.metrics

            chosen = made[: args.overlay]

            sent = {}

            def overlay():
                with store.read() as conn:
                    reply = comparison.overlay(conn, user_id, [u for _, u in chosen])
                assert len(reply["series"]) == len(chosen) * args.metrics
                assert all(0 < len(s["values"]) <= comparison.POINTS_PER_SERIES for s in reply["series"])
                sent["overlay"] = sum(len(s["values"]) for s in reply["series"])

            def whole_series():
                with store.read() as conn:
                    for run_id, _ in chosen:
                        for m in range(args.metrics):
                            assert len(queries.metric_series(conn, run_id, f"metric_{m}")["points"]) == args.points
                sent["whole_series"] = len(chosen) * args.metrics * args.points

            for label, fn, baseline in (("table", table, per_run), ("overlay", overlay, whole_series)):
                ours = median_ms(fn, args.rounds)
                base = median_ms(baseline, args.rounds)
                name = fn.__name__
                points = f"   points sent {sent[name]} vs {sent[baseline.__name__]}" if name in sent else ""
                print(f"{label:8} median {ours:8.1f} ms   baseline {base:8.1f} ms   ratio {ours / base:.2f}{points}")
        finally:
            store.close()


if __name__ == "__main__":
    main()

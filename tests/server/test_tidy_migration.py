"""The upgrade of a store made before runs could be deleted, archived, counted or shared: its
runs get their counters from what they hold, on SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy import delete, select

from hyperdash.server import store as store_module
from hyperdash.server.store import SCHEMA_VERSION, Store, logs, metrics, runs, schema_migrations


def test_an_older_store_is_upgraded_with_its_runs_counted(db_url):
    store = Store(db_url)
    with store.engine.begin() as conn:  # back to the schema before this step
        for column in ("archived_at", "line_count", "log_bytes", "point_count"):
            conn.exec_driver_sql(f"ALTER TABLE runs DROP COLUMN {column}")
        for table in ("deleted_runs", "run_shares", "account_settings"):
            conn.exec_driver_sql(f"DROP TABLE {table}")
        # (the steps after it run again too: each does nothing on a store that has what it makes)
        step = store_module.MIGRATIONS.index(store_module._migration_tidy) + 1
        conn.execute(delete(schema_migrations).where(schema_migrations.c.version >= step))
        run_id = conn.exec_driver_sql(
            "INSERT INTO runs (user_id, uuid, name, status, started_at, last_seen_at, max_seq) "
            "VALUES (1, 'old-run', 'old', 'success', 1, 1, 4) RETURNING id").scalar_one()
        for seq, text, superseded in ((1, "héllo", 0), (2, "abc", 0), (3, "", 1)):
            conn.execute(logs.insert().values(run_id=run_id, seq=seq, stream="stdout", text=text, ts=1, partial=0,
                                              progress=0, superseded=superseded))
        conn.execute(metrics.insert().values(run_id=run_id, seq=4, name="m", value=1.0, ts=1, is_internal=0))
    store.close()

    store = Store(db_url)  # migrates
    try:
        with store.read() as conn:
            row = conn.execute(select(runs).where(runs.c.uuid == "old-run")).one()
            assert (row.line_count, row.log_bytes, row.point_count, row.archived_at) == (2, 9, 1, None)  # UTF-8 bytes
            assert conn.execute(select(schema_migrations.c.version).order_by(schema_migrations.c.version.desc())
                                ).scalar() == SCHEMA_VERSION
        Store(db_url).close()  # a second start changes nothing
    finally:
        store.close()

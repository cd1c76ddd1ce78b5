"""A store made before stalls and rules gets their columns and tables on the next start, its runs
kept; a fresh store starts with them."""

from __future__ import annotations

from sqlalchemy import inspect, select, text

from hyperdash.server.store import MIGRATIONS, SCHEMA_VERSION, Store, runs, schema_migrations

NEW_COLUMNS = {"last_progress_at", "stall_after_ms", "stalled_since"}
NEW_TABLES = {"stall_names", "rules", "rule_states", "rule_firings"}


def test_an_older_store_is_brought_up_to_date(db_url):
    store = Store(db_url)
    version = MIGRATIONS.index(next(m for m in MIGRATIONS if m.__name__ == "_migration_trouble")) + 1
    with store.engine.begin() as conn:
        # As the store was before: no new columns nor tables, its version the one before.
        for table in NEW_TABLES:
            conn.execute(text(f"DROP TABLE {table}"))
        for column in sorted(NEW_COLUMNS):
            conn.execute(text(f"ALTER TABLE runs DROP COLUMN {column}"))
        conn.execute(schema_migrations.delete().where(schema_migrations.c.version >= version))
        conn.execute(text("INSERT INTO runs (user_id, uuid, status, started_at, last_seen_at, max_seq) "
                          "VALUES (1, 'old-run', 'running', 1, 5, 0)"))
    store.close()
    store = Store(db_url)
    try:
        with store.read() as conn:
            have = inspect(conn)
            assert NEW_COLUMNS <= {c["name"] for c in have.get_columns("runs")}
            assert NEW_TABLES <= set(have.get_table_names())
            assert conn.execute(select(schema_migrations.c.version).order_by(
                schema_migrations.c.version.desc())).scalar() == SCHEMA_VERSION
            old = conn.execute(select(runs).where(runs.c.uuid == "old-run")).one()
            # its last word stands in for its last progress, unknown before
            assert (old.status, old.last_progress_at, old.stalled_since) == ("running", 5, None)
    finally:
        store.close()

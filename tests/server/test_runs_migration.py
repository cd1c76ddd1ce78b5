"""A store made before runs kept progress, failures and stop requests gets their columns."""

from __future__ import annotations

from sqlalchemy import inspect, text

from hyperdash.server import store as store_module
from hyperdash.server.store import Store


def test_an_older_store_gets_the_new_columns(db_url):
    store = Store(db_url)
    version = store_module.MIGRATIONS.index(store_module._migration_progress_failure_stop) + 1
    with store.engine.begin() as conn:
        for name in store_module._RUN_TROUBLE_COLUMNS:
            conn.execute(text(f'ALTER TABLE runs DROP COLUMN "{name}"'))
        conn.execute(text("DELETE FROM schema_migrations WHERE version >= :v"), {"v": version})
    store.close()
    store = Store(db_url)
    try:
        with store.read() as conn:
            have = {c["name"] for c in inspect(conn).get_columns("runs")}
        assert set(store_module._RUN_TROUBLE_COLUMNS) <= have
        store.migrate()  # (nothing left to do: no error either)
    finally:
        store.close()

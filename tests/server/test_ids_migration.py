"""Ids a person names (a notification channel's, a rule's) are never given again once deleted:
on SQLite that takes AUTOINCREMENT, which a store made before it gets on its next start, its
rows kept, the next id past any still named (a rule's firings); PostgreSQL's sequences
never reuse one."""

from __future__ import annotations

import pytest
from sqlalchemy import delete, inspect, select
from sqlalchemy.schema import CreateIndex, CreateTable

from hyperdash.server import store as store_module
from hyperdash.server.store import SCHEMA_VERSION, Store, notify_channels, rule_firings, rules, schema_migrations

TABLES = (notify_channels, rules)


def channel(n: int) -> dict:
    return {"user_id": 1, "kind": "webhook", "name": f"hook {n}", "settings": '{"url": "https://e.example/h"}',
            "events": None, "name_filter": None, "enabled": True, "created_at": n, "last_result": None,
            "changed_at": None}


def rule(n: int) -> dict:
    return {"user_id": 1, "run_id": None, "name": "train", "metric": f"loss {n}", "spec": "{}",
            "source": "api", "created_at": n}


ROWS = {notify_channels: channel, rules: rule}


def add(conn, table, n: int) -> int:
    return conn.execute(table.insert().values(ROWS[table](n))).inserted_primary_key[0]


def as_made_before(conn) -> None:
    """Bring the SQLite store back to the schema before AUTOINCREMENT (version 11)."""
    for table in TABLES:
        conn.exec_driver_sql(f"DROP TABLE {table.name}")
        created = str(CreateTable(table).compile(conn))
        assert "AUTOINCREMENT" in created
        conn.exec_driver_sql(created.replace(" AUTOINCREMENT", ""))
        for index in table.indexes:
            conn.execute(CreateIndex(index))
    step = store_module.MIGRATIONS.index(store_module._migration_ids_never_reused) + 1
    conn.execute(delete(schema_migrations).where(schema_migrations.c.version >= step))


def test_a_deleted_channels_or_rules_id_is_never_given_again(db_url):
    store = Store(db_url)
    try:
        with store.engine.begin() as conn:
            for table in TABLES:
                first, newest = add(conn, table, 1), add(conn, table, 2)
                conn.execute(delete(table).where(table.c.id == newest))
                assert add(conn, table, 3) not in (first, newest)
    finally:
        store.close()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_an_older_sqlite_store_is_rebuilt_with_its_rows_and_reuses_no_id(db_url):
    store = Store(db_url)
    with store.engine.begin() as conn:
        as_made_before(conn)
        for table in TABLES:
            add(conn, table, 1), add(conn, table, 2)
            newest = add(conn, table, 3)
            conn.execute(delete(table).where(table.c.id == newest))
        # Without the step, the id of the newest row deleted is the next one's.
        assert add(conn, notify_channels, 4) == newest
        conn.execute(delete(notify_channels).where(notify_channels.c.id == newest))
        # The deleted rule fired once: its firing names it still.
        conn.execute(rule_firings.insert().values(rule_id=newest, run_id=1, metric="loss 3", description="above 1",
                                                  value="2.0", step=1, seq=1, ts=1, fired_at=1))
        before = {table.name: conn.execute(select(table).order_by(table.c.id)).all() for table in TABLES}
    store.close()

    store = Store(db_url)  # migrates
    try:
        with store.engine.begin() as conn:
            assert conn.execute(select(schema_migrations.c.version).order_by(
                schema_migrations.c.version.desc())).scalar() == SCHEMA_VERSION
            have = inspect(conn)
            for table in TABLES:
                assert conn.execute(select(table).order_by(table.c.id)).all() == before[table.name]
                assert {i.name for i in table.indexes} <= {i["name"] for i in have.get_indexes(table.name)}
                assert "AUTOINCREMENT" in conn.exec_driver_sql(
                    "SELECT sql FROM sqlite_master WHERE name = ?", (table.name,)).scalar()
                # An id deleted before the step and named nowhere may still come once (nothing
                # kept it); one that a rule's firing names does not.
                added = add(conn, table, 5)
                assert added == newest + (1 if table is rules else 0)
                conn.execute(delete(table).where(table.c.id == added))
                assert add(conn, table, 6) == added + 1
            assert not [name for name in have.get_table_names() if name.endswith("_reusing_ids")]
        Store(db_url).close()  # a second start changes nothing
        with store.read() as conn:
            assert len(conn.execute(select(notify_channels)).all()) == 3  # the two kept, the one added
    finally:
        store.close()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_rebuild_that_fails_half_way_leaves_the_store_as_it_was(db_url, monkeypatch):
    store = Store(db_url)
    with store.engine.begin() as conn:
        as_made_before(conn)
        kept = {table.name: [add(conn, table, 1)] for table in TABLES}
    store.close()

    def fail(*args, **kwargs):
        raise RuntimeError("the disk went away")

    monkeypatch.setattr(rules, "create", fail)  # (the second table: the first is rebuilt by then)
    with pytest.raises(RuntimeError, match="disk went away"):
        Store(db_url)
    monkeypatch.undo()
    store = Store(db_url)  # the step again, whole this time
    try:
        with store.read() as conn:
            for table in TABLES:
                assert [row.id for row in conn.execute(select(table))] == kept[table.name]
                assert "AUTOINCREMENT" in conn.exec_driver_sql(
                    "SELECT sql FROM sqlite_master WHERE name = ?", (table.name,)).scalar()
    finally:
        store.close()

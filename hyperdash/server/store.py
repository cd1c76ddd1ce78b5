"""The store: tables, migrations, the engine, the one writer and what it announces.

SQLAlchemy Core keeps a single code path for SQLite and PostgreSQL (what differs between them
is in :mod:`hyperdash.server.dialect`). Every write goes through the store's
:class:`~hyperdash.server.writer.Writer`; reads use their own pooled connections (SQLite in WAL
mode lets them run beside the writer). After each commit the writer hands the facts stored to
the store's :class:`~hyperdash.server.announce.Dispatcher`, ``store.dispatcher``.

Several server processes may share one PostgreSQL database (:func:`~hyperdash.server.dialect.is_shared`):
then the store's :class:`~hyperdash.server.relay.Relay` carries every process's facts to every
other (``store.everywhere``; on SQLite that is ``store.dispatcher``), the schema is created and
migrated by one process at a time, and each sweep (:meth:`Store.sweep`) runs in one process per
period.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from itertools import groupby
from typing import Any

import orjson
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    case,
    func,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection, Engine

from ..events import now_ms
from ..settings import home_dir
from .announce import Dispatcher
from .dialect import (
    byte_length,
    checked_url,
    insert_ignoring,
    is_shared,
    lock_schema,
    open_engine,
    pool_limits_from_env,
    skip_locked,
    upsert,
)
from .relay import Relay
from .writer import DEFAULT_MAX_QUEUED_BYTES, Job, Writer

__all__ = ["metadata", "users", "api_keys", "tokens", "runs", "logs", "metrics", "run_events", "odd_metrics",
           "count_odd_points", "streams", "log_tails", "log_envelopes", "notify_channels", "notify_outbox",
           "server_values",
           "stall_names", "rules", "rule_states", "rule_firings", "deleted_runs", "run_shares", "account_settings",
           "sweeps", "relay_facts", "login_failures",
           "Store", "default_db_url", "SCHEMA_VERSION"]

metadata = MetaData()

users = Table(
    "users", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("email", String(320), nullable=False, unique=True),
    # NULL for the local account, which signs in only through one-time links.
    Column("password_hash", String(300), nullable=True),
    Column("is_local", Boolean, nullable=False, default=False),
    Column("created_at", BigInteger, nullable=False),
)

api_keys = Table(
    "api_keys", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("user_id", Integer, nullable=False, index=True),
    Column("name", String(200), nullable=False),
    Column("prefix", String(16), nullable=False),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("created_at", BigInteger, nullable=False),
    Column("last_used_at", BigInteger, nullable=True),
    Column("revoked_at", BigInteger, nullable=True),
)

# Access tokens (API clients), browser sessions and one-time sign-in links, kept as hashes.
tokens = Table(
    "tokens", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("user_id", Integer, nullable=False, index=True),
    Column("kind", String(16), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("csrf_token", String(64), nullable=True),
    Column("created_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=True),
    Column("used_at", BigInteger, nullable=True),
)

runs = Table(
    "runs", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("user_id", Integer, nullable=False),
    Column("uuid", String(128), nullable=False),
    Column("name", String(600), nullable=True),
    Column("status", String(32), nullable=False),
    Column("started_at", BigInteger, nullable=False),
    Column("ended_at", BigInteger, nullable=True),
    Column("last_seen_at", BigInteger, nullable=False),
    Column("exit_code", Integer, nullable=True),
    Column("signal", String(32), nullable=True),
    Column("host", String(300), nullable=True),
    Column("pid", BigInteger, nullable=True),
    Column("api", String(32), nullable=True),
    Column("max_seq", BigInteger, nullable=False, default=0),
    # The latest progress of the run (server/progress.py), as JSON text.
    Column("progress", Text, nullable=True),
    # Where a failed run went wrong (server/summary.py): one line, and the seqs of the lines
    # that show it (a traceback, or the last lines of stderr).
    Column("failure", String(1000), nullable=True),
    Column("failure_first_seq", BigInteger, nullable=True),
    Column("failure_last_seq", BigInteger, nullable=True),
    # A stop asked of the run (server/stop.py): when, by whom (an email) and from where.
    Column("stop_requested_at", BigInteger, nullable=True),
    Column("stop_by", String(320), nullable=True),
    Column("stop_via", String(16), nullable=True),
    # Stalls (server/stalls.py): when the job last made progress (stored output, a metric or a
    # param of its own), its own stall window if it asked for one, and since when it is stalled.
    Column("last_progress_at", BigInteger, nullable=True),
    Column("stall_after_ms", BigInteger, nullable=True),
    Column("stalled_since", BigInteger, nullable=True),
    # Set while the run is archived: out of the default lists, kept whole.
    Column("archived_at", BigInteger, nullable=True),
    # What the run holds, counted as it is stored (so a name's storage is a sum over its runs,
    # never a scan of its lines): log lines, their text in UTF-8 bytes, metric points.
    Column("line_count", BigInteger, nullable=False, default=0, server_default="0"),
    Column("log_bytes", BigInteger, nullable=False, default=0, server_default="0"),
    Column("point_count", BigInteger, nullable=False, default=0, server_default="0"),
    UniqueConstraint("user_id", "uuid", name="uq_runs_user_uuid"),
    Index("ix_runs_user_started", "user_id", "started_at", "id"),
    Index("ix_runs_status_seen", "status", "last_seen_at"),
)

logs = Table(
    "logs", metadata,
    Column("run_id", Integer, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("stream", String(8), nullable=False),
    Column("text", Text, nullable=False),
    Column("ts", BigInteger, nullable=False),
    # Flags are 0 or 1 (small integers: the SQLite driver binds Python ints far faster than bools).
    Column("partial", SmallInteger, nullable=False),
    Column("progress", SmallInteger, nullable=False),
    # A progress line replaced by a later line of its stream: kept (so a resent copy is still
    # recognised as a duplicate) but never shown.
    Column("superseded", SmallInteger, nullable=False),
)

metrics = Table(
    "metrics", metadata,
    Column("run_id", Integer, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("name", String(600), nullable=False),
    Column("value", Float, nullable=False),
    Column("step", BigInteger, nullable=True),
    Column("ts", BigInteger, nullable=False),
    Column("is_internal", SmallInteger, nullable=False),
    Index("ix_metrics_run_name", "run_id", "name", "seq"),
)

# run_started, run_ended, param and alert events, and the NaN and infinite points of metrics
# (the metrics table holds numbers only), their payload as JSON text.
run_events = Table(
    "run_events", metadata,
    Column("run_id", Integer, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("type", String(32), nullable=False),
    Column("ts", BigInteger, nullable=False),
    Column("payload", Text, nullable=False),
)

# Per (run, metric): its NaN and infinite points (kept in run_events), counted, and the last of
# them, so that a metric whose every value is NaN is listed without a scan of the run's events.
odd_metrics = Table(
    "odd_metrics", metadata,
    Column("run_id", Integer, primary_key=True, autoincrement=False),
    Column("name", String(600), primary_key=True),
    Column("count", BigInteger, nullable=False),
    Column("last_seq", BigInteger, nullable=False),
    Column("last_ts", BigInteger, nullable=False),
    Column("last_step", BigInteger, nullable=True),
    Column("last_value", String(16), nullable=False),  # "NaN", "Infinity" or "-Infinity"
    Column("is_internal", SmallInteger, nullable=False),
)


def count_odd_points(conn: Connection, run_id: int, points: Iterable[tuple[int, int, dict]]) -> None:
    """Count a run's NaN and infinite points just stored, each ``(seq, ts, payload)`` of its
    run_events row, in ``odd_metrics`` (the last of a metric's is the one with the highest seq,
    whatever order they come in)."""
    found: dict[str, tuple[int, dict]] = {}  # name -> (count, its last point's columns)
    for seq, ts, payload in sorted(points, key=lambda p: p[0]):
        count = found[payload["name"]][0] if payload["name"] in found else 0
        found[payload["name"]] = (count + 1, {"last_seq": seq, "last_ts": ts, "last_step": payload["step"],
                                              "last_value": payload["value"],
                                              "is_internal": int(payload["is_internal"])})
    for name, (count, last) in found.items():
        later = odd_metrics.c.last_seq < last["last_seq"]
        conn.execute(upsert(conn, odd_metrics, ("run_id", "name"), {"run_id": run_id, "name": name, "count": count,
                                                                    **last},
                            {"count": odd_metrics.c.count + count,
                             **{column: case((later, value), else_=odd_metrics.c[column])
                                for column, value in last.items()}}))


# Per (run, stream): the highest line seq stored, and the seq of its live progress line if any.
streams = Table(
    "streams", metadata,
    Column("run_id", Integer, primary_key=True, autoincrement=False),
    Column("stream", String(8), primary_key=True),
    Column("max_seq", BigInteger, nullable=False),
    Column("progress_seq", BigInteger, nullable=True),
)

# Per (run, stream): output of an original client after its last newline, waiting for the rest
# of its line (those clients send chunks of output, not lines).
log_tails = Table(
    "log_tails", metadata,
    Column("run_id", Integer, primary_key=True, autoincrement=False),
    Column("stream", String(8), primary_key=True),
    Column("text", Text, nullable=False),
    Column("ts", BigInteger, nullable=False),
)

# The payload uuids of an original client's log envelopes stored, so a resent one is stored once.
log_envelopes = Table(
    "log_envelopes", metadata,
    Column("run_id", Integer, primary_key=True, autoincrement=False),
    Column("uuid", String(128), primary_key=True),
)

# A person's notification channels (server/notify): the kind and its settings (JSON, secrets
# included: the table is as private as the password hashes), which events it wants (a JSON list,
# NULL for the defaults), a run-name filter (a substring, or a glob with * ? [), and how the
# last delivery went (JSON), for the settings page.
notify_channels = Table(
    "notify_channels", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("user_id", Integer, nullable=False, index=True),
    Column("kind", String(32), nullable=False),
    Column("name", String(200), nullable=False),
    Column("settings", Text, nullable=False),
    Column("events", Text, nullable=True),
    Column("name_filter", String(600), nullable=True),
    Column("enabled", Boolean, nullable=False, default=True),
    Column("created_at", BigInteger, nullable=False),
    Column("last_result", Text, nullable=True),
    # When what it is sent, or where, last changed (NULL: not since it was made): a scan for
    # notifications missed is for channels as they were when the run ended.
    Column("changed_at", BigInteger, nullable=True),
    sqlite_autoincrement=True,  # (see _migration_ids_never_reused)
)

# The durable outbox: one row per (notification, channel), queued once (the unique key), sent
# at least once by whichever server process holds its lease (claimed_until).
notify_outbox = Table(
    "notify_outbox", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("channel_id", Integer, nullable=False),
    Column("run_id", Integer, nullable=True),
    Column("key", String(128), nullable=False),
    Column("kind", String(16), nullable=False),  # the notification's kind: ended, lost, back
    Column("notification", Text, nullable=False),
    # pending, sending (claimed), delivered, failed, or coalesced (made moot by a later event)
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", BigInteger, nullable=False),
    Column("claimed_until", BigInteger, nullable=True),
    Column("last_detail", Text, nullable=True),
    Column("created_at", BigInteger, nullable=False),
    Column("delivered_at", BigInteger, nullable=True),
    UniqueConstraint("channel_id", "key", name="uq_notify_outbox_channel_key"),
    Index("ix_notify_outbox_due", "state", "next_attempt_at"),
    Index("ix_notify_outbox_channel_run", "channel_id", "run_id"),
    Index("ix_notify_outbox_channel_delivered", "channel_id", "delivered_at"),
)

# The server's own values, one per database, made on the first start (the VAPID key pair of
# Web Push, server/notify/keys.py): every process on one database uses the same.
server_values = Table(
    "server_values", metadata,
    Column("name", String(64), primary_key=True),
    Column("value", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
)

# A person's stall window for every run of a name (0: no stall detection for that name).
stall_names = Table(
    "stall_names", metadata,
    Column("user_id", Integer, primary_key=True, autoincrement=False),
    Column("name", String(600), primary_key=True),
    Column("stall_after_ms", BigInteger, nullable=False),
)

# Metric rules (server/rules.py): for one run (run_id) or for every run of a name (name).
# ``spec`` is the rule as hyperdash.events.check_alert returns it (JSON); source: code, api.
rules = Table(
    "rules", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("user_id", Integer, nullable=False, index=True),
    Column("run_id", Integer, nullable=True, index=True),
    Column("name", String(600), nullable=True),
    Column("metric", String(600), nullable=False),
    Column("spec", Text, nullable=False),
    Column("source", String(16), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    sqlite_autoincrement=True,  # (see _migration_ids_never_reused)
)

# Where each rule stands on each run it watches: armed or fired, and the best value so far
# (for no improvement), so a point is checked without reading the metric's history.
rule_states = Table(
    "rule_states", metadata,
    Column("rule_id", Integer, primary_key=True, autoincrement=False),
    Column("run_id", Integer, primary_key=True, autoincrement=False),
    Column("fired", SmallInteger, nullable=False),
    Column("best", Float, nullable=True),
    Column("best_ts", BigInteger, nullable=True),
    Column("since_best", BigInteger, nullable=False),
)

# Each time a rule fired on a run: the point that fired it (value as text: it may be NaN).
rule_firings = Table(
    "rule_firings", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("rule_id", Integer, nullable=False),
    Column("run_id", Integer, nullable=False),
    Column("metric", String(600), nullable=False),
    Column("description", String(1200), nullable=False),
    Column("value", String(64), nullable=False),
    Column("step", BigInteger, nullable=True),
    Column("seq", BigInteger, nullable=False),
    Column("ts", BigInteger, nullable=False),
    Column("fired_at", BigInteger, nullable=False),
    Index("ix_rule_firings_run", "run_id", "id"),
)

# Deleted runs: the uuid stays refused (410) so that a late batch cannot bring half a run back.
# The run's rows go in small steps (server/deletion.py); purged_at is set when the last is gone.
deleted_runs = Table(
    "deleted_runs", metadata,
    Column("user_id", Integer, primary_key=True, autoincrement=False),
    Column("uuid", String(128), primary_key=True),
    Column("run_id", Integer, nullable=False),
    Column("reason", String(16), nullable=False),  # "deleted" (by its owner) or "retention"
    Column("deleted_at", BigInteger, nullable=False),
    Column("purged_at", BigInteger, nullable=True),
    Index("ix_deleted_runs_purged", "purged_at"),
)

# Read-only links to one run (server/shares.py): the token is kept only as its SHA-256.
run_shares = Table(
    "run_shares", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("user_id", Integer, nullable=False),
    Column("run_id", Integer, nullable=False, index=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("created_at", BigInteger, nullable=False),
    Column("revoked_at", BigInteger, nullable=True),
)

# An account's own settings: how many days its finished runs are kept (NULL: the server's).
account_settings = Table(
    "account_settings", metadata,
    Column("user_id", Integer, primary_key=True, autoincrement=False),
    Column("keep_days", Integer, nullable=True),
)

# When each sweep (Store.sweep) last ran, in whichever process: the row claimed by one process
# per period.
sweeps = Table(
    "sweeps", metadata,
    Column("name", String(64), primary_key=True),
    Column("ran_at", BigInteger, nullable=False),
)

# Facts too big for one notification, relayed to the other server processes by id (relay.py).
relay_facts = Table(
    "relay_facts", metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("created_at", BigInteger, nullable=False, index=True),
    Column("body", Text, nullable=False),
)

# Wrong passwords counted per key (throttle.py): an account, a client address, or the two; the
# key is a SHA-256 digest of them, not their text. Shared by every server process.
login_failures = Table(
    "login_failures", metadata,
    Column("key", String(64), primary_key=True),
    Column("failures", Integer, nullable=False),
    Column("last_at", Float, nullable=False),  # seconds since the epoch
    Index("ix_login_failures_last_at", "last_at"),
)

# How long an access token lasts (auth.ACCESS_TOKEN_DAYS).
ACCESS_TOKEN_LIFETIME_MS = 30 * 86400 * 1000

schema_migrations = Table(
    "schema_migrations", metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("applied_at", BigInteger, nullable=False),
)


def _create_missing_tables(conn: Connection) -> None:
    # Creates only the tables not there yet: a fresh store gets them all in the first step.
    metadata.create_all(conn)


def _migration_2(conn: Connection) -> None:
    _create_missing_tables(conn)  # log_tails, log_envelopes
    # Access tokens used to last for ever: from now on they expire, the old ones too.
    conn.execute(tokens.update().where(tokens.c.kind == "access", tokens.c.expires_at.is_(None))
                 .values(expires_at=now_ms() + ACCESS_TOKEN_LIFETIME_MS))


def _add_missing_columns(conn: Connection, table: Table, names: tuple[str, ...]) -> list[str]:
    """Add those of ``table``'s columns ``names`` that its stored form lacks (ALTER TABLE ... ADD
    COLUMN, which both dialects take; a store made by a newer version has them from its first
    step); the names of those added."""
    have = {c["name"] for c in inspect(conn).get_columns(table.name)}
    added = []
    for column in (table.c[name] for name in names):
        if column.name in have:
            continue
        kind = column.type.compile(dialect=conn.dialect)
        default = f" DEFAULT {column.server_default.arg}" if column.server_default is not None else ""  # type: ignore[attr-defined]
        null = " NOT NULL" if not column.nullable else ""
        conn.exec_driver_sql(f"ALTER TABLE {table.name} ADD COLUMN {column.name} {kind}{default}{null}")
        added.append(column.name)
    return added


# The columns of the runs table that _migration_progress_failure_stop adds.
_RUN_TROUBLE_COLUMNS = ("progress", "failure", "failure_first_seq", "failure_last_seq",
                        "stop_requested_at", "stop_by", "stop_via")


def _migration_progress_failure_stop(conn: Connection) -> None:
    """Runs keep their progress, a failure's summary and a stop request."""
    _add_missing_columns(conn, runs, _RUN_TROUBLE_COLUMNS)


def _migration_trouble(conn: Connection) -> None:
    """Stalls and metric rules: three columns of ``runs``, and their tables."""
    _add_missing_columns(conn, runs, ("last_progress_at", "stall_after_ms", "stalled_since"))
    # Progress was not kept before: a run's last word stands in for it, so that no run that was
    # going at the upgrade is called stalled for what happened before.
    conn.execute(text("UPDATE runs SET last_progress_at = last_seen_at WHERE last_progress_at IS NULL"))
    _create_missing_tables(conn)


def _migration_tidy(conn: Connection) -> None:
    """Deleted runs, shares, account settings; runs' archive mark and storage counters."""
    _create_missing_tables(conn)  # deleted_runs, run_shares, account_settings
    if "line_count" in _add_missing_columns(conn, runs, ("archived_at", "line_count", "log_bytes", "point_count")):
        # Count what the runs stored before the counters existed (once, at the upgrade).
        conn.execute(runs.update().values(
            line_count=select(func.count()).where(logs.c.run_id == runs.c.id, logs.c.superseded == 0)
            .scalar_subquery(),
            log_bytes=select(func.coalesce(func.sum(byte_length(conn, logs.c.text)), 0))
            .where(logs.c.run_id == runs.c.id).scalar_subquery(),
            point_count=select(func.count()).where(metrics.c.run_id == runs.c.id).scalar_subquery(),
        ))


# A name's runs, newest first: the page that compares them (runs.name is not otherwise indexed).
runs_by_name = Index("ix_runs_user_name", runs.c.user_id, runs.c.name, runs.c.started_at)


def _add_runs_by_name_index(conn: Connection) -> None:
    runs_by_name.create(conn, checkfirst=True)


# A run's rule states (its key starts with the rule): what deleting a run removes, a step at a time.
rule_states_by_run = Index("ix_rule_states_run", rule_states.c.run_id)


def _add_rule_states_by_run_index(conn: Connection) -> None:
    rule_states_by_run.create(conn, checkfirst=True)


def _migration_channel_changes(conn: Connection) -> None:
    _add_missing_columns(conn, notify_channels, ("changed_at",))


def _add_odd_metrics(conn: Connection) -> None:
    """Count the NaN and infinite points stored before ``odd_metrics`` existed, run by run."""
    _create_missing_tables(conn)
    rows = conn.execute(select(run_events.c.run_id, run_events.c.seq, run_events.c.ts, run_events.c.payload)
                        .where(run_events.c.type == "metric").order_by(run_events.c.run_id))
    for run_id, group in groupby(rows, key=lambda row: row.run_id):
        count_odd_points(conn, run_id, [(row.seq, row.ts, orjson.loads(row.payload)) for row in group])


def _migration_ids_never_reused(conn: Connection) -> None:
    """SQLite gives the next row the id of the newest row deleted, unless its table says
    AUTOINCREMENT: a channel or rule removed, and its id then named by a script or a page left
    open (``hyperdash notify remove 3``), would reach the one added after it. Rebuild those
    tables with it, their rows kept, the next id past every one still named anywhere (a rule's
    firings outlive it). (PostgreSQL's sequences never give an id twice.)"""
    if conn.dialect.name != "sqlite":
        return
    # pysqlite runs DDL outside any transaction until a DML statement opens one: open it first, so
    # that the rebuild is all or nothing, committed with the schema's new version.
    conn.execute(schema_migrations.delete().where(schema_migrations.c.version < 0))
    named_in = {"notify_channels": [notify_outbox.c.channel_id],
                "rules": [rule_states.c.rule_id, rule_firings.c.rule_id]}
    for table in (notify_channels, rules):
        created = conn.exec_driver_sql("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?",
                                       (table.name,)).scalar()
        if created is None or "AUTOINCREMENT" in created.upper():
            continue
        indexes = conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ? "
                                       "AND sql IS NOT NULL", (table.name,)).scalars().all()
        for index in indexes:  # (their names would clash with the new table's)
            conn.exec_driver_sql(f'DROP INDEX "{index}"')
        conn.exec_driver_sql(f"ALTER TABLE {table.name} RENAME TO {table.name}_reusing_ids")
        table.create(conn)
        columns = ", ".join(f'"{column.name}"' for column in table.columns)
        conn.exec_driver_sql(f"INSERT INTO {table.name} ({columns}) SELECT {columns} FROM {table.name}_reusing_ids")
        conn.exec_driver_sql(f"DROP TABLE {table.name}_reusing_ids")
        last = max(conn.execute(select(func.max(column))).scalar() or 0
                   for column in [table.c.id, *named_in[table.name]])
        conn.exec_driver_sql("DELETE FROM sqlite_sequence WHERE name = ?", (table.name,))
        conn.exec_driver_sql("INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)", (table.name, last))


# Append only: each entry moves the schema from version i to i + 1 (3: the notification tables; 4:
# the runs' progress, failure summary and stop request; 5: the server's own values; 6: stalls and
# metric rules; 7: deleted runs, shares, account settings, archive and storage counters; 8: the
# index of runs by name; 9: sweeps and relay_facts, for several processes on one database; 10: the
# index of rule states by run; 11: when a notification channel last changed; 12: SQLite never
# gives a deleted channel's or rule's id again; 13: wrong passwords counted in the database; 14:
# metrics' NaN and infinite points counted).
MIGRATIONS: list[Callable[[Connection], None]] = [_create_missing_tables, _migration_2, _create_missing_tables,
                                                   _migration_progress_failure_stop, _create_missing_tables,
                                                   _migration_trouble, _migration_tidy, _add_runs_by_name_index,
                                                   _create_missing_tables, _add_rule_states_by_run_index,
                                                   _migration_channel_changes, _migration_ids_never_reused,
                                                   _create_missing_tables, _add_odd_metrics]
SCHEMA_VERSION = len(MIGRATIONS)


def default_db_url() -> str:
    """SQLite in the home folder: ``<home>/hyperdash.db``."""
    return f"sqlite:///{home_dir() / 'hyperdash.db'}"


class Store:
    """An engine on ``db_url`` (SQLite or PostgreSQL; anything else is refused with a
    ValueError), its schema brought up to date, its single :class:`Writer` (``writer``) and
    the :class:`Dispatcher` that announces what the writer committed (``dispatcher``).

    ``shared``: whether other processes may write to the same database (PostgreSQL). Then
    ``relay`` is the :class:`Relay` that carries facts and signals between them, and
    ``everywhere`` the source of every process's facts (``relay``; else ``dispatcher``).
    ``max_queued_bytes`` bounds the writer's queue (see :class:`Writer`). The engine's pool is
    as ``$HYPERDASH_DB_POOL_SIZE`` and ``$HYPERDASH_DB_POOL_TIMEOUT`` say (see
    :func:`~hyperdash.server.dialect.pool_limits_from_env`)."""

    def __init__(self, db_url: str | None = None, max_queued_bytes: int | None = None):
        self.url = checked_url(db_url or default_db_url())
        self.engine: Engine = open_engine(self.url, pool_limits_from_env())
        self._ping: Future | None = None  # the ping under way, which later pings wait for
        self._ping_lock = threading.Lock()
        self.shared = is_shared(self.engine)
        self.migrate()
        self.dispatcher = Dispatcher()
        self.writer = Writer(self.engine, announce=self.dispatcher.publish,
                             max_queued_bytes=max_queued_bytes or DEFAULT_MAX_QUEUED_BYTES)
        self.relay: Relay | None = None
        self.everywhere: Dispatcher | Relay = self.dispatcher
        if self.shared:
            self.relay = self.everywhere = Relay(self.engine, relay_facts)
            self.writer.relay = self.relay.publish
            self.relay.start()
            self.sweep("relay_facts", 60.0, self.relay.forget_old)

    def signal(self, conn: Connection, name: str) -> None:
        """Call the ``on_signal(name)`` callbacks of the other processes sharing the database
        when ``conn``'s transaction commits (nothing on SQLite, which has one process)."""
        if self.relay is not None:
            self.relay.signal(conn, name)

    def on_signal(self, name: str, callback: Callable[[], None]) -> None:
        """Call ``callback()`` when another process (or this one) signals ``name`` (see
        :meth:`Relay.on_signal`); never on SQLite."""
        if self.relay is not None:
            self.relay.on_signal(name, callback)

    def sweep(self, name: str, interval: float, job: Job) -> None:
        """Run the writer job ``job`` about every ``interval`` seconds in ONE of the processes
        sharing the database: each period, the process that claims the sweep's row in the
        ``sweeps`` table runs it (in the same transaction); the others pass. ``name`` names
        the sweep (at most 64 characters), the same in every process."""
        period_ms = int(interval * 1000)

        def claimed(conn: Connection) -> Any:
            now = now_ms()
            # A locked row is passed over: another process is running this sweep now.
            claim = skip_locked(conn, select(sweeps.c.ran_at).where(sweeps.c.name == name))
            row = conn.execute(claim).first()
            if row is None:  # (or the sweep has no row yet: made now, and locked by this one)
                conn.execute(insert_ignoring(conn, sweeps).values(name=name, ran_at=0))
                row = conn.execute(claim).first()
                if row is None:
                    return None
            # (a tenth of the period spare, so the timer's jitter does not skip a period)
            if row.ran_at > now - period_ms * 0.9:
                return None
            conn.execute(update(sweeps).where(sweeps.c.name == name).values(ran_at=now))
            return job(conn)

        self.writer.every(interval, claimed)

    def migrate(self) -> None:
        with self.engine.begin() as conn:
            lock_schema(conn)  # processes starting together on an empty database take turns
            schema_migrations.create(conn, checkfirst=True)
            current = conn.execute(
                select(schema_migrations.c.version).order_by(schema_migrations.c.version.desc()).limit(1)
            ).scalar() or 0
            if current > SCHEMA_VERSION:
                raise RuntimeError(
                    f"the database schema (version {current}) is newer than this server knows "
                    f"({SCHEMA_VERSION}); upgrade hyperdash"
                )
            for version in range(current, SCHEMA_VERSION):
                MIGRATIONS[version](conn)
                conn.execute(schema_migrations.insert().values(version=version + 1, applied_at=now_ms()))

    def read(self) -> Connection:
        """A connection for queries (use as a context manager)."""
        return self.engine.connect()

    def ping(self, timeout: float) -> None:
        """Return once the database answers a trivial query; raise what it raised (a
        :data:`~hyperdash.server.errors.DATABASE_DOWN` error) or, after ``timeout`` seconds,
        ``concurrent.futures.TimeoutError``.

        The query runs on a thread of its own, one at a time: a database that never answers
        (its host dropping packets) holds that thread until the connection gives up, and the
        pings meanwhile wait for the same answer rather than start threads of their own."""
        with self._ping_lock:
            pending = self._ping
            if pending is None or pending.done():
                pending = self._ping = Future()
                threading.Thread(target=self._run_ping, args=(pending,), name="hyperdash-ping", daemon=True).start()
        pending.result(timeout)

    def _run_ping(self, result: Future) -> None:
        try:
            with self.read() as conn:  # (a table's row, not SELECT 1: SQLite reads the file then)
                conn.execute(select(schema_migrations.c.version).limit(1)).all()
        except BaseException as exc:
            result.set_exception(exc)
        else:
            result.set_result(None)

    def close(self) -> None:
        """Commit every job submitted, deliver what that announced, then close the engine."""
        self.writer.stop()
        self.dispatcher.close()
        if self.relay is not None:
            self.relay.close()
        self.engine.dispose()

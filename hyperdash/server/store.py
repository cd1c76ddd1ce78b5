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

from collections.abc import Callable
from typing import Any

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
    select,
    update,
)
from sqlalchemy.engine import Connection, Engine

from ..events import now_ms
from ..settings import home_dir
from .announce import Dispatcher
from .dialect import checked_url, insert_ignoring, is_shared, lock_schema, open_engine, skip_locked
from .relay import Relay
from .writer import DEFAULT_MAX_QUEUED_BYTES, Job, Writer

__all__ = ["metadata", "users", "api_keys", "tokens", "runs", "logs", "metrics", "run_events",
           "streams", "log_tails", "log_envelopes", "notify_channels", "notify_outbox", "sweeps", "relay_facts",
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

# run_started, run_ended and param events, their payload as JSON text.
run_events = Table(
    "run_events", metadata,
    Column("run_id", Integer, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("type", String(32), nullable=False),
    Column("ts", BigInteger, nullable=False),
    Column("payload", Text, nullable=False),
)

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


# Append only: each entry moves the schema from version i to i + 1 (3: the notification tables;
# 4: sweeps and relay_facts, for several processes on one database).
MIGRATIONS: list[Callable[[Connection], None]] = [_create_missing_tables, _migration_2, _create_missing_tables,
                                                  _create_missing_tables]
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
    ``max_queued_bytes`` bounds the writer's queue (see :class:`Writer`)."""

    def __init__(self, db_url: str | None = None, max_queued_bytes: int | None = None):
        self.url = checked_url(db_url or default_db_url())
        self.engine: Engine = open_engine(self.url)
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

    def close(self) -> None:
        """Commit every job submitted, deliver what that announced, then close the engine."""
        self.writer.stop()
        self.dispatcher.close()
        if self.relay is not None:
            self.relay.close()
        self.engine.dispose()

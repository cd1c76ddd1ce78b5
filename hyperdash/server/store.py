"""The store: tables, engine, migrations, and the one writer.

SQLAlchemy Core keeps a single code path for SQLite and PostgreSQL. Every write goes through
:class:`Writer`, one thread that takes whatever jobs are waiting, runs them in one transaction
(a group commit) and only then answers them, so a reply means "on disk". Reads use their own
pooled connections (SQLite in WAL mode lets them run beside the writer).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Callable

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
    create_engine,
    event,
    select,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.engine.url import make_url
from sqlalchemy.exc import ArgumentError

from .errors import Unavailable

__all__ = ["metadata", "users", "api_keys", "tokens", "runs", "logs", "metrics", "run_events",
           "streams", "log_tails", "log_envelopes", "Store", "Writer", "default_db_url", "hyperdash_home", "SCHEMA_VERSION",
           "UNICODE_LOWER"]

log = logging.getLogger("hyperdash.server")

metadata = MetaData()

# The SQL function, on SQLite, that lowers text of every script as Python's str.lower does.
UNICODE_LOWER = "unicode_lower"

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
                 .values(expires_at=_now_ms() + ACCESS_TOKEN_LIFETIME_MS))


# Append only: each entry moves the schema from version i to i + 1.
MIGRATIONS: list[Callable[[Connection], None]] = [_create_missing_tables, _migration_2]
SCHEMA_VERSION = len(MIGRATIONS)


def hyperdash_home() -> Path:
    """``$HYPERDASH_HOME``, else ``~/.hyperdash`` (read at call time)."""
    # The SDK's config.home_dir says the same; the server may import only hyperdash.events.
    return Path(os.environ.get("HYPERDASH_HOME") or Path.home() / ".hyperdash")


def default_db_url() -> str:
    return f"sqlite:///{hyperdash_home() / 'hyperdash.db'}"


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class Store:
    """An engine on ``db_url``, its schema brought up to date, and its single :class:`Writer`."""

    def __init__(self, db_url: str | None = None):
        url = _checked_url(db_url or default_db_url())
        self.is_sqlite = url.get_backend_name() == "sqlite"
        if self.is_sqlite:
            if url.database and url.database != ":memory:":
                _create_private_file(Path(url.database))
            self.engine: Engine = create_engine(
                url, connect_args={"check_same_thread": False, "timeout": 30},
                pool_size=8, max_overflow=8,
            )
            event.listen(self.engine, "connect", _prepare_sqlite_connection)
        else:
            self.engine = create_engine(url, pool_size=8, max_overflow=8, pool_pre_ping=True)
        self.url = url
        self.migrate()
        self.writer = Writer(self.engine)

    def migrate(self) -> None:
        with self.engine.begin() as conn:
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
                conn.execute(schema_migrations.insert().values(version=version + 1, applied_at=_now_ms()))

    def read(self) -> Connection:
        """A connection for queries (use as a context manager)."""
        return self.engine.connect()

    def close(self) -> None:
        self.writer.stop()
        self.engine.dispose()


_SCHEMES = "sqlite:///PATH or postgresql://USER:PASSWORD@HOST/DATABASE"


def _checked_url(db_url: str):
    """The SQLAlchemy URL for ``db_url``; ValueError, one line, for what cannot work."""
    try:
        url = make_url(db_url)
    except ArgumentError:
        raise ValueError(f"not a database URL: {db_url!r}; use {_SCHEMES}") from None
    backend = url.get_backend_name()
    if backend == "postgres":
        backend = "postgresql"
    if backend == "postgresql":
        if url.drivername in ("postgresql", "postgres"):
            url = url.set(drivername="postgresql+psycopg")
        if url.drivername == "postgresql+psycopg":
            try:
                import psycopg  # noqa: F401
            except ImportError:
                raise ValueError("PostgreSQL needs the psycopg driver: pip install 'hyperdash[postgres]'") from None
    elif backend != "sqlite":
        shown = url.render_as_string(hide_password=True)
        raise ValueError(f"cannot use the database {shown}: {url.drivername}:// is not supported; "
                         f"use {_SCHEMES}")
    return url


def _create_private_file(path: Path) -> None:
    """Make the store's folder (0700) and empty file (0600) when missing: they hold account
    data. SQLite gives its -wal and -shm files the database file's mode."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass


def _prepare_sqlite_connection(dbapi_conn, _record) -> None:
    # SQLite's own lower() folds only ASCII; searches outside ASCII use this one (queries.py).
    dbapi_conn.create_function(UNICODE_LOWER, 1, _unicode_lower, deterministic=True)
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    # In WAL mode NORMAL keeps every committed transaction across a crash of this process.
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _unicode_lower(text: str | None) -> str | None:
    return None if text is None else text.lower()


Job = Callable[[Connection], Any]


class Writer:
    """The one thread that writes. ``submit(job)`` returns a Future answered after the commit.

    Jobs waiting together are committed together; if that transaction fails, each of them is
    retried alone, so one failing job cannot take the others down with it. ``on_commit`` is
    called with each job's result after its commit, in commit order, on the writer thread;
    ``on_rollback`` after any transaction that failed (so caches of what was written can be
    dropped).
    """

    def __init__(self, engine: Engine, max_group: int = 256,
                 on_commit: Callable[[Any], None] | None = None,
                 on_rollback: Callable[[], None] | None = None):
        self.engine = engine
        self.on_commit = on_commit
        self.on_rollback = on_rollback
        self.max_group = max_group
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._stopped = False
        self._lock = threading.Lock()
        self._periodic: list[list] = []  # [interval, next due (monotonic), job]
        self._thread = threading.Thread(target=self._loop, name="hyperdash-writer", daemon=True)
        self._thread.start()

    def submit(self, job: Job) -> Future:
        fut: Future = Future()
        with self._lock:  # so that no job lands behind the stop mark
            if self._stopped:
                fut.set_exception(Unavailable("the server is shutting down"))
                return fut
            self._queue.put((job, fut))
        return fut

    def call(self, job: Job, timeout: float | None = 60) -> Any:
        """Run ``job`` on the writer and wait for its result (for synchronous callers)."""
        return self.submit(job).result(timeout)

    def every(self, interval: float, job: Job) -> None:
        """Run ``job`` on the writer about every ``interval`` seconds (its own transaction)."""
        self._periodic.append([interval, time.monotonic() + interval, job])

    def stop(self, timeout: float = 30) -> None:
        """Finish every job already submitted, then stop."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            self._queue.put(None)
        self._thread.join(timeout)

    def _loop(self) -> None:
        conn = self.engine.connect()
        try:
            while True:
                wait = self._next_periodic_wait()
                try:
                    item = self._queue.get(timeout=wait)
                except queue.Empty:
                    item = ()
                if item == ():
                    self._run_periodic(conn)
                    continue
                group = []
                done = item is None
                if not done:
                    group.append(item)
                while len(group) < self.max_group:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is None:
                        done = True
                        continue
                    group.append(item)
                if group:
                    self._run_group(conn, group)
                if done and self._queue.empty():
                    return
                self._run_periodic(conn)
        finally:
            conn.close()

    def _next_periodic_wait(self) -> float | None:
        if not self._periodic:
            return None
        return max(0.0, min(p[1] for p in self._periodic) - time.monotonic())

    def _run_periodic(self, conn: Connection) -> None:
        now = time.monotonic()
        for entry in self._periodic:
            if entry[1] <= now:
                entry[1] = now + entry[0]
                try:
                    with conn.begin():
                        result = entry[2](conn)
                except Exception:
                    self._rolled_back()
                    log.exception("periodic store job failed")
                else:
                    self._committed(result)

    def _run_group(self, conn: Connection, group: list) -> None:
        try:
            with conn.begin():
                results = [job(conn) for job, _ in group]
        except Exception as exc:
            self._rolled_back()
            if len(group) == 1:
                group[0][1].set_exception(exc)
                return
            for job, fut in group:
                try:
                    with conn.begin():
                        result = job(conn)
                except Exception as job_exc:
                    self._rolled_back()
                    fut.set_exception(job_exc)
                else:
                    self._committed(result)
                    fut.set_result(result)
            return
        for result in results:
            self._committed(result)
        for (_, fut), result in zip(group, results):
            fut.set_result(result)

    def _rolled_back(self) -> None:
        if self.on_rollback is not None:
            self.on_rollback()

    def _committed(self, result: Any) -> None:
        if self.on_commit is not None:
            try:
                self.on_commit(result)
            except Exception:
                log.exception("after-commit hook failed")


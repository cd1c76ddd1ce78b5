"""Everything that differs between the databases the store runs on: SQLite and PostgreSQL.

How each is opened (driver, pool, SQLite's pragmas and its Unicode-aware ``lower``), which
URLs are accepted (anything else is refused, in one line, when the store is made), the
exactly-once bulk insert (``INSERT ... ON CONFLICT DO NOTHING``, on SQLite as multi-row
statements), the case-folding search of text, and how rows are claimed by one of several
processes (:func:`skip_locked`), whether several processes may share the database
(:func:`is_shared`), and the lock that lets one of them at a time create or migrate the schema
(:func:`lock_schema`). The rest of the server writes one code path.
"""

from __future__ import annotations

import os
import re
import sqlite3
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, replace
from functools import lru_cache
from itertools import chain
from operator import itemgetter
from pathlib import Path

import orjson
from msgspec.structs import astuple
from sqlalchemy import LargeBinary, Select, Table, cast, create_engine, event, func
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.engine.url import make_url
from sqlalchemy.exc import ArgumentError

__all__ = ["checked_url", "open_engine", "PoolLimits", "pool_limits_from_env", "holds", "insert_many",
           "insert_lines", "execute", "skip_locked", "byte_length", "insert_ignoring", "is_shared", "lock_schema",
           "LOG_COLUMNS", "UNICODE_LOWER"]

# The insert statement of each dialect the store supports: ON CONFLICT DO NOTHING makes a
# resent row a no-op, which is what stores each (run, seq) once.
_INSERTS: dict[str, Callable[[Table], sqlite.Insert | postgresql.Insert]] = {
    "sqlite": sqlite.insert, "postgresql": postgresql.insert}
_SCHEMES = "sqlite:///PATH or postgresql://USER:PASSWORD@HOST/DATABASE"

# The SQL function, on SQLite, that lowers text of every script as Python's str.lower does.
UNICODE_LOWER = "unicode_lower"

# SQLite's limit on parameters in one statement (999 before 3.32).
_SQLITE_MAX_VARIABLES = 32766 if sqlite3.sqlite_version_info >= (3, 32, 0) else 999

# Seconds a connection to PostgreSQL may take to open, unless the URL says (connect_timeout=N):
# a database host that drops packets would otherwise hold each request for the system's TCP
# timeout, minutes, before it could be told that the database is out of reach.
CONNECT_TIMEOUT_S = 10


@dataclass(frozen=True)
class PoolLimits:
    """How many connections one server process holds at most (``size``; its writer and, on
    PostgreSQL, its listener keep one each, the rest serve requests), and how long a request
    waits for one of them to be free (``timeout_s``) before it is told the server is busy."""

    size: int = 16
    timeout_s: float = 30.0


# The fewest connections a process can serve with: the writer's, the listener's and one for reads.
MIN_POOL_SIZE = 3


def pool_limits_from_env() -> PoolLimits:
    """``$HYPERDASH_DB_POOL_SIZE`` and ``$HYPERDASH_DB_POOL_TIMEOUT`` (seconds), each else its
    default; ValueError, one line, for a value that cannot work."""
    limits = PoolLimits()
    size, timeout = os.environ.get("HYPERDASH_DB_POOL_SIZE"), os.environ.get("HYPERDASH_DB_POOL_TIMEOUT")
    if size:
        try:
            limits = replace(limits, size=int(size))
        except ValueError:
            limits = replace(limits, size=0)
        if limits.size < MIN_POOL_SIZE:
            raise ValueError(f"HYPERDASH_DB_POOL_SIZE must be a whole number of connections, at least "
                             f"{MIN_POOL_SIZE}, not {size!r}")
    if timeout:
        try:
            limits = replace(limits, timeout_s=float(timeout))
        except ValueError:
            limits = replace(limits, timeout_s=0.0)
        if not 0 < limits.timeout_s < float("inf"):  # (NaN too)
            raise ValueError(f"HYPERDASH_DB_POOL_TIMEOUT must be a number of seconds above 0, not {timeout!r}")
    return limits


def checked_url(db_url: str) -> URL:
    """The SQLAlchemy URL for ``db_url``; ValueError, one line, for what cannot work."""
    try:
        url = make_url(db_url)
        url.port  # noqa: B018 (a port that is no number raises here, not later)
    except (ArgumentError, ValueError):
        shown = re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", db_url)  # (never a password)
        raise ValueError(f"not a database URL: {shown!r}; use {_SCHEMES}") from None
    backend = url.get_backend_name()
    if backend == "sqlite" and (not url.database or url.database == ":memory:"):
        raise ValueError(f"{db_url!r} names no file: the store would be lost at exit; use sqlite:///PATH")
    if backend == "postgres":
        backend = "postgresql"
    if backend == "postgresql":
        if url.drivername in ("postgresql", "postgres"):
            url = url.set(drivername="postgresql+psycopg")
        if url.drivername != "postgresql+psycopg":
            raise ValueError(f"{url.drivername}:// is not supported: use postgresql://USER:PASSWORD@HOST/DATABASE "
                             "(hyperdash talks to PostgreSQL through psycopg 3)")
        try:
            import psycopg  # noqa: F401
        except ImportError:
            raise ValueError("PostgreSQL needs the psycopg driver: pip install 'hyperdash[postgres]'") from None
    if backend not in _INSERTS:
        shown = url.render_as_string(hide_password=True)
        raise ValueError(f"cannot use the database {shown}: {url.drivername}:// is not supported; "
                         f"use {_SCHEMES}")
    return url


def open_engine(url: URL, limits: PoolLimits = PoolLimits()) -> Engine:
    """An engine on ``url`` (from :func:`checked_url`), set up for its database, its pool within
    ``limits``."""
    # Half the connections stay open between requests; the others close when handed back.
    kept = (limits.size + 1) // 2
    pool = {"pool_size": kept, "max_overflow": limits.size - kept, "pool_timeout": limits.timeout_s}
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            _create_private_file(Path(url.database))
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30},
                               **pool)
        event.listen(engine, "connect", _prepare_sqlite_connection)
    else:
        connect_args = {} if "connect_timeout" in url.query else {"connect_timeout": CONNECT_TIMEOUT_S}
        engine = create_engine(url, pool_pre_ping=True, connect_args=connect_args, **pool)
    if engine.dialect.name not in _INSERTS:  # (a driver that names its dialect otherwise)
        engine.dispose()
        raise ValueError(f"cannot use the database dialect {engine.dialect.name!r}; use {_SCHEMES}")
    return engine


def _create_private_file(path: Path) -> None:
    """Make the store's folder (0700) and empty file (0600) when missing: they hold account
    data. SQLite gives its -wal and -shm files the database file's mode."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass


def _prepare_sqlite_connection(dbapi_conn, _record) -> None:
    # SQLite's own lower() folds only ASCII; searches outside ASCII use this one (holds()).
    dbapi_conn.create_function(UNICODE_LOWER, 1, _unicode_lower, deterministic=True)
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    # In WAL mode NORMAL keeps every committed transaction across a crash of this process.
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _unicode_lower(text: str | None) -> str | None:
    return None if text is None else text.lower()


def holds(conn: Connection, column, text: str):
    """``column`` holds ``text``, in any case, of any script (as the dashboard's filter matches).

    PostgreSQL's ILIKE folds every script; SQLite's folds only ASCII, so there text beyond ASCII
    is matched against the column lowered by Python (slower, hence only then).
    """
    if conn.dialect.name == "sqlite" and not text.isascii():
        return getattr(func, UNICODE_LOWER)(column).contains(text.lower(), autoescape=True)
    return column.icontains(text, autoescape=True)


_INSERT_SQL: dict[tuple, tuple] = {}


def insert_many(conn: Connection, table: Table, columns: tuple[str, ...], rows: list[tuple]) -> None:
    """``INSERT ... ON CONFLICT DO NOTHING`` of many rows (tuples in the order of ``columns``),
    compiled once per dialect.

    SQLAlchemy's per-row parameter handling costs more than the insert itself, and these
    columns need none, so the rows go straight to the driver. On SQLite they go as multi-row
    ``VALUES`` statements: the driver's executemany gives up the GIL once per row, and taking
    it back from busy request handlers costs far more than the row."""
    dialect = conn.dialect
    key = (dialect.name, table.name, columns)
    cached = _INSERT_SQL.get(key)
    if cached is None:
        stmt = _INSERTS[dialect.name](table).on_conflict_do_nothing()
        compiled = stmt.compile(dialect=dialect, column_keys=list(columns))
        if dialect.positional:
            assert compiled.positiontup is not None  # (a positional dialect lists its parameters in order)
            order = tuple(compiled.positiontup)
        else:
            order = columns
        reorder = itemgetter(*(columns.index(c) for c in order)) if order != columns else None
        cached = _INSERT_SQL[key] = (compiled.string, reorder)
    sql, reorder = cached
    if reorder is not None:
        rows = [reorder(row) for row in rows]
    if dialect.name == "sqlite":
        per_statement = max(1, _SQLITE_MAX_VARIABLES // len(columns))
        for start in range(0, len(rows), per_statement):
            chunk = rows[start:start + per_statement]
            conn.exec_driver_sql(_sqlite_multirow(sql, len(columns), len(chunk)),
                                 tuple(chain.from_iterable(chunk)))
        return
    if dialect.positional:
        conn.exec_driver_sql(sql, rows)
    else:
        conn.exec_driver_sql(sql, [dict(zip(columns, row, strict=True)) for row in rows])


@lru_cache(maxsize=64)
def _sqlite_multirow(sql: str, width: int, count: int) -> str:
    """``INSERT ... VALUES (?, ...)`` made to insert ``count`` rows at once."""
    group = "(" + ", ".join("?" * width) + ")"
    head, found, tail = sql.partition(group)
    if not found:
        raise RuntimeError(f"unexpected insert statement: {sql}")
    return head + ", ".join([group] * count) + tail


# The columns of the logs table, in the order insert_lines binds them.
LOG_COLUMNS = ("run_id", "seq", "stream", "text", "ts", "partial", "progress", "superseded")


def insert_lines(conn: Connection, table: Table, run_id: int, lines: list, one_run: bool = False) -> None:
    """Insert lines of one run (:class:`~hyperdash.server.batch.Line`), none superseded, into
    the logs ``table``; a line stored already is left as it is. ``one_run``: the lines are one
    stretch (each seq the one after the last's, one time, one stream, none partial or progress),
    as blocks of lines bring them."""
    if conn.dialect.name == "sqlite" and one_run and _SQLITE_HAS_JSON:
        # What the lines share is bound once (the first seq, the time, the stream) and their
        # texts as one JSON array, numbered by SQLite: binding a parameter holds the GIL, and a
        # block's lines would otherwise bind six each. One statement for any count of lines (a
        # statement made per count would be prepared anew for most batches).
        first = lines[0]
        for start in range(0, len(lines), RUN_LINES_PER_STATEMENT):
            texts = orjson.dumps([line.text for line in lines[start:start + RUN_LINES_PER_STATEMENT]])
            conn.exec_driver_sql(_sqlite_run_sql(table.name),
                                 (run_id, first.seq + start, first.ts, first.stream, texts))
        return
    if conn.dialect.name == "sqlite":
        # The run's id bound once as ?1, each line's fields as they are (no row built per line:
        # at ingest rates that copying costs as much as the insert).
        for start in range(0, len(lines), _PLAIN_LINES_PER_STATEMENT):
            chunk = lines[start:start + _PLAIN_LINES_PER_STATEMENT]
            conn.exec_driver_sql(_sqlite_lines_sql(table.name, len(chunk)),
                                 (run_id, *chain.from_iterable(map(astuple, chunk))))
        return
    insert_many(conn, table, LOG_COLUMNS, [(run_id, line.seq, line.stream, line.text, line.ts, line.partial,
                                            line.progress, 0) for line in lines])


# A Line's fields in its own order (seq, ts, stream, text, partial, progress) after ?1.
_PLAIN_LINE_COLUMNS = ("run_id", "seq", "ts", "stream", "text", "partial", "progress", "superseded")
_PLAIN_LINE_VALUES = "(?1, ?, ?, ?, ?, ?, ?, 0)"
_PLAIN_LINES_PER_STATEMENT = (_SQLITE_MAX_VARIABLES - 1) // 6


RUN_LINES_PER_STATEMENT = 10_000


def _sqlite_json() -> bool:
    """Whether this SQLite has its JSON functions (built in since 3.38, and in most builds before)."""
    try:
        with closing(sqlite3.connect(":memory:")) as db:
            return db.execute("SELECT count(*) FROM json_each('[1]')").fetchone() == (1,)
    except sqlite3.Error:
        return False


_SQLITE_HAS_JSON = _sqlite_json()


@lru_cache(maxsize=8)
def _sqlite_run_sql(table: str) -> str:
    columns = ", ".join(_PLAIN_LINE_COLUMNS)
    # (an upsert's SELECT needs a WHERE, even a true one, to be told apart from its ON clause)
    return (f"INSERT INTO {table} ({columns}) SELECT ?1, ?2 + key, ?3, ?4, value, 0, 0, 0 "
            "FROM json_each(?5) WHERE true ON CONFLICT DO NOTHING")


@lru_cache(maxsize=64)
def _sqlite_lines_sql(table: str, count: int) -> str:
    columns = ", ".join(_PLAIN_LINE_COLUMNS)
    return (f"INSERT INTO {table} ({columns}) VALUES "
            + ", ".join([_PLAIN_LINE_VALUES] * count) + " ON CONFLICT DO NOTHING")


_COMPILED: dict[tuple, tuple] = {}


def execute(conn: Connection, stmt, params: dict) -> None:
    """Run a statement built once (with bind parameters named in ``params``) straight through
    the driver, compiled once per dialect: at ingest rates, compiling anew costs more than
    running it."""
    key = (conn.dialect.name, id(stmt))
    cached = _COMPILED.get(key)
    if cached is None:
        compiled = stmt.compile(dialect=conn.dialect)
        order = tuple(compiled.positiontup) if conn.dialect.positional else None
        cached = _COMPILED[key] = (compiled.string, order)
    sql, order = cached
    conn.exec_driver_sql(sql, tuple(params[k] for k in order) if order else params)


def byte_length(conn: Connection, column):
    """The size of a text ``column`` in UTF-8 bytes: PostgreSQL's ``octet_length``; on SQLite
    (whose ``octet_length`` is recent) the length of the text cast to a blob."""
    if conn.dialect.name == "postgresql":
        return func.octet_length(column)
    return func.length(cast(column, LargeBinary))


def skip_locked(conn: Connection, query: Select) -> Select:
    """``query`` made to lock the rows it selects for this transaction, passing over rows that
    another transaction holds (a work queue shared by several server processes).

    PostgreSQL: ``SELECT ... FOR UPDATE SKIP LOCKED``. SQLite has no row locks and needs none:
    the store's one writer runs every claim, one transaction at a time, and a SQLite file is
    served by one process."""
    if conn.dialect.name == "postgresql":
        return query.with_for_update(skip_locked=True)
    return query


def insert_ignoring(conn: Connection, table: Table):
    """``INSERT INTO table ... ON CONFLICT DO NOTHING`` (add ``.values()``; with ``.returning()``
    a row that was there already returns nothing)."""
    return _INSERTS[conn.dialect.name](table).on_conflict_do_nothing()


def upsert(conn: Connection, table: Table, key: tuple[str, ...], values: dict, update: dict | None = None):
    """``INSERT INTO table ... ON CONFLICT (key) DO UPDATE`` the other ``values`` (or, given,
    ``update``'s columns to its expressions, which may read the row there): one statement that
    two processes may run at once for the same key."""
    stmt = _INSERTS[conn.dialect.name](table).values(**values)
    if update is None:
        update = {name: value for name, value in values.items() if name not in key}
    return stmt.on_conflict_do_update(index_elements=list(key), set_=update)


def is_shared(engine: Engine) -> bool:
    """Whether several server processes may write to this database at once.

    PostgreSQL: yes (the store then reads what it changes under row locks instead of trusting
    what it wrote last, and relays its facts to the other processes). A SQLite file has one
    writing process: the server refuses ``--workers`` on it."""
    return engine.dialect.name == "postgresql"


# The key of the PostgreSQL advisory lock held while the schema is created or migrated
# (any fixed number: the two letters "hd" and a version of this lock).
_SCHEMA_LOCK = 0x6864_0001


def lock_schema(conn: Connection) -> None:
    """Wait until no other process creates or migrates the schema, and keep them waiting until
    this transaction ends (PostgreSQL's ``pg_advisory_xact_lock``; on SQLite the transaction
    that writes holds the whole file already)."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_SCHEMA_LOCK})")

"""A fresh PostgreSQL schema of its own for a test that starts server processes on it."""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Iterator
from urllib.parse import quote

import pytest

PG_URL = os.environ.get("HYPERDASH_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def pg_unreachable() -> str | None:
    """Why the test PostgreSQL cannot be used, or None."""
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed"
    try:
        psycopg.connect(PG_URL, connect_timeout=3).close()
    except Exception as exc:  # any failure to connect means: no PostgreSQL here
        return f"PostgreSQL at {PG_URL} is unreachable: {exc}"
    return None


@contextlib.contextmanager
def fresh_schema() -> Iterator[str]:
    """The URL of a new, empty schema in the test database (dropped afterwards); skips the test
    (fails it with ``HYPERDASH_REQUIRE_POSTGRES=1``) where there is no PostgreSQL."""
    reason = pg_unreachable()
    if reason:
        if os.environ.get("HYPERDASH_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"{reason}, and HYPERDASH_REQUIRE_POSTGRES=1")
        pytest.skip(reason)
    import psycopg

    schema = f"hd_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in PG_URL else "?"
    try:
        yield f"{PG_URL}{sep}options={quote(f'-csearch_path={schema}')}"
    finally:
        _drop_schema(psycopg, schema)


def _drop_schema(psycopg, schema: str) -> None:
    # A server process just stopped may still have a backend finishing its last statement on the
    # schema's tables: the drop can meet it in a deadlock, which PostgreSQL ends by failing one side.
    for attempt in range(10):
        try:
            with psycopg.connect(PG_URL, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
            return
        except psycopg.errors.DeadlockDetected:
            if attempt == 9:
                raise
            time.sleep(0.2)

"""Fixtures for the server's tests: the app on SQLite and on the real PostgreSQL."""

from __future__ import annotations

import os
import uuid
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from server_helpers import Api

from hyperdash.server.app import create_app

PG_URL = os.environ.get("HYPERDASH_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def _pg_unreachable() -> str | None:
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed"
    try:
        psycopg.connect(PG_URL, connect_timeout=3).close()
    except Exception as exc:  # any failure to connect means: no PostgreSQL here
        return f"PostgreSQL at {PG_URL} is unreachable: {exc}"
    return None


@pytest.fixture(scope="session")
def pg_reason() -> str | None:
    return _pg_unreachable()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request, tmp_path, pg_reason):
    """A fresh, empty store: a SQLite file, or a schema of its own in the PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'hyperdash.db'}"
        return
    if pg_reason:
        if os.environ.get("HYPERDASH_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"{pg_reason}, and HYPERDASH_REQUIRE_POSTGRES=1")
        pytest.skip(pg_reason)
    import psycopg

    schema = f"hd_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in PG_URL else "?"
    yield f"{PG_URL}{sep}options={quote(f'-csearch_path={schema}')}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
def make_client(db_url):
    """``make_client(lost_timeout=..., **create_app_options)``: a TestClient on a new app on this
    test's store."""
    clients = []

    def make(lost_timeout: float = 120.0, **options) -> TestClient:
        client = TestClient(create_app(db_url, lost_timeout=lost_timeout, **options),
                            raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client) -> TestClient:
    return make_client()


@pytest.fixture
def api(client) -> Api:
    return Api(client)

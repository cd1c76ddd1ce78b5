"""Fixtures for the server's tests: the app on SQLite and on the real PostgreSQL."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from pg_schema import fresh_schema, pg_unreachable, schema_behind_proxy
from server_helpers import Api

from hyperdash.server.app import create_app
from hyperdash.server.store import Store


@pytest.fixture(scope="session")
def pg_reason() -> str | None:
    return pg_unreachable()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request, tmp_path, pg_reason):
    """A fresh, empty store: a SQLite file, or a schema of its own in the PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'hyperdash.db'}"
        return
    with fresh_schema() as url:
        yield url


@pytest.fixture
def pg_store():
    """A store with no app (so no periodic job beside the test's) on a fresh PostgreSQL schema."""
    with fresh_schema() as url:
        store = Store(url)
        yield store
        store.close()


@pytest.fixture
def outage():
    """``(db_url, proxy)``: a fresh PostgreSQL schema reached through a proxy the test can cut
    (:class:`pg_schema.CuttableProxy`)."""
    with schema_behind_proxy() as reached:
        yield reached


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

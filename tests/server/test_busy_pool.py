"""Every database connection of a server process in use: a request that waits past the pool's
timeout is told the server is busy (503, Retry-After), as it is told when the database is away,
and requests work again once connections are free."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient
from pg_schema import fresh_schema
from server_helpers import Api

from hyperdash.events import AUTH_HEADER
from hyperdash.server.app import create_app
from hyperdash.server.auth import SESSION_COOKIE
from hyperdash.server.store import Store

BUSY = {"code": "unavailable",
        "message": "the server is busy: every database connection is in use; try again in a few seconds"}
POOL_TIMEOUT_S = 1.0


@pytest.fixture
def tiny_pool(monkeypatch):
    """Server processes and apps made now hold 3 database connections at most (the writer's, the
    listener's on PostgreSQL, one for requests) and wait 1 s for one."""
    monkeypatch.setenv("HYPERDASH_DB_POOL_SIZE", "3")
    monkeypatch.setenv("HYPERDASH_DB_POOL_TIMEOUT", str(POOL_TIMEOUT_S))


def assert_busy(resp, started: float) -> None:
    """``resp`` is the busy 503 (JSON under /api/, else a page), answered soon after the pool's
    timeout, not after the default 30 s."""
    assert time.monotonic() - started < POOL_TIMEOUT_S + 8, "the answer took far longer than the pool's timeout"
    assert resp.status_code == 503, resp.text
    assert int(resp.headers["retry-after"]) > 0
    if resp.headers["content-type"].startswith("text/html"):
        assert "The server is busy: every database connection is in use" in resp.text
    else:
        assert resp.json() == BUSY


def busy_replies(get, api_key: str) -> list:
    """Each kind of request while no connection is free: the API and a dashboard page (its
    session is looked up in the database). (Ingest may still be served: its key is checked in a
    cache, and its batches are stored by the writer, on a connection of its own.)"""
    replies = []
    for call in (lambda: get("/api/v1/runs", headers={AUTH_HEADER: api_key}),
                 lambda: get("/", headers={"cookie": f"{SESSION_COOKIE}={'s' * 40}"})):
        started = time.monotonic()
        replies.append((call(), started))
    return replies


@pytest.mark.postgres
def test_requests_past_a_full_pool_on_postgresql_are_told_the_server_is_busy(tiny_pool, server_factory):
    # A request that waited past the pool's timeout for a connection answered 500.
    with fresh_schema() as url:
        import psycopg

        server = server_factory(start=False)
        server.db_url = url
        server.start()
        try:
            account = server.signup()
            s = server.session
            # A request held up by a lock holds its connection: the pool's one for requests.
            with psycopg.connect(url) as lock, ThreadPoolExecutor(1) as pool:
                lock.execute("LOCK TABLE notify_channels IN ACCESS EXCLUSIVE MODE")
                held = pool.submit(account.get, "/api/v1/notify/channels")
                time.sleep(1)
                assert not held.done()
                for resp, started in busy_replies(lambda path, **kw: s.get(server.url + path, timeout=30, **kw),
                                                  account.api_key):
                    assert_busy(resp, started)
                lock.rollback()
                assert held.result(timeout=30).status_code == 200
            resp = account.get("/api/v1/runs")
            assert resp.status_code == 200, resp.text
            log = server.log_path.read_text()
            assert "no database connection was free in time" in log and "Traceback" not in log, log[-3000:]
        finally:
            server.stop()


def test_requests_past_a_full_pool_on_sqlite_are_told_the_server_is_busy(tiny_pool, tmp_path):
    # SQLite's readers are never blocked by its writer: what holds the connections here is the
    # test, through the app's own engine.
    url = f"sqlite:///{tmp_path / 'hyperdash.db'}"
    with TestClient(create_app(url), raise_server_exceptions=False) as client:
        api = Api(client)
        engine = client.app.state.store.engine
        held = [engine.connect() for _ in range(3 - engine.pool.checkedout())]
        try:
            for resp, started in busy_replies(client.get, api.api_key):
                assert_busy(resp, started)
        finally:
            for conn in held:
                conn.close()
        assert api.get("/api/v1/runs").status_code == 200


@pytest.mark.parametrize(("name", "value"), [
    ("HYPERDASH_DB_POOL_SIZE", "2"), ("HYPERDASH_DB_POOL_SIZE", "many"), ("HYPERDASH_DB_POOL_SIZE", "4.5"),
    ("HYPERDASH_DB_POOL_TIMEOUT", "0"), ("HYPERDASH_DB_POOL_TIMEOUT", "soon"), ("HYPERDASH_DB_POOL_TIMEOUT", "nan"),
    ("HYPERDASH_DB_POOL_TIMEOUT", "inf"),
])
def test_a_pool_setting_that_cannot_work_is_refused_in_one_line(monkeypatch, tmp_path, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=f"^{name} must be .*, not '{value}'$"):
        Store(f"sqlite:///{tmp_path / 'hyperdash.db'}")
    assert not (tmp_path / "hyperdash.db").exists()  # (refused before anything was made)

"""A fresh PostgreSQL schema of its own for a test that starts server processes on it, and a
proxy to it that the test can cut (an outage)."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from urllib.parse import quote, urlsplit, urlunsplit

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


class CuttableProxy:
    """A TCP proxy on a loopback port to ``target``; ``cut()`` drops every connection and
    refuses new ones until ``mend()``, as a database host that went away; ``stall()`` passes
    nothing on, either way, until ``mend()``, as a host that drops every packet."""

    def __init__(self, target: tuple[str, int]):
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.open = threading.Event()
        self.open.set()
        self.flowing = threading.Event()
        self.flowing.set()
        self.pairs: list[tuple[socket.socket, socket.socket]] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.open.is_set():
                client.close()
                continue
            self.flowing.wait()  # (the connection is made, but nothing answers it)
            upstream = socket.create_connection(self.target)
            with self.lock:
                self.pairs.append((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                self.flowing.wait()
                sink.sendall(data)
        except OSError:
            pass
        for s in (source, sink):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> None:
        self.open.clear()
        with self.lock:
            pairs, self.pairs = self.pairs, []
        for pair in pairs:
            for s in pair:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def stall(self) -> None:
        self.flowing.clear()

    def mend(self) -> None:
        self.open.set()
        self.flowing.set()

    def close(self) -> None:
        self.flowing.set()
        self.cut()
        self.listener.close()


@contextlib.contextmanager
def schema_behind_proxy() -> Iterator[tuple[str, CuttableProxy]]:
    """``(db_url, proxy)``: a fresh schema (see :func:`fresh_schema`) reached through a
    :class:`CuttableProxy`."""
    with fresh_schema() as url:
        parts = urlsplit(url)
        proxy = CuttableProxy((parts.hostname or "127.0.0.1", parts.port or 5432))
        netloc = parts.netloc.rsplit("@", 1)
        host = f"127.0.0.1:{proxy.port}"
        try:
            yield urlunsplit(parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host)), proxy
        finally:
            proxy.close()

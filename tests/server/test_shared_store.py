"""Stores of several processes on one PostgreSQL: the relay between them (big facts, signals, a
lost connection) and sweeps that run in one of them per period."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest
from pg_schema import PG_URL, fresh_schema

from hyperdash.server.batch import Line
from hyperdash.server.facts import LinesStored
from hyperdash.server.relay import NOTIFY_LIMIT
from hyperdash.server.store import Store

pytestmark = pytest.mark.postgres


class Result:
    """A writer job's result that carries facts."""

    def __init__(self, facts):
        self.facts = facts


def lines(count: int, width: int) -> LinesStored:
    return LinesStored(1, 1, "run", tuple(Line(i + 1, 0, "stdout", "x" * width, 0, 0) for i in range(count)))


def wait(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "not within the time"
        time.sleep(0.02)


@pytest.fixture
def stores():
    """Two stores on one fresh schema, as two processes have."""
    with fresh_schema() as url:
        a, b = Store(url), Store(url)
        yield a, b
        a.close()
        b.close()


def test_facts_small_and_big_reach_every_store_in_commit_order(stores):
    a, b = stores
    heard: list = []
    b.everywhere.subscribe(lambda facts: heard.extend(facts), name="test")
    sent = [lines(1, 10), lines(3, NOTIFY_LIMIT), lines(2, 100)]  # the second through the table
    for fact in sent:
        a.writer.call(lambda conn, fact=fact: Result([fact]))
    wait(lambda: len(heard) == 3)
    assert heard == sent


def test_a_rolled_back_transaction_relays_nothing(stores):
    a, b = stores
    heard: list = []
    b.everywhere.subscribe(lambda facts: heard.extend(facts), name="test")

    def fails(conn):
        a.relay.publish(conn, [lines(1, 5)])
        raise RuntimeError("rolled back")

    with pytest.raises(RuntimeError):
        a.writer.call(fails)
    a.writer.call(lambda conn: Result([lines(1, 7)]))
    wait(lambda: heard)
    time.sleep(0.2)
    assert [f.lines[0].text for f in heard] == ["x" * 7]


def test_signals_reach_every_store(stores):
    a, b = stores
    called = threading.Event()
    b.on_signal("test", called.set)
    a.writer.call(lambda conn: a.signal(conn, "test"))
    assert called.wait(5)


def test_a_lost_connection_is_opened_again_and_the_subscribers_told(stores):
    a, b = stores
    heard: list = []
    missed = threading.Event()
    signalled = threading.Event()
    b.everywhere.subscribe(lambda facts: heard.extend(facts), name="test", on_overflow=lambda n: missed.set())
    b.on_signal("keys", signalled.set)
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        killed = conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query = %s",
                              (f'LISTEN "{b.relay.channel}"',)).fetchall()
    assert len(killed) == 2  # (both stores listen on the same channel)
    assert missed.wait(10) and signalled.wait(10)  # what came meanwhile must be read from the store

    def relayed() -> bool:
        a.writer.call(lambda conn: Result([lines(1, 3)]))
        time.sleep(0.2)
        return bool(heard)

    wait(relayed)


def test_a_sweep_runs_in_one_store_per_period(stores):
    runs: list[str] = []
    for name, store in zip("ab", stores, strict=True):
        store.sweep("test", 0.5, lambda conn, name=name: runs.append(name))
    time.sleep(3.2)
    # Each store's timer fires about 6 times: the sweep runs about once per half second in all.
    assert 4 <= len(runs) <= 8, runs

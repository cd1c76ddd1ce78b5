"""The store's dispatcher: every subscriber gets each commit's facts in order, on its own thread;
a failing or slow subscriber holds up neither the writer nor the other subscribers."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import pytest

from hyperdash.server.announce import Dispatcher
from hyperdash.server.facts import RunLost, RunState
from hyperdash.server.store import Store

DEADLINE = 10  # seconds: every wait below is for a condition, bounded by this


def fact(n: int) -> RunLost:
    state = RunState(f"run-{n}", None, "lost", 0, None, 0, None, None, None, None, None, n)
    return RunLost(1, n, f"run-{n}", state)


def s_tuples(got):
    return [tuple(facts) for facts in got]


class Collector:
    """A subscriber that keeps what it gets; ``gate`` (when given) holds it inside its callback."""

    def __init__(self, gate: threading.Event | None = None, fail: bool = False):
        self.got: list[tuple] = []
        self.calls = 0
        self.gate = gate
        self.fail = fail
        self.inside = threading.Event()
        self.missed: list[int] = []
        self.threads: set[str] = set()
        self._changed = threading.Condition()

    def __call__(self, facts) -> None:
        self.threads.add(threading.current_thread().name)
        self.inside.set()
        if self.gate is not None:
            assert self.gate.wait(DEADLINE)
        with self._changed:
            self.calls += 1
            if not self.fail:
                self.got.append(facts)
            self._changed.notify_all()
        if self.fail:
            raise RuntimeError("this subscriber always fails")

    def on_overflow(self, missed: int) -> None:
        with self._changed:
            self.missed.append(missed)
            self._changed.notify_all()

    def wait_for(self, predicate) -> None:
        with self._changed:
            assert self._changed.wait_for(lambda: predicate(self), DEADLINE), "the subscriber never got it"


@pytest.fixture
def dispatcher():
    d = Dispatcher()
    yield d
    d.close(timeout=DEADLINE)


def test_each_subscriber_gets_every_commit_in_order_off_the_publishing_thread(dispatcher):
    a, b = Collector(), Collector()
    dispatcher.subscribe(a, name="a")
    dispatcher.subscribe(b, name="b")
    commits = [(fact(2 * n), fact(2 * n + 1)) for n in range(200)]
    for commit in commits:
        dispatcher.publish(list(commit))
    dispatcher.publish([])  # nothing happened: nothing is delivered
    for sub in (a, b):
        sub.wait_for(lambda s: len(s.got) == len(commits))
        assert s_tuples(sub.got) == commits
        assert sub.threads.isdisjoint({threading.current_thread().name})
    assert len(a.threads | b.threads) == 2  # a thread each


def test_a_failing_subscriber_breaks_nothing(dispatcher, caplog):
    broken, fine = Collector(fail=True), Collector()
    dispatcher.subscribe(broken, name="broken")
    dispatcher.subscribe(fine, name="fine")
    for n in range(5):
        dispatcher.publish([fact(n)])
    fine.wait_for(lambda s: len(s.got) == 5)
    broken.wait_for(lambda s: s.calls == 5)  # called again after each failure
    assert s_tuples(fine.got) == [(fact(n),) for n in range(5)]
    assert "subscriber 'broken' failed" in caplog.text


def test_a_slow_subscriber_holds_up_neither_the_publisher_nor_the_others(dispatcher):
    gate = threading.Event()
    slow, quick = Collector(gate=gate), Collector()
    slow_sub = dispatcher.subscribe(slow, name="slow", max_pending=3, on_overflow=slow.on_overflow)
    dispatcher.subscribe(quick, name="quick")
    dispatcher.publish([fact(0)])
    assert slow.inside.wait(DEADLINE)  # the slow one is stuck in its first call
    for n in range(1, 8):
        dispatcher.publish([fact(n)])  # returns at once, though the slow one is stuck
    quick.wait_for(lambda s: len(s.got) == 8)
    assert slow.got == [] and not gate.is_set()
    # Three lists wait for the slow one; the four after them were dropped for it alone.
    assert slow_sub.dropped == 4
    gate.set()
    slow.wait_for(lambda s: len(s.got) == 4 and s.missed == [4])
    assert s_tuples(slow.got) == [(fact(n),) for n in range(4)]
    assert s_tuples(quick.got) == [(fact(n),) for n in range(8)]


def test_closing_delivers_what_is_queued_first():
    dispatcher = Dispatcher()
    gate = threading.Event()
    sub = Collector(gate=gate)
    dispatcher.subscribe(sub, name="late")
    for n in range(3):
        dispatcher.publish([fact(n)])
    gate.set()
    dispatcher.close(timeout=DEADLINE)
    assert s_tuples(sub.got) == [(fact(n),) for n in range(3)]
    dispatcher.publish([fact(9)])  # after close: delivered to nobody, and no error
    with pytest.raises(RuntimeError):
        dispatcher.subscribe(Collector(), name="too late")


@dataclass
class Announcing:
    """What a writer job returns when it has facts to announce."""

    facts: list


def test_the_writer_commits_and_answers_while_a_subscriber_is_stuck(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'hyperdash.db'}")
    gate = threading.Event()
    stuck = Collector(gate=gate)
    store.dispatcher.subscribe(stuck, name="stuck")
    try:
        assert store.writer.call(lambda conn: Announcing([fact(0)]), timeout=DEADLINE).facts == [fact(0)]
        assert stuck.inside.wait(DEADLINE)  # the subscriber is stuck in its first call
        # Each call waits for its commit; none of them waits for the stuck subscriber.
        for n in range(1, 5):
            assert store.writer.call(lambda conn, n=n: Announcing([fact(n)]), timeout=DEADLINE).facts == [fact(n)]
        assert stuck.got == []
        # Jobs committed together are announced together, in job order.
        jobs = [store.writer.submit(lambda conn, n=n: Announcing([fact(n)])) for n in range(5, 9)]
        for job in jobs:
            job.result(DEADLINE)
        # A job without facts announces nothing.
        assert store.writer.call(lambda conn: 42, timeout=DEADLINE) == 42
    finally:
        gate.set()
        store.close()
    assert [f for facts in stuck.got for f in facts] == [fact(n) for n in range(9)]
    assert stuck.got[0] == (fact(0),)

"""What ingest announces: the facts a subscriber of the store gets for what was stored, through
the real app on each store; and that they travel as JSON unchanged."""

from __future__ import annotations

import threading
import uuid

from server_helpers import env, log

from hyperdash import events
from hyperdash.server import facts as f
from hyperdash.server.batch import NUMBERED_FROM, Line
from hyperdash.server.ingest import mark_lost


class Subscriber:
    def __init__(self, app):
        self.got: list = []
        self._changed = threading.Condition()
        app.state.store.dispatcher.subscribe(self, name="test")

    def __call__(self, facts) -> None:
        with self._changed:
            self.got += facts
            self._changed.notify_all()

    def take(self, count: int) -> list:
        """The next ``count`` facts (waiting for them), and no more so far."""
        with self._changed:
            assert self._changed.wait_for(lambda: len(self.got) >= count, 10), self.got
            taken, self.got = self.got[:count], self.got[count:]
            return taken


def test_a_runs_life_is_announced(api):
    app = api.client.app
    sub = Subscriber(app)
    run = str(uuid.uuid4())
    api.ok([env("run_started", run, {"job_name": "told", "host": "box", "pid": 7}, seq=1),
            log(run, 2, "one"), log(run, 3, "two", stream="stderr")])
    created, lines, started = sub.take(3)
    assert type(created) is f.RunCreated and type(lines) is f.LinesStored and type(started) is f.RunStarted
    user_id, run_id = created.user_id, created.run_id
    assert {(x.user_id, x.run_id, x.run_uuid) for x in (created, lines, started)} == {(user_id, run_id, run)}
    assert lines.lines == (Line(2, lines.lines[0].ts, "stdout", "one", 0, 0),
                           Line(3, lines.lines[1].ts, "stderr", "two", 0, 0))
    assert (started.run.name, started.run.host, started.run.pid, started.run.status) == ("told", "box", 7, "running")

    # Lines only: one fact, nothing about the run itself.
    api.ok([log(run, 4, "three")])
    assert [type(x) for x in sub.take(1)] == [f.LinesStored]
    # A resent batch stores nothing and announces nothing.
    api.ok([log(run, 4, "three")])
    api.ok([env("metric", run, {"name": "loss", "value": 0.5, "timestamp": 5, "is_internal": False, "step": 1}, seq=5),
            env("param", run, {"params": {"lr": 0.1}}, seq=6)])
    points, params = sub.take(2)
    assert [(p.seq, p.name, p.value, p.step) for p in points.points] == [(5, "loss", 0.5, 1)]
    assert [(p.seq, p.params) for p in params.params] == [(6, {"lr": 0.1})]

    # Silent too long: lost; a heartbeat brings it back.
    later = events.now_ms() + int(app.state.lost_timeout * 1000) + 1000
    app.state.store.writer.call(lambda conn: mark_lost(conn, app.state.lost_timeout, app.state.run_cache, now_ms=later))
    (lost,) = sub.take(1)
    assert type(lost) is f.RunLost and lost.run.status == "lost" and lost.run_id == run_id
    api.ok(env("heartbeat", run, {}))
    (back,) = sub.take(1)
    assert type(back) is f.RunBack and back.run.status == "running"

    api.ok([env("run_ended", run, {"final_status": "killed", "exit_code": -15, "signal": "SIGTERM"}, seq=7)])
    (ended,) = sub.take(1)
    assert type(ended) is f.RunEnded
    assert (ended.status, ended.exit_code, ended.signal) == ("killed", -15, "SIGTERM")
    assert (ended.run.status, ended.run.max_seq) == ("killed", 7) and ended.run.ended_at is not None
    assert sub.got == []


def test_original_clients_output_is_announced_as_lines(api):
    sub = Subscriber(api.client.app)
    run = str(uuid.uuid4())
    api.ok(env("log", run, {"uuid": "a", "level": "INFO", "body": "a\nb\npart"}))
    created, lines = sub.take(2)
    assert type(created) is f.RunCreated and created.run.name is None
    # (numbered in the server's own range, above every seq a sender may send)
    assert [(x.seq - NUMBERED_FROM, x.text) for x in lines.lines] == [(1, "a"), (2, "b")]
    api.ok(env("run_ended", run, {"final_status": "success"}))
    lines, ended = sub.take(2)
    assert [(x.seq - NUMBERED_FROM, x.text) for x in lines.lines] == [(3, "part")]  # held output goes before the end
    assert type(ended) is f.RunEnded and ended.run.max_seq == NUMBERED_FROM + 4


def test_a_progress_line_replaced_in_its_batch_is_not_announced(api):
    sub = Subscriber(api.client.app)
    run = str(uuid.uuid4())
    api.ok([log(run, 1, " 10%", progress=True), log(run, 2, " 20%", progress=True), log(run, 3, "done")])
    _, lines = sub.take(2)
    assert [x.text for x in lines.lines] == ["done"]


def test_an_erased_progress_line_is_announced_yet_not_read_back(api):
    sub = Subscriber(api.client.app)
    run = str(uuid.uuid4())
    api.ok([log(run, 1, " 10%", progress=True)])
    _, drawn = sub.take(2)
    assert [x.text for x in drawn.lines] == [" 10%"]
    api.ok([log(run, 2, "", progress=True)])  # told, so that an open page removes the bar
    (erased,) = sub.take(1)
    assert type(erased) is f.LinesStored and [(x.seq, x.text, x.progress) for x in erased.lines] == [(2, "", True)]
    api.ok([log(run, 3, "next")])
    (lines,) = sub.take(1)
    assert type(lines) is f.LinesStored and [x.text for x in lines.lines] == ["next"]
    # A reload reads neither the bar nor its erasure.
    assert api.lines(run) == ["next"]


def test_a_replay_is_no_sign_of_life(api):
    app = api.client.app
    sub = Subscriber(app)
    run = str(uuid.uuid4())
    api.ok([env("run_started", run, {"job_name": "killed"}, seq=1)])
    sub.take(2)
    later = events.now_ms() + int((app.state.lost_timeout + 1) * 1000)
    app.state.store.writer.call(lambda conn: mark_lost(conn, app.state.lost_timeout, app.state.run_cache, now_ms=later))
    (lost,) = sub.take(1)
    assert type(lost) is f.RunLost
    api.ok([log(run, 2, "last words")], {events.REPLAY_HEADER: "1"})
    api.ok([env("run_ended", run, {"final_status": "failure"}, seq=3)], {events.REPLAY_HEADER: "1"})
    lines, ended = sub.take(2)  # (no RunBack between them)
    assert [x.text for x in lines.lines] == ["last words"]
    assert type(ended) is f.RunEnded and ended.run.status == "failure"


def test_facts_travel_as_json_unchanged(api):
    app = api.client.app
    sub = Subscriber(app)
    run = str(uuid.uuid4())
    api.ok([env("run_started", run, {"job_name": "jsón"}, seq=1), log(run, 2, "ünïcode \x1b[1m"),
            env("metric", run, {"name": "m", "value": 1e-9, "timestamp": 3, "is_internal": True}, seq=3),
            env("param", run, {"params": {"a": None, "b": True, "c": "x"}}, seq=4),
            env("run_ended", run, {"final_status": "failure", "exit_code": 3}, seq=5)])
    told = sub.take(6)
    assert {type(x) for x in told} == {f.RunCreated, f.LinesStored, f.PointsStored, f.ParamsStored,
                                       f.RunStarted, f.RunEnded}
    data = f.to_json(told)
    assert f.from_json(data) == told
    assert f.from_json(data.decode()) == told

"""Metric rules: checked by the server on each point as it is stored.

A rule watches one metric of one run, or of every run of a name (see
:func:`hyperdash.events.check_alert` for its settings): a value that is NaN or infinite, a value
above or below a threshold, or no improvement for N points or M minutes (of the points' own
times). A rule on a metric that does not exist yet waits for it.

A rule fires once, then stays quiet until it is armed again by the metric's recovery: a finite
value (for ``nan``), a value back on the right side of the threshold (``above``, ``below``), a new
best value (no improvement). Each firing is stored (``rule_firings``) and announced
(``RuleFired``), for the run's page and the notification channels.

Every point costs a constant per rule watching its metric: where each rule stands on each run
(armed or fired, the best value so far and since when) is kept in ``rule_states`` and, on the
writer, in a :class:`RuleCache`, so the metric's history is never read again. The writer's
cache re-reads an account's rules and their states every :attr:`RuleCache.TTL_MS` at most (what
other server processes changed shows within that) and at once after a change made through its
own writer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import delete, or_, select, update
from sqlalchemy.engine import Connection

from .. import events as ev
from .batch import Mark, Point
from .facts import Fact, RuleFired, RunState
from .store import rule_firings, rule_states, rules, runs
from .views import iso

__all__ = ["Rule", "RuleCache", "check_points", "add_rule", "rules_from_marks", "rule_json", "firing_json",
           "run_rules", "run_firings", "delete_rule", "name_rules", "find_rule", "firing_of_fact"]


@dataclass(frozen=True)
class Rule:
    """A stored rule: for one run (``run_id``) or every run of ``name``."""

    id: int
    user_id: int
    run_id: int | None
    name: str | None
    spec: dict[str, Any]  # as hyperdash.events.check_alert returns it
    source: str
    created_at: int

    @property
    def metric(self) -> str:
        return self.spec["metric"]

    @property
    def description(self) -> str:
        return ev.describe_alert(self.spec)


class _State:
    """Where a rule stands on a run."""

    __slots__ = ("fired", "best", "best_ts", "since_best", "stored", "dirty")

    def __init__(self, fired: int = 0, best: float | None = None, best_ts: int | None = None, since_best: int = 0,
                 stored: bool = False):
        self.fired, self.best, self.best_ts, self.since_best = fired, best, best_ts, since_best
        self.stored = stored
        self.dirty = False


def _rule(row: Any) -> Rule:
    return Rule(row.id, row.user_id, row.run_id, row.name, orjson.loads(row.spec), row.source, row.created_at)


class RuleCache:
    """The writer's copy of the rules of the accounts it wrote for lately, and of their states.
    Used on the writer thread only; cleared when a transaction is rolled back."""

    TTL_MS = 2000
    MAX_STATES = 100_000

    def __init__(self) -> None:
        self._rules: dict[int, tuple[int, list[Rule]]] = {}  # user id -> (loaded at, rules)
        self._states: dict[tuple[int, int], _State] = {}

    def clear(self) -> None:
        self._rules.clear()
        self._states.clear()

    def forget_states(self) -> None:
        """Forget where the rules stand (read again from the store when next needed)."""
        self._states.clear()

    def forget(self, user_id: int) -> None:
        """Re-read the account's rules next time (they changed)."""
        self._rules.pop(user_id, None)

    def forget_run(self, user_id: int, run_id: int) -> None:
        """Drop what is held of a deleted run: its states, and its account's rules (its own go)."""
        self._rules.pop(user_id, None)
        self._states = {key: state for key, state in self._states.items() if key[1] != run_id}

    def for_run(self, conn: Connection, user_id: int, run_id: int, name: str | None, now: int) -> list[Rule]:
        """The rules that watch a run: its own and its name's, one of each condition (a run's
        own rule and its name's may say the same: one crossing is one firing)."""
        held = self._rules.get(user_id)
        if held is None or now - held[0] > self.TTL_MS or now < held[0]:
            found = [_rule(row) for row in conn.execute(
                select(rules).where(rules.c.user_id == user_id).order_by(rules.c.id))]
            held = self._rules[user_id] = (now, found)
            # Their states are read again too: another process may have moved them meanwhile.
            ids = {r.id for r in found}
            if ids and self._states:
                self._states = {key: state for key, state in self._states.items() if key[0] not in ids}
        watching: dict[bytes, Rule] = {}
        for rule in held[1]:
            if rule.run_id == run_id or (rule.run_id is None and rule.name == name):
                watching.setdefault(orjson.dumps(rule.spec, option=orjson.OPT_SORT_KEYS), rule)
        return list(watching.values())

    def state(self, conn: Connection, rule_id: int, run_id: int) -> _State:
        key = (rule_id, run_id)
        state = self._states.get(key)
        if state is None:
            if len(self._states) >= self.MAX_STATES:
                self._states.clear()  # (states are stored: they are read again when needed)
            row = conn.execute(select(rule_states).where(rule_states.c.rule_id == rule_id,
                                                         rule_states.c.run_id == run_id)).first()
            state = _State(row.fired, row.best, row.best_ts, row.since_best, True) if row else _State()
            self._states[key] = state
        return state


def _fires(spec: dict[str, Any], state: _State, value: float, ts: int) -> bool:
    """Move ``state`` on by one point; whether the rule fires on it."""
    kind = spec["kind"]
    finite = math.isfinite(value)
    if kind == "nan":
        bad = not finite
    elif not finite:
        return False  # a NaN is neither above, below nor better than anything
    elif kind == "above":
        bad = value > spec["above"]
    elif kind == "below":
        bad = value < spec["below"]
    else:  # no improvement
        best = state.best
        if best is None or (value < best if spec["mode"] == "min" else value > best):
            state.best, state.best_ts, state.since_best, state.fired = value, ts, 0, 0
            state.dirty = True
            return False
        state.since_best += 1
        state.dirty = True
        patience, minutes = spec["patience"], spec["minutes"]
        bad = ((patience is not None and state.since_best >= patience)
               or (minutes is not None and state.best_ts is not None and ts - state.best_ts >= minutes * 60_000))
        if bad and not state.fired:
            state.fired = 1
            return True
        return False
    if bad and not state.fired:
        state.fired, state.dirty = 1, True
        return True
    if not bad and state.fired:
        state.fired, state.dirty = 0, True  # recovered: armed again
    return False


def _value_text(value: float) -> str:
    return repr(value) if math.isfinite(value) else ev.nonfinite_text(value)


def check_points(conn: Connection, cache: RuleCache, user_id: int, run_id: int, run_uuid: str, run: RunState,
                 points: list[Point], odd: list[Mark], now: int) -> list[Fact]:
    """Check the points just stored for a run (``odd``: its NaN and infinite points, kept as
    marks) against the rules that watch it; store and return a ``RuleFired`` for each firing."""
    watching = cache.for_run(conn, user_id, run_id, run.name, now)
    if not watching:
        return []
    by_metric: dict[str, list[Rule]] = {}
    for rule in watching:
        by_metric.setdefault(rule.metric, []).append(rule)
    # (every point stored has its seq by now)
    seen = [(p.seq or 0, p.ts, p.name, p.value, p.step) for p in points if p.name in by_metric]
    seen += [(m.seq or 0, m.ts, m.payload["name"], ev.NONFINITE_VALUES[m.payload["value"]], m.payload["step"])
             for m in odd if m.payload["name"] in by_metric]
    if not seen:
        return []
    seen.sort(key=lambda point: point[0])
    facts: list[Fact] = []
    touched: list[tuple[int, _State]] = []
    for seq, ts, name, value, step in seen:
        for rule in by_metric[name]:
            state = cache.state(conn, rule.id, run_id)
            was_dirty = state.dirty
            if _fires(rule.spec, state, value, ts):
                text = _value_text(value)
                firing_id = conn.execute(rule_firings.insert().values(
                    rule_id=rule.id, run_id=run_id, metric=name, description=rule.description, value=text,
                    step=step, seq=seq, ts=ts, fired_at=now).returning(rule_firings.c.id)).scalar_one()
                facts.append(RuleFired(user_id, run_id, run_uuid, rule.id, firing_id, rule.description, name, text,
                                       step, seq, ts, now, run))
            if state.dirty and not was_dirty:
                touched.append((rule.id, state))
    for rule_id, state in touched:  # once per rule per batch, however many points
        values = {"fired": state.fired, "best": state.best, "best_ts": state.best_ts, "since_best": state.since_best}
        if state.stored:
            conn.execute(update(rule_states).where(rule_states.c.rule_id == rule_id, rule_states.c.run_id == run_id)
                         .values(**values))
        else:
            conn.execute(rule_states.insert().values(rule_id=rule_id, run_id=run_id, **values))
            state.stored = True
        state.dirty = False
    return facts


def add_rule(conn: Connection, cache: RuleCache | None, user_id: int, spec: dict[str, Any], *, run_id: int | None,
             name: str | None, source: str, now: int) -> int:
    """Store a checked rule (a writer job's step) for a run or a name; its id. The same rule
    for the same run or name is stored once: its id is returned again."""
    scope = rules.c.run_id == run_id if run_id is not None else (rules.c.run_id.is_(None) & (rules.c.name == name))
    text = orjson.dumps(spec, option=orjson.OPT_SORT_KEYS).decode()
    same = conn.execute(select(rules.c.id).where(rules.c.user_id == user_id, scope, rules.c.spec == text)).scalar()
    if same is not None:
        return same
    rule_id = conn.execute(rules.insert().values(
        user_id=user_id, run_id=run_id, name=name if run_id is None else None, metric=spec["metric"], spec=text,
        source=source, created_at=now).returning(rules.c.id)).scalar_one()
    if cache is not None:
        cache.forget(user_id)
    return rule_id


def rules_from_marks(conn: Connection, cache: RuleCache, user_id: int, run_id: int, marks: list[Mark],
                     now: int) -> None:
    """Store the rules a job set (its ``alert`` events, checked already)."""
    for mark in marks:
        add_rule(conn, cache, user_id, dict(mark.payload), run_id=run_id, name=None, source="code", now=now)


def delete_rule(conn: Connection, cache: RuleCache | None, user_id: int, rule_id: int) -> bool:
    """Delete one of the account's rules, its states and firings kept apart; whether it was there."""
    gone = conn.execute(delete(rules).where(rules.c.id == rule_id, rules.c.user_id == user_id)).rowcount
    if gone:
        conn.execute(delete(rule_states).where(rule_states.c.rule_id == rule_id))
        if cache is not None:
            cache.forget(user_id)
    return bool(gone)


def rule_json(rule: Rule, run_uuid: str | None) -> dict[str, Any]:
    """A rule as the API shows it."""
    spec = rule.spec
    return {"id": rule.id, "scope": "run" if rule.run_id is not None else "name", "run_uuid": run_uuid,
            "name": rule.name, "metric": spec["metric"], "kind": spec["kind"], "above": spec["above"],
            "below": spec["below"], "patience": spec["patience"], "minutes": spec["minutes"], "mode": spec["mode"],
            "description": rule.description, "source": rule.source, "created_at": iso(rule.created_at)}


def firing_json(row: Any) -> dict[str, Any]:
    """A ``rule_firings`` row as the API shows it; ``value`` is null for NaN and infinities,
    which ``value_text`` names."""
    return _firing(row.id, row.rule_id, row.description, row.metric, row.value, row.step, row.seq, row.ts,
                   row.fired_at)


def firing_of_fact(fact: RuleFired) -> dict[str, Any]:
    """A firing as the API shows it, from its fact (for the live streams)."""
    return _firing(fact.firing_id, fact.rule_id, fact.rule, fact.metric, fact.value, fact.step, fact.seq, fact.ts,
                   fact.fired_at)


def _firing(firing_id: int, rule_id: int, description: str, metric: str, text: str, step: int | None, seq: int,
            ts: int, fired_at: int) -> dict[str, Any]:
    value = float(text)
    return {"id": firing_id, "rule_id": rule_id, "description": description, "metric": metric,
            "value": value if math.isfinite(value) else None, "value_text": text, "step": step,
            "seq": seq, "timestamp": iso(ts), "fired_at": iso(fired_at)}


def run_rules(conn: Connection, user_id: int, run: Any) -> list[dict[str, Any]]:
    """The rules that watch a run (a ``runs`` row): its own, then its name's."""
    found = conn.execute(select(rules).where(rules.c.user_id == user_id, or_(
        rules.c.run_id == run.id, (rules.c.run_id.is_(None) & (rules.c.name == run.name))))
        .order_by(rules.c.run_id.is_(None), rules.c.id)).all()
    return [rule_json(_rule(row), run.uuid if row.run_id is not None else None) for row in found]


def name_rules(conn: Connection, user_id: int, name: str | None) -> list[dict[str, Any]]:
    """The account's rules for every run of a name (of any name, with None)."""
    where = [rules.c.user_id == user_id, rules.c.run_id.is_(None)]
    if name is not None:
        where.append(rules.c.name == name)
    return [rule_json(_rule(row), None) for row in conn.execute(select(rules).where(*where).order_by(rules.c.id))]


def run_firings(conn: Connection, run_id: int) -> list[dict[str, Any]]:
    """Every firing on a run, oldest first."""
    return [firing_json(row) for row in conn.execute(
        select(rule_firings).where(rule_firings.c.run_id == run_id).order_by(rule_firings.c.id))]


def find_rule(conn: Connection, user_id: int, rule_id: int) -> tuple[Rule, str | None] | None:
    """One of the account's rules and its run's uuid (None for a name's rule), or None."""
    row = conn.execute(select(rules, runs.c.uuid.label("run_uuid")).select_from(
        rules.outerjoin(runs, runs.c.id == rules.c.run_id)).where(rules.c.id == rule_id, rules.c.user_id == user_id)
    ).first()
    return (_rule(row), row.run_uuid) if row else None

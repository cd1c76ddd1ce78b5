"""The API of trouble detection under ``/api/v1``: metric rules (of a run, of every run of a
name), their firings, and stall windows (of a run, of a name). Everything is the caller's own:
another account's run, rule or name reads as not found."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import Field, Strict

from .. import events as ev
from ..settings import parse_duration
from . import queries, rules, stalls
from .api import MAX_ID, Reply, _errors
from .auth import User, current_user
from .errors import BadRequest, NotFound
from .run_refs import full_run_uuid
from .text import checked
from .views import JSONReply, iso

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", default_response_class=JSONReply)


# --- documented shapes -------------------------------------------------------------------------
class RuleSpec(Reply):
    """A rule: ``metric`` and exactly one of ``nan: true``, ``above``, ``below``, or
    ``patience`` (points) and/or ``minutes`` without improvement (``mode``: ``min``, lower is
    better, or ``max``)."""

    # (strict: true is not the threshold 1, nor "10" the number 10)
    metric: str = Field(description="the metric's name (it may not exist yet)")
    nan: bool = Field(False, strict=True)
    above: float | None = Field(None, strict=True)
    below: float | None = Field(None, strict=True)
    patience: int | None = Field(None, strict=True, description="no improvement for this many points")
    minutes: float | None = Field(None, strict=True, description="no improvement for this many minutes")
    mode: Literal["min", "max"] | None = Field(None, description="min: lower is better (default); max: higher")


class NameRuleSpec(RuleSpec):
    name: str = Field(description="the rule watches every run of this name")


class RuleOut(Reply):
    id: int
    scope: Literal["run", "name"]
    run_uuid: str | None
    name: str | None
    metric: str
    kind: Literal["nan", "above", "below", "plateau"]
    above: float | None
    below: float | None
    patience: int | None
    minutes: float | None
    mode: Literal["min", "max"] | None
    description: str
    source: Literal["code", "api"]
    created_at: str


class Firing(Reply):
    id: int
    rule_id: int
    description: str
    metric: str
    value: float | None = Field(description="null for NaN and infinities (see value_text)")
    value_text: str
    step: int | None
    seq: int
    timestamp: str = Field(description="when the point was measured")
    fired_at: str


class RunRules(Reply):
    rules: list[RuleOut]
    firings: list[Firing]


class Rules(Reply):
    rules: list[RuleOut]


class RuleDeleted(Reply):
    deleted: int


class RunStall(Reply):
    stall_after_s: float = Field(description="the run's stall window in seconds; 0: not watched")
    source: Literal["run", "name", "server"] = Field(description="where the window comes from")
    stalled_since: str | None
    last_progress_at: str | None


class NameStall(Reply):
    name: str
    stall_after_s: float


class StallSettings(Reply):
    default_s: float = Field(description="the server's default window; 0: off")
    names: list[NameStall]


class StallWindow(Reply):
    # (strict: true is no window, though lax JSON numbers would take it as 1)
    stall_after_s: Annotated[float, Strict()] | Annotated[str, Strict()] = Field(
        description="seconds, or a duration such as 90s, 10m, 1h; 0 or off: no stall detection for the name")


def _state(request: Request):
    return request.app.state


def _spec(body: RuleSpec) -> dict[str, Any]:
    checked(body.metric, "the metric name")
    try:
        return ev.check_alert(body.model_dump(exclude={"name"}))
    except ValueError as exc:
        raise BadRequest(str(exc), code="invalid_rule") from None


def _name(name: str) -> str:
    checked(name, "the run name")
    if not name or len(name) > ev.MAX_NAME_CHARS:
        raise BadRequest(f"a run name has 1 to {ev.MAX_NAME_CHARS} characters", code="invalid_name")
    return name


def _run(conn, user: User, run_uuid: str):
    checked(run_uuid, "the run uuid")
    return queries.find_run(conn, user.id, full_run_uuid(conn, user.id, run_uuid))


def _add(request: Request, user: User, spec: dict[str, Any], *, run_id: int | None, name: str | None) -> int:
    cache = _state(request).run_cache.rules
    return _state(request).store.writer.call(lambda conn: rules.add_rule(
        conn, cache, user.id, spec, run_id=run_id, name=name, source="api", now=ev.now_ms()))


def _one(request: Request, user: User, rule_id: int) -> dict[str, Any]:
    with _state(request).store.read() as conn:
        found = rules.find_rule(conn, user.id, rule_id)
    if found is None:
        raise NotFound("no such rule", code="rule_not_found")
    return rules.rule_json(*found)


# --- rules ------------------------------------------------------------------------------------
@router.get("/runs/{run_uuid}/rules", tags=["rules"], response_model=RunRules, responses=_errors(401, 404, 409))
def get_run_rules(run_uuid: str, request: Request, user: User = Depends(current_user)):
    """The rules that watch a run (its own, then its name's) and every time one fired on it."""
    with _state(request).store.read() as conn:
        run = _run(conn, user, run_uuid)
        return JSONReply({"rules": rules.run_rules(conn, user.id, run), "firings": rules.run_firings(conn, run.id)})


@router.post("/runs/{run_uuid}/rules", status_code=201, tags=["rules"], response_model=RuleOut,
             responses=_errors(400, 401, 404, 409, 422))
def add_run_rule(run_uuid: str, body: RuleSpec, request: Request, user: User = Depends(current_user)):
    """Add a rule for one run (the same rule twice is kept once)."""
    spec = _spec(body)
    with _state(request).store.read() as conn:
        run = _run(conn, user, run_uuid)
    return JSONReply(_one(request, user, _add(request, user, spec, run_id=run.id, name=None)), status_code=201)


@router.get("/rules", tags=["rules"], response_model=Rules, responses=_errors(400, 401))
def get_name_rules(request: Request, user: User = Depends(current_user),
                   name: str | None = Query(None, max_length=ev.MAX_NAME_CHARS,
                                            description="only the rules of this run name")):
    """The rules for every run of a name (of every name, without ``name``)."""
    with _state(request).store.read() as conn:
        return JSONReply({"rules": rules.name_rules(conn, user.id, None if name is None else _name(name))})


@router.post("/rules", status_code=201, tags=["rules"], response_model=RuleOut, responses=_errors(400, 401, 422))
def add_name_rule(body: NameRuleSpec, request: Request, user: User = Depends(current_user)):
    """Add a rule for every run of a name, those running now and those to come."""
    spec = _spec(body)
    name = _name(body.name)
    return JSONReply(_one(request, user, _add(request, user, spec, run_id=None, name=name)), status_code=201)


@router.delete("/rules/{rule_id}", tags=["rules"], response_model=RuleDeleted, responses=_errors(401, 404))
def delete_rule(request: Request, rule_id: int = Path(ge=1, le=MAX_ID), user: User = Depends(current_user)):
    """Delete a rule (its past firings stay on their runs)."""
    cache = _state(request).run_cache.rules
    if not _state(request).store.writer.call(lambda conn: rules.delete_rule(conn, cache, user.id, rule_id)):
        raise NotFound("no such rule", code="rule_not_found")
    return JSONReply({"deleted": rule_id})


# --- stall windows ----------------------------------------------------------------------------
@router.get("/runs/{run_uuid}/stall", tags=["stalls"], response_model=RunStall, responses=_errors(401, 404, 409))
def get_run_stall(run_uuid: str, request: Request, user: User = Depends(current_user)):
    """A run's stall window, where it comes from, and whether it is stalled."""
    with _state(request).store.read() as conn:
        run = _run(conn, user, run_uuid)
        window, source = stalls.stall_window(conn, run, _state(request).stall_after_ms)
    return JSONReply({"stall_after_s": window / 1000, "source": source,
                      "stalled_since": iso(run.stalled_since) if run.status == ev.RUNNING else None,
                      "last_progress_at": iso(run.last_progress_at)})


@router.get("/stalls", tags=["stalls"], response_model=StallSettings, responses=_errors(401))
def get_stall_settings(request: Request, user: User = Depends(current_user)):
    """The server's default stall window and the windows set for run names."""
    with _state(request).store.read() as conn:
        names = stalls.name_windows(conn, user.id)
    return JSONReply({"default_s": _state(request).stall_after_ms / 1000,
                      "names": [{"name": name, "stall_after_s": ms / 1000} for name, ms in names.items()]})


@router.put("/stalls/{name:path}", tags=["stalls"], response_model=NameStall, responses=_errors(400, 401, 422))
def set_stall_window(name: str, body: StallWindow, request: Request, user: User = Depends(current_user)):
    """Set the stall window of every run of a name (a run's own window, from its job, still wins)."""
    name = _name(name)
    try:
        seconds = parse_duration(body.stall_after_s)
    except ValueError as exc:
        raise BadRequest(str(exc), code="invalid_duration") from None
    if seconds > ev.MAX_STALL_AFTER_S:
        raise BadRequest(f"a stall window is at most {ev.MAX_STALL_AFTER_S:g} seconds", code="invalid_duration")
    window_ms = int(seconds * 1000)
    _state(request).store.writer.call(lambda conn: stalls.set_name_window(conn, user.id, name, window_ms))
    return JSONReply({"name": name, "stall_after_s": window_ms / 1000})


@router.delete("/stalls/{name:path}", tags=["stalls"], response_model=NameStall, responses=_errors(400, 401))
def forget_stall_window(name: str, request: Request, user: User = Depends(current_user)):
    """Forget the window set for a name: its runs get the server's default again."""
    name = _name(name)
    _state(request).store.writer.call(lambda conn: stalls.set_name_window(conn, user.id, name, None))
    return JSONReply({"name": name, "stall_after_s": _state(request).stall_after_ms / 1000})

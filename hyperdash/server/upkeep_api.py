"""The API that keeps an account tidy: deleting runs, archiving them, how much each name's runs
take, and how long finished runs are kept."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field
from sqlalchemy import BigInteger, case, cast, func, select, update
from sqlalchemy.engine import Connection

from .. import events as ev
from .api import Reply, _errors, _state
from .auth import User, current_user
from .deletion import Deleted, RunStillRunning, mark_deleted, not_deleted, purge_step
from .errors import NotFound
from .facts import RunArchived
from .ingest import Stored
from .queries import find_run
from .retention import account_keep_days, checked_keep_days, set_account_keep_days
from .run_refs import full_run_uuid
from .stalls import run_state
from .store import runs
from .text import checked
from .views import JSONReply

__all__ = ["router", "delete_runs"]

router = APIRouter(prefix="/api/v1", default_response_class=JSONReply)


class DeletedRuns(Reply):
    deleted: list[str]


class Archived(Reply):
    uuid: str
    archived: bool


class NameStorage(Reply):
    name: str | None
    runs: int
    archived: int
    lines: int
    bytes: int
    points: int


class Storage(Reply):
    names: list[NameStorage]


class Settings(Reply):
    keep_days: int | None
    server_keep_days: int | None


class SettingsChange(BaseModel):
    keep_days: int | None = Field(..., strict=True, description="days from 1 to 36500, or null")


def delete_runs(state, user_id: int, where, force: bool, what: str) -> list[str]:
    """Delete the account's runs matching ``where`` (a condition on ``runs``): tombstone them in
    one writer job, then remove their rows step by step. Refuses (409) when one is running,
    unless ``force``; NotFound when none matches."""
    def job(conn):
        rows = conn.execute(select(runs).where(runs.c.user_id == user_id, where, not_deleted())).all()
        running = [r.uuid for r in rows if r.status == ev.RUNNING]
        if not rows or (running and not force):
            return rows, running
        return mark_deleted(conn, rows, "deleted", state.run_cache)

    writer = state.store.writer
    result = writer.call(job)
    if not isinstance(result, Deleted):
        rows, running = result
        if not rows:
            raise NotFound(f"no run {what}")
        raise RunStillRunning(
            f"{len(running)} of the runs ({', '.join(u[:8] for u in running[:5])}) still running: deleting a run that "
            "is being sent to loses what it sends next; delete it with force=true (the job is not stopped)",
            details={"running": running})
    while writer.call(lambda conn: purge_step(conn, result.run_ids)):
        pass
    return result.uuids


def _run_of(request: Request, user: User, run_uuid: str):
    checked(run_uuid, "the run uuid")
    with _state(request).store.read() as conn:
        return find_run(conn, user.id, full_run_uuid(conn, user.id, run_uuid))


@router.delete("/runs/{run_uuid}", tags=["runs"], response_model=DeletedRuns, responses=_errors(401, 404, 409))
def delete_run(run_uuid: str, request: Request, force: bool = Query(False, description="delete it even if running"),
               user: User = Depends(current_user)):
    """Delete the run: its lines, points, params and everything else of it. From then on its
    uuid is refused (410) to a job still sending. A running run is refused (409) unless ``force``."""
    row = _run_of(request, user, run_uuid)
    return {"deleted": delete_runs(_state(request), user.id, runs.c.id == row.id, force, row.uuid)}


@router.delete("/runs", tags=["runs"], response_model=DeletedRuns, responses=_errors(400, 401, 404, 409))
def delete_named_runs(request: Request,
                      name: str = Query(..., min_length=1, max_length=ev.MAX_NAME_CHARS, description="the whole name"),
                      force: bool = Query(False, description="delete them even if some are running"),
                      user: User = Depends(current_user)):
    """Delete every run with this name (archived ones too)."""
    checked(name, "name")
    return {"deleted": delete_runs(_state(request), user.id, runs.c.name == name, force, f"named {name!r}")}


def _set_archived(request: Request, user: User, run_uuid: str, archived: bool) -> dict:
    row = _run_of(request, user, run_uuid)
    when = ev.now_ms() if archived else None
    state = _state(request)

    def job(conn: Connection) -> Stored:
        changed = conn.execute(update(runs).where(
            runs.c.id == row.id, runs.c.archived_at.is_(None) if archived else runs.c.archived_at.is_not(None),
        ).values(archived_at=when)).rowcount
        if not changed:
            return Stored(0, 0, [])
        cached = state.run_cache.runs.get((user.id, row.uuid))  # (the writer's copy, kept true)
        if cached is not None:
            cached["archived_at"] = when
        # Announced, so that the pages open elsewhere take the run out of their list, or back in.
        fresh = find_run(conn, user.id, row.uuid)  # (as it stands in this transaction)
        return Stored(0, 0, [RunArchived(user.id, row.id, row.uuid, run_state(fresh._asdict()))])

    state.store.writer.call(job)
    return {"uuid": row.uuid, "archived": archived}


@router.post("/runs/{run_uuid}/archive", tags=["runs"], response_model=Archived, responses=_errors(401, 404, 409))
def archive_run(run_uuid: str, request: Request, user: User = Depends(current_user)):
    """Archive the run: out of the default lists (``archived=only`` lists it), kept whole."""
    return _set_archived(request, user, run_uuid, True)


@router.delete("/runs/{run_uuid}/archive", tags=["runs"], response_model=Archived, responses=_errors(401, 404, 409))
def unarchive_run(run_uuid: str, request: Request, user: User = Depends(current_user)):
    """Bring an archived run back to the default lists."""
    return _set_archived(request, user, run_uuid, False)


def _total(column):
    # (PostgreSQL sums big integers as numeric: back to an integer)
    return cast(func.coalesce(func.sum(column), 0), BigInteger)


@router.get("/names/storage", tags=["runs"], response_model=Storage, responses=_errors(401))
def name_storage(request: Request, user: User = Depends(current_user)):
    """How much each name's runs take (archived runs included), the largest first: from counters
    the runs keep as they are stored, never a scan of their lines."""
    query = (select(runs.c.name, func.count().label("runs"),
                    _total(case((runs.c.archived_at.is_not(None), 1), else_=0)).label("archived"),
                    _total(runs.c.line_count).label("lines"), _total(runs.c.log_bytes).label("bytes"),
                    _total(runs.c.point_count).label("points"))
             .where(runs.c.user_id == user.id, not_deleted()).group_by(runs.c.name)
             .order_by(_total(runs.c.log_bytes).desc(), runs.c.name))
    with _state(request).store.read() as conn:
        return {"names": [dict(row._mapping) for row in conn.execute(query)]}


def _settings(request: Request, user: User) -> dict:
    with _state(request).store.read() as conn:
        days = account_keep_days(conn, user.id)
    return {"keep_days": days, "server_keep_days": _state(request).keep_days}


@router.get("/users/settings", tags=["accounts"], response_model=Settings, responses=_errors(401))
def get_settings(request: Request, user: User = Depends(current_user)):
    """The account's settings: ``keep_days``, how many days its finished runs are kept (null: for
    good, unless the server's ``server_keep_days`` says fewer)."""
    return _settings(request, user)


@router.put("/users/settings", tags=["accounts"], response_model=Settings, responses=_errors(400, 401, 403))
def put_settings(body: SettingsChange, request: Request, user: User = Depends(current_user)):
    """Change the account's settings. Runs older than ``keep_days`` go in the background from now on."""
    days = checked_keep_days(body.keep_days)
    _state(request).store.writer.call(lambda conn: set_account_keep_days(conn, user.id, days))
    return _settings(request, user)


"""Shared links to one run: the owner's API to make, list and revoke them, and what a link
opens without an account (the run's page, and a read-only API for that one run under
``/api/v1/shared/<token>``, which the page's scripts use as their API's base).

Every shared route answers 404 alike for a token never made, one revoked, and another run's
uuid, so a guess learns nothing; a live stream opened through a link ends within
:data:`~hyperdash.server.api.RECHECK_SECONDS` of its revocation.
"""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response, StreamingResponse

from . import queries, rules
from .api import (
    _SSE_DOC,
    MAX_ID,
    Lines,
    Reply,
    RunDetail,
    Series,
    _errors,
    _resume_point,
    _state,
    run_stream,
)
from .auth import User, current_user
from .download import log_download
from .errors import NotFound
from .pages import FIRST_LINES, render
from .queries import find_run
from .run_refs import full_run_uuid
from .shares import list_shares, new_share, revoke_share, shared_run
from .text import checked, is_clean
from .trouble_api import RunRules
from .views import JSONReply, iso, run_json

__all__ = ["router", "page_router", "SHARED_PATH"]

router = APIRouter(prefix="/api/v1", default_response_class=JSONReply)
page_router = APIRouter(include_in_schema=False)
#: Where a shared link points: ``/shared/<token>``.
SHARED_PATH = "/shared/"


class NewShare(Reply):
    id: int
    url: str
    token: str
    created_at: str


class Share(Reply):
    id: int
    created_at: str


class Shares(Reply):
    shares: list[Share]


class ShareRevoked(Reply):
    revoked: int


class SharedRun(Reply):
    uuid: str


# --- the owner's side ---------------------------------------------------------------------------
def for_guest(run: dict) -> dict:
    """A run as a shared link shows it: who asked it to stop (an account's email) is left out."""
    stop = run.get("stop")
    if stop and stop.get("by") is not None:
        return {**run, "stop": {**stop, "by": None}}
    return run


def _own_run(request: Request, user: User, run_uuid: str):
    checked(run_uuid, "the run uuid")
    with _state(request).store.read() as conn:
        return find_run(conn, user.id, full_run_uuid(conn, user.id, run_uuid))


@router.post("/runs/{run_uuid}/shares", status_code=201, tags=["shares"], response_model=NewShare,
             responses=_errors(401, 403, 404, 409))
def create_share(run_uuid: str, request: Request, user: User = Depends(current_user)):
    """A read-only link to the run (its log, charts, params and status, live) that works without
    an account. The token is shown only in this reply."""
    row = _own_run(request, user, run_uuid)
    made = _state(request).store.writer.call(lambda conn: new_share(conn, user.id, row.id, row.uuid))
    if made is None:
        raise NotFound(f"no run {run_uuid}")
    share_id, token, created = made
    base = _state(request).public_url or str(request.base_url).rstrip("/")
    url = base + SHARED_PATH + token
    return JSONReply({"id": share_id, "url": url, "token": token, "created_at": iso(created)}, status_code=201)


@router.get("/runs/{run_uuid}/shares", tags=["shares"], response_model=Shares, responses=_errors(401, 404, 409))
def get_shares(run_uuid: str, request: Request, user: User = Depends(current_user)):
    """The run's live shared links (their tokens are never shown again)."""
    row = _own_run(request, user, run_uuid)
    with _state(request).store.read() as conn:
        found = list_shares(conn, user.id, row.id)
    return {"shares": [{"id": s.id, "created_at": iso(s.created_at)} for s in found]}


@router.delete("/runs/{run_uuid}/shares/{share_id}", tags=["shares"], response_model=ShareRevoked,
               responses=_errors(401, 403, 404, 409))
def delete_share(run_uuid: str, request: Request, share_id: int = Path(ge=1, le=MAX_ID),
                 user: User = Depends(current_user)):
    """Revoke a shared link: it stops working at once, open pages included."""
    row = _own_run(request, user, run_uuid)
    if not _state(request).store.writer.call(lambda conn: revoke_share(conn, user.id, row.id, share_id)):
        raise NotFound(f"no live shared link {share_id} of this run")
    return {"revoked": share_id}


# --- what a link opens --------------------------------------------------------------------------
_REFUSED = "no such shared run: the link is wrong, or its owner revoked it"


def _shared(request: Request, token: str, run_uuid: str | None = None):
    """The run the token shares (and ``run_uuid`` names, when given), else NotFound."""
    with _state(request).store.read() as conn:
        row = shared_run(conn, token) if is_clean(token) else None
    if row is None or (run_uuid is not None and run_uuid.lower() != row.uuid):
        raise NotFound(_REFUSED)
    return row


@router.get("/shared/{token}/me", tags=["shares"], response_model=SharedRun, responses=_errors(404))
def shared_me(token: str, request: Request):
    """Whether the link still works: the uuid of the run it shares."""
    return {"uuid": _shared(request, token).uuid}


@router.get("/shared/{token}/runs/{run_uuid}", tags=["shares"], response_model=RunDetail, responses=_errors(404))
def shared_detail(token: str, run_uuid: str, request: Request):
    """The shared run, its params and each metric's latest value."""
    row = _shared(request, token, run_uuid)
    with _state(request).store.read() as conn:
        return JSONReply(for_guest(queries.run_detail(conn, row.user_id, row.uuid)))


@router.get("/shared/{token}/runs/{run_uuid}/logs", tags=["shares"], response_model=Lines,
            responses=_errors(400, 404))
def shared_logs(
    token: str, run_uuid: str, request: Request,
    after: int | None = Query(None, ge=0, le=MAX_ID),
    before: int | None = Query(None, ge=1, le=MAX_ID),
    tail: int | None = Query(None, ge=1, le=queries.MAX_PAGE),
    limit: int = Query(1000, ge=1, le=queries.MAX_PAGE),
    q: str | None = Query(None, max_length=1000),
):
    """The shared run's log lines, as ``/runs/{run_uuid}/logs`` gives them."""
    row = _shared(request, token, run_uuid)
    if q is not None:
        checked(q, "q")
    with _state(request).store.read() as conn:
        return JSONReply({"lines": queries.log_lines(conn, row.id, after=after, before=before, tail=tail,
                                                     limit=limit, q=q)})


@router.get("/shared/{token}/runs/{run_uuid}/logs.txt", tags=["shares"], response_class=StreamingResponse,
            responses={200: {"content": {"text/plain": {}}}, **_errors(404)})
def shared_download(token: str, run_uuid: str, request: Request, raw: bool = Query(False)):
    """The shared run's whole log as a download."""
    row = _shared(request, token, run_uuid)
    return log_download(_state(request).store, row, raw=raw)


@router.get("/shared/{token}/runs/{run_uuid}/metrics/{name:path}", tags=["shares"], response_model=Series,
            responses=_errors(404))
def shared_metric(token: str, run_uuid: str, name: str, request: Request):
    """One metric of the shared run."""
    row = _shared(request, token, run_uuid)
    checked(name, "the metric name")
    with _state(request).store.read() as conn:
        return JSONReply(queries.metric_series(conn, row.id, name))


@router.get("/shared/{token}/runs/{run_uuid}/rules", tags=["shares"], response_model=RunRules,
            responses=_errors(404))
def shared_rules(token: str, run_uuid: str, request: Request):
    """The rules that watch the shared run (its own and its name's) and every time one fired on
    it, to read: a link sets and deletes none."""
    row = _shared(request, token, run_uuid)
    with _state(request).store.read() as conn:
        return JSONReply({"rules": rules.run_rules(conn, row.user_id, row), "firings": rules.run_firings(conn, row.id)})


@router.get("/shared/{token}/runs/{run_uuid}/events", tags=["shares"], response_class=StreamingResponse,
            responses=_SSE_DOC)
async def shared_events(token: str, run_uuid: str, request: Request,
                        after: int | None = Query(None, ge=0, le=MAX_ID)):
    """The shared run's server-sent events; the stream ends soon after the link is revoked."""
    state = _state(request)
    last = _resume_point(request, after)
    row = await run_in_threadpool(_shared, request, token, run_uuid)

    async def still_shared() -> bool:
        try:
            await run_in_threadpool(_shared, request, token, run_uuid)
        except NotFound:
            return False
        return True

    return run_stream(state, row.user_id, row.id, for_guest(run_json(row._mapping)), last, still_allowed=still_shared,
                      shown=for_guest)


@page_router.get(SHARED_PATH + "{token}")
def shared_page(request: Request, token: str) -> Response:
    """The run's page as a shared link shows it: read only, no account, nothing else of its owner's."""
    try:
        row = _shared(request, token)
    except NotFound:
        return render(request, "not_found.html", status_code=404, title="Link not found",
                      message="This shared link does not exist, or its owner revoked it.")
    with _state(request).store.read() as conn:
        run = for_guest(queries.run_detail(conn, row.user_id, row.uuid))
        tail = queries.log_lines(conn, row.id, tail=FIRST_LINES)
    base = "/api/v1/shared/" + quote(token, safe="")
    page_data = {"run": run, "tail": tail, "tail_limit": FIRST_LINES}
    return render(request, "run.html", run=run, run_uuid=run["uuid"], shared=True, api_base=base,
                  download_url=f"{base}/runs/{quote(run['uuid'], safe='')}/logs.txt", page_data=page_data)

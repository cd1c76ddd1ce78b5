"""The JSON API under ``/api/v1``: accounts and keys, ingest, runs and their live events."""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import TimeoutError as WaitedTooLong
from typing import Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import SQLAlchemyError

from .. import events as ev
from . import __version__, comparison, queries
from .auth import User, access_token, current_user, refused_key
from .checks import MAX_TIMESTAMP_MS, checked_batch
from .deletion import GONE_MESSAGE, RunGone
from .download import content_disposition, log_download
from .errors import BadRequest, NotFound, Unauthorized, Unavailable
from .ingest import BatchJob
from .live import sse
from .run_refs import full_run_uuid
from .text import checked
from .views import JSONReply, run_json

__all__ = ["router", "ingest_openapi", "run_stream", "PING_SECONDS", "RECHECK_SECONDS"]

log = logging.getLogger("hyperdash.server")

router = APIRouter(prefix="/api/v1", default_response_class=JSONReply)

PING_SECONDS = 15.0
# How often a stream that may be withdrawn (a shared link) asks whether it still may go on.
RECHECK_SECONDS = 2.0
# The largest seq or id a query may name: beyond what any store holds, within 64 bits.
MAX_ID = 2**62


# --- documented shapes -------------------------------------------------------------------------
# Replies are built directly (a page of lines would cost more to validate than to find); these
# models describe them, and tests/server/test_replies.py holds every route's real replies to them.
class Reply(BaseModel):
    """A reply's shape: no field may be missing or added."""

    model_config = ConfigDict(extra="forbid")


class Error(Reply):
    code: str
    message: str


class Credentials(BaseModel):
    email: str
    password: str


class Login(Credentials):
    host: str | None = Field(None, description="Names the new API key; else the caller's address")


class NewAccount(Reply):
    api_key: str
    access_token: str


class NewKeyRequest(BaseModel):
    name: str | None = None


class NewKey(Reply):
    id: int
    name: str
    api_key: str


class ApiKey(Reply):
    id: int
    name: str
    prefix: str
    created_at: str = Field(description="ISO-8601 UTC, ending in Z")
    last_used_at: str | None
    revoked_at: str | None


class ApiKeys(Reply):
    api_keys: list[ApiKey]


class Me(Reply):
    email: str


class Health(Reply):
    ok: bool
    version: str


class LoggedOut(Reply):
    revoked: bool


class KeyRevoked(Reply):
    revoked: int = Field(description="the id of the key revoked")


class Progress(Reply):
    """How far a running run is (server/progress.py)."""

    done: float
    total: float | None
    percent: float | None = Field(description="0 to 100, null without a total")
    rate: float | None = Field(description="units per second")
    eta_s: float | None = Field(description="seconds left, as of updated_at")
    elapsed_s: float | None
    unit: str
    source: Literal["bar", "iter"] = Field(description="a progress bar in the output, or exp.iter")
    updated_at: str | None


class Failure(Reply):
    """Where a failed or killed run went wrong (server/summary.py)."""

    summary: str = Field(description='one line: "ZeroDivisionError: division by zero", "exit code 3", '
                                     '"killed by SIGKILL"')
    first_seq: int | None = Field(description="the first log line that shows it (a traceback's first)")
    last_seq: int | None


class StopRequest(Reply):
    """A stop asked of the run (server/stop.py)."""

    requested_at: str | None
    by: str | None = Field(description="the email of the account that asked")
    via: Literal["dashboard", "cli", "api"] | None


class Run(Reply):
    uuid: str
    name: str | None
    status: Literal[ev.STATUSES]  # type: ignore[valid-type]
    started_at: str | None = Field(description="ISO-8601 UTC, ending in Z")
    ended_at: str | None
    last_seen_at: str | None
    exit_code: int | None
    signal: str | None
    host: str | None
    pid: int | None
    api: str | None
    last_seq: int
    progress: Progress | None
    failure: Failure | None
    stop: StopRequest | None
    stalled_since: str | None = Field(description="set while a running run is stalled: when its job last "
                                      "made progress (output, a metric or a param)")
    archived: bool = Field(description="archived: left out of the default lists (archived=only lists it)")


class RunPage(Reply):
    runs: list[Run]
    next: str | None = Field(description="cursor of the next page, or null")


class MetricPoint(Reply):
    value: float | None = Field(description="null for NaN and infinities (see value_text)")
    value_text: str | None = Field(None, description="when value is null: NaN, Infinity or -Infinity")
    step: int | None
    timestamp: str


class MetricValue(MetricPoint):
    internal: bool = Field(description="recorded by the SDK for itself (system metrics), not by the job")


class RunDetail(Run):
    params: dict[str, Any]
    metrics: dict[str, MetricValue]


class Line(Reply):
    seq: int
    stream: Literal[ev.STREAMS]  # type: ignore[valid-type]
    text: str
    timestamp: str
    partial: bool
    progress: bool


class Lines(Reply):
    lines: list[Line]


class Point(Reply):
    step: int | None
    value: float
    timestamp: str


class NonFinite(Reply):
    count: int
    last: MetricPoint


class Series(Reply):
    name: str
    internal: bool = Field(description="recorded by the SDK for itself (system metrics), not by the job")
    points: list[Point] = Field(description="its points that are numbers")
    nonfinite: NonFinite | None = Field(None, description="its NaN and infinite points (JSON has no such "
                                                          "numbers): how many, and the last")


class IngestReply(Reply):
    stored: int = Field(description="events stored (a block of lines counts as its lines)")
    duplicates: int = Field(description="events this server held already")
    log_blocks: bool = Field(True, description="this server takes log events that carry a block of lines "
                                               "(payload 'lines': N)")
    attached_text: bool = Field(True, description=f"this server takes bodies of type {ev.ATTACHED_TEXT_TYPE}: "
                                                  "the JSON on one line, a newline, then the log texts as bytes "
                                                  "(payload 'bytes': N in place of 'body')")
    stop: dict[str, StopRequest] | None = Field(
        None, description="present when a run of the batch was asked to stop: its uuid -> the request")


_ENVELOPE_SCHEMA = {
    "type": "object",
    "required": ["type", "timestamp", "sdk_run_uuid", "payload"],
    "properties": {
        "type": {"type": "string", "enum": list(ev.EVENT_TYPES)},
        "timestamp": {"type": "integer", "minimum": 0, "maximum": MAX_TIMESTAMP_MS,
                      "description": "milliseconds since the epoch"},
        "sdk_run_uuid": {"type": "string", "format": "uuid"},
        "seq": {"type": "integer", "minimum": 1,
                "description": "position in the run; each (run, seq) is stored once"},
        "payload": {"type": "object", "description": "depends on type (see the wire protocol)"},
    },
}
_ENVELOPES_SCHEMA = {
    "oneOf": [_ENVELOPE_SCHEMA, {"type": "array", "items": _ENVELOPE_SCHEMA, "maxItems": ev.MAX_BATCH_EVENTS}],
}
_INGEST_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": _ENVELOPES_SCHEMA},
            ev.ATTACHED_TEXT_TYPE: {"schema": {
                "type": "string", "format": "binary",
                "description": "the envelopes as JSON on one line, a newline, then the log texts one after the "
                               "other: a log event whose payload has 'bytes': N in place of 'body' takes the next N "
                               "bytes as its body (UTF-8; an invalid sequence becomes U+FFFD)"}},
        },
    }
}


def _errors(*codes: int) -> dict:
    return {code: {"model": Error} for code in codes}


def _state(request: Request):
    return request.app.state


# --- health and accounts ----------------------------------------------------------------------
# How long a readiness check waits for the database: less than the probes of load balancers and
# orchestrators wait for the answer (a Kubernetes probe's default is 1 s, a Docker one's 30 s).
READY_TIMEOUT_S = 0.8


@router.get("/health", tags=["server"], response_model=Health)
def health() -> dict:
    """The server is up (it answers; whether its database does is ``/ready``'s to say)."""
    return {"ok": True, "version": __version__}


@router.get("/ready", tags=["server"], response_model=Health, responses=_errors(503))
def ready(request: Request) -> dict:
    """The server can serve: its database answers a trivial query within a second. Else 503,
    with ``Retry-After``: for a load balancer's or an orchestrator's readiness check."""
    try:
        _state(request).store.ping(READY_TIMEOUT_S)
    except WaitedTooLong:
        raise Unavailable(f"the database did not answer within {READY_TIMEOUT_S:g} s; "
                          "try again in a few seconds") from None
    return {"ok": True, "version": __version__}


@router.post("/users", status_code=201, tags=["accounts"], response_model=NewAccount,
             responses=_errors(400, 403, 409, 429))
def signup(body: Credentials, request: Request):
    """Create an account: its first API key and an access token."""
    auth = _state(request).auth
    user = auth.signup(body.email, body.password)
    key = auth.create_api_key(user.id, "signup")
    return JSONReply({"api_key": key["api_key"], "access_token": auth.create_access_token(user.id)},
                     status_code=201)


def _client(request: Request) -> str:
    # Behind a proxy that --forwarded-allow-ips trusts, uvicorn has put the forwarded address here.
    return request.client.host if request.client else "unknown"


@router.post("/sessions", tags=["accounts"], response_model=NewAccount, responses=_errors(400, 401, 429))
def login(body: Login, request: Request):
    """Log in: an access token (valid for 30 days, sent back in ``authorization``) and a new API
    key named after ``host`` (or the caller's address)."""
    auth = _state(request).auth
    user = auth.authenticate(body.email, body.password, _client(request))
    key = auth.create_api_key(user.id, body.host or _client(request))
    return {"access_token": auth.create_access_token(user.id), "api_key": key["api_key"]}


@router.delete("/sessions", tags=["accounts"], response_model=LoggedOut, responses=_errors(401))
def logout(request: Request):
    """Log out: the access token in ``authorization`` stops working at once."""
    token = access_token(request)
    if not token or not _state(request).auth.revoke_access_token(token):
        raise Unauthorized("a live access token is required in the authorization header")
    return {"revoked": True}


@router.get("/me", tags=["accounts"], response_model=Me, responses=_errors(401))
def me(user: User = Depends(current_user)):
    return {"email": user.email}


@router.get("/users/api_keys", tags=["accounts"], response_model=ApiKeys, responses=_errors(401))
def list_keys(request: Request, user: User = Depends(current_user)):
    return {"api_keys": _state(request).auth.list_api_keys(user.id)}


@router.post("/users/api_keys", status_code=201, tags=["accounts"], response_model=NewKey,
             responses=_errors(400, 401, 403))
def create_key(request: Request, body: NewKeyRequest | None = None, user: User = Depends(current_user)):
    """A new API key; the key itself is shown only in this reply."""
    key = _state(request).auth.create_api_key(user.id, (body.name if body else None) or "key")
    return JSONReply(key, status_code=201)


@router.delete("/users/api_keys/{key_id}", tags=["accounts"], response_model=KeyRevoked,
                responses=_errors(401, 403, 404))
def revoke_key(request: Request, key_id: int = Path(ge=1, le=MAX_ID), user: User = Depends(current_user)):
    """Revoke a key: it stops working at once."""
    if not _state(request).auth.revoke_api_key(user.id, key_id):
        raise NotFound(f"no active API key {key_id}")
    return {"revoked": key_id}


# --- ingest -----------------------------------------------------------------------------------
# The hottest path: a plain Starlette endpoint. FastAPI's request handling (dependencies,
# validation, serialisation, none of which it needs) costs it more than parsing the batch, and
# the app (app.HyperdashApp) hands its POSTs straight to it, past the framework's middleware.
# Its OpenAPI entry comes from ingest_openapi(), which the app adds to the schema.
async def ingest(request: Request) -> JSONReply:
    """Store one envelope (the original form) or a JSON array of them (our batched superset),
    or such an array followed by the log texts it names (a body of type
    `application/vnd.hyperdash.attached-text`).

    The whole request is checked before anything is stored; the reply comes after the commit.
    """
    state = _state(request)
    key = request.headers.get(ev.AUTH_HEADER)
    user = state.auth.user_for_api_key(key) if key else None
    if user is None:
        if key:
            raise refused_key(state.auth, key)
        raise Unauthorized("a valid API key is required in the x-hyperdash-auth header")
    api = request.headers.get(ev.API_HEADER)
    # (the body's size is limited by the app's BodyLimit)
    body = await request.body()
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    batch = checked_batch(body, user.id, api[:32] if api else None,
                          attached_text=media_type == ev.ATTACHED_TEXT_TYPE)
    batch.replay = request.headers.get(ev.REPLAY_HEADER) == "1"
    try:
        # (refused with 503 and Retry-After, storing nothing, while the writer's queue is full)
        result = await asyncio.wrap_future(
            state.store.writer.submit(BatchJob(batch, state.run_cache), size=len(body))
        )
    except SQLAlchemyError as exc:
        log.error("storing a batch failed: %s", exc)
        raise Unavailable("the database failed to store this batch; retry later") from None
    if result.gone is not None:
        raise RunGone(GONE_MESSAGE.format(uuid=result.gone))
    reply = {"stored": result.stored, "duplicates": result.duplicates, ev.BLOCKS_REPLY_FIELD: True,
             ev.ATTACHED_TEXT_REPLY_FIELD: True}
    if result.stop:
        reply["stop"] = result.stop
    return JSONReply(reply)


router.add_route(ev.INGEST_PATH, ingest, methods=["POST"], name="ingest",
                 include_in_schema=False)


def ingest_openapi() -> dict:
    """The OpenAPI path item of :func:`ingest` (its route is not one FastAPI documents)."""
    def reply(description: str, schema: dict) -> dict:
        return {"description": description, "content": {"application/json": {"schema": schema}}}

    error = {"$ref": "#/components/schemas/Error"}
    return {"post": {
        "tags": ["ingest"],
        "summary": "Ingest",
        "description": inspect.cleandoc(ingest.__doc__ or ""),
        "operationId": "ingest",
        **_INGEST_BODY,
        "responses": {
            "200": reply("Every envelope stored or recognised as a duplicate", IngestReply.model_json_schema()),
            "400": reply("Bad input: nothing was stored", error),
            "401": reply("No API key, or not a valid one", error),
            "410": reply("The run was deleted: drop its events, never send them again", error),
            "413": reply("The body or the batch is too large", error),
            "503": reply("The server is busy (its queue of batches to store is full) or the database "
                         "could not store the batch: nothing was stored; retry after Retry-After seconds", error),
        },
    }}


# --- runs -------------------------------------------------------------------------------------
@router.get("/runs", tags=["runs"], response_model=RunPage, responses=_errors(400, 401))
def list_runs(
    request: Request,
    name: str | None = Query(None, max_length=ev.MAX_NAME_CHARS, description="the whole name"),
    q: str | None = Query(None, max_length=ev.MAX_NAME_CHARS, description="a part of the name, in any case"),
    status: str | None = Query(None, description="one of " + ", ".join(ev.STATUSES) + "; or attention: "
                               "failure, killed, lost, and running runs that are stalled"),
    limit: int = Query(50, ge=1, le=1000),
    cursor: str | None = None,
    archived: Literal["no", "only", "all"] = Query("no", description="archived runs: left out, alone, or too"),
    user: User = Depends(current_user),
):
    """The account's runs, newest first (archived ones only when asked for)."""
    if name is not None:
        checked(name, "name")
    if q is not None:
        checked(q, "q")
    with _state(request).store.read() as conn:
        return JSONReply(queries.list_runs(conn, user.id, name=name, search=q, status=status, limit=limit,
                                           cursor=cursor, archived=archived))


@router.get("/runs/{run_uuid}", tags=["runs"], response_model=RunDetail, responses=_errors(401, 404, 409))
def get_run(run_uuid: str, request: Request, user: User = Depends(current_user)):
    """The run, its params and each metric's latest value. ``run_uuid`` may be the start of
    the uuid (8 hex digits or more) when no other run of the account starts so (else 409)."""
    checked(run_uuid, "the run uuid")
    with _state(request).store.read() as conn:
        return JSONReply(queries.run_detail(conn, user.id, full_run_uuid(conn, user.id, run_uuid)))


@router.get("/runs/{run_uuid}/logs", tags=["runs"], response_model=Lines, responses=_errors(400, 401, 404, 409))
def get_logs(
    run_uuid: str,
    request: Request,
    after: int | None = Query(None, ge=0, le=MAX_ID, description="lines with a seq above this"),
    before: int | None = Query(None, ge=1, le=MAX_ID,
                               description="lines with a seq below this: the last `limit` of them"),
    tail: int | None = Query(None, ge=1, le=queries.MAX_PAGE,
                             description="the last N lines (of those `after` and `before` leave)"),
    limit: int = Query(1000, ge=1, le=queries.MAX_PAGE),
    q: str | None = Query(None, max_length=1000, description="only lines holding this text"),
    user: User = Depends(current_user),
):
    """Log lines in ascending seq order; ``after``, ``before`` and ``tail`` combine (see
    :func:`~hyperdash.server.queries.log_lines`)."""
    checked(run_uuid, "the run uuid")
    if q is not None:
        checked(q, "q")
    with _state(request).store.read() as conn:
        run = queries.find_run(conn, user.id, full_run_uuid(conn, user.id, run_uuid))
        return JSONReply({"lines": queries.log_lines(conn, run.id, after=after, before=before, tail=tail,
                                                     limit=limit, q=q)})


@router.get("/runs/{run_uuid}/logs.txt", tags=["runs"], response_class=StreamingResponse,
            responses={200: {"content": {"text/plain": {}}}, **_errors(401, 404, 409)})
def download_logs(run_uuid: str, request: Request, user: User = Depends(current_user),
                  raw: bool = Query(False, description="the lines as stored, escape codes and \\r kept")):
    """The whole log as a download: plain text (escape codes removed, progress bars as their
    last state), or with ``raw=1`` the raw text."""
    checked(run_uuid, "the run uuid")
    store = _state(request).store
    with store.read() as conn:
        run = queries.find_run(conn, user.id, full_run_uuid(conn, user.id, run_uuid))
    return log_download(store, run, raw=raw)



@router.get("/runs/{run_uuid}/metrics/{name:path}", tags=["runs"], response_model=Series,
            responses=_errors(401, 404, 409))
def get_metric(run_uuid: str, name: str, request: Request, user: User = Depends(current_user)):
    """One metric's points in the order they were recorded."""
    checked(run_uuid, "the run uuid")
    checked(name, "the metric name")
    with _state(request).store.read() as conn:
        run = queries.find_run(conn, user.id, full_run_uuid(conn, user.id, run_uuid))
        return JSONReply(queries.metric_series(conn, run.id, name))


# --- comparing runs ---------------------------------------------------------------------------
class MetricSummary(Reply):
    count: int
    min: float | None = Field(description="null when no point is a number (all NaN or infinite)")
    max: float | None
    last: float | None
    last_text: str | None = Field(None, description="when no point is a number: the last, NaN, Infinity or "
                                                    "-Infinity")
    last_step: int | None


class TableRun(Reply):
    uuid: str
    status: Literal[ev.STATUSES]  # type: ignore[valid-type]
    started_at: str | None
    ended_at: str | None
    duration_s: float = Field(description="to its end, its last sign of life, or now while running")
    host: str | None
    params: dict[str, Any]
    metrics: dict[str, MetricSummary]


class TableMetric(Reply):
    name: str
    best: Literal["min", "max"] = Field(description="which extreme is best by default (min for losses and errors)")


class NameTable(Reply):
    name: str
    runs: list[TableRun] = Field(description=f"newest first, at most {comparison.MAX_RUNS}")
    params: list[str]
    metrics: list[TableMetric]
    truncated: bool = Field(description="the name has more runs than the table holds")


class OverlaySeries(Reply):
    run: str
    metric: str
    count: int = Field(description="points recorded in all; fewer are sent when there are many")
    steps: list[int | None]
    times: list[float] = Field(description="seconds since the run started")
    values: list[float]


class Overlay(Reply):
    runs: list[str]
    points_per_series: int
    series: list[OverlaySeries]


class TableExport(Reply):
    name: str
    columns: list[str]
    rows: list[dict[str, Any]]
    truncated: bool


_NAME_QUERY = Query(min_length=1, max_length=ev.MAX_NAME_CHARS, description="the runs' whole name")
_INTERNAL_QUERY = Query(False, description="include internal metrics (system metrics and the like)")
_BEST_QUERY = Query([], description="METRIC:min or METRIC:max, the best value exported for a metric")


@router.get("/compare", tags=["compare"], response_model=NameTable, responses=_errors(400, 401))
def compare_table(request: Request, name: str = _NAME_QUERY, internal: bool = _INTERNAL_QUERY,
                  user: User = Depends(current_user)):
    """The runs of one name side by side: each with its status, start, duration, host, params,
    and each metric's point count, min, max and last value."""
    checked(name, "name")
    with _state(request).store.read() as conn:
        return JSONReply(comparison.name_table(conn, user.id, name, internal=internal))


@router.get("/compare/series", tags=["compare"], response_model=Overlay, responses=_errors(400, 401, 404))
def compare_series(
    request: Request,
    run: list[str] = Query(description=f"a run's uuid (repeated, at most {comparison.MAX_OVERLAY_RUNS})"),
    metric: list[str] = Query([], description="only these metrics (repeated); else every one"),
    points: int = Query(comparison.POINTS_PER_SERIES, ge=50, le=10_000, description="points per series, at most"),
    internal: bool = _INTERNAL_QUERY,
    user: User = Depends(current_user),
):
    """The metrics of several runs, to overlay: one series per (run, metric), a long one thinned
    to its lowest and highest point in each of ``points / 2`` buckets."""
    for text in (*run, *metric):
        checked(text, "a run uuid or metric name")
    with _state(request).store.read() as conn:
        return JSONReply(comparison.overlay(conn, user.id, run, metric_names=metric or None,
                                            internal=internal, points=points))


def _export(request: Request, user: User, name: str, best: list[str], internal: bool) -> dict:
    checked(name, "name")
    for choice in best:
        checked(choice, "best")
    choices = comparison.parse_best(best)
    with _state(request).store.read() as conn:
        return comparison.export_table(conn, user.id, name, best=choices, internal=internal)


@router.get("/compare/export.csv", tags=["compare"], response_class=Response,
            responses={200: {"content": {"text/csv": {}}}, **_errors(400, 401)})
def export_csv(request: Request, name: str = _NAME_QUERY, best: list[str] = _BEST_QUERY,
               internal: bool = _INTERNAL_QUERY, user: User = Depends(current_user)):
    """The table as a CSV file: one row per run. Text that a spreadsheet app would run as a
    formula (starting with = + - @) starts with ' instead."""
    export = _export(request, user, name, best, internal)
    return Response(comparison.csv_text(export), media_type="text/csv; charset=utf-8",
                    headers={"content-disposition": content_disposition(name[:100] + ".csv", "runs")})


@router.get("/compare/export.json", tags=["compare"], response_model=TableExport, responses=_errors(400, 401))
def export_json(request: Request, name: str = _NAME_QUERY, best: list[str] = _BEST_QUERY,
                internal: bool = _INTERNAL_QUERY, user: User = Depends(current_user)):
    """The table as a JSON file: its columns, and one row per run (column -> value)."""
    export = _export(request, user, name, best, internal)
    return JSONReply(export, headers={"content-disposition": content_disposition(name[:100] + ".json", "runs")})


# --- live events ------------------------------------------------------------------------------
_PING = b": ping\n\n"
_SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}
_SSE_DOC = {200: {"content": {"text/event-stream": {}}}, **_errors(401, 404, 409)}


def _resume_point(request: Request, after: int | None) -> int:
    last_id = request.headers.get("last-event-id")
    if last_id:
        try:
            seq = int(last_id)
        except ValueError:
            seq = -1
        if not 0 <= seq <= MAX_ID:
            raise BadRequest("Last-Event-ID must be a seq from this server")
        return seq
    return after or 0


@router.get("/runs/{run_uuid}/events", tags=["runs"], response_class=StreamingResponse, responses=_SSE_DOC)
async def run_events_stream(
    run_uuid: str,
    request: Request,
    after: int | None = Query(None, ge=0, le=MAX_ID, description="resume after this seq (or send Last-Event-ID)"),
):
    """Server-sent events of one run: ``log``, ``metric``, ``param`` and ``status``, each with
    ``id: <seq>``, the highest seq sent so far. Starts with the run's status, then what is stored
    after the resume point, then each event as it is stored, in commit order: one stored late (its
    seq below others sent) comes too; a copy of one it read from the store, or of the status it
    sent last, does not (the page still drops copies: a commit told late may bring one older
    than the store's last page)."""
    state = _state(request)
    user = await run_in_threadpool(current_user, request)
    checked(run_uuid, "the run uuid")
    last = _resume_point(request, after)

    def lookup():
        with state.store.read() as conn:
            row = queries.find_run(conn, user.id, full_run_uuid(conn, user.id, run_uuid))
            return row.id, run_json(row._mapping)

    run_id, run = await run_in_threadpool(lookup)
    return run_stream(state, user.id, run_id, run, last)


def run_stream(state, user_id: int, run_id: int, run: dict, last: int,
               still_allowed: Callable[[], Awaitable[bool]] | None = None,
               shown: Callable[[dict], dict] | None = None) -> StreamingResponse:
    """The server-sent events of one run (``run``, as the API shows it) from after ``last``.
    With ``still_allowed``, it is asked every :data:`RECHECK_SECONDS` and the stream ends as soon
    as it says no (a shared link revoked); ``shown`` turns each ``status`` event's run into what
    this stream may show."""
    run_uuid = run["uuid"]  # the whole uuid, which the live fan-out knows the run by
    wait = PING_SECONDS if still_allowed is None else RECHECK_SECONDS

    async def stream():
        nonlocal last
        # Follow before reading what is stored, so nothing falls between the two.
        sub = state.hub.subscribe(user_id, run_uuid)
        checked_at = time.monotonic()
        shown_status = run if shown is None else shown(run)
        # The seqs of the store's last page sent: a commit told after it was read (another
        # process's, which PostgreSQL's relay brings a moment later) would send them again.
        # (A seq is one event of the run, so the same seq is the same event.)
        read: set[int] = set()
        try:
            yield b"retry: 1000\n" + sse("status", run, last)
            while True:  # what is stored already, a page at a time
                page = await run_in_threadpool(_backlog, state.store, run_id, last)
                if not page:
                    break
                read = {seq for seq, _, _ in page}
                for seq, name, data in page:
                    yield sse(name, data, seq)
                    last = seq
            async for events in _follow(sub, wait):
                if still_allowed is not None and time.monotonic() - checked_at >= RECHECK_SECONDS:
                    if not await still_allowed():
                        return
                    checked_at = time.monotonic()
                if events is None:
                    yield _PING
                    continue
                chunk = []
                for seq, name, data in events:
                    if name == "status":
                        data = data if shown is None else shown(data)
                        if data == shown_status:  # (as sent already: a commit told late, say)
                            continue
                        shown_status = data
                    elif seq in read and name in _READ_BACK:
                        continue
                    # Every other event goes out, one with a seq at or below ``last`` too: stored after a
                    # later seq (an older batch retried, another process's commit), it is new to the
                    # page, which places it and drops a copy of what the backlog sent. Its id stays the
                    # highest seq sent, where a reconnection resumes.
                    last = max(last, seq)
                    chunk.append(sse(name, data, last))
                yield b"".join(chunk)
        finally:
            sub.close()

    return StreamingResponse(stream(), media_type="text/event-stream", headers=_SSE_HEADERS)


async def _follow(sub, wait: float | None = None) -> AsyncIterator[list | None]:
    """Each list of news as it comes, or None after ``wait`` seconds (PING_SECONDS) of quiet;
    ends with the server."""
    while True:
        events = await sub.get(PING_SECONDS if wait is None else wait)
        if events is None:
            return
        yield events or None


# What a stream reads from the store too (an ``alert`` it does not: the one a point fired is new).
_READ_BACK = frozenset(("log", "metric", "param"))


def _backlog(store, run_id: int, after: int) -> list:
    with store.read() as conn:
        return queries.events_after(conn, run_id, after)


@router.get("/events", tags=["runs"], response_class=StreamingResponse, responses=_SSE_DOC)
async def account_events(request: Request):
    """Server-sent events of the caller's account: ``run`` with the run whenever one is created
    or changes status, ``deleted`` with its ``uuid`` when one is deleted."""
    state = _state(request)
    user = await run_in_threadpool(current_user, request)

    async def stream():
        sub = state.hub.subscribe(user.id, None)
        try:
            yield b"retry: 1000\n: connected\n\n"
            async for events in _follow(sub):
                yield _PING if events is None else b"".join(sse(name, data) for _, name, data in events)
        finally:
            sub.close()

    return StreamingResponse(stream(), media_type="text/event-stream", headers=_SSE_HEADERS)

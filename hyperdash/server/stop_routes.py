"""The API route that asks a run to stop: ``POST /api/v1/runs/{run_uuid}/stop``."""

from __future__ import annotations

import asyncio
from typing import Literal

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from msgspec.structs import asdict
from pydantic import BaseModel, Field

from .. import events as ev
from .api import Run, _errors
from .auth import User, current_user
from .run_refs import full_run_uuid
from .stop import request_stop
from .text import checked
from .views import JSONReply, run_json

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", default_response_class=JSONReply)


class StopBody(BaseModel):
    via: Literal["cli", "api"] = Field("api", description="where the request comes from, as the run page "
                                                          "shows it (a dashboard session is always `dashboard`)")


@router.post("/runs/{run_uuid}/stop", status_code=202, tags=["runs"], response_model=Run,
             responses=_errors(400, 401, 403, 404, 409))
async def stop_run(run_uuid: str, request: Request, body: StopBody | None = None,
                   user: User = Depends(current_user)):
    """Ask a running run to stop. The job hears of it in the reply to its next batch or
    heartbeat (within a few seconds): under `hyperdash run` its command gets SIGINT, then
    SIGTERM and SIGKILL if it goes on; under `@monitor` or `Experiment` the main thread gets
    KeyboardInterrupt. The run then ends `user_canceled`. Only the run's owner may stop it
    (another account's run is 404); a run that has ended is refused with 409 `run_finished`.
    Asking again keeps the first request. ``run_uuid`` may be the start of the uuid."""
    checked(run_uuid, "the run uuid")
    state = request.app.state
    # A dashboard session says so itself; a key or a token says where it comes from.
    via = "dashboard" if getattr(request.state, "csrf_token", None) else (body.via if body else "api")

    def lookup() -> str:
        with state.store.read() as conn:
            return full_run_uuid(conn, user.id, run_uuid)

    full_uuid = await run_in_threadpool(lookup)
    cached = state.run_cache.runs
    done = await asyncio.wrap_future(state.store.writer.submit(
        lambda conn: request_stop(conn, cached, user.id, full_uuid, user.email, via, ev.now_ms())))
    return JSONReply(run_json(asdict(done.run)), status_code=202)

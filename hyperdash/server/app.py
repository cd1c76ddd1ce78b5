"""The app factory: one FastAPI app on one store."""

from __future__ import annotations

import asyncio
import dataclasses
import os
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi

from .. import events
from . import __version__
from .api import ingest, ingest_openapi
from .api import router as api_router
from .auth import Auth
from .errors import DATABASE_DOWN, ApiError, TooLarge, database_down, install_handlers, unexpected_reply
from .ingest import RunCache, mark_lost
from .live import Hub
from .notify.keys import stored_vapid_keys
from .notify.outbox import NotifyConfig, purge_outbox
from .notify.subscriber import OutboxSubscriber
from .notify.worker import DeliveryWorker
from .notify_api import router as notify_router
from .pages import error_page, router
from .retention import TIDY_INTERVAL_S, checked_keep_days, tidy_job
from .share_api import page_router as share_page_router
from .share_api import router as share_api_router
from .stalls import mark_stalled, stall_after_from_env
from .stop_routes import router as stop_router
from .store import Store
from .trouble_api import router as trouble_router
from .upkeep_api import router as upkeep_router
from .views import JSONReply

__all__ = ["create_app", "use_public_url", "HyperdashApp", "lost_timeout_from_env", "DEFAULT_LOST_TIMEOUT"]

DEFAULT_LOST_TIMEOUT = 120.0


def lost_timeout_from_env() -> float:
    """``$HYPERDASH_LOST_TIMEOUT`` in seconds, else the default."""
    value = os.environ.get("HYPERDASH_LOST_TIMEOUT")
    if not value:
        return DEFAULT_LOST_TIMEOUT
    try:
        timeout = float(value)
    except ValueError:
        raise ValueError(f"HYPERDASH_LOST_TIMEOUT must be a number of seconds, not {value!r}") from None
    if timeout <= 0:
        raise ValueError("HYPERDASH_LOST_TIMEOUT must be above 0")
    return timeout


def use_public_url(app: FastAPI, url: str) -> None:
    """Point what notifications carry at ``url``, the server's public address (known once it
    listens): the link to a run, a test notification's included, and the Web Push subject,
    unless one was chosen apart from the address."""

    def moved(config: NotifyConfig) -> NotifyConfig:
        options = dict(config.channel_options)
        if options.get("subject") == config.base_url.rstrip("/"):
            options["subject"] = url.rstrip("/")
        return dataclasses.replace(config, base_url=url, channel_options=options)

    app.state.notify = moved(app.state.notify)
    app.state.notify_outbox.config = moved(app.state.notify_outbox.config)
    app.state.notify_worker.config = moved(app.state.notify_worker.config)


def _notify_config_from_env() -> NotifyConfig:
    """The default notification settings, with ``$HYPERDASH_PUBLIC_URL`` as the link's base."""
    url = os.environ.get("HYPERDASH_PUBLIC_URL", "").strip()
    return NotifyConfig(base_url=url) if url else NotifyConfig()


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes with 413, before reading them when the
    Content-Length says so, else as soon as the count passes the limit."""

    def __init__(self, app, limit: int = events.MAX_REQUEST_BYTES):
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        for name, value in scope["headers"]:
            if name == b"content-length":
                if not value.isdigit():
                    return await JSONReply({"code": "bad_request", "message": "bad Content-Length header"},
                                           status_code=400)(scope, receive, send)
                if int(value) > self.limit:
                    return await self._too_large(scope, receive, send)
        seen, over, replied = 0, False, False

        async def counting_receive():
            nonlocal seen, over
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    over = True
                    raise TooLarge(f"the request body is over {self.limit} bytes", code="body_too_large")
            return message

        async def guarded_send(message):
            nonlocal replied
            if over:
                return  # the app's own reply to a body cut short; ours follows
            replied = True
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except TooLarge:
            if not over:
                raise
        if over and not replied:
            await self._too_large(scope, receive, send)

    async def _too_large(self, scope, receive, send):
        await JSONReply({"code": "body_too_large", "message": f"the request body is over {self.limit} bytes"},
                        status_code=413)(scope, receive, send)


class HyperdashApp(FastAPI):
    """The FastAPI app, with ingest taken before the framework's middleware and routing.

    Ingest is the server's hottest path, and with batches of a few hundred lines the framework's
    layers around a request cost as much as storing it. A ``POST`` to the ingest path goes
    straight to its handler, behind the same :class:`BodyLimit` and with errors answered as
    :func:`~hyperdash.server.errors.install_handlers` answers them; the route stays in the router
    (the schema lists it, and other methods get their 405 there). Those requests pass FastAPI's
    own tracing and request metrics by, when these are set up.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._ingest = BodyLimit(_ingest_app)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["path"] == events.INGEST_PATH and scope["method"] == "POST":
            scope["app"] = self  # (what Starlette sets, for request.app)
            await self._ingest(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


async def _ingest_app(scope, receive, send) -> None:
    """The ingest handler as an ASGI app of its own, its errors made replies."""
    try:
        response = await ingest(Request(scope, receive))
    except ApiError as exc:
        response = exc.response()
    except DATABASE_DOWN as exc:  # (checking the API key reads the database)
        response = database_down(exc).response()
    except Exception as exc:
        response = unexpected_reply(exc)
    await response(scope, receive, send)


def create_app(db_url: str | None = None, lost_timeout: float | None = None,
               notify: NotifyConfig | None = None, stall_after: float | None = None,
               keep_days: int | None = None, max_queued_bytes: int | None = None) -> HyperdashApp:
    """The Hyperdash app (a :class:`HyperdashApp`) on ``db_url`` (default: SQLite under ``$HYPERDASH_HOME``).

    ``notify``: how notifications are queued and sent (default: :class:`NotifyConfig` with the
    public address from ``$HYPERDASH_PUBLIC_URL``); the delivery worker runs while the app does.
    ``stall_after``: the default stall window in seconds, 0 for off (default:
    ``$HYPERDASH_STALL_AFTER``, else 30 minutes; see :mod:`hyperdash.server.stalls`).
    ``keep_days``: finished runs older than this many days are removed in the background (None:
    kept unless their account says otherwise; see :mod:`hyperdash.server.retention`).
    ``max_queued_bytes``: the bound of the writer's queue, past which ingest answers 503
    (default: :data:`~hyperdash.server.writer.DEFAULT_MAX_QUEUED_BYTES`).

    On PostgreSQL several such apps, in several processes, may share the database: the live
    streams follow every process's commits (``store.everywhere``), and the sweeps run in one
    process at a time (``store.sweep``).

    The store is opened (and its schema migrated) now; the app's shutdown closes it after the
    last request, so every acknowledged batch is committed. ``app.state`` holds ``store``,
    ``auth`` (:class:`~hyperdash.server.auth.Auth`), ``hub``, ``lost_timeout``, ``stall_after_ms``,
    ``notify`` (the :class:`NotifyConfig` in force, with the VAPID keys among its channel options),
    ``notify_outbox`` and ``notify_worker``.
    """
    keep_days = checked_keep_days(keep_days, "keep_days")
    lost_timeout = lost_timeout_from_env() if lost_timeout is None else float(lost_timeout)
    if lost_timeout <= 0:
        raise ValueError("the lost timeout must be above 0 seconds")
    stall_after = stall_after_from_env() if stall_after is None else float(stall_after)
    if not 0 <= stall_after <= events.MAX_STALL_AFTER_S:
        raise ValueError(f"the stall window must be 0 (off) to {events.MAX_STALL_AFTER_S:g} seconds")
    stall_after_ms = int(stall_after * 1000)
    store = Store(db_url, max_queued_bytes=max_queued_bytes)
    hub = Hub()
    store.everywhere.subscribe(hub.on_facts, name="live", on_overflow=hub.on_overflow)
    cache = RunCache(shared=store.shared)  # used on the writer thread only
    store.writer.on_rollback = cache.clear
    if store.shared:
        store.writer.before = cache.begin
    started = events.now_ms()
    # (a run is lost once silent for the timeout while this server could hear it: since it
    # started, and since the database was last out of reach)
    store.sweep("lost", min(1.0, lost_timeout / 4), lambda conn: mark_lost(
        conn, lost_timeout, cache, listening_since=max(started, store.writer.unreachable_at or 0)))
    store.sweep("stalls", 1.0, lambda conn: mark_stalled(conn, events.now_ms(), stall_after_ms, cache))
    store.sweep("tidy", TIDY_INTERVAL_S, tidy_job(keep_days, cache))  # retention, and deletes left unfinished
    notify = dataclasses.replace(notify or _notify_config_from_env(), lost_timeout_s=lost_timeout)
    # Web Push channels sign with the store's key pair, as the server's public address.
    vapid = stored_vapid_keys(store)
    notify = dataclasses.replace(notify, channel_options={
        "vapid": vapid, "subject": notify.base_url.rstrip("/"), **notify.channel_options})
    keep_ms = int(notify.keep_days * 86400 * 1000)
    store.sweep("purge_outbox", 3600.0, lambda conn: purge_outbox(conn, now=events.now_ms(), keep_ms=keep_ms))
    worker = DeliveryWorker(store, notify)
    outbox = OutboxSubscriber(store, notify, wake=worker.wake)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        hub.start(asyncio.get_running_loop())
        await asyncio.to_thread(outbox.rescan)  # what a crash kept from the outbox
        worker.start()
        try:
            yield
        finally:
            hub.close()
            worker.stop()
            store.close()

    app = HyperdashApp(title="Hyperdash", version=__version__, lifespan=lifespan,
                  default_response_class=JSONReply,
                  description="Monitor long-running jobs: ingest, runs, logs, metrics, live events.")
    app.state.store = store
    app.state.auth = auth = Auth(store)
    store.sweep("purge_tokens", 3600.0, auth.purge_expired)
    app.state.hub = hub
    app.state.notify = notify
    app.state.notify_outbox = outbox
    app.state.notify_worker = worker
    app.state.lost_timeout = lost_timeout
    app.state.stall_after_ms = stall_after_ms
    app.state.run_cache = cache
    app.state.keep_days = keep_days
    app.state.public_url = None  # the dashboard's address when set (serve() sets it), for shared links
    install_handlers(app, page=error_page)
    app.add_middleware(BodyLimit)
    app.include_router(api_router)
    app.include_router(stop_router)
    app.include_router(notify_router)
    app.include_router(trouble_router)
    app.include_router(upkeep_router)
    app.include_router(share_api_router)
    app.include_router(router)
    app.include_router(share_page_router)

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description,
                                 routes=app.routes)
            schema["paths"][events.INGEST_PATH] = ingest_openapi()
            app.openapi_schema = schema
        return app.openapi_schema

    # FastAPI's documented way to extend its schema is to replace this method.
    app.openapi = openapi  # type: ignore[method-assign]
    return app

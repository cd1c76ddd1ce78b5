"""The notification settings under ``/api/v1/notify``: a person's channels, their test, the
recent deliveries, and the server's Web Push key.

A channel is checked by building it (:func:`~hyperdash.server.notify.make_channel`) before it is
stored: a bad address, token or subscription is refused with 400 and nothing stored. Replies show
a channel's settings masked (:meth:`~hyperdash.server.notify.Channel.masked`), never whole: a
webhook's address, a bot's token, an SMTP password or a push subscription's keys stay on the
server. A receiver's answers are kept with the channel's secrets scrubbed out.
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, Field

from .. import events as ev
from .api import MAX_ID, Reply, _errors
from .auth import User, current_user
from .errors import BadRequest, Conflict, NotFound
from .notify import CHANNEL_KINDS, ENDED, Channel, Notification, SettingsError, make_channel
from .notify.outbox import (
    DEFAULT_EVENTS,
    EVENTS,
    FAILED,
    MAX_NAME_FILTER_CHARS,
    PENDING,
    ChannelRow,
    NotifyConfig,
    add_channel,
    check_events,
    delete_channel,
    get_channel,
    list_channels,
    recent_deliveries,
    set_last_result,
    update_channel,
)
from .text import checked
from .views import JSONReply, iso

__all__ = ["router", "MAX_CHANNELS"]

router = APIRouter(prefix="/api/v1/notify", default_response_class=JSONReply, tags=["notifications"])

# Channels one account may have: enough for every device and chat, not a way to fan one run out.
MAX_CHANNELS = 50
MAX_CHANNEL_NAME_CHARS = 200
STATES = (PENDING, "sending", "delivered", FAILED, "coalesced")


# --- documented shapes -------------------------------------------------------------------------
class ChannelResult(Reply):
    at: str = Field(description="ISO-8601 UTC, ending in Z")
    outcome: str = Field(description="delivered, retry, failed or gone")
    detail: str = Field(description="the receiver's answer, secrets masked")


class NotifyChannel(Reply):
    id: int
    kind: str
    name: str
    settings: dict[str, Any] = Field(description="the settings with every secret masked")
    events: list[str] | None = Field(description="the events it gets; null for the defaults")
    name_filter: str | None = Field(description="only runs whose name holds this (or matches it, with * ? [)")
    enabled: bool
    created_at: str
    last_result: ChannelResult | None


class NotifyChannels(Reply):
    channels: list[NotifyChannel]
    kinds: list[str] = Field(description="the kinds of channel this server sends to")
    events: list[str] = Field(description="the events a channel may ask for")
    default_events: list[str] = Field(
        description="what a channel that names none gets (and success of runs longer than long_run_s)")
    long_run_s: float


class NewChannel(BaseModel):
    kind: str = Field(description="webhook, slack, discord, ntfy, telegram, email or webpush")
    name: str | None = Field(None, max_length=MAX_CHANNEL_NAME_CHARS)
    settings: dict[str, Any] = Field(description="depends on the kind (see the README)")
    events: list[str] | None = Field(None, description="null for the defaults")
    name_filter: str | None = Field(None, max_length=MAX_NAME_FILTER_CHARS)
    enabled: bool = True


class ChannelEdit(BaseModel):
    """What to change; a field left out stays. ``events: null`` means the defaults again."""

    name: str | None = Field(None, max_length=MAX_CHANNEL_NAME_CHARS)
    settings: dict[str, Any] | None = Field(None, description="all of them anew (masked ones cannot be sent back)")
    settings_update: dict[str, Any] | None = Field(
        None, description="some of them anew (a new address or token), the others kept as they are; null "
        "removes an optional one. A new address (url, endpoint, an SMTP host or port) needs the channel's "
        "secrets (secret, token, password, auth) in the same update, else 400 bad_channel: stored secrets "
        "are never sent to a new address. Not with settings")
    events: list[str] | None = None
    name_filter: str | None = Field(None, max_length=MAX_NAME_FILTER_CHARS)
    enabled: bool | None = None


class ChannelRemoved(Reply):
    deleted: int


class ChannelTest(Reply):
    outcome: str = Field(description="delivered, retry, failed or gone")
    status: int | None = Field(description="the receiver's HTTP status, where it has one")
    detail: str = Field(description="the receiver's answer, secrets masked")


class NotifyDelivery(Reply):
    id: int
    channel_id: int
    channel_name: str
    event: str
    title: str
    run_uuid: str
    url: str
    state: str = Field(description="pending, sending, delivered, failed or coalesced")
    attempts: int
    detail: str | None = Field(description="the receiver's last answer, secrets masked")
    created_at: str
    delivered_at: str | None
    next_attempt_at: str | None


class NotifyDeliveries(Reply):
    deliveries: list[NotifyDelivery]


class WebPushKey(Reply):
    public_key: str = Field(description="applicationServerKey for PushManager.subscribe (base64url)")


# --- helpers -----------------------------------------------------------------------------------
def _config(request: Request) -> NotifyConfig:
    config: NotifyConfig = request.app.state.notify
    return config


def _build(request: Request, kind: str, settings: dict[str, Any]) -> Channel:
    try:
        return make_channel(kind, settings, **_config(request).channel_options)
    except SettingsError as exc:
        raise BadRequest(str(exc), code="bad_channel") from None


def _masked(request: Request, row: ChannelRow) -> dict[str, Any]:
    try:
        return _build(request, row.kind, row.settings).masked()
    except BadRequest:  # settings this server no longer accepts: show nothing of them
        return {}


def channel_json(request: Request, row: ChannelRow) -> dict[str, Any]:
    last = row.last_result
    return {
        "id": row.id, "kind": row.kind, "name": row.name, "settings": _masked(request, row),
        "events": None if row.events is None else [e for e in EVENTS if e in row.events],
        "name_filter": row.name_filter, "enabled": row.enabled, "created_at": iso(row.created_at),
        "last_result": None if last is None else {
            "at": iso(last.get("at")), "outcome": str(last.get("outcome", "")), "detail": str(last.get("detail", ""))},
    }


def _delivery_json(d: dict[str, Any]) -> dict[str, Any]:
    return {**d, **{name: iso(d[name]) for name in ("created_at", "delivered_at", "next_attempt_at")}}


def _text(value: str | None, what: str) -> str | None:
    if value is None:
        return None
    checked(value, what)
    return " ".join(value.split()) or None


def _events(events: list[str] | None) -> list[str] | None:
    try:
        check_events(events)
    except ValueError as exc:
        raise BadRequest(str(exc), code="bad_channel") from None
    return events


def _owned(request: Request, user: User, channel_id: int) -> ChannelRow:
    with request.app.state.store.read() as conn:
        row = get_channel(conn, user.id, channel_id)
    if row is None:
        raise NotFound(f"no notification channel {channel_id}")
    return row


def _updated(request: Request, row: ChannelRow, update: dict[str, Any]) -> dict[str, Any]:
    """The channel's settings with ``update`` over them, checked. A change of destination must
    name every secret the channel holds (null drops an optional one): whoever moves a channel to
    a new address must know its secrets, which are never sent there on their word alone."""
    channel = _build(request, row.kind, {**row.settings, **update})
    moved = [name for name in channel.destinations if channel.settings.get(name) != row.settings.get(name)]
    # (a push subscription's keys may come nested, as browsers give them)
    named = set(update) | (set(update["keys"]) if isinstance(update.get("keys"), dict) else set())
    missing = [name for name in channel.secret_settings if row.settings.get(name) and name not in named]
    if moved and missing:
        raise BadRequest(f"a new {' and '.join(moved)} needs this channel's {' and '.join(missing)} given again "
                         "with it: the stored one is never sent to a new address", code="bad_channel")
    return channel.settings


def _same_subscription(row: ChannelRow, channel: Channel) -> bool:
    return row.kind == channel.kind == "webpush" and row.settings.get("endpoint") == channel.settings["endpoint"]


def _refuse_duplicate(rows: list[ChannelRow], kind: str, settings: dict[str, Any], events: Any,
                      name_filter: str | None, editing: int | None = None) -> None:
    """409 when one of ``rows`` (other than channel ``editing``) already sends the same events
    of the same runs to the same place: every notification would come twice. Settings are
    compared as :class:`Channel` normalised them, secrets aside (a webhook's new signing secret
    does not make its deliveries any fewer); no events are the defaults."""
    def public(kind: str, settings: dict[str, Any]) -> dict[str, Any]:
        secret = CHANNEL_KINDS[kind].secret_settings
        return {name: value for name, value in settings.items() if name not in secret}

    wanted = frozenset(DEFAULT_EVENTS if events is None else events)
    for row in rows:
        if (row.id != editing and row.kind == kind and public(kind, row.settings) == public(kind, settings)
                and row.name_filter == name_filter
                and (DEFAULT_EVENTS if row.events is None else row.events) == wanted):
            raise Conflict(f"notification channel {row.id} ({row.name}) already sends these notifications there; "
                           "edit or remove it instead", code="duplicate_channel")


_ID = Path(ge=1, le=MAX_ID)


# --- routes ------------------------------------------------------------------------------------
@router.get("/channels", response_model=NotifyChannels, responses=_errors(401))
def channels(request: Request, user: User = Depends(current_user)):
    """The account's notification channels, oldest first, their settings masked."""
    with request.app.state.store.read() as conn:
        rows = list_channels(conn, user.id)
    return {
        "channels": [channel_json(request, r) for r in rows], "kinds": list(CHANNEL_KINDS), "events": list(EVENTS),
        "default_events": [e for e in EVENTS if e in DEFAULT_EVENTS], "long_run_s": _config(request).long_run_s,
    }


@router.post("/channels", status_code=201, response_model=NotifyChannel, responses=_errors(400, 401, 409))
def create_channel(body: NewChannel, request: Request, user: User = Depends(current_user)):
    """Add a channel. Its settings are checked first: a bad one is refused (400) and nothing is
    stored. A browser's push subscription that is there already is updated instead (200)."""
    channel = _build(request, body.kind, body.settings)
    name = _text(body.name, "name") or body.kind
    name_filter = _text(body.name_filter, "name_filter")
    events = _events(body.events)
    store = request.app.state.store

    def save(conn: Any) -> tuple[int, bool]:
        rows = list_channels(conn, user.id)
        for row in rows:
            if _same_subscription(row, channel):
                update_channel(conn, row.id, now=ev.now_ms(), settings=channel.settings, name=name, events=events,
                               name_filter=name_filter, enabled=body.enabled)
                return row.id, False
        _refuse_duplicate(rows, body.kind, channel.settings, events, name_filter)
        if len(rows) >= MAX_CHANNELS:
            raise Conflict(f"an account may have {MAX_CHANNELS} notification channels; remove one first",
                           code="too_many_channels")
        return add_channel(conn, user.id, body.kind, name, channel.settings, now=ev.now_ms(), events=events,
                           name_filter=name_filter, enabled=body.enabled), True

    channel_id, created = store.writer.call(save)
    return JSONReply(channel_json(request, _owned(request, user, channel_id)), status_code=201 if created else 200)


@router.patch("/channels/{channel_id}", response_model=NotifyChannel, responses=_errors(400, 401, 404, 409))
def edit_channel(body: ChannelEdit, request: Request, channel_id: int = _ID, user: User = Depends(current_user)):
    """Change a channel's name, events (null: the defaults), name filter, enabled, or settings
    (checked as when added): all of them (``settings``), or some, keeping the secrets not sent
    (``settings_update``), unless the address changes: a new address needs the secrets again (400)."""
    row = _owned(request, user, channel_id)
    given = body.model_fields_set
    changes: dict[str, Any] = {}
    if body.settings is not None and body.settings_update is not None:
        raise BadRequest("give settings (all of them) or settings_update (some), not both", code="bad_channel")
    if body.settings is not None:
        changes["settings"] = _build(request, row.kind, body.settings).settings
    if body.settings_update is not None:
        changes["settings"] = _updated(request, row, body.settings_update)
    if body.name is not None:
        changes["name"] = _text(body.name, "name") or row.kind
    if "events" in given:
        changes["events"] = _events(body.events)
    if "name_filter" in given:
        changes["name_filter"] = _text(body.name_filter, "name_filter")
    if body.enabled is not None:
        changes["enabled"] = body.enabled

    def save(conn: Any) -> None:
        if set(changes) & {"settings", "events", "name_filter"}:
            _refuse_duplicate(list_channels(conn, user.id), row.kind, changes.get("settings", row.settings),
                              changes.get("events", row.events), changes.get("name_filter", row.name_filter),
                              editing=channel_id)
        update_channel(conn, channel_id, now=ev.now_ms(), **changes)

    request.app.state.store.writer.call(save)
    return channel_json(request, _owned(request, user, channel_id))


@router.delete("/channels/{channel_id}", response_model=ChannelRemoved, responses=_errors(401, 404))
def remove_channel(request: Request, channel_id: int = _ID, user: User = Depends(current_user)):
    """Remove a channel and what is queued for it."""
    _owned(request, user, channel_id)
    request.app.state.store.writer.call(lambda conn: delete_channel(conn, channel_id))
    return {"deleted": channel_id}


@router.post("/channels/{channel_id}/test", response_model=ChannelTest, responses=_errors(401, 404))
def test_channel(request: Request, channel_id: int = _ID, user: User = Depends(current_user)):
    """Send a test notification now and give the receiver's answer (a receiver that hangs is
    cut off by the delivery timeout). The answer is kept as the channel's last result."""
    row = _owned(request, user, channel_id)
    config = _config(request)
    note = Notification(
        kind=ENDED, status=ev.SUCCESS, run_name="Hyperdash test notification", run_uuid="test",
        base_url=config.base_url, duration_s=0, host=None, tail="If you can read this, the channel works.",
        key=f"test-{uuid.uuid4().hex}",
    )
    try:
        channel = make_channel(row.kind, row.settings, **config.channel_options)
    except SettingsError as exc:
        return {"outcome": "failed", "status": None, "detail": f"the channel's settings are unusable: {exc}"}
    result = channel.deliver(note)
    last = {"at": ev.now_ms(), "outcome": result.outcome.value, "detail": result.detail}
    request.app.state.store.writer.call(lambda conn: set_last_result(conn, channel_id, last))
    return {"outcome": result.outcome.value, "status": result.status, "detail": result.detail}


@router.get("/deliveries", response_model=NotifyDeliveries, responses=_errors(400, 401))
def deliveries(
    request: Request,
    channel: int | None = Query(None, ge=1, le=MAX_ID, description="only this channel's"),
    state: str | None = Query(None, description="only those in this state: " + ", ".join(STATES)),
    limit: int = Query(50, ge=1, le=500),
    user: User = Depends(current_user),
):
    """The account's recent notifications, newest first, with how each went (failed ones with
    the receiver's answer)."""
    if state is not None and state not in STATES:
        raise BadRequest(f"state must be one of {', '.join(STATES)}")
    with request.app.state.store.read() as conn:
        found = recent_deliveries(conn, user.id, limit=limit, channel_id=channel, state=state)
    return {"deliveries": [_delivery_json(d) for d in found]}


@router.get("/webpush_key", response_model=WebPushKey, responses=_errors(401))
def webpush_key(request: Request, user: User = Depends(current_user)):
    """The server's VAPID public key, for a browser to subscribe to its pushes."""
    return {"public_key": _config(request).channel_options["vapid"].application_server_key}

"""The durable outbox: a person's channels, and one queued row per (notification, channel).

Store functions only, each taking a connection (those that write run as jobs on the store's
writer). The subscriber (:mod:`.subscriber`) queues rows; the delivery worker (:mod:`.worker`)
claims the due ones under a lease, sends them and marks the result. A row's life::

    pending --claim--> sending --delivered--> delivered
       ^                  |----retry-------> pending (next_attempt_at later)
       |                  |----failed------> failed (the receiver's answer in last_detail)
       +--lease expired---+  (a crash after the claim: sent again, with the same key)

A row's ``key`` is its notification's, the same for every channel (a notification is queued once
per channel); what a channel sends as the key (a webhook's ``Idempotency-Key``, a mail's
``Message-ID``) is made of it and the channel's id, so that no two channels send the same.

A row that a later event of the same run made moot before it was sent (a run lost then back
within the grouping window, a lost run that then ended) becomes ``coalesced``: kept, so that its
key stays taken and a rescan does not queue it again.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.engine import Connection

from ...events import FAILURE, KILLED, SUCCESS, USER_CANCELED
from ..dialect import insert_many, skip_locked
from ..store import deleted_runs, notify_channels, notify_outbox
from .message import BACK, ENDED, LOST, RULE, STALLED, Notification

__all__ = [
    "EVENTS", "DEFAULT_EVENTS", "PENDING", "SENDING", "DELIVERED", "FAILED", "COALESCED",
    "NotifyConfig", "ChannelRow", "Claimed", "add_channel", "list_channels", "enabled_channels",
    "get_channel", "update_channel", "delete_channel", "check_events", "event_of", "wants", "name_matches", "enqueue",
    "enqueue_many", "release_claims",
    "claim_due", "mark_delivered", "mark_retry", "mark_failed", "set_last_result", "recent_deliveries",
    "purge_outbox",
]

# What a channel may ask for: a run's final status, that it went silent or came back, that it
# stalled (alive, writing nothing), or that one of the person's rules fired.
EVENTS = (SUCCESS, FAILURE, KILLED, USER_CANCELED, LOST, BACK, STALLED, RULE)
# A channel that names no events gets these (and success of a long run: see wants()).
DEFAULT_EVENTS = frozenset({FAILURE, KILLED, LOST, STALLED})
# The longest run-name filter a channel may hold (the column's size).
MAX_NAME_FILTER_CHARS = 600

PENDING, SENDING, DELIVERED, FAILED, COALESCED = "pending", "sending", "delivered", "failed", "coalesced"


@dataclass(frozen=True)
class NotifyConfig:
    """How the server queues and sends notifications (times in seconds; tests shorten them).

    ``base_url``: the dashboard's public address, for the link to the run (``HYPERDASH_PUBLIC_URL``).
    ``long_run_s``: by default, success is told only of runs longer than this. ``tail_lines``: the
    lines of output sent. ``hold_s``: lost, back and stalled wait this long, so that a flapping run
    sends nothing (a stall that the job's progress undoes within it is not told).
    ``stall_repeat_s``: a run's stalls are told to a channel once in this long at most (a job
    whose natural pauses come close to its stall window would otherwise send one at each).
    ``lease_s``: how long a claimed row is one worker's (longer than a delivery's timeout); after
    it, another worker sends the row again. ``backoff_s`` doubles per attempt up to
    ``max_backoff_s``; a row is given up after ``max_attempts`` or ``give_up_after_s``.
    ``rate_limit`` deliveries per channel per ``rate_window_s``, the rest wait; at most
    ``in_flight_per_channel`` of a channel's at once (a slow receiver holds no more slots). ``poll_s``: how
    often the worker looks for due rows when nothing wakes it. ``deliveries``: deliveries at
    once per process. ``rescan_s``: at startup, runs that ended this long ago are checked for a
    missing row (facts announced just before a crash are never delivered to the subscriber).
    ``lost_timeout_s``: the server's lost timeout, so that a rescan finds runs lost since.
    ``channel_options``: passed to every ``make_channel`` (``timeout``, ``vapid``, ...).
    ``keep_days``: delivered, failed and coalesced rows older than this are purged.
    """

    base_url: str = "http://127.0.0.1:8000"
    long_run_s: float = 300.0
    tail_lines: int = 20
    hold_s: float = 30.0
    stall_repeat_s: float = 3600.0
    lease_s: float = 120.0
    backoff_s: float = 10.0
    max_backoff_s: float = 3600.0
    max_attempts: int = 30
    give_up_after_s: float = 24 * 3600.0
    rate_limit: int = 20
    rate_window_s: float = 60.0
    in_flight_per_channel: int = 1
    poll_s: float = 2.0
    deliveries: int = 4
    rescan_s: float = 900.0
    lost_timeout_s: float = 120.0
    channel_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    keep_days: float = 14.0


@dataclass(frozen=True)
class ChannelRow:
    """A channel as stored. ``events`` is None for the defaults."""

    id: int
    user_id: int
    kind: str
    name: str
    settings: dict[str, Any]
    events: frozenset[str] | None
    name_filter: str | None
    enabled: bool
    created_at: int
    last_result: dict[str, Any] | None
    changed_at: int  # when what it is sent, or where, last changed (else its creation)


@dataclass(frozen=True)
class Claimed:
    """A row claimed for delivery: what to send, where, and the lease that proves the claim."""

    id: int
    channel: ChannelRow
    notification: Notification
    attempts: int  # including this one
    created_at: int
    claimed_until: int


def _channel(row: Any) -> ChannelRow:
    return ChannelRow(
        id=row.id, user_id=row.user_id, kind=row.kind, name=row.name, settings=json.loads(row.settings),
        events=None if row.events is None else frozenset(json.loads(row.events)),
        name_filter=row.name_filter, enabled=bool(row.enabled), created_at=row.created_at,
        last_result=None if row.last_result is None else json.loads(row.last_result),
        changed_at=row.changed_at if row.changed_at is not None else row.created_at,
    )


def check_events(events: Sequence[str] | None) -> None:
    """ValueError naming the first event that is not one of :data:`EVENTS`, or for no event at
    all (a channel that wants nothing: ``None`` means the defaults)."""
    if events is not None and not events:
        raise ValueError(f"name at least one event (of {', '.join(EVENTS)}), or none for the defaults")
    if events is not None:
        unknown = sorted(set(events) - set(EVENTS))
        if unknown:
            raise ValueError(f"unknown event {unknown[0]!r}; expected some of {', '.join(EVENTS)}")


def add_channel(conn: Connection, user_id: int, kind: str, name: str, settings: dict[str, Any], *, now: int,
                events: Sequence[str] | None = None, name_filter: str | None = None,
                enabled: bool = True) -> int:
    """Store a channel and return its id. The settings are stored as given: check them first
    with :func:`~hyperdash.server.notify.make_channel`. ValueError for an unknown event."""
    check_events(events)
    result = conn.execute(notify_channels.insert().values(
        user_id=user_id, kind=kind, name=name, settings=json.dumps(settings),
        events=None if events is None else json.dumps(sorted(set(events))),
        name_filter=name_filter or None, enabled=enabled, created_at=now,
    ))
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


def list_channels(conn: Connection, user_id: int) -> list[ChannelRow]:
    """Every channel of the account, oldest first."""
    rows = conn.execute(select(notify_channels).where(notify_channels.c.user_id == user_id)
                        .order_by(notify_channels.c.id)).all()
    return [_channel(r) for r in rows]


def enabled_channels(conn: Connection, user_id: int) -> list[ChannelRow]:
    return [c for c in list_channels(conn, user_id) if c.enabled]


def get_channel(conn: Connection, user_id: int, channel_id: int) -> ChannelRow | None:
    """The account's channel ``channel_id``, or None (another account's is None too)."""
    row = conn.execute(select(notify_channels).where(
        notify_channels.c.id == channel_id, notify_channels.c.user_id == user_id)).first()
    return None if row is None else _channel(row)


_UNCHANGED: Any = object()


def update_channel(conn: Connection, channel_id: int, *, now: int, name: str | None = None,
                   settings: dict[str, Any] | None = None, events: Sequence[str] | None = _UNCHANGED,
                   name_filter: str | None = _UNCHANGED, enabled: bool | None = None) -> None:
    """Change what is given of a channel (``events=None`` means the defaults again; checked
    settings only, as for :func:`add_channel`), as of ``now``: a change of anything but its name
    is its ``changed_at``. ValueError for an unknown event."""
    values: dict[str, Any] = {}
    if name is not None:
        values["name"] = name
    if settings is not None:
        values["settings"] = json.dumps(settings)
        values["last_result"] = None  # the old answer was about the old settings
    if events is not _UNCHANGED:
        check_events(events)
        values["events"] = None if events is None else json.dumps(sorted(set(events)))
    if name_filter is not _UNCHANGED:
        values["name_filter"] = name_filter or None
    if enabled is not None:
        values["enabled"] = enabled
    if set(values) - {"name"}:
        values["changed_at"] = now
    if values:
        conn.execute(update(notify_channels).where(notify_channels.c.id == channel_id).values(**values))


def delete_channel(conn: Connection, channel_id: int) -> None:
    """Delete a channel and everything queued for it."""
    conn.execute(delete(notify_outbox).where(notify_outbox.c.channel_id == channel_id))
    conn.execute(delete(notify_channels).where(notify_channels.c.id == channel_id))


def set_last_result(conn: Connection, channel_id: int, result: dict[str, Any]) -> None:
    conn.execute(update(notify_channels).where(notify_channels.c.id == channel_id)
                 .values(last_result=json.dumps(result)))


def event_of(n: Notification) -> str:
    """The channel event a notification answers to: its final status, or its kind (``lost``,
    ``back``, ``stalled``, ``rule``)."""
    return n.status or "" if n.kind == ENDED else n.kind


def wants(channel: ChannelRow, n: Notification, *, long_run_s: float) -> bool:
    """Whether ``channel`` asked for ``n``: its events (or the defaults, with success only for
    runs longer than ``long_run_s``) and its name filter."""
    event = event_of(n)
    if channel.events is not None:
        wanted = event in channel.events
    else:
        wanted = event in DEFAULT_EVENTS or (
            event == SUCCESS and n.duration_s is not None and n.duration_s > long_run_s)
    return wanted and name_matches(channel.name_filter, n.run_name)


def name_matches(pattern: str | None, name: str) -> bool:
    """No pattern matches every run; one with ``*``, ``?`` or ``[`` is a glob on the whole name;
    any other is a substring. Both ignore case."""
    if not pattern:
        return True
    pattern, name = pattern.lower(), name.lower()
    if any(c in pattern for c in "*?["):
        return fnmatch.fnmatchcase(name, pattern)
    return pattern in name


# Lost and back undo each other; the end of a run makes a pending lost or back moot.
_MOOTED_BY = {LOST: (BACK,), BACK: (LOST,), ENDED: (LOST, BACK, STALLED)}
_COLUMNS = ("channel_id", "run_id", "key", "kind", "notification", "state", "attempts", "next_attempt_at",
            "created_at")


def enqueue(conn: Connection, channel_id: int, run_id: int | None, n: Notification, *, now: int,
            hold_ms: int = 0, stall_repeat_ms: int = 0) -> bool:
    """Queue ``n`` for one channel (see :func:`enqueue_many`); True if queued."""
    return enqueue_many(conn, [channel_id], run_id, n, now=now, hold_ms=hold_ms, stall_repeat_ms=stall_repeat_ms) == 1


def enqueue_many(conn: Connection, channel_ids: Sequence[int], run_id: int | None, n: Notification, *,
                 now: int, hold_ms: int = 0, stall_repeat_ms: int = 0) -> int:
    """Queue ``n`` for each channel, once (a second call with the same key does nothing); how
    many were queued to be sent. Lost, back and stalled are held ``hold_ms`` before they are
    sent, so that a run flapping within that window sends nothing: a lost and the back that
    undoes it both become ``coalesced``, and so does a stall the run resumed from
    (:func:`moot_held`). A stall is not queued for a channel told of one of the same run in the
    last ``stall_repeat_ms``. A few statements whatever the number of channels."""
    if not channel_ids:
        return 0
    taken = set(conn.execute(select(notify_outbox.c.channel_id).where(
        notify_outbox.c.channel_id.in_(channel_ids), notify_outbox.c.key == n.key)).scalars())
    if n.kind == STALLED and run_id is not None and stall_repeat_ms > 0:
        taken.update(conn.execute(select(notify_outbox.c.channel_id).where(
            notify_outbox.c.channel_id.in_(channel_ids), notify_outbox.c.run_id == run_id,
            notify_outbox.c.kind == STALLED, notify_outbox.c.state != COALESCED,
            notify_outbox.c.created_at > now - stall_repeat_ms)).scalars())
    fresh = [c for c in dict.fromkeys(channel_ids) if c not in taken]
    if not fresh:
        return 0
    due = now + (hold_ms if n.kind in (LOST, BACK, STALLED) else 0)
    undone: set[int] = set()
    if run_id is not None and n.kind in _MOOTED_BY:
        moot = and_(notify_outbox.c.channel_id.in_(fresh), notify_outbox.c.run_id == run_id,
                    notify_outbox.c.state == PENDING, notify_outbox.c.attempts == 0,
                    notify_outbox.c.kind.in_(_MOOTED_BY[n.kind]))
        if n.kind in (LOST, BACK):
            # An undone lost or back: the person has heard nothing, and needs not.
            undone = set(conn.execute(select(notify_outbox.c.channel_id).where(moot)).scalars())
        conn.execute(update(notify_outbox).where(moot).values(state=COALESCED, last_detail=f"made moot by {n.event}"))
    data = json.dumps(dataclasses.asdict(n))
    # ON CONFLICT DO NOTHING: should another process queue the same key meanwhile, one row stays.
    insert_many(conn, notify_outbox, _COLUMNS, [
        (c, run_id, n.key, n.kind, data, COALESCED if c in undone else PENDING, 0, due, now) for c in fresh])
    return len(fresh) - len(undone)


def moot_held(conn: Connection, run_id: int, kinds: Sequence[str], why: str) -> int:
    """What the run did next undid them: its notifications of ``kinds`` not sent yet (held, see
    :func:`enqueue_many`) become ``coalesced``, for every channel (also those that do not take
    the event that undid them, a channel on the default events that takes no ``back``, say);
    how many."""
    return conn.execute(update(notify_outbox).where(
        notify_outbox.c.run_id == run_id, notify_outbox.c.kind.in_(kinds), notify_outbox.c.state == PENDING,
        notify_outbox.c.attempts == 0,
    ).values(state=COALESCED, last_detail=f"made moot: {why}")).rowcount


def claim_due(conn: Connection, *, now: int, lease_ms: int, limit: int, rate_limit: int,
              rate_window_ms: int, in_flight_limit: int | None = None) -> list[Claimed]:
    """Claim up to ``limit`` due rows (pending and due, or sending with an expired lease) for
    ``lease_ms``, at most ``rate_limit`` per channel within ``rate_window_ms`` (counting those
    delivered and those in flight), and at most ``in_flight_limit`` per channel in flight at
    once (so that a receiver that is slow to answer holds no more delivery slots than that: the
    rows of a channel with its fill in flight are not candidates). A row held back by the rate
    limit is put off until its channel's window has room, so that it does not hide other
    channels' rows."""
    due = or_(and_(notify_outbox.c.state == PENDING, notify_outbox.c.next_attempt_at <= now),
              and_(notify_outbox.c.state == SENDING, notify_outbox.c.claimed_until <= now))
    # Nobody is told of a run deleted since its notification was queued (its rows go with the
    # run's purge; until then its id is still the deleted run's, never a new run's).
    being_purged = select(deleted_runs.c.run_id).where(deleted_runs.c.purged_at.is_(None))
    due = and_(due, or_(notify_outbox.c.run_id.is_(None), notify_outbox.c.run_id.not_in(being_purged)))
    in_flight = and_(notify_outbox.c.state == SENDING, notify_outbox.c.claimed_until > now)
    if in_flight_limit is not None:  # channels with their fill in flight are not even looked at
        full = (select(notify_outbox.c.channel_id).where(in_flight).group_by(notify_outbox.c.channel_id)
                .having(func.count() >= in_flight_limit))
        due = and_(due, notify_outbox.c.channel_id.not_in(full))
    candidates = conn.execute(skip_locked(conn, select(
        notify_outbox.c.id, notify_outbox.c.channel_id, notify_outbox.c.notification, notify_outbox.c.attempts,
        notify_outbox.c.created_at,
    ).where(due).order_by(notify_outbox.c.next_attempt_at, notify_outbox.c.id).limit(limit * 5))).all()
    if not candidates:
        return []
    channel_ids = sorted({r.channel_id for r in candidates})
    window_start = now - rate_window_ms
    used: dict[int, int] = {channel_id: count for channel_id, count in conn.execute(
        select(notify_outbox.c.channel_id, func.count()).where(
            notify_outbox.c.channel_id.in_(channel_ids),
            or_(notify_outbox.c.delivered_at >= window_start,
                and_(notify_outbox.c.state == SENDING, notify_outbox.c.claimed_until > now)),
        ).group_by(notify_outbox.c.channel_id))}
    busy: dict[int, int] = {}
    if in_flight_limit is not None:
        busy = {channel_id: count for channel_id, count in conn.execute(
            select(notify_outbox.c.channel_id, func.count()).where(
                notify_outbox.c.channel_id.in_(channel_ids), in_flight).group_by(notify_outbox.c.channel_id))}
    channels = {r.id: _channel(r) for r in conn.execute(
        select(notify_channels).where(notify_channels.c.id.in_(channel_ids))).all()}
    chosen: list[Any] = []
    held: list[int] = []
    for r in candidates:
        if in_flight_limit is not None and busy.get(r.channel_id, 0) >= in_flight_limit:
            continue  # its turn comes when the one in flight is done
        if len(chosen) < limit and used.get(r.channel_id, 0) < rate_limit and r.channel_id in channels:
            used[r.channel_id] = used.get(r.channel_id, 0) + 1
            busy[r.channel_id] = busy.get(r.channel_id, 0) + 1
            chosen.append(r)
        elif used.get(r.channel_id, 0) >= rate_limit:
            held.append(r.id)
    if held:
        # Room comes back as the oldest delivery of the window leaves it; a second is close enough.
        conn.execute(update(notify_outbox).where(notify_outbox.c.id.in_(held), notify_outbox.c.state == PENDING)
                     .values(next_attempt_at=now + min(rate_window_ms, 1000)))
    if not chosen:
        return []
    until = now + lease_ms
    conn.execute(update(notify_outbox).where(notify_outbox.c.id.in_([r.id for r in chosen]))
                 .values(state=SENDING, claimed_until=until, attempts=notify_outbox.c.attempts + 1))
    return [Claimed(r.id, channels[r.channel_id], _as_sent(r.channel_id, r.notification), r.attempts + 1,
                    r.created_at, until) for r in chosen]


def _as_sent(channel_id: int, stored: str) -> Notification:
    """A queued notification as its channel sends it: with a key of that channel's own, the same
    at every attempt. (The queued key is made of the run's uuid, which the client chooses: two
    accounts' runs may share it, and their channels a receiver, which would take the second
    notification for a copy of the first.)"""
    n = Notification(**json.loads(stored))
    return dataclasses.replace(n, key=hashlib.sha256(f"{channel_id}\0{n.key}".encode()).hexdigest()[:32])


def release_claims(conn: Connection, *, now: int) -> int:
    """Make every row claimed for delivery due again at once (their claims are a dead process's:
    call it only where no other process can hold one); how many."""
    return int(conn.execute(update(notify_outbox).where(
        notify_outbox.c.state == SENDING, notify_outbox.c.claimed_until > now,
    ).values(claimed_until=now)).rowcount or 0)


def _mine(claim: Claimed) -> Any:
    # A worker whose lease ran out (another took the row since) must not overwrite the row.
    return and_(notify_outbox.c.id == claim.id, notify_outbox.c.state == SENDING,
                notify_outbox.c.claimed_until == claim.claimed_until)


def mark_delivered(conn: Connection, claim: Claimed, *, now: int, detail: str = "") -> None:
    conn.execute(update(notify_outbox).where(_mine(claim)).values(
        state=DELIVERED, delivered_at=now, claimed_until=None, last_detail=detail or None))


def mark_retry(conn: Connection, claim: Claimed, *, next_attempt_at: int, detail: str) -> None:
    conn.execute(update(notify_outbox).where(_mine(claim)).values(
        state=PENDING, next_attempt_at=next_attempt_at, claimed_until=None, last_detail=detail))


def mark_failed(conn: Connection, claim: Claimed, *, detail: str) -> None:
    conn.execute(update(notify_outbox).where(_mine(claim)).values(
        state=FAILED, claimed_until=None, last_detail=detail))


def recent_deliveries(conn: Connection, user_id: int, *, limit: int = 50, channel_id: int | None = None,
                      state: str | None = None) -> list[dict[str, Any]]:
    """The account's newest outbox rows, newest first, as the settings page shows them (times in
    ms): which channel, the event, the title and link, the state and attempts, and ``detail``,
    the receiver's last answer (scrubbed of the channel's secrets when it was kept)."""
    query = (select(notify_outbox, notify_channels.c.name.label("channel_name"))
             .join(notify_channels, notify_channels.c.id == notify_outbox.c.channel_id)
             .where(notify_channels.c.user_id == user_id))
    if channel_id is not None:
        query = query.where(notify_outbox.c.channel_id == channel_id)
    if state is not None:
        query = query.where(notify_outbox.c.state == state)
    found = []
    for r in conn.execute(query.order_by(notify_outbox.c.id.desc()).limit(limit)).all():
        n = Notification(**json.loads(r.notification))
        found.append({
            "id": r.id, "channel_id": r.channel_id, "channel_name": r.channel_name, "event": event_of(n),
            "title": n.title, "run_uuid": n.run_uuid, "url": n.url, "state": r.state, "attempts": r.attempts,
            "detail": r.last_detail, "created_at": r.created_at, "delivered_at": r.delivered_at,
            "next_attempt_at": r.next_attempt_at if r.state == PENDING else None,
        })
    return found


def purge_outbox(conn: Connection, *, now: int, keep_ms: int) -> int:
    """Delete the rows done with (delivered, failed, coalesced) queued over ``keep_ms`` ago;
    how many. (A rescan looks back a day at most, so an older key needs not stay taken.)"""
    result = conn.execute(delete(notify_outbox).where(
        notify_outbox.c.state.in_((DELIVERED, FAILED, COALESCED)), notify_outbox.c.created_at < now - keep_ms))
    return int(result.rowcount or 0)

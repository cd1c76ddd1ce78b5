"""A run named by the start of its uuid, as ``hyperdash runs`` and the SDK's first line show it.

``3f2a9c1e`` names the caller's run whose uuid starts so, when exactly one does. The API and the
dashboard resolve such a prefix to the full uuid before they look the run up; a prefix that
several runs share is refused with the list of them, never answered with one picked at random.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.engine import Connection

from .deletion import not_deleted
from .errors import ApiError
from .store import runs

__all__ = ["MIN_PREFIX_CHARS", "UUID_CHARS", "AmbiguousRun", "full_run_uuid", "is_uuid_prefix"]

#: The fewest hex digits a prefix must have: the short id of ``hyperdash runs``.
MIN_PREFIX_CHARS = 8
#: The length of a whole uuid in its usual text form.
UUID_CHARS = 36
#: How many of the runs that share a prefix the refusal lists.
MAX_CANDIDATES = 10
_UUID_SHAPE = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"
_HEX = frozenset("0123456789abcdef")


class AmbiguousRun(ApiError):
    """409: the prefix starts the uuids of several runs; ``candidates`` lists them (newest
    first, at most :data:`MAX_CANDIDATES`), each ``{"uuid", "name"}``."""

    status = 409
    code = "ambiguous_run"

    def __init__(self, prefix: str, candidates: list[dict], more: bool):
        listed = ", ".join(f"{c['uuid']} ({c['name']})" for c in candidates)
        super().__init__(
            f"{prefix} is the start of the ids of {'more than ' if more else ''}{len(candidates)} runs: "
            f"{listed}{', ...' if more else ''}; give more of the id",
            details={"candidates": candidates},  # for a client to offer them
        )
        self.prefix = prefix
        self.candidates = candidates


def is_uuid_prefix(ref: str) -> bool:
    """Whether ``ref`` (lower case) can be the start of a uuid with at least
    :data:`MIN_PREFIX_CHARS` hex digits, but is not a whole one."""
    if not MIN_PREFIX_CHARS <= len(ref) < UUID_CHARS:
        return False
    # (ref is shorter than the shape: only its own characters are matched)
    return all(c in _HEX if shape == "x" else c == "-" for c, shape in zip(ref, _UUID_SHAPE, strict=False))


def full_run_uuid(conn: Connection, user_id: int, ref: str) -> str:
    """The uuid of the caller's run that ``ref`` names: ``ref`` itself unless it is a uuid
    prefix that exactly one of the caller's runs starts with (then that run's whole uuid).

    Raises :class:`AmbiguousRun` (409) when several of the caller's runs start so. A prefix no
    run has is returned as it is, for the lookup that follows to answer 404 as for any uuid.
    """
    prefix = ref.strip().lower()
    if not is_uuid_prefix(prefix):
        return ref
    rows = conn.execute(
        select(runs.c.uuid, runs.c.name)
        .where(runs.c.user_id == user_id, runs.c.uuid.startswith(prefix, autoescape=True), not_deleted())
        .order_by(runs.c.started_at.desc(), runs.c.id.desc())
        .limit(MAX_CANDIDATES + 1)
    ).all()
    if not rows:
        return ref
    if len(rows) == 1:
        return rows[0].uuid
    candidates = [{"uuid": r.uuid, "name": r.name} for r in rows[:MAX_CANDIDATES]]
    raise AmbiguousRun(prefix, candidates, more=len(rows) > MAX_CANDIDATES)

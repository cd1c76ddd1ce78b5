"""The server's VAPID key pair for Web Push: made on the first start, kept in the store.

Browsers subscribe with the public half, and a subscription works only with the pair it was made
for, so the pair must outlive restarts and be the same for every server process on one database.
The first start makes one and inserts it with ``ON CONFLICT DO NOTHING``; whichever process
inserted first wins, and every process then uses the stored one.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.engine import Connection

from ...events import now_ms
from ..dialect import insert_many
from ..store import Store, server_values
from .webpush import VapidKeys

__all__ = ["VAPID_KEY_NAME", "stored_vapid_keys"]

VAPID_KEY_NAME = "vapid_private_key"


def _load_or_make(conn: Connection) -> VapidKeys:
    made = VapidKeys.generate()
    insert_many(conn, server_values, ("name", "value", "created_at"), [(VAPID_KEY_NAME, made.dumps(), now_ms())])
    stored = conn.execute(select(server_values.c.value).where(server_values.c.name == VAPID_KEY_NAME)).scalar_one()
    return VapidKeys.loads(stored)


def stored_vapid_keys(store: Store) -> VapidKeys:
    """The store's VAPID key pair, made and kept now if it has none yet."""
    with store.read() as conn:
        stored = conn.execute(select(server_values.c.value).where(server_values.c.name == VAPID_KEY_NAME)).scalar()
    if stored is not None:
        return VapidKeys.loads(stored)
    keys: VapidKeys = store.writer.call(_load_or_make)
    return keys

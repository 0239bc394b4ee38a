"""Write push events into the outbox, in the transaction of the action they announce.

Events carry ids and codes only (never content). Each commit also sends a PostgreSQL
NOTIFY on :data:`CHANNEL` naming the accounts concerned, so every server process
listening wakes the streams of those accounts; a stream then reads the outbox from
the last id it delivered, so nothing is lost across reconnections or processes.
NOTIFY is transactional: it is delivered only if the action commits.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable

import asyncpg
import msgspec

__all__ = ["CHANNEL", "WAKE_ALL", "publish"]

CHANNEL = "confide_events"
WAKE_ALL = "*"
_NOTIFY_LIMIT = 7_000  # PostgreSQL caps a NOTIFY payload at 8000 bytes


async def publish(
    conn: asyncpg.Connection,
    account_ids: Iterable[uuid.UUID],
    kind: str,
    payload: dict[str, str],
    now: dt.datetime,
) -> None:
    """Queue one event for each account and notify listeners (inside a transaction)."""
    targets = sorted(set(account_ids), key=lambda a: a.bytes)
    if not targets:
        return
    body = msgspec.json.encode(payload).decode()
    await conn.execute(
        """
        INSERT INTO account_events (account_id, kind, payload, created_at)
        SELECT unnest($1::uuid[]), $2, $3::jsonb, $4
        """,
        targets,
        kind,
        body,
        now,
    )
    names = ",".join(a.hex for a in targets)
    await conn.execute(
        "SELECT pg_notify($1, $2)", CHANNEL, names if len(names) <= _NOTIFY_LIMIT else WAKE_ALL
    )

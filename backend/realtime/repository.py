"""SQL of the push stream: outbox pages for one account, read only while its session lives."""

from __future__ import annotations

import datetime as dt
import uuid

import asyncpg
import msgspec

from backend.db.tenancy import tenant_transaction
from backend.realtime.outbox import EVENTS_LOCK_SQL

__all__ = ["EventRow", "Page", "read_page", "tail_id"]


class EventRow(msgspec.Struct, frozen=True, kw_only=True):
    """One outbox row: ids and codes only."""

    id: int
    kind: str
    payload: str


class Page(msgspec.Struct, frozen=True, kw_only=True):
    """Events after a given id, or ``live=False`` when the session has ended."""

    live: bool
    events: list[EventRow]


# Live means what authentication means (not revoked, neither expiry passed, account
# active), read without extending the idle expiry: an open stream is not activity, so
# an unattended device still logs off.
_LIVE = """
    EXISTS (
        SELECT 1 FROM sessions s JOIN accounts a ON a.id = s.account_id
        WHERE s.id = $1 AND s.account_id = $3
          AND s.revoked_at IS NULL
          AND s.idle_expires_at > $2
          AND s.absolute_expires_at > $2
          AND a.status = 'active'
    )
"""

_PAGE = f"""
    SELECT live.ok, e.id, e.kind, e.payload::text
    FROM (SELECT {_LIVE} AS ok) AS live
    LEFT JOIN LATERAL (
        SELECT id, kind, payload FROM account_events
        WHERE account_id = $3 AND id > $4 AND live.ok
        ORDER BY id
        LIMIT $5
    ) AS e ON true
    ORDER BY e.id
"""  # noqa: S608 -- constant SQL fragments, no input

_TAIL = "SELECT coalesce(max(id), 0) FROM account_events WHERE account_id = $1"


async def read_page(
    conn: asyncpg.Connection,
    *,
    session_id: uuid.UUID,
    account_id: uuid.UUID,
    org_id: uuid.UUID,
    after: int,
    limit: int,
    now: dt.datetime,
) -> Page:
    """Up to ``limit`` events of ``account_id`` with ids above ``after``, in id order.

    Takes the account's exclusive outbox lock first, so no publisher of this account
    is in flight: every id below the last one returned is committed (see
    :mod:`backend.realtime.outbox`).
    """
    async with tenant_transaction(conn, org_id):
        await conn.execute(EVENTS_LOCK_SQL, account_id)
        rows = await conn.fetch(_PAGE, session_id, now, account_id, after, limit)
    live = bool(rows[0][0])
    events = [EventRow(id=r[1], kind=r[2], payload=r[3]) for r in rows if r[1] is not None]
    return Page(live=live, events=events)


async def tail_id(conn: asyncpg.Connection, account_id: uuid.UUID) -> int:
    """The account's newest event id (0 when none), under the outbox lock."""
    async with conn.transaction():
        await conn.execute(EVENTS_LOCK_SQL, account_id)
        tail = await conn.fetchval(_TAIL, account_id)
    return int(tail)

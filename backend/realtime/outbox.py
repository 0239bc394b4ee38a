"""Write push events into the outbox, in the transaction of the action they announce.

Events carry ids and codes only (never content). Each commit also sends a PostgreSQL
NOTIFY on :data:`CHANNEL` naming the accounts concerned, so every server process
listening wakes the streams of those accounts; a stream then reads the outbox from
the last id it delivered, so nothing is lost across reconnections or processes.
NOTIFY is transactional: it is delivered only if the action commits.

Ids come from an identity column, so two transactions can commit out of id order: a
reader that saw id 11 committed before id 10 would skip 10 for ever. To rule that out,
a publisher holds a *shared* transaction-scoped advisory lock per account it writes
to (publishers never wait for each other), and a reader takes the *exclusive* lock of
its account before it reads (:data:`EVENTS_LOCK_SQL`): it waits for the publishers in
flight for that account to commit or roll back, so every id below the highest one it
sees is already committed.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable

import asyncpg
import msgspec

__all__ = [
    "CHANNEL",
    "EVENTS_LOCK_SQL",
    "OUTBOX_PARAMETERS",
    "WAKE_ALL",
    "outbox_parameters",
    "outbox_statement",
    "publish",
]

CHANNEL = "confide_events"
WAKE_ALL = "*"
_NOTIFY_LIMIT = 7_000  # PostgreSQL caps a NOTIFY payload at 8000 bytes

# The per-account lock key is hashtextextended(account id, 1702260340): the seed
# (0x65766E74, "evnt") keeps it apart from other advisory keys derived from account ids.
#: The exclusive per-account outbox lock a reader takes (``$1``: the account id).
EVENTS_LOCK_SQL = "SELECT pg_advisory_xact_lock(hashtextextended($1::uuid::text, 1702260340))"
# The shared locks are all taken (the aggregate consumes every row) before the INSERT
# draws its first id, in one statement.
# NOTIFY is sent in the same statement (it is delivered at commit whatever its place).
#: How many parameters :func:`outbox_statement` takes (:func:`outbox_parameters` gives them).
OUTBOX_PARAMETERS = 6


def outbox_statement(first: int) -> str:
    """The CTEs ``outbox_held``, ``outbox_insert`` and ``outbox_notify``, from ``$first``.

    They queue one event per account and notify listeners. A statement that embeds them
    must read ``outbox_notify`` (a plain SELECT in a WITH runs only if read).
    """
    accounts, kind, payload, at, channel, names = (f"${first + i}" for i in range(OUTBOX_PARAMETERS))
    return f"""
    outbox_held AS (
        SELECT count(pg_advisory_xact_lock_shared(hashtextextended(a::text, 1702260340))) AS n
        FROM unnest({accounts}::uuid[]) AS a
    ), outbox_insert AS (
        INSERT INTO account_events (account_id, kind, payload, created_at)
        SELECT unnest({accounts}::uuid[]), {kind}::text, {payload}::jsonb, {at}::timestamptz FROM outbox_held
        RETURNING 1
    ), outbox_notify AS (
        SELECT pg_notify({channel}, {names}) AS sent FROM (SELECT count(*) FROM outbox_insert) AS done
        WHERE {names}::text <> ''
    )"""  # noqa: S608 -- fixed columns and numbered parameters


def outbox_parameters(
    account_ids: Iterable[uuid.UUID], kind: str, payload: dict[str, str], now: dt.datetime
) -> tuple[object, ...]:
    """The parameters of :func:`outbox_statement` (no accounts: no event, no notification)."""
    targets = sorted(set(account_ids), key=lambda a: a.bytes)
    names = ",".join(a.hex for a in targets)
    return (
        targets,
        kind,
        msgspec.json.encode(payload).decode(),
        now,
        CHANNEL,
        names if len(names) <= _NOTIFY_LIMIT else WAKE_ALL,
    )


_INSERT_SQL = "WITH " + outbox_statement(1) + " SELECT sent FROM outbox_notify"  # noqa: S608 -- fixed text


async def publish(
    conn: asyncpg.Connection,
    account_ids: Iterable[uuid.UUID],
    kind: str,
    payload: dict[str, str],
    now: dt.datetime,
) -> None:
    """Queue one event for each account and notify listeners (inside a transaction)."""
    parameters = outbox_parameters(account_ids, kind, payload, now)
    if not parameters[0]:
        return
    # Readers of these accounts now wait for this transaction to end.
    await conn.execute(_INSERT_SQL, *parameters)

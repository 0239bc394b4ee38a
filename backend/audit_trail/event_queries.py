"""SQL for reading events: search, export cursors, disclosures, breach scope.

Every query is scoped to one organization. Filters become fixed SQL fragments with
positional parameters; no value is ever spliced into the text.
"""

from __future__ import annotations

import datetime as dt
import uuid

import asyncpg
import msgspec

from backend.audit_trail.schemas import BreachClient, BreachRecord, Disclosure, EventFilters

__all__ = [
    "BreachTotals",
    "EventRow",
    "account_in_org",
    "breach_clients",
    "breach_records",
    "breach_totals",
    "disclosures",
    "export_query",
    "search",
    "session_window",
]


class EventRow(msgspec.Struct, frozen=True):
    """A search hit: sequence number, log index (``None`` while pending), leaf bytes."""

    seq: int
    index: int | None
    leaf: bytes


class BreachTotals(msgspec.Struct, frozen=True):
    """Counts for a breach window."""

    events: int
    failures: int
    event_types: dict[str, int]


def _where(filters: EventFilters, args: list[object]) -> str:
    def param(value: object) -> str:
        args.append(value)
        return f"${len(args)}"

    clauses = [f"e.org_id = {param(filters.org_id)}"]
    if filters.since is not None:
        clauses.append(f"e.recorded_at >= {param(filters.since)}")
    if filters.until is not None:
        clauses.append(f"e.recorded_at < {param(filters.until)}")
    if filters.subject is not None:
        clauses.append(f"e.subject_id = {param(filters.subject)}")
    if filters.actor is not None:
        clauses.append(f"e.agent_account_id = {param(filters.actor)}")
    if filters.types is not None:
        clauses.append(f"e.event_type = ANY({param(list(filters.types))}::text[])")
    if filters.outcomes is not None:
        clauses.append(f"e.outcome = ANY({param(list(filters.outcomes))}::smallint[])")
    return " AND ".join(clauses)


async def search(
    conn: asyncpg.Connection, filters: EventFilters, *, before_seq: int | None, limit: int
) -> list[EventRow]:
    """Matching events, newest first, strictly before ``before_seq`` (keyset pagination)."""
    args: list[object] = []
    where = _where(filters, args)
    if before_seq is not None:
        args.append(before_seq)
        where += f" AND e.seq < ${len(args)}"
    args.append(limit)
    rows = await conn.fetch(
        f"""
        SELECT e.seq, l.idx, e.leaf
        FROM audit_events e LEFT JOIN audit_log l ON l.event_seq = e.seq
        WHERE {where} AND e.leaf IS NOT NULL
        ORDER BY e.seq DESC LIMIT ${len(args)}
        """,  # noqa: S608 -- fixed fragments, values are parameters
        *args,
    )
    return [EventRow(r["seq"], r["idx"], r["leaf"]) for r in rows]


def export_query(filters: EventFilters, size: int, *, complete: bool) -> tuple[str, list[object]]:
    """SQL and arguments yielding ``(idx, leaf_hash, leaf)`` in index order below ``size``.

    ``complete``: every leaf of the tree, with the leaf bytes only for the caller's
    organization (others' are hash-only lines). Otherwise: the matching events only.
    The leaf hash is the event row's (derived from its stored bytes), so altered bytes
    show up as a leaf whose proof fails rather than as a mismatched line.
    """
    if complete:
        return (
            """
            SELECT l.idx, coalesce(e.leaf_hash, l.leaf_hash) AS leaf_hash,
                   CASE WHEN e.org_id = $1 THEN e.leaf END AS leaf
            FROM audit_log l JOIN audit_events e ON e.seq = l.event_seq
            WHERE l.idx < $2
            ORDER BY l.idx
            """,
            [filters.org_id, size],
        )
    args: list[object] = []
    where = _where(filters, args)
    args.append(size)
    sql = f"""
        SELECT l.idx, e.leaf_hash, e.leaf
        FROM audit_events e JOIN audit_log l ON l.event_seq = e.seq
        WHERE {where} AND l.idx < ${len(args)} AND e.leaf IS NOT NULL
        ORDER BY l.idx
        """  # noqa: S608 -- fixed fragments, values are parameters
    return sql, args


async def disclosures(
    conn: asyncpg.Connection, org_id: uuid.UUID, client_id: uuid.UUID, *, before_seq: int | None, limit: int
) -> list[tuple[int, Disclosure]]:
    """Events about ``client_id`` by anyone else, newest first, with the agent's name."""
    rows = await conn.fetch(
        """
        SELECT e.seq, e.recorded_at, e.agent_account_id, e.agent_role, a.display_name, e.action,
               e.event_type, e.outcome, e.purpose_of_use, e.consent_id, e.entity_type, e.entity_id
        FROM audit_events e
        LEFT JOIN accounts a ON a.id = e.agent_account_id AND a.org_id = e.org_id AND a.role <> 'client'
        WHERE e.org_id = $1 AND e.subject_id = $2 AND e.agent_account_id IS DISTINCT FROM $2
          AND ($3::bigint IS NULL OR e.seq < $3)
        ORDER BY e.seq DESC LIMIT $4
        """,
        org_id,
        client_id,
        before_seq,
        limit,
    )
    return [
        (
            r["seq"],
            Disclosure(
                at=r["recorded_at"],
                agent_id=r["agent_account_id"],
                agent_role=r["agent_role"],
                agent_name=r["display_name"],
                action=r["action"],
                type=r["event_type"],
                outcome=r["outcome"],
                purpose=r["purpose_of_use"],
                consent_id=r["consent_id"],
                entity_type=r["entity_type"],
                entity_id=r["entity_id"],
            ),
        )
        for r in rows
    ]


async def account_in_org(conn: asyncpg.Connection, org_id: uuid.UUID, account_id: uuid.UUID) -> bool:
    """Whether the account belongs to the organization."""
    found = await conn.fetchval("SELECT 1 FROM accounts WHERE id = $1 AND org_id = $2", account_id, org_id)
    return found is not None


async def session_window(
    conn: asyncpg.Connection, org_id: uuid.UUID, session_id: uuid.UUID
) -> tuple[uuid.UUID, dt.datetime, dt.datetime] | None:
    """A session's account and lifetime (creation to revocation, else last use or expiry)."""
    row = await conn.fetchrow(
        """
        SELECT account_id, created_at,
               COALESCE(revoked_at, LEAST(absolute_expires_at, idle_expires_at)) AS ended_at
        FROM sessions WHERE id = $1 AND org_id = $2
        """,
        session_id,
        org_id,
    )
    return None if row is None else (row["account_id"], row["created_at"], row["ended_at"])


_BREACH_WHERE = "org_id = $1 AND agent_account_id = $2 AND recorded_at >= $3 AND recorded_at < $4"


async def breach_totals(
    conn: asyncpg.Connection, org_id: uuid.UUID, account_id: uuid.UUID, since: dt.datetime, until: dt.datetime
) -> BreachTotals:
    """Event and failure counts, and counts per type, for the account in the window."""
    rows = await conn.fetch(
        f"""
        SELECT event_type, count(*) AS n, count(*) FILTER (WHERE outcome <> 0) AS failed
        FROM audit_events WHERE {_BREACH_WHERE}
        GROUP BY event_type ORDER BY event_type
        """,  # noqa: S608 -- constant fragment
        org_id,
        account_id,
        since,
        until,
    )
    return BreachTotals(
        sum(r["n"] for r in rows),
        sum(r["failed"] for r in rows),
        {r["event_type"]: r["n"] for r in rows},
    )


async def breach_clients(
    conn: asyncpg.Connection,
    *,
    org_id: uuid.UUID,
    account_id: uuid.UUID,
    since: dt.datetime,
    until: dt.datetime,
    limit: int,
) -> list[BreachClient]:
    """Clients concerned by the account's events in the window, by first access."""
    rows = await conn.fetch(
        f"""
        SELECT subject_id, count(*) AS n, min(recorded_at) AS first_at, max(recorded_at) AS last_at,
               array_agg(DISTINCT action ORDER BY action) AS actions
        FROM audit_events WHERE {_BREACH_WHERE} AND subject_id IS NOT NULL
        GROUP BY subject_id ORDER BY first_at, subject_id LIMIT $5
        """,  # noqa: S608 -- constant fragment
        org_id,
        account_id,
        since,
        until,
        limit,
    )
    return [
        BreachClient(
            client_id=r["subject_id"],
            events=r["n"],
            first_at=r["first_at"],
            last_at=r["last_at"],
            actions=list(r["actions"]),
        )
        for r in rows
    ]


async def breach_records(
    conn: asyncpg.Connection,
    *,
    org_id: uuid.UUID,
    account_id: uuid.UUID,
    since: dt.datetime,
    until: dt.datetime,
    limit: int,
) -> list[BreachRecord]:
    """Records the account's events touched in the window, by first access."""
    rows = await conn.fetch(
        f"""
        SELECT entity_type, entity_id, (array_agg(subject_id) FILTER (WHERE subject_id IS NOT NULL))[1]
               AS subject_id, count(*) AS n, min(recorded_at) AS first_at, max(recorded_at) AS last_at,
               array_agg(DISTINCT action ORDER BY action) AS actions
        FROM audit_events WHERE {_BREACH_WHERE} AND entity_id IS NOT NULL AND entity_type IS NOT NULL
        GROUP BY entity_type, entity_id ORDER BY first_at, entity_type, entity_id LIMIT $5
        """,  # noqa: S608 -- constant fragment
        org_id,
        account_id,
        since,
        until,
        limit,
    )
    return [
        BreachRecord(
            entity_type=r["entity_type"],
            entity_id=r["entity_id"],
            subject_id=r["subject_id"],
            events=r["n"],
            first_at=r["first_at"],
            last_at=r["last_at"],
            actions=list(r["actions"]),
        )
        for r in rows
    ]

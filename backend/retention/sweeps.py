"""SQL of the retention job, category by category: what is past its period, and one batch.

Every category has a count (rows past their period, and how many of those a legal hold
keeps) and a sweep (one batch, see the ``retention_sweep_*`` functions of migration
0010). The sweeps of the append-only tables run as SECURITY DEFINER functions: the
application role cannot delete those rows any other way. The audit log is pruned, not
deleted, through :func:`backend.audit_trail.repository.prune_batch`.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

import asyncpg

from backend.audit_trail import repository as audit_repo

__all__ = [
    "HOUSEKEEPING",
    "SWEEPS",
    "Batch",
    "Counted",
    "count_candidates",
    "count_due_elsewhere",
    "count_housekeeping",
    "sweep",
    "sweep_housekeeping",
]

#: The sweep function of each category and the type of its keyset position.
SWEEPS: dict[str, tuple[str, str]] = {
    "messages": ("retention_sweep_messages", "bigint"),
    "attachments": ("retention_sweep_attachments", "uuid"),
    "notes": ("retention_sweep_notes", "bigint"),
    "consent_events": ("retention_sweep_consent_events", "uuid"),
    "sessions": ("retention_sweep_sessions", "uuid"),
    "invites": ("retention_sweep_invites", "uuid"),
    "key_backups": ("retention_sweep_key_backups", "uuid"),
}
_FIRST_KEY: dict[str, int | uuid.UUID] = {"bigint": 0, "uuid": uuid.UUID(int=0)}
#: Stands for "no organization" where a join needs a value.
_NO_ORG = uuid.UUID(int=0)

#: Housekeeping without a policy: stale login throttling rows, the push outbox, raw addresses.
HOUSEKEEPING: tuple[str, ...] = ("login_throttle", "push_events")
PUSH_EVENT_RETENTION = dt.timedelta(days=30)


@dataclass(frozen=True, slots=True)
class Counted:
    """Rows past their period in one organization, and how many of them are held."""

    candidates: int
    held: int


@dataclass(frozen=True, slots=True)
class Batch:
    """One batch: rows affected per organization, units picked, where to continue."""

    affected: dict[uuid.UUID | None, int]
    picked: int
    last_key: int | uuid.UUID | None


# Rows past their period and held rows, per organization. $1 is the run's time.
_COUNTS: dict[str, str] = {
    "messages": """
        SELECT m.org_id, count(*) AS candidates,
               count(*) FILTER (WHERE m.conversation_id IN (SELECT conversation_id FROM held_conversations))
        FROM messages m JOIN retention_cutoffs('messages', $1) c ON c.org_id = m.org_id
        WHERE m.created_at < c.cutoff GROUP BY m.org_id
    """,
    "attachments": """
        SELECT a.org_id, count(*),
               count(*) FILTER (WHERE a.conversation_id IN (SELECT conversation_id FROM held_conversations))
        FROM attachments a JOIN retention_cutoffs('attachments', $1) c ON c.org_id = a.org_id
        WHERE a.created_at < c.cutoff GROUP BY a.org_id
    """,
    "notes": """
        SELECT n.org_id, count(*),
               count(*) FILTER (WHERE n.client_id IN (SELECT account_id FROM held_accounts))
        FROM notes n JOIN retention_cutoffs('notes', $1) c ON c.org_id = n.org_id
        WHERE n.created_at < c.cutoff GROUP BY n.org_id
    """,
    "consent_events": """
        SELECT e.org_id, count(*),
               count(*) FILTER (WHERE e.client_id IN (SELECT account_id FROM held_accounts))
        FROM consent_events e JOIN consents k ON k.consent_id = e.consent_id
        JOIN retention_cutoffs('consent_events', $1) c ON c.org_id = k.org_id
        WHERE k.status <> 'active' AND k.ended_at < c.cutoff GROUP BY e.org_id
    """,
    "sessions": """
        SELECT s.org_id, count(*), 0
        FROM sessions s JOIN retention_cutoffs('sessions', $1) c ON c.org_id = s.org_id
        WHERE (s.revoked_at IS NOT NULL OR s.idle_expires_at <= $1 OR s.absolute_expires_at <= $1)
          AND greatest(s.last_seen_at, s.revoked_at) < c.cutoff
        GROUP BY s.org_id
    """,
    "invites": """
        SELECT i.org_id, count(*), 0
        FROM invites i JOIN retention_cutoffs('invites', $1) c ON c.org_id = i.org_id
        WHERE (i.redeemed_at IS NOT NULL OR i.expires_at <= $1)
          AND coalesce(i.redeemed_at, i.expires_at) < c.cutoff
        GROUP BY i.org_id
    """,
    "key_backups": """
        SELECT k.org_id, count(*),
               count(*) FILTER (WHERE k.account_id IN (SELECT account_id FROM held_accounts))
        FROM key_backups k JOIN accounts a ON a.id = k.account_id
        JOIN retention_cutoffs('key_backups', $1) c ON c.org_id = k.org_id
        WHERE a.status <> 'active' AND a.closed_at < c.cutoff GROUP BY k.org_id
    """,
    "audit_events": """
        SELECT e.org_id, count(*),
               count(*) FILTER (WHERE e.subject_id IN (SELECT account_id FROM held_accounts)
                                   OR e.agent_account_id IN (SELECT account_id FROM held_accounts)
                                   OR e.entity_id IN (SELECT conversation_id FROM held_conversations))
        FROM audit_events e JOIN retention_cutoffs('audit_events', $1) c
             ON coalesce(c.org_id, '00000000-0000-0000-0000-000000000000') =
                coalesce(e.org_id, '00000000-0000-0000-0000-000000000000')
        WHERE e.leaf IS NOT NULL AND e.recorded_at < c.cutoff GROUP BY e.org_id
    """,
}


async def count_candidates(
    conn: asyncpg.Connection, category: str, as_of: dt.datetime
) -> dict[uuid.UUID | None, Counted]:
    """Rows of ``category`` past their period at ``as_of``, per organization."""
    rows = await conn.fetch(_COUNTS[category], as_of)
    return {r[0]: Counted(candidates=int(r[1]), held=int(r[2])) for r in rows}


async def _cutoffs(
    conn: asyncpg.Connection, category: str, as_of: dt.datetime
) -> tuple[list[uuid.UUID | None], list[dt.datetime]]:
    rows = await conn.fetch("SELECT org_id, cutoff FROM retention_cutoffs($1, $2)", category, as_of)
    return [r["org_id"] for r in rows], [r["cutoff"] for r in rows]


async def sweep(
    conn: asyncpg.Connection,
    category: str,
    *,
    as_of: dt.datetime,
    after: int | uuid.UUID | None,
    limit: int,
    dry_run: bool,
    now: dt.datetime,
) -> Batch:
    """One batch of ``category`` after keyset position ``after`` (None: from the start)."""
    if category == "audit_events":
        await conn.execute("SELECT retention_check_as_of($1)", as_of)
        orgs, cuts = await _cutoffs(conn, category, as_of)
        pruned = await audit_repo.prune_batch(
            conn,
            now=now,
            limit=limit,
            after_seq=int(after or 0),
            org_cutoffs=(orgs, cuts),
            dry_run=dry_run,
        )
        affected: dict[uuid.UUID | None, int] = {}
        for org in pruned.orgs:
            affected[org] = affected.get(org, 0) + 1
        return Batch(affected=affected, picked=len(pruned.orgs), last_key=pruned.last_seq)
    function, key_type = SWEEPS[category]
    rows = await conn.fetch(
        f"SELECT org_id, affected, picked, last_key FROM {function}($1, $2::{key_type}, $3, $4)",  # noqa: S608 -- names from SWEEPS
        as_of,
        _FIRST_KEY[key_type] if after is None else after,
        limit,
        dry_run,
    )
    if not rows:
        return Batch(affected={}, picked=0, last_key=after)
    return Batch(
        affected={r["org_id"]: int(r["affected"]) for r in rows},
        picked=int(rows[0]["picked"]),
        last_key=rows[0]["last_key"],
    )


# ---------------------------------------------------------------- housekeeping

_HOUSEKEEPING_DUE: dict[str, str] = {
    # Throttling rows whose window has passed and which lock nothing any more.
    "login_throttle": """
        FROM login_throttle
        WHERE updated_at < $1::timestamptz - make_interval(secs => $2)
          AND (locked_until IS NULL OR locked_until <= $1)
    """,
    # The push stream's outbox: a stream resumes from minutes ago, never from a month ago.
    "push_events": "FROM account_events WHERE created_at < $1::timestamptz - make_interval(secs => $2)",
}
_HOUSEKEEPING_KEY: dict[str, str] = {"login_throttle": "scope, key_digest", "push_events": "id"}
# What a dry run reports for the steps other modules carry out (consent.service.expire_due,
# audit_trail.pruning.prune_addresses): their own queries, counted.
_DUE_ELSEWHERE: dict[str, str] = {
    "consent_expiry": "SELECT count(*) FROM consents WHERE status = 'active' AND valid_until <= $1",
    "audit_addresses": (
        "SELECT count(*) FROM audit_addresses WHERE recorded_at < $1::timestamptz - make_interval(secs => $2)"
    ),
}


async def count_due_elsewhere(
    conn: asyncpg.Connection, category: str, now: dt.datetime, window_s: float
) -> int:
    """Consents past their validity, or raw addresses past ``window_s`` (for dry runs)."""
    if category == "consent_expiry":
        return int(await conn.fetchval(_DUE_ELSEWHERE[category], now))
    return int(await conn.fetchval(_DUE_ELSEWHERE[category], now, window_s))


def _window(category: str, throttle_window_s: int) -> float:
    return float(throttle_window_s if category == "login_throttle" else PUSH_EVENT_RETENTION.total_seconds())


async def count_housekeeping(
    conn: asyncpg.Connection, category: str, now: dt.datetime, throttle_window_s: int
) -> int:
    """Rows of a housekeeping category that are due."""
    value = await conn.fetchval(
        f"SELECT count(*) {_HOUSEKEEPING_DUE[category]}",
        now,
        _window(category, throttle_window_s),
    )
    return int(value)


async def sweep_housekeeping(
    conn: asyncpg.Connection, category: str, now: dt.datetime, throttle_window_s: int, limit: int
) -> int:
    """Delete up to ``limit`` due rows of a housekeeping category; returns how many."""
    key = _HOUSEKEEPING_KEY[category]
    table = "login_throttle" if category == "login_throttle" else "account_events"
    status = await conn.execute(
        f"""
        DELETE FROM {table} WHERE ({key}) IN (
            SELECT {key} {_HOUSEKEEPING_DUE[category]} LIMIT $3 FOR UPDATE SKIP LOCKED)
        """,  # noqa: S608 -- fixed fragments
        now,
        _window(category, throttle_window_s),
        limit,
    )
    return int(status.split()[-1])

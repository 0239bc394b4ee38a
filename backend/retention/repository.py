"""SQL for retention policies, legal holds and the record of runs."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping

import asyncpg
import msgspec

__all__ = [
    "CountsRow",
    "HoldRow",
    "PolicyRow",
    "RunRow",
    "abandon_running",
    "add_counts",
    "client_org",
    "conversation_org",
    "finish_run",
    "get_hold",
    "get_policy",
    "insert_batch",
    "insert_hold",
    "insert_policy_change",
    "insert_run",
    "last_scheduled_start",
    "list_holds",
    "list_policies",
    "list_runs",
    "release_hold",
    "run_counts",
    "set_counts",
    "try_run_lock",
    "upsert_policy",
]


class PolicyRow(msgspec.Struct, frozen=True, kw_only=True):
    """The policy in force for one category (the organization's, else the default)."""

    category: str
    period_days: int
    counts_from: str
    action: str
    legal_basis: str
    is_default: bool
    updated_at: dt.datetime
    updated_by: uuid.UUID | None


_POLICIES = """
    SELECT d.category,
           coalesce(o.period_days, d.period_days) AS period_days,
           d.counts_from, d.action,
           coalesce(o.legal_basis, d.legal_basis) AS legal_basis,
           o.org_id IS NULL AS is_default,
           coalesce(o.updated_at, d.updated_at) AS updated_at,
           o.updated_by
    FROM retention_policies d
    LEFT JOIN retention_policies o ON o.org_id = $1 AND o.category = d.category
    WHERE d.org_id IS NULL
"""


async def list_policies(conn: asyncpg.Connection, org_id: uuid.UUID) -> list[PolicyRow]:
    """Every category's policy for an organization."""
    rows = await conn.fetch(_POLICIES, org_id)
    return [msgspec.convert(dict(r), PolicyRow) for r in rows]


async def get_policy(
    conn: asyncpg.Connection, org_id: uuid.UUID, category: str, *, lock: bool = False
) -> PolicyRow | None:
    """One category's policy (the default row locked too when asked, so updates serialize)."""
    sql = _POLICIES + " AND d.category = $2" + (" FOR UPDATE OF d" if lock else "")
    row = await conn.fetchrow(sql, org_id, category)
    return None if row is None else msgspec.convert(dict(row), PolicyRow)


async def upsert_policy(
    conn: asyncpg.Connection,
    *,
    org_id: uuid.UUID,
    default: PolicyRow,
    period_days: int,
    legal_basis: str,
    now: dt.datetime,
    by: uuid.UUID,
) -> None:
    """Set the organization's own period and basis for a category."""
    await conn.execute(
        """
        INSERT INTO retention_policies
            (org_id, category, period_days, counts_from, action, legal_basis, updated_at, updated_by)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
        ON CONFLICT ON CONSTRAINT retention_policies_key DO UPDATE SET
            period_days = EXCLUDED.period_days,
            legal_basis = EXCLUDED.legal_basis,
            updated_at = EXCLUDED.updated_at,
            updated_by = EXCLUDED.updated_by
        """,
        org_id,
        default.category,
        period_days,
        default.counts_from,
        default.action,
        legal_basis,
        now,
        by,
    )


async def insert_policy_change(
    conn: asyncpg.Connection,
    *,
    change_id: uuid.UUID,
    org_id: uuid.UUID,
    old: PolicyRow,
    period_days: int,
    legal_basis: str,
    by: uuid.UUID,
    now: dt.datetime,
) -> None:
    """Keep the old and new values of a policy change."""
    await conn.execute(
        """
        INSERT INTO retention_policy_changes (id, org_id, category, old_period_days, new_period_days,
                                              old_legal_basis, new_legal_basis, changed_by, changed_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
        """,
        change_id,
        org_id,
        old.category,
        old.period_days,
        period_days,
        old.legal_basis,
        legal_basis,
        by,
        now,
    )


# ---------------------------------------------------------------- runs


class RunRow(msgspec.Struct, frozen=True, kw_only=True):
    """A retention run."""

    seq: int
    id: uuid.UUID
    started_at: dt.datetime
    as_of: dt.datetime
    finished_at: dt.datetime | None
    dry_run: bool
    status: str
    trigger: str


class CountsRow(msgspec.Struct, frozen=True, kw_only=True):
    """A run's counts for one organization and category."""

    run_id: uuid.UUID
    org_id: uuid.UUID | None
    category: str
    candidates: int
    held: int
    deleted: int
    skipped: int


async def abandon_running(conn: asyncpg.Connection, now: dt.datetime) -> int:
    """Close runs left 'running' by a process that died (the caller holds the run lock)."""
    status = await conn.execute(
        f"""
        UPDATE retention_runs r SET status = 'abandoned', finished_at = greatest($1, r.started_at),
               counts = {_TOTALS.format(run="r.id")}
        WHERE r.status = 'running'
        """,  # noqa: S608 -- a fixed subquery
        now,
    )
    return int(status.split()[-1])


async def insert_run(
    conn: asyncpg.Connection,
    *,
    run_id: uuid.UUID,
    now: dt.datetime,
    as_of: dt.datetime,
    dry_run: bool,
    trigger: str,
    instance: str,
) -> None:
    """Record a run as started."""
    await conn.execute(
        """
        INSERT INTO retention_runs (id, started_at, as_of, dry_run, status, trigger, instance)
        VALUES ($1, $2, $3, $4, 'running', $5, $6)
        """,
        run_id,
        now,
        as_of,
        dry_run,
        trigger,
        instance[:128],
    )


# Totals per category of one run, as {"category": {"candidates": n, ...}}.
_TOTALS = """
    coalesce((SELECT jsonb_object_agg(t.category, jsonb_build_object(
                  'candidates', t.candidates, 'held', t.held, 'deleted', t.deleted, 'skipped', t.skipped))
              FROM (SELECT category, sum(candidates) AS candidates, sum(held) AS held,
                           sum(deleted) AS deleted, sum(skipped) AS skipped
                    FROM retention_run_counts WHERE run_id = {run} GROUP BY category) t), '{{}}'::jsonb)
"""


async def finish_run(conn: asyncpg.Connection, run_id: uuid.UUID, status: str, now: dt.datetime) -> None:
    """Close a run and store its totals per category."""
    await conn.execute(
        f"""
        UPDATE retention_runs SET status = $2, finished_at = greatest($3, started_at),
               counts = {_TOTALS.format(run="$1")}
        WHERE id = $1
        """,  # noqa: S608 -- a fixed subquery
        run_id,
        status,
        now,
    )


async def last_scheduled_start(conn: asyncpg.Connection) -> dt.datetime | None:
    """When the latest run that changed data started (any trigger)."""
    value: dt.datetime | None = await conn.fetchval(
        "SELECT max(started_at) FROM retention_runs WHERE NOT dry_run AND status <> 'failed'"
    )
    return value


async def add_counts(
    conn: asyncpg.Connection,
    run_id: uuid.UUID,
    category: str,
    counts: Mapping[uuid.UUID | None, Mapping[str, int]],
) -> None:
    """Add to a run's counters, per organization (creating the rows on first use)."""
    if not counts:
        return
    orgs = list(counts)
    await conn.execute(
        """
        INSERT INTO retention_run_counts AS c (run_id, org_id, category, candidates, held, deleted, skipped)
        SELECT $1, o, $2, ca, h, d, s
        FROM unnest($3::uuid[], $4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[]) AS t(o, ca, h, d, s)
        ON CONFLICT ON CONSTRAINT retention_run_counts_key DO UPDATE SET
            candidates = c.candidates + EXCLUDED.candidates,
            held = c.held + EXCLUDED.held,
            deleted = c.deleted + EXCLUDED.deleted,
            skipped = c.skipped + EXCLUDED.skipped
        """,
        run_id,
        category,
        orgs,
        [counts[o].get("candidates", 0) for o in orgs],
        [counts[o].get("held", 0) for o in orgs],
        [counts[o].get("deleted", 0) for o in orgs],
        [counts[o].get("skipped", 0) for o in orgs],
    )


async def set_counts(conn: asyncpg.Connection, run_id: uuid.UUID, category: str) -> None:
    """Settle a category: what was past its period and neither held nor deleted was skipped."""
    await conn.execute(
        """
        UPDATE retention_run_counts SET skipped = greatest(candidates - held - deleted, 0)
        WHERE run_id = $1 AND category = $2
        """,
        run_id,
        category,
    )


async def run_counts(
    conn: asyncpg.Connection, run_ids: list[uuid.UUID], org_id: uuid.UUID | None = None, *, all_orgs: bool
) -> list[CountsRow]:
    """Counters of some runs: for one organization, or summed over all of them."""
    if all_orgs:
        rows = await conn.fetch(
            """
            SELECT run_id, NULL::uuid AS org_id, category, sum(candidates)::bigint AS candidates,
                   sum(held)::bigint AS held, sum(deleted)::bigint AS deleted, sum(skipped)::bigint AS skipped
            FROM retention_run_counts WHERE run_id = ANY ($1::uuid[]) GROUP BY run_id, category
            ORDER BY category
            """,
            run_ids,
        )
    else:
        rows = await conn.fetch(
            """
            SELECT run_id, org_id, category, candidates, held, deleted, skipped FROM retention_run_counts
            WHERE run_id = ANY ($1::uuid[]) AND org_id = $2 ORDER BY category
            """,
            run_ids,
            org_id,
        )
    return [msgspec.convert(dict(r), CountsRow) for r in rows]


async def list_runs(conn: asyncpg.Connection, *, before_seq: int | None, limit: int) -> list[RunRow]:
    """Runs, newest first."""
    rows = await conn.fetch(
        """
        SELECT seq, id, started_at, as_of, finished_at, dry_run, status, trigger FROM retention_runs
        WHERE $1::bigint IS NULL OR seq < $1 ORDER BY seq DESC LIMIT $2
        """,
        before_seq,
        limit,
    )
    return [msgspec.convert(dict(r), RunRow) for r in rows]


async def insert_batch(
    conn: asyncpg.Connection,
    *,
    batch_id: uuid.UUID,
    run_id: uuid.UUID | None,
    erasure_id: uuid.UUID | None,
    org_id: uuid.UUID | None,
    category: str,
    deleted: int,
    now: dt.datetime,
) -> None:
    """Record one committed batch (what its audit event names)."""
    await conn.execute(
        """
        INSERT INTO retention_batches (id, run_id, erasure_id, org_id, category, deleted, committed_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7)
        """,
        batch_id,
        run_id,
        erasure_id,
        org_id,
        category,
        deleted,
        now,
    )


# ---------------------------------------------------------------- holds


class HoldRow(msgspec.Struct, frozen=True, kw_only=True):
    """A legal hold."""

    seq: int
    id: uuid.UUID
    org_id: uuid.UUID
    scope: str
    client_id: uuid.UUID | None
    conversation_id: uuid.UUID | None
    reason: str
    placed_by: uuid.UUID
    placed_at: dt.datetime
    released_by: uuid.UUID | None
    released_at: dt.datetime | None
    release_reason: str | None


_HOLD_COLUMNS = """
    seq, id, org_id, scope, client_id, conversation_id, reason, placed_by, placed_at,
    released_by, released_at, release_reason
"""


async def client_org(conn: asyncpg.Connection, account_id: uuid.UUID) -> tuple[uuid.UUID, str] | None:
    """``(org_id, role)`` of an account."""
    row = await conn.fetchrow("SELECT org_id, role FROM accounts WHERE id = $1", account_id)
    return None if row is None else (row["org_id"], row["role"])


async def conversation_org(
    conn: asyncpg.Connection, conversation_id: uuid.UUID
) -> tuple[uuid.UUID, uuid.UUID | None] | None:
    """``(org_id, client_id)`` of a conversation."""
    row = await conn.fetchrow("SELECT org_id, client_id FROM conversations WHERE id = $1", conversation_id)
    return None if row is None else (row["org_id"], row["client_id"])


async def insert_hold(
    conn: asyncpg.Connection,
    *,
    hold_id: uuid.UUID,
    org_id: uuid.UUID,
    scope: str,
    client_id: uuid.UUID | None,
    conversation_id: uuid.UUID | None,
    reason: str,
    by: uuid.UUID,
    now: dt.datetime,
) -> HoldRow:
    """Place a hold."""
    row = await conn.fetchrow(
        f"""
        INSERT INTO legal_holds (id, org_id, scope, client_id, conversation_id, reason, placed_by, placed_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
        RETURNING {_HOLD_COLUMNS}
        """,  # noqa: S608 -- fixed columns
        hold_id,
        org_id,
        scope,
        client_id,
        conversation_id,
        reason,
        by,
        now,
    )
    if row is None:  # pragma: no cover -- an INSERT ... RETURNING returns its row
        raise LookupError(hold_id)
    return msgspec.convert(dict(row), HoldRow)


async def get_hold(conn: asyncpg.Connection, hold_id: uuid.UUID, *, lock: bool = False) -> HoldRow | None:
    """One hold."""
    sql = f"SELECT {_HOLD_COLUMNS} FROM legal_holds WHERE id = $1" + (" FOR UPDATE" if lock else "")  # noqa: S608
    row = await conn.fetchrow(sql, hold_id)
    return None if row is None else msgspec.convert(dict(row), HoldRow)


async def release_hold(
    conn: asyncpg.Connection, hold_id: uuid.UUID, *, by: uuid.UUID, reason: str, now: dt.datetime
) -> HoldRow:
    """Release a hold (once)."""
    row = await conn.fetchrow(
        f"""
        UPDATE legal_holds SET released_by = $2, released_at = greatest($3, placed_at), release_reason = $4
        WHERE id = $1 AND released_at IS NULL
        RETURNING {_HOLD_COLUMNS}
        """,  # noqa: S608 -- fixed columns
        hold_id,
        by,
        now,
        reason,
    )
    if row is None:  # pragma: no cover -- the caller locked the unreleased hold
        raise LookupError(hold_id)
    return msgspec.convert(dict(row), HoldRow)


async def list_holds(
    conn: asyncpg.Connection, org_id: uuid.UUID, *, active: bool | None, before_seq: int | None, limit: int
) -> list[HoldRow]:
    """An organization's holds, newest first."""
    rows = await conn.fetch(
        f"""
        SELECT {_HOLD_COLUMNS} FROM legal_holds
        WHERE org_id = $1 AND ($2::bigint IS NULL OR seq < $2)
          AND ($3::boolean IS NULL OR (released_at IS NULL) = $3)
        ORDER BY seq DESC LIMIT $4
        """,  # noqa: S608 -- fixed columns
        org_id,
        before_seq,
        active,
        limit,
    )
    return [msgspec.convert(dict(r), HoldRow) for r in rows]


async def try_run_lock(conn: asyncpg.Connection, key: int) -> bool:
    """Take the session advisory lock of the retention run (nests); False if another holds it."""
    return bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", key))

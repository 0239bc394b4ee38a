"""Pruning the audit log for retention: leaf bytes go, hashes stay, every proof still verifies."""

from __future__ import annotations

import datetime as dt

import asyncpg

from backend.audit_trail import repository as repo
from backend.audit_trail.writer import Action, AuditContext, AuditEvent, record
from backend.clock import Clock

__all__ = ["ADDRESS_RETENTION", "prune_addresses", "prune_leaves"]

#: Raw client addresses are kept apart from the log, for security investigations only.
ADDRESS_RETENTION = dt.timedelta(days=30)


async def prune_leaves(
    conn: asyncpg.Connection,
    clock: Clock,
    *,
    before: dt.datetime,
    ctx: AuditContext,
    batch: int = 5_000,
    max_batches: int = 1_000,
) -> int:
    """Prune integrated events recorded before ``before``, in committed batches; returns how many.

    Each batch is one short transaction that also records an ``audit.prune`` event, so a
    crash loses nothing and a rerun carries on where it stopped. Events not yet in the
    log are never pruned (the database refuses it).
    """
    if before.tzinfo is None:
        raise ValueError("before must be timezone-aware")
    total = 0
    for _ in range(max_batches):
        async with conn.transaction():
            now = clock.now()
            pruned = await repo.prune_before(conn, before, now, batch)
            if pruned:
                await record(
                    conn,
                    AuditEvent(action=Action.DELETE, event_type="audit.prune", entity_type="audit_log"),
                    ctx,
                    now,
                )
        total += len(pruned)
        if len(pruned) < batch:
            break
    return total


async def prune_addresses(
    conn: asyncpg.Connection, clock: Clock, *, older_than: dt.timedelta = ADDRESS_RETENTION, ctx: AuditContext
) -> int:
    """Delete raw client addresses past their short retention (the log keeps keyed digests)."""
    async with conn.transaction():
        now = clock.now()
        status = await conn.execute("DELETE FROM audit_addresses WHERE recorded_at < $1", now - older_than)
        count = int(status.split()[-1])
        if count:
            await record(
                conn,
                AuditEvent(
                    action=Action.DELETE, event_type="audit.prune_addresses", entity_type="audit_address"
                ),
                ctx,
                now,
            )
    return count

"""Helpers for audit log tests: integrate, make a compliance officer, export, tamper as superuser."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from litestar import Litestar

from audit.note import VerifierKey
from backend.audit_trail.integrator import integrate_batch
from backend.audit_trail.log_key import log_signer
from backend.clock import SystemClock
from tests.helpers import Account, Clinic, make_staff, runtime_of


def log_vkey(app: Litestar) -> VerifierKey:
    return log_signer(runtime_of(app).settings).verifier()


async def integrate_all(app: Litestar, conn: asyncpg.Connection, *, batch: int = 5_000) -> int:
    """Run batches until nothing is pending; return the tree size."""
    signer = log_signer(runtime_of(app).settings)
    while True:
        result = await integrate_batch(conn, signer, SystemClock(), batch=batch)
        assert result.leader
        if result.integrated == 0:
            return result.size


async def make_officer(client: Any, app: Litestar, clinic: Clinic, email: str | None = None) -> Account:
    slug = clinic.admin.org_slug
    return await make_staff(client, app, clinic.admin, "compliance_officer", email or f"co@{slug}.example")


async def wait_for(check: Callable[[], Awaitable[bool]], *, deadline_s: float = 10.0) -> None:
    """Poll ``check`` until it holds or the deadline passes (no fixed sleeps)."""
    import asyncio  # noqa: PLC0415

    end = time.monotonic() + deadline_s
    while not await check():
        if time.monotonic() > end:
            raise TimeoutError("condition not met before the deadline")
        await asyncio.sleep(0.02)


async def _set_triggers(conn: asyncpg.Connection, tables: list[str], *, enabled: bool) -> None:
    for table in tables:
        if not enabled:
            await conn.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")
            continue
        names = await conn.fetch(
            "SELECT tgname FROM pg_trigger WHERE tgrelid = $1::regclass AND NOT tgisinternal", table
        )
        for row in names:
            await conn.execute(f"ALTER TABLE {table} ENABLE ALWAYS TRIGGER {row['tgname']}")


async def without_triggers(conn: asyncpg.Connection, tables: list[str], sql: str, *args: Any) -> None:
    """Run ``sql`` as the superuser with the append-only triggers of ``tables`` disabled."""
    async with conn.transaction():
        await _set_triggers(conn, tables, enabled=False)
        await conn.execute(sql, *args)
        await _set_triggers(conn, tables, enabled=True)


async def rewrite_tail(conn: asyncpg.Connection, keep: int, *, drop: int = 0) -> None:
    """Roll the log back to ``keep`` leaves as a superuser would; re-queue the removed events.

    The first ``drop`` removed events are not re-queued (history rewritten).
    """
    tables = ["audit_log", "audit_tree_node", "audit_checkpoints", "audit_cosignatures", "audit_tree_state"]
    seqs = [
        r["event_seq"]
        for r in await conn.fetch("SELECT event_seq FROM audit_log WHERE idx >= $1 ORDER BY idx", keep)
    ]
    async with conn.transaction():
        await _set_triggers(conn, tables, enabled=False)
        await conn.execute("DELETE FROM audit_log WHERE idx >= $1", keep)
        await conn.execute("DELETE FROM audit_tree_node WHERE (idx + 1) << level > $1", keep)
        await conn.execute("DELETE FROM audit_cosignatures WHERE checkpoint_size > $1", keep)
        await conn.execute("DELETE FROM audit_checkpoints WHERE size > $1", keep)
        from audit.merkle import CompactRange  # noqa: PLC0415

        hashes = [r["leaf_hash"] for r in await conn.fetch("SELECT leaf_hash FROM audit_log ORDER BY idx")]
        compact = CompactRange()
        compact.extend(hashes)
        await conn.execute(
            "UPDATE audit_tree_state SET size = $1, compact = $2, root = $3",
            keep,
            list(compact.hashes),
            compact.root(),
        )
        requeue = seqs[drop:]
        await conn.execute("INSERT INTO audit_pending SELECT unnest($1::bigint[])", requeue)
        await _set_triggers(conn, tables, enabled=True)

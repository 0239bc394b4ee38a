"""Pruning for retention: leaf bytes go, hashes stay, and every proof still verifies."""

from __future__ import annotations

import datetime as dt
import uuid

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from audit.proofs import verify_inclusion
from audit.verify import verify_export
from backend.audit_trail import Action, AuditContext, AuditEvent, record
from backend.audit_trail.pruning import prune_leaves
from backend.clock import FrozenClock, SystemClock
from tests.audit_helpers import integrate_all, log_vkey, make_officer
from tests.helpers import make_clinic

CTX = AuditContext(source_instance="test-prune")


async def _events(db: asyncpg.Connection, org: uuid.UUID, n: int, at: dt.datetime) -> None:
    async with db.transaction():
        for _ in range(n):
            event = AuditEvent(
                action=Action.READ,
                event_type="note.read",
                org_id=org,
                entity_type="note",
                entity_id=uuid.uuid4(),
            )
            await record(db, event, CTX, at)


async def test_pruned_leaves_keep_the_log_verifiable(
    client: AsyncTestClient[Litestar], app: Litestar, db: asyncpg.Connection, clock: FrozenClock
) -> None:
    clinic = await make_clinic(client, app, db)
    officer = await make_officer(client, app, clinic)
    org = await db.fetchval("SELECT org_id FROM accounts WHERE id = $1", officer.id)
    old = SystemClock().now() - dt.timedelta(days=4000)
    await _events(db, org, 12, old)
    pending_old = SystemClock().now() - dt.timedelta(days=3999)
    await integrate_all(app, db)
    await _events(db, org, 1, pending_old)  # old, but not yet integrated: never pruned

    pruned = await prune_leaves(
        db, clock, before=SystemClock().now() - dt.timedelta(days=3650), ctx=CTX, batch=5
    )
    assert pruned == 12, "only integrated events are pruned, in committed batches"
    assert await prune_leaves(db, clock, before=SystemClock().now() - dt.timedelta(days=3650), ctx=CTX) == 0
    assert await db.fetchval("SELECT count(*) FROM audit_events WHERE leaf IS NULL") == 12
    assert await db.fetchval("SELECT count(*) FROM audit_events WHERE event_type = 'audit.prune'") == 3
    size = await integrate_all(app, db)

    # The complete export still verifies: pruned leaves are hash-only lines.
    response = await client.get("/v1/audit/export", params={"format": "jsonl"}, headers=officer.headers)
    assert response.status_code == 200, response.text
    summary = verify_export(response.content.splitlines(), [log_vkey(app)])
    assert summary.complete
    assert summary.count == size
    assert response.content.count(b'"pruned":true') >= 12
    # A proof of an event that was not pruned still verifies against the signed root.
    latest = await db.fetchval(
        "SELECT max(l.idx) FROM audit_log l JOIN audit_events e ON e.seq = l.event_seq"
        " WHERE e.org_id = $1 AND e.leaf IS NOT NULL",
        org,
    )
    proof = await client.get(
        "/v1/audit/proofs/inclusion", params={"index": latest, "size": size}, headers=officer.headers
    )
    assert proof.status_code == 200, proof.text
    body = proof.json()
    checkpoint = await client.get("/v1/audit/checkpoint", params={"size": size}, headers=officer.headers)
    assert checkpoint.status_code == 200
    import base64  # noqa: PLC0415

    root = await db.fetchval("SELECT root FROM audit_checkpoints WHERE size = $1", size)
    verify_inclusion(
        base64.b64decode(body["leaf_hash"]), latest, size, [base64.b64decode(p) for p in body["proof"]], root
    )
    # Search no longer returns pruned content.
    events = await client.get(
        "/v1/audit/events", params={"type": "note.read", "limit": 100}, headers=officer.headers
    )
    assert len(events.json()["items"]) == 1


async def test_database_allows_only_the_pruning_update(
    app: Litestar, client: AsyncTestClient[Litestar], db: asyncpg.Connection
) -> None:
    clinic = await make_clinic(client, app, db)
    org = await db.fetchval("SELECT org_id FROM accounts WHERE id = $1", clinic.admin.id)
    await _events(db, org, 2, SystemClock().now())
    await integrate_all(app, db)
    await _events(db, org, 1, SystemClock().now())
    pending = await db.fetchval("SELECT max(seq) FROM audit_events")
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await db.execute("UPDATE audit_events SET leaf = NULL, pruned_at = now() WHERE seq = $1", pending)
    integrated = await db.fetchval("SELECT min(event_seq) FROM audit_log")
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await db.execute(
            "UPDATE audit_events SET leaf = NULL, pruned_at = now(), outcome = 8 WHERE seq = $1", integrated
        )
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await db.execute("UPDATE audit_events SET leaf = NULL WHERE seq = $1", integrated)
    await db.execute("UPDATE audit_events SET leaf = NULL, pruned_at = now() WHERE seq = $1", integrated)
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await db.execute("DELETE FROM audit_events WHERE seq = $1", integrated)


def test_prune_command(
    monkeypatch: pytest.MonkeyPatch, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from backend.cli import main  # noqa: PLC0415
    from tests.conftest import make_settings  # noqa: PLC0415

    monkeypatch.setenv("CONFIDE_DATABASE_URL", database_url)
    monkeypatch.setenv("CONFIDE_SECRET_KEY", make_settings().secret_key or "")
    assert main(["audit", "prune", "--before", "2000-01-01T00:00:00+00:00"]) == 0
    assert "pruned 0 audit leaves" in capsys.readouterr().out
    assert main(["audit", "prune", "--before", "2000-01-01T00:00:00"]) == 2
    assert main(["audit", "prune", "--before", "yesterday"]) == 2


async def test_raw_addresses_have_a_short_retention(db: asyncpg.Connection, clock: FrozenClock) -> None:
    from backend.audit_trail.pruning import prune_addresses  # noqa: PLC0415

    ctx = AuditContext(source_instance="t", address="203.0.113.9", address_digest=b"\x02" * 32)
    async with db.transaction():
        await record(
            db,
            AuditEvent(action=Action.READ, event_type="note.read"),
            ctx,
            clock.now() - dt.timedelta(days=31),
        )
        await record(db, AuditEvent(action=Action.READ, event_type="note.read"), ctx, clock.now())
    assert await prune_addresses(db, clock, ctx=CTX) == 1
    assert await db.fetchval("SELECT count(*) FROM audit_addresses") == 1
    digests = await db.fetchval("SELECT count(*) FROM audit_events WHERE agent_address_digest IS NOT NULL")
    assert digests == 2, "the log keeps the keyed digest"

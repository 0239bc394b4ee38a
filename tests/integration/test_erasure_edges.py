"""Carrying out an erasure when things get in the way: locks, holds placed midway, a missing pool."""

from __future__ import annotations

import hashlib
import secrets
import uuid

import asyncpg
import pytest
from litestar import Litestar

from backend.audit_trail import AuditContext
from backend.erasure import executor
from backend.erasure import service as erasure_service
from backend.errors import InvalidInputError
from backend.retention import holds
from backend.retention import service as retention_service
from tests import retention_helpers as seed
from tests.helpers import runtime_of
from tests.retention_helpers import days

CTX = AuditContext(source_instance="test-erasure")


async def _request(db: asyncpg.Connection, org: seed.SeedOrg, client: uuid.UUID, status: str) -> uuid.UUID:
    request_id = uuid.uuid4()
    decided = status != "pending"
    await db.execute(
        """
        INSERT INTO erasure_requests (id, org_id, client_id, receipt_digest, status, filed_at, decided_by,
                                      decided_at, decision_reason)
        VALUES ($1, $2, $3, $4, $5, now(), $6, $7, $8)
        """,
        request_id,
        org.id,
        client,
        hashlib.sha256(secrets.token_bytes(8)).digest(),
        status,
        org.officer if decided else None,
        seed.real_now() if decided else None,
        "Checked and decided." if decided else None,
    )
    return request_id


async def _world(db: asyncpg.Connection) -> tuple[seed.SeedOrg, uuid.UUID, uuid.UUID]:
    now = seed.real_now()
    org = await seed.seed_org(db, "edge", now - days(100), clients=1)
    patient = org.clients[0]
    conv = await seed.conversation(db, org, now - days(100), client=patient, members=[patient, org.clinician])
    message = await seed.message(db, org, conv, patient, now - days(5), [patient, org.clinician])
    return org, patient, message


async def test_statuses_other_than_approved_are_left_alone(app: Litestar, db: asyncpg.Connection) -> None:
    org, patient, _ = await _world(db)
    rejected = await _request(db, org, patient, "rejected")
    assert await executor.execute(runtime_of(app), db, rejected, CTX, batch=10) == "rejected"
    assert await db.fetchval("SELECT status FROM accounts WHERE id = $1", patient) == "active"


async def test_a_request_another_process_works_on_is_busy(
    app: Litestar, db: asyncpg.Connection, database_url: str
) -> None:
    org, patient, _ = await _world(db)
    request = await _request(db, org, patient, "approved")
    other = await asyncpg.connect(database_url)
    try:
        async with other.transaction():
            await other.execute("SELECT 1 FROM erasure_requests WHERE id = $1 FOR UPDATE", request)
            assert await executor.execute(runtime_of(app), db, request, CTX, batch=10) == "busy"
    finally:
        await other.close()
    assert await executor.execute(runtime_of(app), db, request, CTX, batch=10) == "completed"


async def test_rows_locked_by_live_traffic_are_finished_later(
    app: Litestar, db: asyncpg.Connection, database_url: str
) -> None:
    org, patient, message = await _world(db)
    request = await _request(db, org, patient, "approved")
    rt = runtime_of(app)
    other = await asyncpg.connect(database_url)
    try:
        async with other.transaction():
            await other.execute("SELECT 1 FROM messages WHERE id = $1 FOR KEY SHARE", message)
            assert await executor.execute(rt, db, request, CTX, batch=10) == "approved"
    finally:
        await other.close()
    assert await db.fetchval("SELECT status FROM accounts WHERE id = $1", patient) == "erased", (
        "closed at once"
    )
    report = await executor.execute_due(rt, db, CTX, batch=10, dry_run=True)
    assert (report.open, report.completed) == (1, 0)
    report = await executor.execute_due(rt, db, CTX, batch=10, dry_run=False)
    assert (report.open, report.completed, report.held) == (1, 1, 0)
    assert await db.fetchval("SELECT count(*) FROM messages WHERE id = $1", message) == 0


async def test_a_hold_placed_midway_stops_the_rest(app: Litestar, db: asyncpg.Connection) -> None:
    org, patient, message = await _world(db)
    request = await _request(db, org, patient, "approved")
    rt = runtime_of(app)
    assert await executor._start(rt, db, request, CTX) == "approved"
    await db.execute(
        "INSERT INTO legal_holds (id, org_id, scope, client_id, reason, placed_by, placed_at)"
        " VALUES ($1, $2, 'client', $3, 'a claim arrived midway', $4, now())",
        uuid.uuid4(),
        org.id,
        patient,
        org.officer,
    )
    assert await executor._sweep(rt, db, request, CTX, "messages", 10) == "approved"
    assert await executor._finish(rt, db, request, CTX) == "approved"
    assert await db.fetchval("SELECT count(*) FROM messages WHERE id = $1", message) == 1
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await db.fetch("SELECT * FROM erasure_sweep_messages($1, 0, 10)", request)
    report = await executor.execute_due(rt, db, CTX, batch=10, dry_run=True)
    assert report.held == 1
    assert await executor.execute(rt, db, request, CTX, batch=10) == "held"
    assert await db.fetchval("SELECT status FROM erasure_requests WHERE id = $1", request) == "held"


async def test_a_background_start_that_fails_is_left_to_the_job(
    app: Litestar, db: asyncpg.Connection
) -> None:
    """Outside the app's lifespan there is no pool: the failure is logged, nothing raised."""
    org, patient, _ = await _world(db)
    request = await _request(db, org, patient, "approved")
    await executor.execute_in_background(runtime_of(app), request, CTX)
    assert await db.fetchval("SELECT status FROM erasure_requests WHERE id = $1", request) == "approved"


async def test_services_bound_their_pages(app: Litestar, db: asyncpg.Connection) -> None:
    """Services called without HTTP (whose parameters bound them first) refuse bad sizes too."""
    from backend.auth.principal import Principal  # noqa: PLC0415

    org, _, _ = await _world(db)
    rt = runtime_of(app)
    officer = Principal(
        session_id=uuid.uuid4(), account_id=org.officer, org_id=org.id, role="compliance_officer",
        mfa_satisfied=True, absolute_expires_at=seed.real_now(), email="co@edge.example", display_name="Co",
        mfa_enabled=True, account_created_at=seed.real_now(),
    )  # fmt: skip
    with pytest.raises(InvalidInputError):
        await holds.list_holds(rt, db, officer, CTX, active=None, cursor=None, limit=0)
    with pytest.raises(InvalidInputError):
        await retention_service.list_runs(rt, db, officer, cursor=None, limit=101)
    with pytest.raises(InvalidInputError):
        await erasure_service.list_requests(rt, db, officer, CTX, status=None, cursor=None, limit=0)

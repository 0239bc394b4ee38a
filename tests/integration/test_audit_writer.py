"""The audit table: written in the action's transaction, append-only for everyone."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from backend.audit_trail import Action, AuditContext, AuditEvent, Outcome, record
from backend.audit_trail.writer import NotInTransactionError
from backend.clock import SystemClock

CTX = AuditContext(
    source_instance="test", request_id="req-12345678", address="203.0.113.7", address_digest=b"\x01" * 32
)
EVENT = AuditEvent(action=Action.READ, event_type="test.read", outcome=Outcome.SUCCESS, entity_type="note")


async def test_event_commits_with_its_action(db: asyncpg.Connection) -> None:
    async with db.transaction():
        event_id = await record(db, EVENT, CTX, SystemClock().now())
    row = await db.fetchrow("SELECT * FROM audit_events WHERE event_id = $1", event_id)
    assert row is not None
    assert row["action"] == "R"
    assert row["request_id"] == "req-12345678"
    assert row["agent_address_digest"] == b"\x01" * 32
    address = await db.fetchval("SELECT host(address) FROM audit_addresses WHERE event_id = $1", event_id)
    assert address == "203.0.113.7"


async def test_event_rolls_back_with_its_action(db: asyncpg.Connection) -> None:
    """No record without its action: a failed transaction leaves no audit row."""

    class ActionFailedError(Exception):
        pass

    async def failing_action() -> None:
        async with db.transaction():
            await record(db, EVENT, CTX, SystemClock().now())
            raise ActionFailedError

    with pytest.raises(ActionFailedError):
        await failing_action()
    assert await db.fetchval("SELECT count(*) FROM audit_events") == 0


async def test_record_refuses_to_run_outside_a_transaction(db: asyncpg.Connection) -> None:
    with pytest.raises(NotInTransactionError):
        await record(db, EVENT, CTX, SystemClock().now())


async def test_non_ip_address_is_not_stored(db: asyncpg.Connection) -> None:
    async with db.transaction():
        await record(db, EVENT, AuditContext(source_instance="t", address="testclient"), SystemClock().now())
    assert await db.fetchval("SELECT count(*) FROM audit_addresses") == 0


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_events SET outcome = 8",
        "DELETE FROM audit_events",
        "TRUNCATE audit_events CASCADE",
    ],
)
async def test_audit_events_are_append_only(db: asyncpg.Connection, statement: str) -> None:
    """UPDATE, DELETE and TRUNCATE fail, even with session_replication_role = replica."""
    async with db.transaction():
        await record(db, EVENT, CTX, SystemClock().now())
    for role in ("origin", "replica"):
        await db.execute(f"SET session_replication_role = {role}")
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await db.execute(statement)
    await db.execute("SET session_replication_role = origin")
    assert await db.fetchval("SELECT count(*) FROM audit_events") == 1


async def test_database_rejects_malformed_events(db: asyncpg.Connection) -> None:
    """The table's checks hold even for code that bypasses the writer."""
    with pytest.raises(asyncpg.CheckViolationError):
        await db.execute(
            "INSERT INTO audit_events"
            " (event_id, recorded_at, action, event_type, outcome, source_instance, leaf)"
            " VALUES ($1, now(), 'X', 'a.b', 0, 's', '{}')",
            uuid.uuid4(),
        )
    with pytest.raises(asyncpg.CheckViolationError):
        await db.execute(
            "INSERT INTO audit_events"
            " (event_id, recorded_at, action, event_type, outcome, source_instance, leaf)"
            " VALUES ($1, now(), 'R', 'Has Spaces and PII@example.org', 0, 's', '{}')",
            uuid.uuid4(),
        )

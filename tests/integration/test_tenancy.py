"""backend.db.tenancy: the organization (or system) scope of a transaction, in one round trip."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any, cast

import asyncpg
import pytest

from backend.db.tenancy import (
    ORG_SETTING,
    SCOPE_SETTING,
    TenancyError,
    system_transaction,
    tenant_transaction,
)

ORG_A = uuid.UUID("0a000000-0000-4000-8000-00000000000a")
ORG_B = uuid.UUID("0b000000-0000-4000-8000-00000000000b")


class Queries:
    """Every query the connection sends (simple and extended protocol alike)."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    def __call__(self, record: Any) -> None:
        self.sent.append(record.query)


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    found = await asyncpg.create_pool(database_url, min_size=1, max_size=1, reset=_no_reset)
    assert found is not None
    try:
        yield found
    finally:
        await found.close()


async def _no_reset(conn: asyncpg.Connection) -> None:
    """The service's pool skips asyncpg's reset query (backend.db.pool); so does this one."""
    del conn


async def _fail_in(scope: Any, conn: asyncpg.Connection, sql: str) -> None:
    """Run ``sql`` inside ``scope``, then fail."""
    async with scope:
        await conn.execute(sql)
        raise RuntimeError("boom")


async def _org(conn: asyncpg.Connection) -> str | None:
    found: str | None = await conn.fetchval("SELECT current_setting($1, true)", ORG_SETTING)
    return found


async def _scope(conn: asyncpg.Connection) -> str | None:
    found: str | None = await conn.fetchval("SELECT current_setting($1, true)", SCOPE_SETTING)
    return found


async def test_the_organization_is_set_with_the_begin_in_one_round_trip(db: asyncpg.Connection) -> None:
    """Zero extra round trips: a tenant transaction sends as many queries as asyncpg's own."""
    plain, scoped = Queries(), Queries()
    with db.query_logger(plain):
        async with db.transaction():
            await db.fetchval("SELECT 1")
    with db.query_logger(scoped):
        async with tenant_transaction(db, ORG_A):
            assert await _org(db) == str(ORG_A)
    await asyncio.sleep(0)  # asyncpg calls query loggers soon after, not during, the query
    assert len(scoped.sent) == len(plain.sent) == 3
    assert scoped.sent[0].startswith("BEGIN;")
    assert ORG_SETTING in scoped.sent[0]
    assert scoped.sent[-1] == "COMMIT;"


async def test_the_setting_ends_with_the_transaction(pool: asyncpg.Pool) -> None:
    """Transaction-local: nothing is left for the next user of a pooled connection."""
    async with pool.acquire() as proxy:
        conn = cast(asyncpg.Connection, proxy)  # the pool hands out a proxy of one
        async with tenant_transaction(conn, ORG_A):
            assert conn.is_in_transaction()
            assert await _org(conn) == str(ORG_A)
        assert not conn.is_in_transaction()
        assert await _org(conn) in {None, ""}
        with pytest.raises(RuntimeError, match="boom"):
            await _fail_in(tenant_transaction(conn, ORG_B), conn, "SELECT 1")
        assert not conn.is_in_transaction()
    async with pool.acquire() as proxy:
        conn = cast(asyncpg.Connection, proxy)
        assert await _org(conn) in {None, ""}
        async with system_transaction(conn):
            assert await _scope(conn) == "system"
            assert await _org(conn) in {None, ""}
        assert await _scope(conn) in {None, ""}


async def test_work_commits_and_rolls_back(db: asyncpg.Connection) -> None:
    await db.execute("CREATE TABLE tenancy_probe (n int)")
    async with tenant_transaction(db, ORG_A):
        await db.execute("INSERT INTO tenancy_probe VALUES (1)")
    with pytest.raises(RuntimeError, match="boom"):
        await _fail_in(tenant_transaction(db, ORG_A), db, "INSERT INTO tenancy_probe VALUES (2)")
    assert await db.fetchval("SELECT array_agg(n) FROM tenancy_probe") == [1]


async def test_conn_transaction_inside_is_a_savepoint(db: asyncpg.Connection) -> None:
    """Code that opens its own ``conn.transaction()`` inside a scope gets a savepoint in it."""
    await db.execute("CREATE TABLE tenancy_probe (n int)")
    queries = Queries()
    async with tenant_transaction(db, ORG_A):
        await db.execute("INSERT INTO tenancy_probe VALUES (1)")
        with db.query_logger(queries), pytest.raises(RuntimeError, match="boom"):
            await _fail_in(db.transaction(), db, "INSERT INTO tenancy_probe VALUES (2)")
        async with db.transaction():
            await db.execute("INSERT INTO tenancy_probe VALUES (3)")
            assert await _org(db) == str(ORG_A)
        # The same organization again: a savepoint too.
        async with tenant_transaction(db, ORG_A):
            await db.execute("INSERT INTO tenancy_probe VALUES (4)")
        assert await _org(db) == str(ORG_A)
    assert queries.sent[0].startswith("SAVEPOINT")
    assert await db.fetchval("SELECT array_agg(n ORDER BY n) FROM tenancy_probe") == [1, 3, 4]


async def test_isolation_and_read_only_are_honoured(db: asyncpg.Connection) -> None:
    async with tenant_transaction(db, ORG_A, isolation="repeatable_read", readonly=True):
        assert await db.fetchval("SHOW transaction_isolation") == "repeatable read"
        assert await db.fetchval("SHOW transaction_read_only") == "on"
        with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
            await db.execute("CREATE TABLE tenancy_probe (n int)")
    async with system_transaction(db, isolation="serializable"):
        assert await db.fetchval("SHOW transaction_isolation") == "serializable"
        async with db.transaction(isolation="serializable"):  # a savepoint, same level
            assert await _scope(db) == "system"


@pytest.mark.parametrize(
    "outer",
    ["tenant_b", "system", "plain"],
)
async def test_another_scope_inside_is_refused(db: asyncpg.Connection, outer: str) -> None:
    """A scope never changes mid-transaction.

    Nesting another organization, or nesting into a plain transaction (whose earlier work
    ran without one), is a bug.
    """
    opened: Any
    if outer == "tenant_b":
        opened = tenant_transaction(db, ORG_B)
    elif outer == "system":
        opened = system_transaction(db)
    else:
        opened = db.transaction()
    async with opened:
        with pytest.raises(TenancyError):
            async with tenant_transaction(db, ORG_A):
                pass  # pragma: no cover -- refused before
        assert await _org(db) != str(ORG_A)
    await db.execute("BEGIN")
    try:
        with pytest.raises(TenancyError):
            async with system_transaction(db):
                pass  # pragma: no cover -- refused before
    finally:
        await db.execute("ROLLBACK")


@pytest.mark.parametrize("bad", [str(ORG_A), ORG_A.int, None, f"{ORG_A}'; SET ROLE postgres; --"])
async def test_only_a_uuid_is_accepted(db: asyncpg.Connection, bad: Any) -> None:
    """The organization goes into SQL text: anything but a UUID is refused before it is sent."""
    queries = Queries()
    with db.query_logger(queries), pytest.raises(TypeError):
        async with tenant_transaction(db, bad):
            pass  # pragma: no cover -- refused before
    assert queries.sent == []


async def test_asyncpg_uuids_are_accepted(db: asyncpg.Connection) -> None:
    """Ids read from the database are asyncpg's UUID subclass; they work, in canonical form."""
    from_db = await db.fetchval("SELECT $1::uuid", ORG_A)
    assert type(from_db) is not uuid.UUID
    async with tenant_transaction(db, from_db):
        assert await _org(db) == str(ORG_A)
        async with tenant_transaction(db, ORG_A):  # the same organization, whatever the class
            pass


async def test_a_begin_that_fails_raises(database_url: str) -> None:
    """The BEGIN never reaches the server: the error surfaces, no transaction is assumed."""
    conn = await asyncpg.connect(database_url)
    await conn.close()
    with pytest.raises(asyncpg.InterfaceError, match="closed"):
        async with tenant_transaction(conn, ORG_A):
            pass  # pragma: no cover -- never entered

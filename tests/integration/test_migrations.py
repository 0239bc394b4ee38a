"""The migration runner: ordered, recorded with checksums, locked, and strict about history."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from backend.db.migrate import Migration, MigrationError, load_migrations, migrate, pending
from tests.conftest import PgServer, with_database


@pytest.fixture
async def empty_db(pg_server: PgServer) -> AsyncIterator[str]:
    name = f"confide_empty_{uuid.uuid4().hex[:12]}"
    await pg_server.execute_admin(f'CREATE DATABASE "{name}"')
    yield with_database(pg_server.admin_url, name)
    await pg_server.drop_database(name)


async def test_migrations_apply_once_with_checksums(empty_db: str) -> None:
    files = load_migrations()
    assert [m.version for m in files] == sorted(m.version for m in files)
    applied = await migrate(empty_db)
    assert applied == [m.name for m in files]
    assert await migrate(empty_db) == [], "a second run applies nothing"
    conn = await asyncpg.connect(empty_db)
    try:
        rows = await conn.fetch("SELECT version, checksum FROM schema_migrations ORDER BY version")
        assert [(r["version"], r["checksum"]) for r in rows] == [(m.version, m.checksum) for m in files]
        assert await pending(conn) == []
    finally:
        await conn.close()


async def test_concurrent_runners_apply_each_file_once(empty_db: str) -> None:
    results = await asyncio.gather(*(migrate(empty_db) for _ in range(4)))
    applied = [name for result in results for name in result]
    assert sorted(applied) == sorted(m.name for m in load_migrations())


async def test_changed_migration_is_refused(empty_db: str) -> None:
    await migrate(empty_db)
    first = load_migrations()[0]
    tampered = [Migration(first.version, first.name, first.sql + "\n-- edited"), *load_migrations()[1:]]
    with pytest.raises(MigrationError, match="changed after it was applied"):
        await migrate(empty_db, tampered)


async def test_unknown_applied_migration_is_refused(empty_db: str) -> None:
    await migrate(empty_db)
    with pytest.raises(MigrationError, match="does not know"):
        await migrate(empty_db, [])


async def test_new_migration_applies_after_existing(empty_db: str) -> None:
    await migrate(empty_db)
    extra = Migration("9999", "9999_extra.sql", "CREATE TABLE extra_table (id int);")
    assert await migrate(empty_db, [*load_migrations(), extra]) == ["9999_extra.sql"]


async def test_failed_migration_leaves_nothing_behind(empty_db: str) -> None:
    bad = Migration("0001", "0001_bad.sql", "CREATE TABLE half (id int); SELECT 1/0;")
    with pytest.raises(asyncpg.DivisionByZeroError):
        await migrate(empty_db, [bad])
    conn = await asyncpg.connect(empty_db)
    try:
        assert await conn.fetchval("SELECT to_regclass('public.half')") is None
        assert await conn.fetchval("SELECT count(*) FROM schema_migrations") == 0
    finally:
        await conn.close()

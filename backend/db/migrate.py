"""Migrations: ordered SQL files applied once each, under an advisory lock.

Each applied file is recorded with its SHA-256. A file that changed after it was
applied stops the runner: history is fixed, a change is a new file.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources

import asyncpg

__all__ = [
    "Migration",
    "MigrationError",
    "applied_versions",
    "load_migrations",
    "migrate",
    "pending",
]

# An arbitrary constant naming Confide's migration lock among advisory locks.
_LOCK_KEY = 0x436F6E66_6964_6501
_NAME_RE = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


class MigrationError(RuntimeError):
    """The schema cannot be brought up to date safely."""


@dataclass(frozen=True, slots=True)
class Migration:
    """One SQL file."""

    version: str
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        """SHA-256 of the file's bytes, hex."""
        return hashlib.sha256(self.sql.encode("utf-8")).hexdigest()


def load_migrations() -> list[Migration]:
    """The migration files shipped in ``backend/db/migrations``, in order."""
    folder = resources.files("backend.db").joinpath("migrations")
    found: list[Migration] = []
    for entry in folder.iterdir():
        match = _NAME_RE.match(entry.name)
        if match is None:
            continue
        found.append(Migration(match.group(1), entry.name, entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError("two migration files share a version number")
    return found


async def applied_versions(conn: asyncpg.Connection) -> dict[str, str]:
    """Applied versions and their checksums (empty before the first migration)."""
    exists = await conn.fetchval("SELECT to_regclass('public.schema_migrations') IS NOT NULL")
    if not exists:
        return {}
    rows = await conn.fetch("SELECT version, checksum FROM schema_migrations")
    return {row["version"]: row["checksum"] for row in rows}


async def pending(conn: asyncpg.Connection, migrations: list[Migration] | None = None) -> list[Migration]:
    """Migrations not yet applied; raises if an applied one changed or is unknown."""
    migrations = load_migrations() if migrations is None else migrations
    applied = await applied_versions(conn)
    known = {m.version: m for m in migrations}
    for version, checksum in applied.items():
        migration = known.get(version)
        if migration is None:
            raise MigrationError(f"the database has migration {version}, which this code does not know")
        if migration.checksum != checksum:
            raise MigrationError(f"migration {migration.name} changed after it was applied")
    return [m for m in migrations if m.version not in applied]


async def migrate(dsn: str, migrations: list[Migration] | None = None) -> list[str]:
    """Apply every pending migration; return the names applied."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
        try:
            await conn.execute(
                """
                CREATE TABLE IF NOT EXISTS schema_migrations (
                    version    text PRIMARY KEY,
                    name       text NOT NULL,
                    checksum   text NOT NULL CHECK (checksum ~ '^[0-9a-f]{64}$'),
                    applied_at timestamptz NOT NULL DEFAULT now()
                )
                """
            )
            done: list[str] = []
            for migration in await pending(conn, migrations):
                async with conn.transaction():
                    await conn.execute(migration.sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                        migration.version,
                        migration.name,
                        migration.checksum,
                    )
                done.append(migration.name)
            return done
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
    finally:
        await conn.close()

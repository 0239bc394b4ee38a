"""Where the database is: ``CONFIDE_DATABASE_URL``, or the embedded cluster."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg

from backend.db.embedded import EmbeddedPostgres
from backend.settings import Settings

__all__ = ["EMBEDDED_DATABASE", "embedded_cluster", "resolve_database_url"]

EMBEDDED_DATABASE = "confide"


def embedded_cluster(settings: Settings) -> EmbeddedPostgres:
    """The development cluster under ``CONFIDE_DATA_DIR``."""
    return EmbeddedPostgres(Path(settings.data_dir) / "pg")


def resolve_database_url(settings: Settings) -> str:
    """The URL to connect to, starting the embedded cluster when none is configured."""
    if settings.database_url:
        return settings.database_url
    cluster = embedded_cluster(settings)
    cluster.ensure_running()
    asyncio.run(_ensure_database(cluster.dsn(), EMBEDDED_DATABASE))
    return cluster.dsn(EMBEDDED_DATABASE)


async def _ensure_database(admin_dsn: str, name: str) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()

"""SQL for key bundles and key backups."""

from __future__ import annotations

import datetime as dt
import uuid

import asyncpg
import msgspec

__all__ = [
    "BackupRow",
    "BundleRow",
    "account_org",
    "current_bundles",
    "get_backup",
    "insert_bundle",
    "list_bundles",
    "lock_account_keys",
    "revoke_bundle",
    "upsert_backup",
]


class BundleRow(msgspec.Struct, frozen=True, kw_only=True):
    """A stored bundle."""

    key_version: int
    bundle: bytes
    fingerprint: str
    published_at: dt.datetime
    revoked_at: dt.datetime | None


class BackupRow(msgspec.Struct, frozen=True, kw_only=True):
    """A stored backup."""

    revision: int
    key_version: int
    backup: bytes
    updated_at: dt.datetime


async def account_org(conn: asyncpg.Connection, account_id: uuid.UUID) -> uuid.UUID | None:
    """The organization of an account (None when there is no such account)."""
    org: uuid.UUID | None = await conn.fetchval("SELECT org_id FROM accounts WHERE id = $1", account_id)
    return org


async def lock_account_keys(conn: asyncpg.Connection, account_id: uuid.UUID) -> None:
    """Serialize key changes of one account (transaction-scoped advisory lock)."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1::uuid::text, 7))", account_id)


async def list_bundles(conn: asyncpg.Connection, account_id: uuid.UUID) -> list[BundleRow]:
    """Every bundle of an account, oldest first."""
    rows = await conn.fetch(
        """
        SELECT key_version, bundle, fingerprint, published_at, revoked_at
        FROM key_bundles WHERE account_id = $1 ORDER BY key_version
        """,
        account_id,
    )
    return [msgspec.convert(dict(r), BundleRow) for r in rows]


async def insert_bundle(
    conn: asyncpg.Connection,
    *,
    account_id: uuid.UUID,
    org_id: uuid.UUID,
    key_version: int,
    encryption_key: bytes,
    signing_key: bytes,
    bundle: bytes,
    fingerprint: str,
    bundle_created_at: dt.datetime,
    now: dt.datetime,
) -> None:
    """Store a verified bundle."""
    await conn.execute(
        """
        INSERT INTO key_bundles (account_id, org_id, key_version, encryption_key, signing_key, bundle,
                                 fingerprint, bundle_created_at, published_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
        """,
        account_id,
        org_id,
        key_version,
        encryption_key,
        signing_key,
        bundle,
        fingerprint,
        bundle_created_at,
        now,
    )


async def current_bundles(conn: asyncpg.Connection, account_ids: list[uuid.UUID]) -> dict[uuid.UUID, bytes]:
    """Each account's current bundle (its latest version, when not revoked), as stored."""
    rows = await conn.fetch(
        """
        SELECT DISTINCT ON (account_id) account_id, bundle, revoked_at
        FROM key_bundles WHERE account_id = ANY($1::uuid[])
        ORDER BY account_id, key_version DESC
        """,
        account_ids,
    )
    return {r["account_id"]: r["bundle"] for r in rows if r["revoked_at"] is None}


async def revoke_bundle(
    conn: asyncpg.Connection, account_id: uuid.UUID, key_version: int, now: dt.datetime
) -> bool:
    """Mark a bundle revoked; False when there is no such bundle."""
    result = await conn.execute(
        """
        UPDATE key_bundles SET revoked_at = coalesce(revoked_at, $3)
        WHERE account_id = $1 AND key_version = $2
        """,
        account_id,
        key_version,
        now,
    )
    return result.endswith(" 1")


_BACKUP = "SELECT revision, key_version, backup, updated_at FROM key_backups WHERE account_id = $1"
_BACKUP_FOR_UPDATE = _BACKUP + " FOR UPDATE"


async def get_backup(
    conn: asyncpg.Connection, account_id: uuid.UUID, *, lock: bool = False
) -> BackupRow | None:
    """An account's key backup."""
    row = await conn.fetchrow(_BACKUP_FOR_UPDATE if lock else _BACKUP, account_id)
    return None if row is None else msgspec.convert(dict(row), BackupRow)


async def upsert_backup(
    conn: asyncpg.Connection,
    *,
    account_id: uuid.UUID,
    org_id: uuid.UUID,
    revision: int,
    key_version: int,
    backup: bytes,
    now: dt.datetime,
) -> None:
    """Store the backup at ``revision``."""
    await conn.execute(
        """
        INSERT INTO key_backups (account_id, org_id, revision, key_version, backup, updated_at)
        VALUES ($1, $2, $3, $4, $5, $6)
        ON CONFLICT (account_id) DO UPDATE SET
            revision = EXCLUDED.revision, key_version = EXCLUDED.key_version,
            backup = EXCLUDED.backup, updated_at = EXCLUDED.updated_at
        """,
        account_id,
        org_id,
        revision,
        key_version,
        backup,
        now,
    )

"""SQL for organizations, accounts, invites and care relationships."""

from __future__ import annotations

import datetime as dt
import uuid

import asyncpg
import msgspec

__all__ = [
    "AccountRow",
    "InviteRow",
    "active_admin_ids",
    "claim_invite",
    "count_admins",
    "display_name",
    "get_account",
    "get_org_by_slug",
    "insert_account",
    "insert_care_relationship",
    "insert_invite",
    "insert_org",
    "lock_admins",
    "set_role",
    "set_status",
]


class AccountRow(msgspec.Struct, frozen=True, kw_only=True):
    """An account without its secrets."""

    id: uuid.UUID
    org_id: uuid.UUID
    email: str
    display_name: str
    role: str
    status: str
    mfa_enabled: bool
    created_at: dt.datetime


class InviteRow(msgspec.Struct, frozen=True, kw_only=True):
    """A claimed invite."""

    id: uuid.UUID
    org_id: uuid.UUID
    created_by: uuid.UUID


_ACCOUNT_COLUMNS = """
    id, org_id, email, display_name, role, status,
    totp_enabled_at IS NOT NULL AS mfa_enabled, created_at
"""


async def get_org_by_slug(conn: asyncpg.Connection, slug: str) -> uuid.UUID | None:
    """An organization's id."""
    found: uuid.UUID | None = await conn.fetchval("SELECT id FROM organizations WHERE slug = $1", slug)
    return found


async def insert_org(
    conn: asyncpg.Connection, slug: str, name: str, now: dt.datetime, *, org_id: uuid.UUID
) -> None:
    """Create an organization."""
    await conn.execute(
        "INSERT INTO organizations (id, slug, name, created_at) VALUES ($1, $2, $3, $4)",
        org_id,
        slug,
        name,
        now,
    )


async def count_admins(conn: asyncpg.Connection, org_id: uuid.UUID) -> int:
    """How many admin accounts an organization has."""
    count: int = await conn.fetchval(
        "SELECT count(*) FROM accounts WHERE org_id = $1 AND role = 'admin'", org_id
    )
    return count


async def insert_account(
    conn: asyncpg.Connection,
    *,
    org_id: uuid.UUID,
    email: str,
    display_name: str,
    role: str,
    password_hash: str,
    created_by: uuid.UUID | None,
    now: dt.datetime,
) -> AccountRow | None:
    """Create an account; None when the email is taken in this organization."""
    row = await conn.fetchrow(
        f"""
        INSERT INTO accounts (id, org_id, email, display_name, role, password_hash,
                              password_changed_at, created_at, created_by)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8)
        ON CONFLICT (org_id, lower(email)) DO NOTHING
        RETURNING {_ACCOUNT_COLUMNS}
        """,  # noqa: S608 -- a fixed column list, no input
        uuid.uuid4(),
        org_id,
        email,
        display_name,
        role,
        password_hash,
        now,
        created_by,
    )
    return None if row is None else msgspec.convert(dict(row), AccountRow)


async def display_name(conn: asyncpg.Connection, account_id: uuid.UUID) -> str | None:
    """An account's display name."""
    name: str | None = await conn.fetchval("SELECT display_name FROM accounts WHERE id = $1", account_id)
    return name


async def insert_invite(
    conn: asyncpg.Connection,
    *,
    org_id: uuid.UUID,
    digest: bytes,
    created_by: uuid.UUID,
    now: dt.datetime,
    expires_at: dt.datetime,
) -> uuid.UUID:
    """Store an invite (its code's digest only)."""
    invite_id = uuid.uuid4()
    await conn.execute(
        """
        INSERT INTO invites (id, org_id, code_digest, created_by, created_at, expires_at)
        VALUES ($1, $2, $3, $4, $5, $6)
        """,
        invite_id,
        org_id,
        digest,
        created_by,
        now,
        expires_at,
    )
    return invite_id


async def claim_invite(conn: asyncpg.Connection, digest: bytes, now: dt.datetime) -> InviteRow | None:
    """Lock an unused, unexpired invite for redemption; None if there is none.

    Before the organization is known: through the SECURITY DEFINER function of
    migration 0013, which also sets the invite's organization for the rest of the
    transaction (row-level security then admits the new account's rows).
    """
    row = await conn.fetchrow("SELECT id, org_id, created_by FROM auth_claim_invite($1, $2)", digest, now)
    return None if row is None else msgspec.convert(dict(row), InviteRow)


async def mark_invite_redeemed(
    conn: asyncpg.Connection, invite_id: uuid.UUID, account_id: uuid.UUID, now: dt.datetime
) -> None:
    """Use the invite up."""
    await conn.execute(
        "UPDATE invites SET redeemed_at = $3, redeemed_by = $2 WHERE id = $1 AND redeemed_at IS NULL",
        invite_id,
        account_id,
        now,
    )


async def insert_care_relationship(
    conn: asyncpg.Connection,
    *,
    org_id: uuid.UUID,
    client_id: uuid.UUID,
    clinician_id: uuid.UUID,
    source: str,
    now: dt.datetime,
) -> None:
    """Record that a clinician treats a client."""
    await conn.execute(
        """
        INSERT INTO care_relationships (org_id, client_id, clinician_id, created_at, source)
        VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING
        """,
        org_id,
        client_id,
        clinician_id,
        now,
        source,
    )


# The organization's admin changes take this transaction-scoped lock, as the trigger of
# migration 0014 does (seed 0x61646D6E, "admn"): checks of "another active admin
# remains" then never race.
_LOCK_ADMINS = "SELECT pg_advisory_xact_lock(hashtextextended($1::uuid::text, 1633971566))"


async def lock_admins(conn: asyncpg.Connection, org_id: uuid.UUID) -> None:
    """Serialize changes to the organization's admins until the transaction ends."""
    await conn.execute(_LOCK_ADMINS, org_id)


async def get_account(conn: asyncpg.Connection, account_id: uuid.UUID) -> AccountRow | None:
    """An account of the transaction's organization, locked for update; None if there is none.

    FOR NO KEY UPDATE, not FOR UPDATE: a send in flight holds its members' rows and then
    inserts recipient rows whose foreign key takes KEY SHARE on the account, which FOR
    UPDATE would block while this transaction waits for the send's memberships (a deadlock).
    """
    row = await conn.fetchrow(
        f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE id = $1 FOR NO KEY UPDATE",  # noqa: S608 -- fixed columns
        account_id,
    )
    return None if row is None else msgspec.convert(dict(row), AccountRow)


async def active_admin_ids(conn: asyncpg.Connection, org_id: uuid.UUID) -> list[uuid.UUID]:
    """The organization's active admins."""
    rows = await conn.fetch(
        "SELECT id FROM accounts WHERE org_id = $1 AND role = 'admin' AND status = 'active' ORDER BY id",
        org_id,
    )
    return [r["id"] for r in rows]


async def set_role(conn: asyncpg.Connection, account_id: uuid.UUID, role: str) -> AccountRow:
    """Change an account's role (the caller checked the rules; the database checks them again)."""
    row = await conn.fetchrow(
        f"UPDATE accounts SET role = $2 WHERE id = $1 RETURNING {_ACCOUNT_COLUMNS}",  # noqa: S608 -- fixed columns
        account_id,
        role,
    )
    if row is None:  # pragma: no cover -- the caller holds the row locked
        raise LookupError(account_id)
    return msgspec.convert(dict(row), AccountRow)


async def set_status(
    conn: asyncpg.Connection, account_id: uuid.UUID, status: str, now: dt.datetime
) -> AccountRow:
    """Disable or re-enable an account (closing records when, re-opening clears it)."""
    row = await conn.fetchrow(
        f"""
        UPDATE accounts SET status = $2,
               closed_at = CASE WHEN $2 = 'active' THEN NULL ELSE coalesce(closed_at, $3) END
        WHERE id = $1 RETURNING {_ACCOUNT_COLUMNS}
        """,  # noqa: S608 -- fixed columns
        account_id,
        status,
        now,
    )
    if row is None:  # pragma: no cover -- the caller holds the row locked
        raise LookupError(account_id)
    return msgspec.convert(dict(row), AccountRow)

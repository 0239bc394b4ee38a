"""Row-level security (migration 0013): as the application role, one organization at a time.

Two organizations get a row in every protected table (straight SQL as the owner). The
application role then sees nothing without the transaction's organization, only the
named organization's rows with it, and can write nothing into another organization.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import pytest

from backend.db.tenancy import system_transaction, tenant_transaction
from backend.messaging import repository as messaging_repo
from tests import retention_helpers as seed
from tests.conftest import PgServer, as_role

# How the owner finds the organization of a row, per protected table.
_OWN_ORG_ID = (
    "accounts", "sessions", "invites", "care_relationships", "key_bundles", "key_backups", "custodian_keys",
    "consents", "consent_events", "emergency_access", "conversations", "conversation_members", "messages",
    "attachments", "notes", "legal_holds", "erasure_requests", "retention_policy_changes",
    "retention_policies",
)  # fmt: skip
ORG_OF: dict[str, str] = {
    **dict.fromkeys(_OWN_ORG_ID, "org_id"),
    "recovery_codes": "(SELECT p.org_id FROM accounts p WHERE p.id = t.account_id)",
    "message_recipients": "(SELECT p.org_id FROM conversations p WHERE p.id = t.conversation_id)",
    "attachment_chunks": "(SELECT p.org_id FROM attachments p WHERE p.id = t.attachment_id)",
    "note_envelopes": "(SELECT p.org_id FROM notes p WHERE p.id = t.note_id)",
    "note_readers": "(SELECT p.org_id FROM notes p WHERE p.id = t.note_id)",
    "note_key_wraps": "(SELECT p.org_id FROM notes p WHERE p.id = t.note_id)",
}
# Rows every organization may read: the default retention policies.
SHARED = {"retention_policies": "t.org_id IS NULL"}


@dataclass
class Seeded:
    a: seed.SeedOrg
    b: seed.SeedOrg
    conversation: dict[uuid.UUID, uuid.UUID]


@pytest.fixture
async def app_role(pg_server: PgServer, db: asyncpg.Connection) -> AsyncIterator[str]:
    """A role like deploy/postgres/roles.sql's: no superuser, no BYPASSRLS, granted by 0008/0010."""
    role = f"confide_rls_{uuid.uuid4().hex[:8]}"
    await pg_server.execute_admin(f'CREATE ROLE "{role}" LOGIN NOSUPERUSER NOBYPASSRLS NOINHERIT')
    await db.execute("SELECT confide_grant_app_role($1)", role)
    try:
        yield role
    finally:
        await db.execute(f'DROP OWNED BY "{role}"')
        await pg_server.execute_admin(f'DROP ROLE IF EXISTS "{role}"')


@pytest.fixture
async def app_conn(app_role: str, database_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(as_role(database_url, app_role))
    try:
        yield conn
    finally:
        await conn.close()


async def _seed_org(db: asyncpg.Connection, slug: str, at: dt.datetime) -> tuple[seed.SeedOrg, uuid.UUID]:
    org = await seed.seed_org(db, slug, at, clients=1)
    client = org.clients[0]
    conversation = await seed.conversation(db, org, at, client=client, members=[org.clinician, client])
    await seed.message(db, org, conversation, org.clinician, at, [org.clinician, client])
    await seed.attachment(db, org, conversation, org.clinician, at)
    note = await seed.note(db, org, client, at)
    await seed.consent(db, org, client, at)
    await seed.session(db, org, client, at, live=True)
    await seed.invite(db, org, at)
    await seed.key_backup(db, org, client, at)
    await db.execute(
        "INSERT INTO recovery_codes (account_id, code_digest, created_at) VALUES ($1, $2, $3)",
        org.clinician,
        secrets.token_bytes(32),
        at,
    )
    await db.execute(
        "INSERT INTO care_relationships (org_id, client_id, clinician_id, created_at, source)"
        " VALUES ($1, $2, $3, $4, 'admin')",
        org.id,
        client,
        org.clinician,
        at,
    )
    await db.execute(
        """
        INSERT INTO custodian_keys (org_id, key_version, encryption_key, signing_key, bundle, fingerprint,
                                    published_at, published_by)
        VALUES ($1, 1, $2, $3, $4, '12345 12345 12345 12345 12345 12345', $5, $6)
        """,
        org.id,
        secrets.token_bytes(32),
        secrets.token_bytes(32),
        secrets.token_bytes(100),
        at,
        org.admin,
    )
    emergency = uuid.uuid4()
    await db.execute(
        """
        INSERT INTO emergency_access (id, org_id, client_id, clinician_id, reason, opened_at, expires_at)
        VALUES ($1, $2, $3, $4, 'unconscious at the clinic', $5, $5::timestamptz + interval '1 hour')
        """,
        emergency,
        org.id,
        client,
        org.clinician,
        at,
    )
    await db.execute(
        """
        INSERT INTO note_key_wraps
            (note_id, emergency_access_id, account_id, key_version, wrapped_key, created_at)
        VALUES ($1, $2, $3, 1, $4, $5)
        """,
        note,
        emergency,
        org.clinician,
        secrets.token_bytes(80),
        at,
    )
    await db.execute(
        """
        INSERT INTO legal_holds (id, org_id, scope, client_id, reason, placed_by, placed_at)
        VALUES ($1, $2, 'client', $3, 'litigation pending in court', $4, $5)
        """,
        uuid.uuid4(),
        org.id,
        client,
        org.officer,
        at,
    )
    await db.execute(
        """
        INSERT INTO erasure_requests (id, org_id, client_id, reason, receipt_digest, status, filed_at)
        VALUES ($1, $2, $3, 'please forget me', $4, 'pending', $5)
        """,
        uuid.uuid4(),
        org.id,
        client,
        hashlib.sha256(secrets.token_bytes(16)).digest(),
        at,
    )
    await db.execute(
        """
        INSERT INTO retention_policies (org_id, category, period_days, counts_from, action, legal_basis,
                                        updated_at, updated_by)
        VALUES ($1, 'sessions', 60, 'last_activity', 'delete', 'our own reasons, written down', $2, $3)
        """,
        org.id,
        at,
        org.admin,
    )
    await db.execute(
        """
        INSERT INTO retention_policy_changes (id, org_id, category, old_period_days, new_period_days,
                                              old_legal_basis, new_legal_basis, changed_by, changed_at)
        VALUES ($1, $2, 'sessions', 30, 60, 'the default basis', 'our own reasons', $3, $4)
        """,
        uuid.uuid4(),
        org.id,
        org.admin,
        at,
    )
    return org, conversation


@pytest.fixture
async def seeded(db: asyncpg.Connection) -> Seeded:
    at = seed.real_now() - seed.days(1)
    a, conversation_a = await _seed_org(db, "org-a", at)
    b, conversation_b = await _seed_org(db, "org-b", at)
    return Seeded(a=a, b=b, conversation={a.id: conversation_a, b.id: conversation_b})


async def _protected(db: asyncpg.Connection) -> set[str]:
    rows = await db.fetch(
        "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind = 'r'"
        " AND relrowsecurity"
    )
    return {r["relname"] for r in rows}


async def _rows(conn: asyncpg.Connection, table: str) -> set[str]:
    return {r[0] for r in await conn.fetch(f"SELECT ctid::text FROM {table}")}  # noqa: S608 -- our table names


async def test_every_table_is_protected_or_excluded_with_a_reason(db: asyncpg.Connection) -> None:
    """A table a later migration adds must be decided on: fenced, or listed with why not."""
    tables = {
        r["tablename"] for r in await db.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    }
    excluded = {r["table_name"] for r in await db.fetch("SELECT table_name FROM row_security_exclusions")}
    protected = await _protected(db)
    assert protected == set(ORG_OF), "every protected table is tested below"
    assert not protected & excluded
    assert tables == protected | excluded, sorted(tables - protected - excluded)
    # The owner is exempt by ownership, never by FORCE (migrations and SECURITY DEFINER
    # functions see every row); nothing in the schema forces it.
    forced = await db.fetchval(
        "SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relforcerowsecurity"
    )
    assert forced == 0


@pytest.mark.parametrize("table", sorted(ORG_OF))
async def test_the_app_role_sees_one_organization_at_a_time(
    db: asyncpg.Connection, app_conn: asyncpg.Connection, seeded: Seeded, table: str
) -> None:
    """Without the setting nothing; with an organization's, that organization's rows only."""
    owner = await db.fetch(
        f"SELECT ctid::text AS ctid, {ORG_OF[table]} AS org, {SHARED.get(table, 'false')} AS shared"  # noqa: S608
        f" FROM {table} t"
    )
    shared = {r["ctid"] for r in owner if r["shared"]}
    of = {org.id: {r["ctid"] for r in owner if r["org"] == org.id} for org in (seeded.a, seeded.b)}
    assert of[seeded.a.id], f"seed {table} for organization A"
    assert of[seeded.b.id], f"seed {table} for organization B"

    assert await _rows(app_conn, table) == shared  # no transaction, no setting
    async with app_conn.transaction():
        assert await _rows(app_conn, table) == shared  # a transaction without the setting
    async with tenant_transaction(app_conn, uuid.uuid4()):
        assert await _rows(app_conn, table) == shared  # an organization without rows here
    for org in (seeded.a, seeded.b):
        async with tenant_transaction(app_conn, org.id):
            assert await _rows(app_conn, table) == of[org.id] | shared
    async with system_transaction(app_conn):
        assert await _rows(app_conn, table) == {r["ctid"] for r in owner}
    # The owner (here the superuser) is not subject to the policies at all.
    assert await _rows(db, table) == {r["ctid"] for r in owner}


async def test_a_repository_read_by_id_finds_nothing_of_another_organization(
    app_conn: asyncpg.Connection, db: asyncpg.Connection, seeded: Seeded
) -> None:
    """Defence in depth: a query with no organization filter of its own still stays in its organization."""
    theirs = seeded.conversation[seeded.b.id]
    mine = seeded.conversation[seeded.a.id]
    assert await messaging_repo.joined_at(db, theirs, seeded.b.clinician) is not None  # the owner sees it
    async with tenant_transaction(app_conn, seeded.a.id):
        assert await messaging_repo.joined_at(app_conn, theirs, seeded.b.clinician) is None
        assert await messaging_repo.list_members(app_conn, theirs) == []
        assert await messaging_repo.load_context(app_conn, theirs, seeded.b.clinician, bundles=True) is None
        assert await messaging_repo.list_conversations(app_conn, seeded.b.clinician, 10) == []
        # ...while its own conversation is there.
        assert await messaging_repo.joined_at(app_conn, mine, seeded.a.clinician) is not None
        assert await messaging_repo.load_context(app_conn, mine, seeded.a.clinician) is not None


async def test_nothing_is_written_into_another_organization(
    app_conn: asyncpg.Connection, db: asyncpg.Connection, seeded: Seeded
) -> None:
    """WITH CHECK: inserts and updates that would put a row in another organization fail."""
    a, b = seeded.a, seeded.b
    insert_conversation = (
        "INSERT INTO conversations (id, org_id, kind, client_id, created_by, created_at)"
        " VALUES ($1, $2, 'support_group', NULL, $3, now())"
    )
    for scope, org in ((None, b), (a.id, b)):
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
            await _in_scope(app_conn, scope, insert_conversation, uuid.uuid4(), org.id, org.clinician)
    # A child row pointing at another organization's parent.
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
        await _in_scope(
            app_conn,
            a.id,
            "INSERT INTO recovery_codes (account_id, code_digest, created_at) VALUES ($1, $2, now())",
            b.clinician,
            secrets.token_bytes(32),
        )
    # Moving one's own row into another organization.
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
        await _in_scope(app_conn, a.id, "UPDATE sessions SET org_id = $1", b.id)
    # Another organization's rows are not there to change or delete.
    async with tenant_transaction(app_conn, a.id):
        assert await app_conn.execute(
            "UPDATE accounts SET display_name = 'Renamed' WHERE org_id = $1", b.id
        ) == ("UPDATE 0")
        assert await app_conn.execute("DELETE FROM sessions WHERE org_id = $1", b.id) == "DELETE 0"
        assert await app_conn.execute(insert_conversation, uuid.uuid4(), a.id, a.clinician) == "INSERT 0 1"
    assert await db.fetchval("SELECT count(*) FROM accounts WHERE display_name = 'Renamed'") == 0
    assert await db.fetchval("SELECT count(*) FROM sessions WHERE org_id = $1", b.id) == 1


async def _in_scope(conn: asyncpg.Connection, org: uuid.UUID | None, sql: str, *args: object) -> None:
    if org is None:
        async with conn.transaction():
            await conn.execute(sql, *args)
    else:
        async with tenant_transaction(conn, org):
            await conn.execute(sql, *args)


async def test_the_lookups_before_the_organization_is_known_are_narrow(
    app_conn: asyncpg.Connection, db: asyncpg.Connection, seeded: Seeded
) -> None:
    """Login, token and invite lookups work without a setting and return one row for its secret."""
    a = seeded.a
    found = await app_conn.fetch("SELECT id, org_id FROM auth_login_account('org-a', 'DOC@org-a.example')")
    assert [(r["id"], r["org_id"]) for r in found] == [(a.clinician, a.id)]
    assert await app_conn.fetch("SELECT * FROM auth_login_account('org-b', 'doc@org-a.example')") == []
    assert (
        await app_conn.fetch("SELECT * FROM auth_session($1, now(), 900, 60)", secrets.token_bytes(32)) == []
    )
    digest = secrets.token_bytes(32)
    invite = await seed.invite(db, a, seed.real_now())
    await db.execute("UPDATE invites SET code_digest = $2 WHERE id = $1", invite, digest)
    async with app_conn.transaction():
        claimed = await app_conn.fetchrow("SELECT * FROM auth_claim_invite($1, now())", digest)
        assert claimed is not None
        assert claimed["org_id"] == a.id
        # Claiming enters the invite's organization for the rest of the transaction.
        assert await app_conn.fetchval("SELECT count(*) FROM accounts") == 4
        assert await app_conn.fetchval("SELECT count(*) FROM accounts WHERE org_id = $1", seeded.b.id) == 0
    assert await app_conn.fetchval("SELECT count(*) FROM accounts") == 0
    # Functions the application role may not call.
    for function in ("auth_login_account", "auth_session", "auth_claim_invite", "erasure_request_by_receipt"):
        assert (
            await db.fetchval(
                "SELECT has_function_privilege('public', p.oid, 'EXECUTE') FROM pg_proc p WHERE proname = $1",
                function,
            )
            is False
        ), function


async def test_the_default_retention_policies_are_shared_but_not_changed(
    app_conn: asyncpg.Connection, db: asyncpg.Connection, seeded: Seeded
) -> None:
    """Every organization reads and locks the defaults; an update that reaches one fails."""
    async with tenant_transaction(app_conn, seeded.a.id):
        locked = await app_conn.fetch(
            "SELECT category FROM retention_policies WHERE org_id IS NULL AND category = 'messages'"
            " FOR UPDATE"
        )
        assert [r["category"] for r in locked] == ["messages"]
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
        await _in_scope(
            app_conn,
            seeded.a.id,
            "UPDATE retention_policies SET period_days = 400 WHERE category = 'messages'",
        )
    assert (
        await db.fetchval(
            "SELECT period_days FROM retention_policies WHERE org_id IS NULL AND category = 'messages'"
        )
        == 1095
    )
    # Its own override it changes; the other organization's it does not see.
    async with tenant_transaction(app_conn, seeded.a.id):
        changed = await app_conn.execute(
            "UPDATE retention_policies SET period_days = 90"
            " WHERE org_id IS NOT NULL AND category = 'sessions'"
        )
        assert changed == "UPDATE 1"
    assert (
        await db.fetchval(
            "SELECT period_days FROM retention_policies WHERE org_id = $1 AND category = 'sessions'",
            seeded.b.id,
        )
        == 60
    )

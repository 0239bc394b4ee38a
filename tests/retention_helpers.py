"""Seed rows at chosen times straight into PostgreSQL, for retention tests.

The retention functions refuse to run ahead of the database clock, so tests place data in
the past (relative to the real time) rather than moving the clock into the future.
Rows are shaped like the service writes them; content is opaque bytes (it is ciphertext
in real life and retention never looks inside).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import uuid
from dataclasses import dataclass, field

import asyncpg

from backend.audit_trail import Action, AuditContext, AuditEvent, record

HASH = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"
CTX = AuditContext(source_instance="test-retention")


def real_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def days(n: float) -> dt.timedelta:
    return dt.timedelta(days=n)


@dataclass
class SeedOrg:
    id: uuid.UUID
    slug: str
    admin: uuid.UUID
    clinician: uuid.UUID
    officer: uuid.UUID
    clients: list[uuid.UUID] = field(default_factory=list)


async def account(
    db: asyncpg.Connection, org: uuid.UUID, role: str, email: str, at: dt.datetime, name: str = "Someone"
) -> uuid.UUID:
    account_id = uuid.uuid4()
    await db.execute(
        """
        INSERT INTO accounts (id, org_id, email, display_name, role, password_hash,
                              password_changed_at, created_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $7)
        """,
        account_id,
        org,
        email,
        name,
        role,
        HASH,
        at,
    )
    return account_id


async def seed_org(db: asyncpg.Connection, slug: str, at: dt.datetime, clients: int = 2) -> SeedOrg:
    org_id = uuid.uuid4()
    await db.execute(
        "INSERT INTO organizations (id, slug, name, created_at) VALUES ($1, $2, $3, $4)",
        org_id,
        slug,
        slug,
        at,
    )
    org = SeedOrg(
        id=org_id,
        slug=slug,
        admin=await account(db, org_id, "admin", f"admin@{slug}.example", at),
        clinician=await account(db, org_id, "clinician", f"doc@{slug}.example", at),
        officer=await account(db, org_id, "compliance_officer", f"co@{slug}.example", at),
    )
    for n in range(clients):
        org.clients.append(await account(db, org_id, "client", f"client{n}@{slug}.example", at))
    return org


async def conversation(
    db: asyncpg.Connection,
    org: SeedOrg,
    at: dt.datetime,
    *,
    client: uuid.UUID | None,
    members: list[uuid.UUID],
    kind: str = "direct",
) -> uuid.UUID:
    conversation_id = uuid.uuid4()
    await db.execute(
        "INSERT INTO conversations (id, org_id, kind, client_id, created_by, created_at)"
        " VALUES ($1, $2, $3, $4, $5, $6)",
        conversation_id,
        org.id,
        kind if client is not None else "support_group",
        client,
        org.clinician,
        at,
    )
    for member in members:
        await db.execute(
            """
            INSERT INTO conversation_members
                (conversation_id, org_id, account_id, status, added_by, added_at, joined_at)
            VALUES ($1, $2, $3, 'active', $4, $5, $5)
            """,
            conversation_id,
            org.id,
            member,
            org.clinician,
            at,
        )
    return conversation_id


async def message(
    db: asyncpg.Connection,
    org: SeedOrg,
    conversation_id: uuid.UUID,
    sender: uuid.UUID,
    at: dt.datetime,
    recipients: list[uuid.UUID],
    *,
    references: uuid.UUID | None = None,
) -> uuid.UUID:
    message_id = uuid.uuid4()
    envelope = secrets.token_bytes(96)
    seq = await db.fetchval(
        """
        INSERT INTO messages (id, conversation_id, org_id, sender_id, sender_key_version, kind, references_id,
                              envelope, envelope_sha256, created_at)
        VALUES ($1, $2, $3, $4, 1, $5, $6, $7, $8, $9) RETURNING seq
        """,
        message_id,
        conversation_id,
        org.id,
        sender,
        "message_edit" if references else "message",
        references,
        envelope,
        hashlib.sha256(envelope).digest(),
        at,
    )
    columns = await _recipient_columns(db)
    for recipient in recipients:
        if "conversation_id" in columns:
            await db.execute(
                "INSERT INTO message_recipients (message_seq, account_id, conversation_id)"
                " VALUES ($1, $2, $3)",
                seq,
                recipient,
                conversation_id,
            )
        else:
            await db.execute(
                "INSERT INTO message_recipients (message_seq, account_id) VALUES ($1, $2)", seq, recipient
            )
    return message_id


async def _recipient_columns(db: asyncpg.Connection) -> set[str]:
    rows = await db.fetch(
        "SELECT attname FROM pg_attribute WHERE attrelid = 'message_recipients'::regclass AND attnum > 0"
        " AND NOT attisdropped"
    )
    return {r["attname"] for r in rows}


async def attachment(
    db: asyncpg.Connection, org: SeedOrg, conversation_id: uuid.UUID, uploader: uuid.UUID, at: dt.datetime
) -> uuid.UUID:
    attachment_id = uuid.uuid4()
    data = secrets.token_bytes(300)
    await db.execute(
        """
        INSERT INTO attachments
            (id, org_id, conversation_id, uploader_id, size, blake2b, chunk_count, created_at)
        VALUES ($1, $2, $3, $4, $5, $6, 1, $7)
        """,
        attachment_id,
        org.id,
        conversation_id,
        uploader,
        len(data),
        hashlib.blake2b(data, digest_size=32).digest(),
        at,
    )
    await db.execute(
        "INSERT INTO attachment_chunks (attachment_id, n, data) VALUES ($1, 0, $2)", attachment_id, data
    )
    return attachment_id


async def note(
    db: asyncpg.Connection,
    org: SeedOrg,
    client: uuid.UUID,
    at: dt.datetime,
    *,
    amends: uuid.UUID | None = None,
    readers: tuple[uuid.UUID, ...] = (),
) -> uuid.UUID:
    note_id = uuid.uuid4()
    await db.execute(
        """
        INSERT INTO notes (id, org_id, client_id, author_id, author_key_version, kind, amends_id, created_at)
        VALUES ($1, $2, $3, $4, 1, $5, $6, $7)
        """,
        note_id,
        org.id,
        client,
        org.clinician,
        "note_amendment" if amends else "note",
        amends,
        at,
    )
    envelope = secrets.token_bytes(96)
    await db.execute(
        """
        INSERT INTO note_envelopes (note_id, version, envelope, envelope_sha256, created_at)
        VALUES ($1, 1, $2, $3, $4)
        """,
        note_id,
        envelope,
        hashlib.sha256(envelope).digest(),
        at,
    )
    for reader in (org.clinician, *readers):
        await db.execute(
            "INSERT INTO note_readers (note_id, account_id, via, added_at) VALUES ($1, $2, 'author', $3)",
            note_id,
            reader,
            at,
        )
    return note_id


async def consent(
    db: asyncpg.Connection,
    org: SeedOrg,
    client: uuid.UUID,
    granted_at: dt.datetime,
    *,
    ended_at: dt.datetime | None = None,
    status: str = "active",
) -> uuid.UUID:
    consent_id = uuid.uuid4()
    await db.execute(
        """
        INSERT INTO consents (consent_id, org_id, client_id, client_key_version, grantee_type, grantee_id,
                              scopes,
                              purpose, valid_from, valid_until, status, granted_at, ended_at)
        VALUES ($1, $2, $3, 1, 'clinician', $4, '{messaging}', 'TREAT', $5, NULL, 'active', $5, NULL)
        """,
        consent_id,
        org.id,
        client,
        org.clinician,
        granted_at,
    )
    await _consent_event(db, org, client, consent_id, "grant", granted_at)
    if ended_at is not None:
        await _consent_event(
            db, org, client, consent_id, "revoke" if status == "revoked" else "expire", ended_at
        )
        await db.execute(
            "UPDATE consents SET status = $2, ended_at = $3 WHERE consent_id = $1",
            consent_id,
            status,
            ended_at,
        )
    return consent_id


async def _consent_event(
    db: asyncpg.Connection, org: SeedOrg, client: uuid.UUID, consent_id: uuid.UUID, kind: str, at: dt.datetime
) -> None:
    signed = kind != "expire"
    await db.execute(
        """
        INSERT INTO consent_events
            (event_id, consent_id, org_id, client_id, kind, statement, recorded_at, receipt)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
        """,
        uuid.uuid4(),
        consent_id,
        org.id,
        client,
        kind,
        secrets.token_bytes(80) if signed else None,
        at,
        secrets.token_bytes(64) if signed else None,
    )


async def session(
    db: asyncpg.Connection,
    org: SeedOrg,
    account_id: uuid.UUID,
    last_seen: dt.datetime,
    *,
    revoked: bool = False,
    live: bool = False,
) -> uuid.UUID:
    session_id = uuid.uuid4()
    created = last_seen - dt.timedelta(minutes=5)
    absolute = (last_seen + days(1)) if live else last_seen + dt.timedelta(hours=1)
    idle = absolute if live else last_seen + dt.timedelta(minutes=15)
    await db.execute(
        """
        INSERT INTO sessions (id, account_id, org_id, token_digest, mfa_satisfied, created_at, last_seen_at,
                              idle_expires_at, absolute_expires_at, revoked_at, revoked_reason)
        VALUES ($1, $2, $3, $4, true, $5, $6, $7, $8, $9, $10)
        """,
        session_id,
        account_id,
        org.id,
        secrets.token_bytes(32),
        created,
        last_seen,
        idle,
        absolute,
        last_seen if revoked else None,
        "logout" if revoked else None,
    )
    return session_id


async def invite(
    db: asyncpg.Connection,
    org: SeedOrg,
    created: dt.datetime,
    *,
    redeemed_by: uuid.UUID | None = None,
    redeemed_at: dt.datetime | None = None,
    ttl: dt.timedelta = dt.timedelta(days=7),
) -> uuid.UUID:
    invite_id = uuid.uuid4()
    await db.execute(
        """
        INSERT INTO invites
            (id, org_id, code_digest, created_by, created_at, expires_at, redeemed_at, redeemed_by)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
        """,
        invite_id,
        org.id,
        secrets.token_bytes(32),
        org.clinician,
        created,
        created + ttl,
        redeemed_at,
        redeemed_by,
    )
    return invite_id


async def key_backup(db: asyncpg.Connection, org: SeedOrg, account_id: uuid.UUID, at: dt.datetime) -> None:
    await db.execute(
        """
        INSERT INTO key_bundles (account_id, org_id, key_version, encryption_key, signing_key, bundle,
                                 fingerprint,
                                 bundle_created_at, published_at)
        VALUES ($1, $2, 1, $3, $4, $5, '12345 12345 12345 12345 12345 12345', $6, $6)
        """,
        account_id,
        org.id,
        secrets.token_bytes(32),
        secrets.token_bytes(32),
        secrets.token_bytes(100),
        at,
    )
    await db.execute(
        """
        INSERT INTO key_backups (account_id, org_id, revision, key_version, backup, updated_at)
        VALUES ($1, $2, 1, 1, $3, $4)
        """,
        account_id,
        org.id,
        secrets.token_bytes(100),
        at,
    )


async def close_account(db: asyncpg.Connection, account_id: uuid.UUID, at: dt.datetime) -> None:
    await db.execute("UPDATE accounts SET status = 'disabled', closed_at = $2 WHERE id = $1", account_id, at)


async def audit_event(
    db: asyncpg.Connection, org: SeedOrg | None, at: dt.datetime, *, subject: uuid.UUID | None = None
) -> uuid.UUID:
    async with db.transaction():
        return await record(
            db,
            AuditEvent(
                action=Action.READ,
                event_type="note.read",
                org_id=org.id if org else None,
                entity_type="note",
                entity_id=uuid.uuid4(),
                subject_id=subject,
            ),
            CTX,
            at,
        )


# Tables whose contents retention changes, compared whole between runs.
DATA_TABLES = {
    "messages": "SELECT id FROM messages",
    "message_recipients": "SELECT message_seq::text || ':' || account_id::text FROM message_recipients",
    "attachments": "SELECT id FROM attachments",
    "attachment_chunks": "SELECT attachment_id::text || ':' || n FROM attachment_chunks",
    "notes": "SELECT id FROM notes",
    "note_envelopes": "SELECT note_id FROM note_envelopes",
    "note_readers": "SELECT note_id::text || ':' || account_id::text FROM note_readers",
    "consent_events": "SELECT event_id FROM consent_events",
    "consents": "SELECT consent_id FROM consents",
    "sessions": "SELECT id FROM sessions",
    "invites": "SELECT id FROM invites",
    "key_backups": "SELECT account_id FROM key_backups",
    "audit_leaves": (
        "SELECT event_id FROM audit_events WHERE leaf IS NOT NULL AND event_type NOT LIKE 'retention.%'"
    ),
}


async def snapshot(db: asyncpg.Connection) -> dict[str, set[str]]:
    """Every row id retention may remove, per table."""
    found: dict[str, set[str]] = {}
    for name, sql in DATA_TABLES.items():
        found[name] = {str(r[0]) for r in await db.fetch(sql)}
    return found


async def bulk_messages(
    db: asyncpg.Connection,
    org: SeedOrg,
    conversation_id: uuid.UUID,
    sender: uuid.UUID,
    recipients: list[uuid.UUID],
    count: int,
    newest: dt.datetime,
    *,
    envelope_bytes: int = 96,
) -> None:
    """``count`` messages (one second apart, the newest at ``newest``) with their recipient rows."""
    await db.execute(
        """
        INSERT INTO messages (id, conversation_id, org_id, sender_id, sender_key_version, kind, envelope,
                              envelope_sha256, created_at)
        SELECT gen_random_uuid(), $1, $2, $3, 1, 'message', e, sha256(e),
               $4::timestamptz - make_interval(secs => g)
        FROM generate_series(1, $5) AS g, LATERAL (SELECT decode(repeat('ab', $6), 'hex') AS e) AS body
        """,
        conversation_id,
        org.id,
        sender,
        newest,
        count,
        envelope_bytes,
    )
    with_conversation = "conversation_id" in await _recipient_columns(db)
    for recipient in recipients:
        if with_conversation:
            await db.execute(
                """
                INSERT INTO message_recipients (message_seq, account_id, conversation_id)
                SELECT m.seq, $2, $1 FROM messages m
                WHERE m.conversation_id = $1
                  AND NOT EXISTS (SELECT 1 FROM message_recipients r
                                  WHERE r.message_seq = m.seq AND r.account_id = $2)
                """,
                conversation_id,
                recipient,
            )
        else:
            await db.execute(
                """
                INSERT INTO message_recipients (message_seq, account_id)
                SELECT m.seq, $2 FROM messages m
                WHERE m.conversation_id = $1
                  AND NOT EXISTS (SELECT 1 FROM message_recipients r
                                  WHERE r.message_seq = m.seq AND r.account_id = $2)
                """,
                conversation_id,
                recipient,
            )

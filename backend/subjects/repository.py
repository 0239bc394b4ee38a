"""SQL of the data-subject export: one keyset-ordered query per section, read by cursor.

Every query is parameterised by the subject's account id ($1) and organization ($2)
and names only rows about or by that account, so nobody else's data can enter an
archive through a join. Cursors are read in batches inside the caller's REPEATABLE READ
transaction: memory stays bounded by one batch whatever the archive's size, and every
section comes from the same snapshot.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Final

import asyncpg
import msgspec

from backend.subjects.schemas import (
    AccountRecord,
    AttachmentRecord,
    CareRelationshipRecord,
    ConsentRecord,
    ConversationRecord,
    DisclosureRecord,
    EmergencyAccessRecord,
    ErasureRequestRecord,
    InviteRecord,
    MemberRecord,
    MfaState,
    OrganizationRef,
    SessionRecord,
)
from crypto.public.export import (
    ConsentEventRecord,
    KeyBackupRecord,
    KeyBundleRecord,
    MessageRecord,
    NoteRecord,
    PeerKeyRecord,
)

__all__ = ["EXPORT_LOCK_SQL", "SECTION_ORDER", "Section", "records", "try_lock"]

# Namespaces this lock among advisory keys derived from account ids ("expo").
EXPORT_LOCK_SQL: Final = "SELECT pg_try_advisory_xact_lock(hashtextextended($1::uuid::text, 1702391919))"
_NULL: Final = msgspec.Raw(b"null")


@dataclass(frozen=True, slots=True)
class Section:
    """How one section is read: its query, its row converter, rows per batch."""

    sql: str
    convert: Callable[[asyncpg.Record], msgspec.Struct]
    batch: int = 500


def _account(row: asyncpg.Record) -> AccountRecord:
    return AccountRecord(
        id=row["id"],
        organization=OrganizationRef(id=row["org_id"], slug=row["org_slug"], name=row["org_name"]),
        email=row["email"],
        display_name=row["display_name"],
        role=row["role"],
        status=row["status"],
        created_at=row["created_at"],
        created_by=row["created_by"],
        password_changed_at=row["password_changed_at"],
        mfa=MfaState(
            enabled=row["totp_enabled_at"] is not None,
            enabled_at=row["totp_enabled_at"],
            recovery_codes_remaining=row["recovery_codes_remaining"],
        ),
    )


def _plain(kind: type[msgspec.Struct]) -> Callable[[asyncpg.Record], msgspec.Struct]:
    return lambda row: kind(**dict(row))


def _key_bundle(row: asyncpg.Record) -> KeyBundleRecord:
    return KeyBundleRecord(
        key_version=row["key_version"],
        fingerprint=row["fingerprint"],
        published_at=row["published_at"],
        revoked_at=row["revoked_at"],
        bundle=msgspec.Raw(row["bundle"]),
    )


def _key_backup(row: asyncpg.Record) -> KeyBackupRecord:
    return KeyBackupRecord(
        revision=row["revision"],
        key_version=row["key_version"],
        updated_at=row["updated_at"],
        backup=msgspec.Raw(row["backup"]),
    )


def _peer_key(row: asyncpg.Record) -> PeerKeyRecord:
    return PeerKeyRecord(
        account_id=row["account_id"],
        key_version=row["key_version"],
        fingerprint=row["fingerprint"],
        revoked_at=row["revoked_at"],
        bundle=msgspec.Raw(row["bundle"]),
    )


def _message(row: asyncpg.Record) -> MessageRecord:
    return MessageRecord(
        id=row["id"],
        conversation_id=row["conversation_id"],
        sender_id=row["sender_id"],
        kind=row["kind"],
        references=row["references_id"],
        created_at=row["created_at"],
        delivered_at=row["delivered_at"],
        read_at=row["read_at"],
        envelope=msgspec.Raw(row["envelope"]),
    )


def _attachment(row: asyncpg.Record) -> AttachmentRecord:
    return AttachmentRecord(**dict(row), download=f"/v1/attachments/{row['id']}")


def _note(row: asyncpg.Record) -> NoteRecord:
    return NoteRecord(
        id=row["id"],
        client_id=row["client_id"],
        author_id=row["author_id"],
        kind=row["kind"],
        amends=row["amends_id"],
        created_at=row["created_at"],
        access=row["via"],
        envelope_version=row["version"],
        envelope=msgspec.Raw(row["envelope"]),
    )


def _consent_event(row: asyncpg.Record) -> ConsentEventRecord:
    statement, receipt = row["statement"], row["receipt"]
    return ConsentEventRecord(
        event_id=row["event_id"],
        consent_id=row["consent_id"],
        kind=row["kind"],
        recorded_at=row["recorded_at"],
        statement=_NULL if statement is None else msgspec.Raw(statement),
        receipt=_NULL if receipt is None else msgspec.Raw(receipt),
    )


def _erasure_request(row: asyncpg.Record) -> ErasureRequestRecord:
    # jsonb arrives as its text form (no codec on the pool), one line, embedded as it is.
    fields = dict(row)
    return ErasureRequestRecord(
        **fields
        | {"deleted": msgspec.Raw(row["deleted"].encode()), "kept": msgspec.Raw(row["kept"].encode())}
    )


# Envelopes are up to 2 MiB each and a batch is bounded by rows, not bytes: 32 rows keep
# the worst case near 64 MiB (a typical envelope is a few KiB).
_ENVELOPE_BATCH: Final = 32

SECTION_ORDER: Final[dict[str, Section]] = {
    "account": Section(
        """
        SELECT a.id, a.email, a.display_name, a.role, a.status, a.created_at, a.created_by,
               a.password_changed_at, a.totp_enabled_at,
               o.id AS org_id, o.slug AS org_slug, o.name AS org_name,
               (SELECT count(*) FROM recovery_codes r WHERE r.account_id = a.id AND r.used_at IS NULL)
                   AS recovery_codes_remaining
        FROM accounts a JOIN organizations o ON o.id = a.org_id
        WHERE a.id = $1 AND a.org_id = $2
        """,
        _account,
    ),
    "session": Section(
        """
        SELECT id, created_at, last_seen_at, idle_expires_at, absolute_expires_at, mfa_satisfied,
               revoked_at, revoked_reason
        FROM sessions WHERE account_id = $1 AND org_id = $2 ORDER BY created_at, id
        """,
        _plain(SessionRecord),
    ),
    "key_bundle": Section(
        """
        SELECT key_version, fingerprint, published_at, revoked_at, bundle
        FROM key_bundles WHERE account_id = $1 AND org_id = $2 ORDER BY key_version
        """,
        _key_bundle,
    ),
    "key_backup": Section(
        """
        SELECT revision, key_version, updated_at, backup
        FROM key_backups WHERE account_id = $1 AND org_id = $2
        """,
        _key_backup,
    ),
    "care_relationship": Section(
        """
        SELECT c.client_id, c.clinician_id, c.created_at, c.source,
               CASE WHEN c.client_id = $1 THEN a.display_name END AS clinician_name
        FROM care_relationships c JOIN accounts a ON a.id = c.clinician_id
        WHERE (c.client_id = $1 OR c.clinician_id = $1) AND c.org_id = $2
        ORDER BY c.created_at, c.client_id, c.clinician_id
        """,
        _plain(CareRelationshipRecord),
    ),
    "invite": Section(
        """
        SELECT id, created_by, created_at, expires_at, redeemed_at, redeemed_by
        FROM invites WHERE (created_by = $1 OR redeemed_by = $1) AND org_id = $2
        ORDER BY created_at, id
        """,
        _plain(InviteRecord),
    ),
    "conversation": Section(
        """
        SELECT c.id, c.kind, c.client_id, c.created_by, c.created_at, m.status AS membership,
               m.pseudonym, m.added_by, m.added_at, m.joined_at, m.removed_at
        FROM conversation_members m JOIN conversations c ON c.id = m.conversation_id
        WHERE m.account_id = $1 AND m.org_id = $2
        ORDER BY c.created_at, c.id
        """,
        _plain(ConversationRecord),
    ),
    # Members as the subject sees them now, only where they are an active member (the
    # conversation route's rule): other clients of a support group by pseudonym only.
    "member": Section(
        """
        SELECT o.conversation_id, o.account_id, a.role,
               CASE WHEN c.kind = 'support_group' AND a.role = 'client' AND o.account_id <> $1
                    THEN coalesce(o.pseudonym, 'Invited member') ELSE a.display_name END AS name,
               o.status
        FROM conversation_members me
        JOIN conversations c ON c.id = me.conversation_id
        JOIN conversation_members o ON o.conversation_id = me.conversation_id
        JOIN accounts a ON a.id = o.account_id
        WHERE me.account_id = $1 AND me.org_id = $2 AND me.status = 'active'
        ORDER BY c.created_at, c.id, o.added_at, o.account_id
        """,
        _plain(MemberRecord),
    ),
    # The public keys that signed what the subject can read (their own are key_bundle).
    "peer_key": Section(
        """
        SELECT k.account_id, k.key_version, k.fingerprint, k.revoked_at, k.bundle
        FROM key_bundles k
        WHERE k.org_id = $2 AND k.account_id <> $1 AND (k.account_id, k.key_version) IN (
            SELECT m.sender_id, m.sender_key_version
            FROM message_recipients r JOIN messages m ON m.seq = r.message_seq
            WHERE r.account_id = $1
            UNION
            SELECT n.author_id, n.author_key_version
            FROM note_readers r JOIN notes n ON n.id = r.note_id
            WHERE r.account_id = $1 AND r.via IN ('author', 'recipient', 'share')
        )
        ORDER BY k.account_id, k.key_version
        """,
        _peer_key,
    ),
    # Exactly the messages the subject may fetch: those encrypted to one of their keys,
    # conversation by conversation in send order (the recipient key's order: no sort).
    "message": Section(
        """
        SELECT m.id, m.conversation_id, m.sender_id, m.kind, m.references_id, m.created_at,
               r.delivered_at, r.read_at, m.envelope
        FROM message_recipients r JOIN messages m ON m.seq = r.message_seq
        WHERE r.account_id = $1 AND m.org_id = $2
        ORDER BY r.account_id, r.conversation_id, r.message_seq
        """,
        _message,
        _ENVELOPE_BATCH,
    ),
    # The download route's rule: their own uploads, and those shared while they were a member.
    "attachment": Section(
        """
        SELECT a.id, a.conversation_id, a.uploader_id, a.size, a.blake2b, a.chunk_count, a.created_at
        FROM attachments a
        WHERE a.org_id = $2 AND (a.uploader_id = $1 OR EXISTS (
            SELECT 1 FROM conversation_members m
            WHERE m.conversation_id = a.conversation_id AND m.account_id = $1
              AND m.joined_at IS NOT NULL AND m.joined_at <= a.created_at
              AND (m.removed_at IS NULL OR m.removed_at > a.created_at)
        ))
        ORDER BY a.created_at, a.id
        """,
        _attachment,
    ),
    # Notes they wrote or that were shared with them, in their latest envelope (a share
    # re-issues the envelope with more recipients). Break-glass wraps are left out: that
    # access ends when the emergency does, an archive would outlive it.
    "note": Section(
        """
        SELECT n.id, n.client_id, n.author_id, n.kind, n.amends_id, n.created_at, r.via,
               e.version, e.envelope
        FROM note_readers r
        JOIN notes n ON n.id = r.note_id
        JOIN LATERAL (
            SELECT version, envelope FROM note_envelopes
            WHERE note_id = n.id ORDER BY version DESC LIMIT 1
        ) e ON true
        WHERE r.account_id = $1 AND n.org_id = $2 AND r.via IN ('author', 'recipient', 'share')
        ORDER BY n.seq
        """,
        _note,
        _ENVELOPE_BATCH,
    ),
    "consent": Section(
        """
        SELECT consent_id, client_id, grantee_type, grantee_id, scopes, purpose, valid_from,
               valid_until, status, granted_at, ended_at
        FROM consents
        WHERE org_id = $2 AND (client_id = $1 OR (grantee_type = 'clinician' AND grantee_id = $1))
        ORDER BY granted_at, consent_id
        """,
        _plain(ConsentRecord),
    ),
    "consent_event": Section(
        """
        SELECT event_id, consent_id, kind, recorded_at, statement, receipt
        FROM consent_events WHERE client_id = $1 AND org_id = $2 ORDER BY seq
        """,
        _consent_event,
    ),
    "emergency_access": Section(
        """
        SELECT id, client_id, clinician_id, reason, opened_at, expires_at, approved_by, approved_at,
               closed_at
        FROM emergency_access WHERE (client_id = $1 OR clinician_id = $1) AND org_id = $2
        ORDER BY opened_at, id
        """,
        _plain(EmergencyAccessRecord),
    ),
    # The accounting of disclosures (as GET /v1/me/disclosures): events about the subject
    # by anyone else, oldest first; names only for staff of the organization.
    "disclosure": Section(
        """
        SELECT e.recorded_at AS at, e.agent_account_id AS agent_id, e.agent_role,
               a.display_name AS agent_name, e.action, e.event_type, e.outcome,
               e.purpose_of_use AS purpose, e.consent_id, e.entity_type, e.entity_id
        FROM audit_events e
        LEFT JOIN accounts a ON a.id = e.agent_account_id AND a.org_id = e.org_id AND a.role <> 'client'
        WHERE e.org_id = $2 AND e.subject_id = $1 AND e.agent_account_id IS DISTINCT FROM $1
        ORDER BY e.seq
        """,
        _plain(DisclosureRecord),
    ),
    "erasure_request": Section(
        """
        SELECT id, status, reason, filed_at, decided_by, decided_at, decision_reason, started_at,
               completed_at, deleted, kept
        FROM erasure_requests WHERE client_id = $1 AND org_id = $2 ORDER BY seq
        """,
        _erasure_request,
    ),
}


async def try_lock(conn: asyncpg.Connection, account_id: uuid.UUID) -> bool:
    """Take the account's export lock for this transaction; False when an export holds it."""
    locked: bool = await conn.fetchval(EXPORT_LOCK_SQL, account_id)
    return locked


async def records(
    conn: asyncpg.Connection, section: Section, account_id: uuid.UUID, org_id: uuid.UUID
) -> AsyncIterator[list[msgspec.Struct]]:
    """The section's records, a batch at a time (inside the caller's transaction)."""
    cursor = await conn.cursor(section.sql, account_id, org_id)
    while rows := await cursor.fetch(section.batch):
        yield [section.convert(row) for row in rows]

"""SQL for conversations, members, messages and delivery state."""

from __future__ import annotations

import datetime as dt
import uuid

import asyncpg
import msgspec

__all__ = [
    "ConversationRow",
    "MemberRow",
    "MessageRow",
    "add_member",
    "get_conversation",
    "get_message",
    "insert_conversation",
    "insert_message",
    "joined_at",
    "list_conversations",
    "list_members",
    "mark_delivered",
    "mark_read",
    "page_messages",
    "set_member_status",
]


class ConversationRow(msgspec.Struct, frozen=True, kw_only=True):
    """A conversation."""

    id: uuid.UUID
    org_id: uuid.UUID
    kind: str
    client_id: uuid.UUID | None
    created_by: uuid.UUID
    created_at: dt.datetime


class MemberRow(msgspec.Struct, frozen=True, kw_only=True):
    """A membership, with what is needed to show it."""

    account_id: uuid.UUID
    role: str
    display_name: str
    status: str
    pseudonym: str | None


class MessageRow(msgspec.Struct, frozen=True, kw_only=True):
    """A stored message."""

    seq: int
    id: uuid.UUID
    conversation_id: uuid.UUID
    sender_id: uuid.UUID
    kind: str
    references_id: uuid.UUID | None
    envelope: bytes
    envelope_sha256: bytes
    created_at: dt.datetime


async def get_conversation(conn: asyncpg.Connection, conversation_id: uuid.UUID) -> ConversationRow | None:
    """One conversation."""
    row = await conn.fetchrow(
        "SELECT id, org_id, kind, client_id, created_by, created_at FROM conversations WHERE id = $1",
        conversation_id,
    )
    return None if row is None else msgspec.convert(dict(row), ConversationRow)


async def insert_conversation(conn: asyncpg.Connection, row: ConversationRow) -> bool:
    """Create a conversation; False if the id is taken."""
    status = await conn.execute(
        """
        INSERT INTO conversations (id, org_id, kind, client_id, created_by, created_at)
        VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING
        """,
        row.id,
        row.org_id,
        row.kind,
        row.client_id,
        row.created_by,
        row.created_at,
    )
    return bool(status.endswith(" 1"))


async def add_member(
    conn: asyncpg.Connection,
    *,
    conversation_id: uuid.UUID,
    org_id: uuid.UUID,
    account_id: uuid.UUID,
    status: str,
    added_by: uuid.UUID,
    now: dt.datetime,
) -> None:
    """Add (or re-add) a member."""
    await conn.execute(
        """
        INSERT INTO conversation_members
            (conversation_id, org_id, account_id, status, added_by, added_at, joined_at)
        VALUES ($1, $2, $3, $4::text, $5, $6::timestamptz,
                CASE WHEN $4::text = 'active' THEN $6::timestamptz END)
        ON CONFLICT (conversation_id, account_id) DO UPDATE SET
            status = EXCLUDED.status, added_by = EXCLUDED.added_by, added_at = EXCLUDED.added_at,
            joined_at = EXCLUDED.joined_at, removed_at = NULL, pseudonym = NULL
        """,
        conversation_id,
        org_id,
        account_id,
        status,
        added_by,
        now,
    )


async def set_member_status(
    conn: asyncpg.Connection,
    conversation_id: uuid.UUID,
    account_id: uuid.UUID,
    status: str,
    now: dt.datetime,
    pseudonym: str | None = None,
) -> bool:
    """Join (with a pseudonym) or remove a member; False when there is no such member."""
    result = await conn.execute(
        """
        UPDATE conversation_members SET
            status = $3::text,
            joined_at = CASE WHEN $3::text = 'active' THEN $4::timestamptz ELSE joined_at END,
            removed_at = CASE WHEN $3::text = 'removed' THEN $4::timestamptz END,
            pseudonym = coalesce($5::text, pseudonym)
        WHERE conversation_id = $1 AND account_id = $2 AND status <> 'removed'
        """,
        conversation_id,
        account_id,
        status,
        now,
        pseudonym,
    )
    return bool(result.endswith(" 1"))


async def joined_at(
    conn: asyncpg.Connection, conversation_id: uuid.UUID, account_id: uuid.UUID
) -> dt.datetime | None:
    """When the account last joined the conversation (None if it never did)."""
    found: dt.datetime | None = await conn.fetchval(
        "SELECT joined_at FROM conversation_members WHERE conversation_id = $1 AND account_id = $2",
        conversation_id,
        account_id,
    )
    return found


async def list_members(conn: asyncpg.Connection, conversation_id: uuid.UUID) -> list[MemberRow]:
    """Every member of a conversation (removed ones included)."""
    rows = await conn.fetch(
        """
        SELECT m.account_id, a.role, a.display_name, m.status, m.pseudonym
        FROM conversation_members m JOIN accounts a ON a.id = m.account_id
        WHERE m.conversation_id = $1 ORDER BY m.added_at, m.account_id
        """,
        conversation_id,
    )
    return [msgspec.convert(dict(r), MemberRow) for r in rows]


async def list_conversations(
    conn: asyncpg.Connection, account_id: uuid.UUID, limit: int
) -> list[ConversationRow]:
    """Conversations the account is an active or invited member of, newest first."""
    rows = await conn.fetch(
        """
        SELECT c.id, c.org_id, c.kind, c.client_id, c.created_by, c.created_at
        FROM conversations c JOIN conversation_members m ON m.conversation_id = c.id
        WHERE m.account_id = $1 AND m.status IN ('active', 'invited')
        ORDER BY c.created_at DESC, c.id LIMIT $2
        """,
        account_id,
        limit,
    )
    return [msgspec.convert(dict(r), ConversationRow) for r in rows]


_MESSAGE_COLUMNS = "m.seq, m.id, m.conversation_id, m.sender_id, m.kind, m.references_id, m.envelope, " \
    "m.envelope_sha256, m.created_at"  # fmt: skip


async def get_message(conn: asyncpg.Connection, message_id: uuid.UUID) -> MessageRow | None:
    """One message by id."""
    row = await conn.fetchrow(
        f"SELECT {_MESSAGE_COLUMNS} FROM messages m WHERE m.id = $1",  # noqa: S608 -- fixed columns
        message_id,
    )
    return None if row is None else msgspec.convert(dict(row), MessageRow)


async def insert_message(
    conn: asyncpg.Connection,
    *,
    message_id: uuid.UUID,
    conversation_id: uuid.UUID,
    org_id: uuid.UUID,
    sender_id: uuid.UUID,
    sender_key_version: int,
    kind: str,
    references_id: uuid.UUID | None,
    envelope: bytes,
    envelope_sha256: bytes,
    recipients: list[uuid.UUID],
    now: dt.datetime,
) -> int | None:
    """Store a message and who may fetch it; None when the id exists already."""
    # The message and who may fetch it, in one statement (one round trip).
    seq: int | None = await conn.fetchval(
        """
        WITH m AS (
            INSERT INTO messages (id, conversation_id, org_id, sender_id, sender_key_version, kind,
                                  references_id, envelope, envelope_sha256, created_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
            ON CONFLICT (id) DO NOTHING
            RETURNING seq
        ), r AS (
            INSERT INTO message_recipients (message_seq, account_id, delivered_at)
            SELECT m.seq, a, CASE WHEN a = $4 THEN $10::timestamptz END
            FROM m, unnest($11::uuid[]) AS a
        )
        SELECT seq FROM m
        """,
        message_id,
        conversation_id,
        org_id,
        sender_id,
        sender_key_version,
        kind,
        references_id,
        envelope,
        envelope_sha256,
        now,
        recipients,
    )
    return seq


async def page_messages(
    conn: asyncpg.Connection,
    *,
    conversation_id: uuid.UUID,
    account_id: uuid.UUID,
    after: int | None,
    before: int | None,
    limit: int,
) -> list[MessageRow]:
    """Messages the account is a recipient of, in send order, after or before a position."""
    if before is not None:
        rows = await conn.fetch(
            f"""
            SELECT * FROM (
                SELECT {_MESSAGE_COLUMNS} FROM messages m
                JOIN message_recipients r ON r.message_seq = m.seq AND r.account_id = $2
                WHERE m.conversation_id = $1 AND m.seq < $3
                ORDER BY m.seq DESC LIMIT $4
            ) page ORDER BY seq
            """,  # noqa: S608 -- fixed columns
            conversation_id,
            account_id,
            before,
            limit,
        )
    else:
        rows = await conn.fetch(
            f"""
            SELECT {_MESSAGE_COLUMNS} FROM messages m
            JOIN message_recipients r ON r.message_seq = m.seq AND r.account_id = $2
            WHERE m.conversation_id = $1 AND m.seq > $3
            ORDER BY m.seq LIMIT $4
            """,  # noqa: S608 -- fixed columns
            conversation_id,
            account_id,
            after or 0,
            limit,
        )
    return [msgspec.convert(dict(r), MessageRow) for r in rows]


async def mark_delivered(
    conn: asyncpg.Connection, account_id: uuid.UUID, seqs: list[int], now: dt.datetime
) -> None:
    """Record delivery of fetched messages (first fetch only)."""
    await conn.execute(
        """
        UPDATE message_recipients SET delivered_at = $3
        WHERE account_id = $1 AND message_seq = ANY($2::bigint[]) AND delivered_at IS NULL
        """,
        account_id,
        seqs,
        now,
    )


async def mark_read(
    conn: asyncpg.Connection,
    account_id: uuid.UUID,
    conversation_id: uuid.UUID,
    up_to_seq: int,
    now: dt.datetime,
) -> int:
    """Mark everything up to a position read; returns how many changed."""
    result = await conn.execute(
        """
        UPDATE message_recipients r SET read_at = $4, delivered_at = coalesce(r.delivered_at, $4)
        FROM messages m
        WHERE r.account_id = $1 AND r.message_seq = m.seq AND m.conversation_id = $2
          AND m.seq <= $3 AND r.read_at IS NULL
        """,
        account_id,
        conversation_id,
        up_to_seq,
        now,
    )
    return int(result.split()[-1])

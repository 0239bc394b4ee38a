"""SQL for conversations, members, messages and delivery state."""

from __future__ import annotations

import datetime as dt
import uuid

import asyncpg
import msgspec

from backend.audit_trail.writer import EVENT_PARAMETERS, event_statement
from backend.consent.repository import CONSENT_FACTS_SQL, EMERGENCY_FACTS_SQL, consent_facts, emergency_facts
from backend.policy import ConsentFact, EmergencyFact
from backend.realtime.outbox import outbox_statement

__all__ = [
    "ConversationContext",
    "ConversationRow",
    "LeftConversation",
    "MemberRow",
    "MessageRow",
    "NewMessage",
    "StoredMessage",
    "add_member",
    "get_message",
    "insert_conversation",
    "joined_at",
    "list_conversations",
    "list_members",
    "load_context",
    "mark_read",
    "read_page",
    "remove_from_every_conversation",
    "set_member_status",
    "store_message",
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


class StoredMessage(msgspec.Struct, frozen=True, kw_only=True):
    """What an idempotent retry needs of a stored message."""

    seq: int
    conversation_id: uuid.UUID
    envelope_sha256: bytes
    created_at: dt.datetime


class ConversationContext(msgspec.Struct, frozen=True, kw_only=True):
    """A conversation with everything a decision about it needs, loaded in one round trip."""

    conversation: ConversationRow
    members: list[MemberRow]
    #: The client's active consents and open break-glass accesses (client conversations).
    consents: list[ConsentFact]
    emergencies: list[EmergencyFact]
    #: Which of the members and the caller have a care relationship with the client.
    treating: frozenset[uuid.UUID]
    #: Current, unrevoked key bundles of the active members (only when asked for).
    bundles: dict[uuid.UUID, bytes]
    #: The message stored under the id asked about, if any.
    existing: StoredMessage | None


_CONTEXT = """
    SELECT c.id, c.org_id, c.kind, c.client_id, c.created_by, c.created_at,
        {consents} AS consents,
        {emergencies} AS emergencies,
        ARRAY(SELECT ROW(m.account_id, a.role, a.display_name, m.status, m.pseudonym)
              FROM conversation_members m JOIN accounts a ON a.id = m.account_id
              WHERE m.conversation_id = c.id ORDER BY m.added_at, m.account_id {lock_members}) AS members,
        ARRAY(SELECT r.clinician_id FROM care_relationships r
              WHERE r.client_id = c.client_id
                AND (r.clinician_id = $2 OR r.clinician_id IN (
                    SELECT account_id FROM conversation_members WHERE conversation_id = c.id))) AS treating,
        ARRAY(SELECT ROW(b.account_id, b.bundle) FROM (
                  SELECT DISTINCT ON (k.account_id) k.account_id, k.bundle, k.revoked_at
                  FROM key_bundles k
                  WHERE $4 AND k.account_id IN (SELECT account_id FROM conversation_members
                                                WHERE conversation_id = c.id)
                  ORDER BY k.account_id, k.key_version DESC) b
              WHERE b.revoked_at IS NULL) AS bundles,
        (SELECT ROW(x.seq, x.conversation_id, x.envelope_sha256, x.created_at)
         FROM messages x WHERE x.id = $3) AS existing
    FROM conversations c WHERE c.id = $1
"""
_FACTS = {
    "consents": CONSENT_FACTS_SQL.format(c="c.client_id"),
    "emergencies": EMERGENCY_FACTS_SQL.format(c="c.client_id"),
}
_LOAD_CONTEXT = _CONTEXT.format(lock_members="", **_FACTS)
# A send also locks the memberships FOR SHARE (after the consents, in target-list order,
# as every writer of both does, so no two wait on each other): a removal (an UPDATE of
# the row) then either waits for the message to be stored, or commits first and the
# send sees the member removed and leaves them out of the recipients.
_LOAD_CONTEXT_FOR_SEND = _CONTEXT.format(lock_members="FOR SHARE OF m", **_FACTS)


async def load_context(
    conn: asyncpg.Connection,
    conversation_id: uuid.UUID,
    caller_id: uuid.UUID,
    *,
    message_id: uuid.UUID | None = None,
    bundles: bool = False,
) -> ConversationContext | None:
    """A conversation and what decisions about it need, in one statement.

    Its members, the client's consent facts, the care relationships of the members and
    the caller, optionally the members' current key bundles (the caller then means to
    send: the memberships are locked until the transaction ends) and a stored message;
    None when there is no such conversation. The consents and break-glass openings the
    decision rests on are locked (``CONSENT_FACTS_SQL``).
    """
    sql = _LOAD_CONTEXT_FOR_SEND if bundles else _LOAD_CONTEXT
    row = await conn.fetchrow(sql, conversation_id, caller_id, message_id, bundles)
    if row is None:
        return None
    existing = row["existing"]
    return ConversationContext(
        conversation=ConversationRow(
            id=row["id"],
            org_id=row["org_id"],
            kind=row["kind"],
            client_id=row["client_id"],
            created_by=row["created_by"],
            created_at=row["created_at"],
        ),
        members=[
            MemberRow(account_id=m[0], role=m[1], display_name=m[2], status=m[3], pseudonym=m[4])
            for m in row["members"]
        ],
        consents=consent_facts(row["consents"]),
        emergencies=emergency_facts(row["emergencies"]),
        treating=frozenset(row["treating"]),
        bundles={b[0]: b[1] for b in row["bundles"]},
        existing=None
        if existing is None
        else StoredMessage(
            seq=existing[0], conversation_id=existing[1], envelope_sha256=existing[2], created_at=existing[3]
        ),
    )


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


class NewMessage(msgspec.Struct, frozen=True, kw_only=True):
    """A verified message to store."""

    id: uuid.UUID
    conversation_id: uuid.UUID
    org_id: uuid.UUID
    sender_id: uuid.UUID
    sender_key_version: int
    kind: str
    references_id: uuid.UUID | None
    envelope: bytes
    envelope_sha256: bytes
    created_at: dt.datetime


_STORE = f"""
    WITH message AS (
        INSERT INTO messages (id, conversation_id, org_id, sender_id, sender_key_version, kind,
                              references_id, envelope, envelope_sha256, created_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
        RETURNING seq, conversation_id
    ), recipients AS (
        INSERT INTO message_recipients (message_seq, conversation_id, account_id, delivered_at)
        SELECT message.seq, message.conversation_id, a, CASE WHEN a = $4 THEN $10::timestamptz END
        FROM message, unnest($11::uuid[]) AS a
    ), {event_statement(12)}, {outbox_statement(12 + EVENT_PARAMETERS)}
    SELECT message.seq, (SELECT count(*) FROM outbox_notify) FROM message
"""  # noqa: S608 -- fixed columns and numbered parameters


async def store_message(
    conn: asyncpg.Connection,
    message: NewMessage,
    recipients: list[uuid.UUID],
    event: tuple[object, ...],
    push: tuple[object, ...],
) -> int:
    """Store a message with everything that goes with it, in one statement; its position.

    Who may fetch it, its audit event (:func:`event_parameters`) and its push events
    (:func:`outbox_parameters`).

    Raises:
        asyncpg.UniqueViolationError: A message with this id was stored meanwhile.
    """
    seq: int = await conn.fetchval(
        _STORE,
        message.id,
        message.conversation_id,
        message.org_id,
        message.sender_id,
        message.sender_key_version,
        message.kind,
        message.references_id,
        message.envelope,
        message.envelope_sha256,
        message.created_at,
        recipients,
        *event,
        *push,
    )
    return seq


# A recipient's page is one ordered range of the (account, conversation, seq) index,
# limited first, then at most that many messages by primary key: the plan does not depend
# on how many messages the conversation has, so a generic (prepared) plan stays right for
# the 10th and the 100,000th page. Joining before the limit let the planner merge-join
# with a scan of every message from the first one (PostgreSQL does not carry the
# recipient's seq bound over to messages): page 500 of 100,000 took 260 ms, not 10.
_PAGE_POSITIONS = {
    "after": """
        SELECT r.message_seq FROM message_recipients r
        WHERE r.account_id = $2 AND r.conversation_id = $1 AND r.message_seq > $3
        ORDER BY r.message_seq LIMIT $4""",
    "before": """
        SELECT r.message_seq FROM message_recipients r
        WHERE r.account_id = $2 AND r.conversation_id = $1 AND r.message_seq < $3
        ORDER BY r.message_seq DESC LIMIT $4""",
}


def _read_page_statement(direction: str) -> str:
    # One statement reads the page, records its first delivery and writes the read's audit
    # event: a data-modifying CTE runs whether or not the result uses it, and all of them
    # see one snapshot. (Three round trips were a third of a page's server time.)
    return f"""
    WITH page AS MATERIALIZED ({_PAGE_POSITIONS[direction]}
    ), delivered AS (
        UPDATE message_recipients SET delivered_at = $5
        WHERE account_id = $2 AND conversation_id = $1
          AND message_seq = ANY (ARRAY(SELECT message_seq FROM page)) AND delivered_at IS NULL
    ), {event_statement(6)}
    SELECT {_MESSAGE_COLUMNS} FROM page JOIN messages m ON m.seq = page.message_seq
    ORDER BY m.seq
"""  # noqa: S608 -- fixed columns and numbered parameters


_READ_AFTER = _read_page_statement("after")
_READ_BEFORE = _read_page_statement("before")


async def read_page(
    conn: asyncpg.Connection,
    *,
    conversation_id: uuid.UUID,
    account_id: uuid.UUID,
    after: int | None,
    before: int | None,
    limit: int,
    now: dt.datetime,
    event: tuple[object, ...],
) -> list[asyncpg.Record]:
    """Messages the account is a recipient of, in send order, after or before a position.

    In the same statement the page's first delivery is recorded and the read's audit
    event (:func:`event_parameters`) written. Rows have the columns of :class:`MessageRow`.
    """
    if before is not None:
        return await conn.fetch(_READ_BEFORE, conversation_id, account_id, before, limit, now, *event)
    return await conn.fetch(_READ_AFTER, conversation_id, account_id, after or 0, limit, now, *event)


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
        UPDATE message_recipients SET read_at = $4, delivered_at = coalesce(delivered_at, $4)
        WHERE account_id = $1 AND conversation_id = $2 AND message_seq <= $3 AND read_at IS NULL
        """,
        account_id,
        conversation_id,
        up_to_seq,
        now,
    )
    return int(result.split()[-1])


class LeftConversation(msgspec.Struct, frozen=True, kw_only=True):
    """A conversation an account was removed from, and who remains in it."""

    conversation_id: uuid.UUID
    client_id: uuid.UUID | None
    remaining: list[uuid.UUID]


async def remove_from_every_conversation(
    conn: asyncpg.Connection, account_id: uuid.UUID, now: dt.datetime
) -> list[LeftConversation]:
    """Remove an account from every conversation it is (or is invited to be) a member of."""
    rows = await conn.fetch(
        """
        WITH ended AS (
            UPDATE conversation_members SET status = 'removed', removed_at = $2
            WHERE account_id = $1 AND status <> 'removed'
            RETURNING conversation_id
        )
        SELECT e.conversation_id, c.client_id,
               ARRAY(SELECT m.account_id FROM conversation_members m
                     WHERE m.conversation_id = e.conversation_id AND m.status <> 'removed'
                       AND m.account_id <> $1
                     ORDER BY m.account_id) AS remaining
        FROM ended e JOIN conversations c ON c.id = e.conversation_id
        ORDER BY e.conversation_id
        """,
        account_id,
        now,
    )
    return [msgspec.convert(dict(r), LeftConversation) for r in rows]

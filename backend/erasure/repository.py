"""SQL for erasure requests and for carrying one out."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import asyncpg
import msgspec

__all__ = [
    "ERASED_NAME",
    "RequestRow",
    "add_deleted",
    "client_held",
    "complete",
    "delete_remaining",
    "get_request",
    "get_request_by_receipt",
    "held_conversations",
    "insert_request",
    "kept_counts",
    "key_bundles",
    "list_requests",
    "lock_active_consents",
    "lock_request",
    "login_identity",
    "open_request_ids",
    "pseudonymize",
    "remaining",
    "set_decision",
    "set_status",
    "start",
    "sweep_attachments",
    "sweep_messages",
]

#: The display name an erased account keeps (the column may not be empty).
ERASED_NAME = "Erased account"


class RequestRow(msgspec.Struct, frozen=True, kw_only=True):
    """An erasure request as stored."""

    seq: int
    id: uuid.UUID
    org_id: uuid.UUID
    client_id: uuid.UUID
    reason: str | None
    receipt_digest: bytes
    status: str
    filed_at: dt.datetime
    decided_by: uuid.UUID | None
    decided_at: dt.datetime | None
    decision_reason: str | None
    started_at: dt.datetime | None
    completed_at: dt.datetime | None
    deleted: dict[str, int]
    kept: list[dict[str, Any]]


_COLUMNS = """
    seq, id, org_id, client_id, reason, receipt_digest, status, filed_at, decided_by, decided_at,
    decision_reason, started_at, completed_at, deleted, kept
"""


def _row(record: asyncpg.Record) -> RequestRow:
    values = dict(record)
    for column in ("deleted", "kept"):
        if isinstance(values[column], str):  # jsonb arrives as text unless a codec is set
            values[column] = msgspec.json.decode(values[column])
    return msgspec.convert(values, RequestRow)


async def insert_request(
    conn: asyncpg.Connection,
    *,
    request_id: uuid.UUID,
    org_id: uuid.UUID,
    client_id: uuid.UUID,
    reason: str | None,
    receipt_digest: bytes,
    now: dt.datetime,
) -> RequestRow | None:
    """File a request; None when the client already has one open."""
    row = await conn.fetchrow(
        f"""
        INSERT INTO erasure_requests (id, org_id, client_id, reason, receipt_digest, status, filed_at)
        VALUES ($1, $2, $3, $4, $5, 'pending', $6)
        ON CONFLICT (client_id) WHERE status IN ('pending', 'approved', 'held') DO NOTHING
        RETURNING {_COLUMNS}
        """,  # noqa: S608 -- fixed columns
        request_id,
        org_id,
        client_id,
        reason,
        receipt_digest,
        now,
    )
    return None if row is None else _row(row)


async def get_request(conn: asyncpg.Connection, request_id: uuid.UUID) -> RequestRow | None:
    """One request."""
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM erasure_requests WHERE id = $1", request_id)  # noqa: S608
    return None if row is None else _row(row)


async def get_request_by_receipt(
    conn: asyncpg.Connection, request_id: uuid.UUID, receipt_digest: bytes
) -> RequestRow | None:
    """One request, for the holder of its receipt token, before any organization is known.

    Through the SECURITY DEFINER function of migration 0013 (row-level security hides
    the table outside a transaction of the request's organization).
    """
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM erasure_request_by_receipt($1, $2)",  # noqa: S608 -- fixed columns
        request_id,
        receipt_digest,
    )
    return None if row is None else _row(row)


async def lock_request(
    conn: asyncpg.Connection, request_id: uuid.UUID, *, skip_locked: bool
) -> RequestRow | None:
    """One request, locked (None if another transaction holds it and ``skip_locked``)."""
    suffix = "FOR UPDATE SKIP LOCKED" if skip_locked else "FOR UPDATE"
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM erasure_requests WHERE id = $1 {suffix}",  # noqa: S608 -- fixed fragments
        request_id,
    )
    return None if row is None else _row(row)


async def list_requests(
    conn: asyncpg.Connection,
    *,
    org_id: uuid.UUID,
    client_id: uuid.UUID | None,
    status: str | None,
    before_seq: int | None,
    limit: int,
) -> list[RequestRow]:
    """Requests of an organization (or of one client), newest first."""
    rows = await conn.fetch(
        f"""
        SELECT {_COLUMNS} FROM erasure_requests
        WHERE org_id = $1 AND ($2::uuid IS NULL OR client_id = $2) AND ($3::text IS NULL OR status = $3)
          AND ($4::bigint IS NULL OR seq < $4)
        ORDER BY seq DESC LIMIT $5
        """,  # noqa: S608 -- fixed columns
        org_id,
        client_id,
        status,
        before_seq,
        limit,
    )
    return [_row(r) for r in rows]


async def open_request_ids(conn: asyncpg.Connection) -> list[uuid.UUID]:
    """Approved requests not yet carried out, oldest first (all organizations)."""
    rows = await conn.fetch(
        "SELECT id FROM erasure_requests WHERE status IN ('approved', 'held') ORDER BY seq"
    )
    return [r["id"] for r in rows]


async def set_decision(
    conn: asyncpg.Connection,
    request_id: uuid.UUID,
    *,
    status: str,
    by: uuid.UUID,
    reason: str,
    now: dt.datetime,
) -> RequestRow:
    """Record a compliance officer's decision on a pending request."""
    row = await conn.fetchrow(
        f"""
        UPDATE erasure_requests SET status = $2, decided_by = $3, decision_reason = $4,
               decided_at = greatest($5, filed_at)
        WHERE id = $1 AND status = 'pending'
        RETURNING {_COLUMNS}
        """,  # noqa: S608 -- fixed columns
        request_id,
        status,
        by,
        reason,
        now,
    )
    if row is None:  # pragma: no cover -- the caller locked the pending request
        raise LookupError(request_id)
    return _row(row)


async def set_status(conn: asyncpg.Connection, request_id: uuid.UUID, status: str) -> None:
    """Move an approved request to ``held`` or back."""
    await conn.execute("UPDATE erasure_requests SET status = $2 WHERE id = $1", request_id, status)


async def client_held(conn: asyncpg.Connection, client_id: uuid.UUID) -> bool:
    """Whether an active legal hold covers the client."""
    return bool(
        await conn.fetchval("SELECT EXISTS (SELECT 1 FROM held_accounts WHERE account_id = $1)", client_id)
    )


async def start(conn: asyncpg.Connection, request: RequestRow, now: dt.datetime) -> int:
    """Close the account for good and revoke its sessions; returns how many were live."""
    await conn.execute(
        "UPDATE erasure_requests SET started_at = greatest($2, decided_at) WHERE id = $1", request.id, now
    )
    await conn.execute(
        "UPDATE accounts SET status = 'erased', closed_at = coalesce(closed_at, $2) WHERE id = $1",
        request.client_id,
        now,
    )
    status = await conn.execute(
        """
        UPDATE sessions SET revoked_at = $2, revoked_reason = 'erasure'
        WHERE account_id = $1 AND revoked_at IS NULL
        """,
        request.client_id,
        now,
    )
    return int(status.split()[-1])


async def sweep_messages(
    conn: asyncpg.Connection, request_id: uuid.UUID, after: int, limit: int
) -> tuple[int, int, int]:
    """One batch of the client's message threads: (rows deleted, threads picked, last position)."""
    row = await conn.fetchrow(
        "SELECT affected, picked, last_key FROM erasure_sweep_messages($1, $2, $3)", request_id, after, limit
    )
    return (0, 0, after) if row is None else (int(row[0]), int(row[1]), int(row[2]))


async def sweep_attachments(conn: asyncpg.Connection, request_id: uuid.UUID, limit: int) -> tuple[int, int]:
    """One batch of the client's attachments: (deleted, picked)."""
    row = await conn.fetchrow(
        "SELECT affected, picked FROM erasure_sweep_attachments($1, $2)", request_id, limit
    )
    return (0, 0) if row is None else (int(row[0]), int(row[1]))


_OWN_CONVERSATIONS = "SELECT id FROM conversations WHERE client_id = $1"


async def remaining(conn: asyncpg.Connection, client_id: uuid.UUID) -> int:
    """Messages and attachments erasure still has to delete (rows skipped while locked)."""
    value = await conn.fetchval(
        f"""
        WITH held AS (SELECT conversation_id FROM held_conversations)
        SELECT (SELECT count(*) FROM messages m
                WHERE (m.sender_id = $1 OR m.conversation_id IN ({_OWN_CONVERSATIONS}))
                  AND m.conversation_id NOT IN (SELECT conversation_id FROM held))
             + (SELECT count(*) FROM attachments a
                WHERE (a.uploader_id = $1 OR a.conversation_id IN ({_OWN_CONVERSATIONS}))
                  AND a.conversation_id NOT IN (SELECT conversation_id FROM held))
        """,  # noqa: S608 -- fixed fragments
        client_id,
    )
    return int(value)


# What the last step deletes, in order (foreign keys first). $1: the client, $2: held conversations.
_FINAL_DELETES: tuple[tuple[str, str], ...] = (
    ("message_recipients", """
        DELETE FROM message_recipients r USING messages m
        WHERE r.account_id = $1 AND m.seq = r.message_seq AND NOT (m.conversation_id = ANY ($2::uuid[]))
    """),
    ("conversation_members", """
        DELETE FROM conversation_members
        WHERE NOT (conversation_id = ANY ($2::uuid[]))
          AND (account_id = $1 OR conversation_id IN (SELECT id FROM conversations WHERE client_id = $1))
    """),
    ("conversations", """
        DELETE FROM conversations c WHERE c.client_id = $1 AND NOT (c.id = ANY ($2::uuid[]))
          AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.conversation_id = c.id)
          AND NOT EXISTS (SELECT 1 FROM attachments a WHERE a.conversation_id = c.id)
    """),
    ("push_events", "DELETE FROM account_events WHERE account_id = $1"),
    ("note_access", "DELETE FROM note_readers WHERE account_id = $1"),
    ("care_relationships", "DELETE FROM care_relationships WHERE client_id = $1"),
    ("recovery_codes", "DELETE FROM recovery_codes WHERE account_id = $1"),
    ("sessions", "DELETE FROM sessions WHERE account_id = $1"),
    ("invites", "DELETE FROM invites WHERE redeemed_by = $1"),
    ("key_backups", "DELETE FROM key_backups WHERE account_id = $1"),
    ("audit_addresses", """
        DELETE FROM audit_addresses
        WHERE event_id IN (SELECT event_id FROM audit_events WHERE agent_account_id = $1)
    """),
)  # fmt: skip


async def delete_remaining(
    conn: asyncpg.Connection, client_id: uuid.UUID, held: list[uuid.UUID], throttle_keys: list[bytes]
) -> dict[str, int]:
    """Everything else erasure deletes (all in the caller's transaction); counts per kind."""
    counts: dict[str, int] = {}
    for kind, sql in _FINAL_DELETES:
        status = (
            await conn.execute(sql, client_id, held) if "$2" in sql else await conn.execute(sql, client_id)
        )
        counts[kind] = int(status.split()[-1])
    status = await conn.execute(
        "DELETE FROM login_throttle WHERE scope = 'account' AND key_digest = ANY ($1::bytea[])", throttle_keys
    )
    counts["login_throttle"] = int(status.split()[-1])
    return counts


async def kept_counts(
    conn: asyncpg.Connection, client_id: uuid.UUID, held: list[uuid.UUID]
) -> dict[str, int]:
    """What stays about the client after the deletions, per kind."""
    row = await conn.fetchrow(
        f"""
        SELECT
          (SELECT count(*) FROM notes WHERE client_id = $1) AS notes,
          (SELECT count(*) FROM consent_events WHERE client_id = $1) AS consent_events,
          (SELECT count(*) FROM audit_events WHERE subject_id = $1 OR agent_account_id = $1) AS audit_events,
          (SELECT count(*) FROM emergency_access WHERE client_id = $1) AS emergency_access,
          (SELECT count(*) FROM messages m WHERE m.conversation_id = ANY ($2::uuid[])
             AND (m.sender_id = $1 OR m.conversation_id IN ({_OWN_CONVERSATIONS}))) AS held_messages,
          (SELECT count(*) FROM attachments a WHERE a.conversation_id = ANY ($2::uuid[])
             AND (a.uploader_id = $1 OR a.conversation_id IN ({_OWN_CONVERSATIONS}))) AS held_attachments,
          (SELECT count(*) FROM messages m WHERE m.sender_id = $1) AS signed_messages
        """,  # noqa: S608 -- fixed fragments
        client_id,
        held,
    )
    if row is None:  # pragma: no cover -- a query without FROM returns one row
        raise LookupError(client_id)
    return {key: int(value) for key, value in dict(row).items()}


async def key_bundles(conn: asyncpg.Connection, client_id: uuid.UUID, *, keep: bool, now: dt.datetime) -> int:
    """Revoke the client's public key bundles (``keep``) or delete them; returns how many."""
    if keep:
        await conn.execute(
            """
            UPDATE key_bundles SET revoked_at = greatest($2, published_at)
            WHERE account_id = $1 AND revoked_at IS NULL
            """,
            client_id,
            now,
        )
        return int(await conn.fetchval("SELECT count(*) FROM key_bundles WHERE account_id = $1", client_id))
    status = await conn.execute("DELETE FROM key_bundles WHERE account_id = $1", client_id)
    return int(status.split()[-1])


async def login_identity(conn: asyncpg.Connection, client_id: uuid.UUID) -> tuple[str, str]:
    """``(organization slug, email)``: what the account's throttle key was derived from."""
    row = await conn.fetchrow(
        "SELECT o.slug, a.email FROM accounts a JOIN organizations o ON o.id = a.org_id WHERE a.id = $1",
        client_id,
    )
    if row is None:  # pragma: no cover -- the caller locked the request naming this account
        raise LookupError(client_id)
    return row["slug"], row["email"]


async def pseudonymize(
    conn: asyncpg.Connection, client_id: uuid.UUID, pseudonym: str, now: dt.datetime
) -> None:
    """Remove the email, name and credentials; the account id stays (records refer to it)."""
    await conn.execute(
        """
        UPDATE accounts SET email = $2, display_name = $3, password_hash = NULL,
               totp_secret_sealed = NULL, totp_pending_sealed = NULL, totp_enabled_at = NULL,
               totp_last_step = NULL, erased_at = $4
        WHERE id = $1
        """,
        client_id,
        pseudonym,
        ERASED_NAME,
        now,
    )


async def add_deleted(conn: asyncpg.Connection, request_id: uuid.UUID, counts: dict[str, int]) -> None:
    """Add to a request's tally of deleted rows."""
    await conn.execute(
        """
        UPDATE erasure_requests SET deleted = (
            SELECT coalesce(jsonb_object_agg(k, v), '{}'::jsonb) FROM (
                SELECT k, sum(v)::bigint AS v FROM (
                    SELECT key AS k, value::bigint AS v FROM jsonb_each_text(deleted)
                    UNION ALL
                    SELECT key, value::bigint FROM jsonb_each_text($2::jsonb)
                ) parts GROUP BY k
            ) totals)
        WHERE id = $1
        """,
        request_id,
        msgspec.json.encode(counts).decode(),
    )


async def complete(
    conn: asyncpg.Connection, request_id: uuid.UUID, kept: list[dict[str, Any]], now: dt.datetime
) -> RequestRow:
    """Mark a request done, with what was kept; the client's free-text reason goes."""
    row = await conn.fetchrow(
        f"""
        UPDATE erasure_requests SET status = 'completed', completed_at = greatest($3, started_at),
               kept = $2::jsonb, reason = NULL
        WHERE id = $1
        RETURNING {_COLUMNS}
        """,  # noqa: S608 -- fixed columns
        request_id,
        msgspec.json.encode(kept).decode(),
        now,
    )
    if row is None:  # pragma: no cover -- the caller locked the request
        raise LookupError(request_id)
    return _row(row)


async def held_conversations(conn: asyncpg.Connection) -> list[uuid.UUID]:
    """Conversations under an active legal hold."""
    return [r["conversation_id"] for r in await conn.fetch("SELECT conversation_id FROM held_conversations")]


async def lock_active_consents(conn: asyncpg.Connection, client_id: uuid.UUID) -> list[uuid.UUID]:
    """The client's active consents, locked for the erasure to end them."""
    rows = await conn.fetch(
        "SELECT consent_id FROM consents WHERE client_id = $1 AND status = 'active' FOR UPDATE", client_id
    )
    return [r["consent_id"] for r in rows]

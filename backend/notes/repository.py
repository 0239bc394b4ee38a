"""SQL for custodian keys, notes, their envelopes, readers and break-glass wraps."""

from __future__ import annotations

import datetime as dt
import uuid

import asyncpg
import msgspec

__all__ = [
    "CustodianRow",
    "NoteRow",
    "add_readers",
    "custodian_keys",
    "get_note",
    "insert_custodian_key",
    "insert_envelope",
    "insert_note",
    "insert_wraps",
    "list_notes",
    "readers",
]


class CustodianRow(msgspec.Struct, frozen=True, kw_only=True):
    """A custodian key version."""

    key_version: int
    bundle: bytes
    fingerprint: str
    published_at: dt.datetime


class NoteRow(msgspec.Struct, frozen=True, kw_only=True):
    """A note with its current envelope."""

    seq: int
    id: uuid.UUID
    org_id: uuid.UUID
    client_id: uuid.UUID
    author_id: uuid.UUID
    kind: str
    amends_id: uuid.UUID | None
    created_at: dt.datetime
    envelope_version: int
    envelope: bytes
    envelope_sha256: bytes
    amended_by: list[uuid.UUID]
    wrapped_key: bytes | None = None


async def custodian_keys(conn: asyncpg.Connection, org_id: uuid.UUID) -> list[CustodianRow]:
    """Every custodian key version of an organization, oldest first."""
    rows = await conn.fetch(
        "SELECT key_version, bundle, fingerprint, published_at FROM custodian_keys"
        " WHERE org_id = $1 ORDER BY key_version",
        org_id,
    )
    return [msgspec.convert(dict(r), CustodianRow) for r in rows]


async def insert_custodian_key(
    conn: asyncpg.Connection,
    *,
    org_id: uuid.UUID,
    key_version: int,
    encryption_key: bytes,
    signing_key: bytes,
    bundle: bytes,
    fingerprint: str,
    published_by: uuid.UUID,
    now: dt.datetime,
) -> None:
    """Store a verified custodian bundle."""
    await conn.execute(
        """
        INSERT INTO custodian_keys (org_id, key_version, encryption_key, signing_key, bundle, fingerprint,
                                    published_at, published_by)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
        """,
        org_id,
        key_version,
        encryption_key,
        signing_key,
        bundle,
        fingerprint,
        now,
        published_by,
    )


async def insert_note(
    conn: asyncpg.Connection,
    *,
    note_id: uuid.UUID,
    org_id: uuid.UUID,
    client_id: uuid.UUID,
    author_id: uuid.UUID,
    author_key_version: int,
    kind: str,
    amends_id: uuid.UUID | None,
    now: dt.datetime,
) -> bool:
    """Create a note row; False when the id exists."""
    status = await conn.execute(
        """
        INSERT INTO notes (id, org_id, client_id, author_id, author_key_version, kind, amends_id, created_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING
        """,
        note_id,
        org_id,
        client_id,
        author_id,
        author_key_version,
        kind,
        amends_id,
        now,
    )
    return bool(status.endswith(" 1"))


async def insert_envelope(
    conn: asyncpg.Connection,
    note_id: uuid.UUID,
    version: int,
    envelope: bytes,
    digest: bytes,
    now: dt.datetime,
) -> None:
    """Store a version of a note's envelope."""
    await conn.execute(
        "INSERT INTO note_envelopes (note_id, version, envelope, envelope_sha256, created_at)"
        " VALUES ($1, $2, $3, $4, $5)",
        note_id,
        version,
        envelope,
        digest,
        now,
    )


async def add_readers(
    conn: asyncpg.Connection, note_id: uuid.UUID, readers: dict[uuid.UUID, str], now: dt.datetime
) -> None:
    """Grant fetch access (author, recipients, shares, break-glass)."""
    await conn.executemany(
        "INSERT INTO note_readers (note_id, account_id, via, added_at) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (note_id, account_id) DO NOTHING",
        [(note_id, account, via, now) for account, via in readers.items()],
    )


async def note_clients(conn: asyncpg.Connection, note_ids: list[uuid.UUID]) -> dict[uuid.UUID, uuid.UUID]:
    """The client each of these notes is about."""
    rows = await conn.fetch("SELECT id, client_id FROM notes WHERE id = ANY($1::uuid[])", note_ids)
    return {r["id"]: r["client_id"] for r in rows}


async def has_authored(conn: asyncpg.Connection, client_id: uuid.UUID, author_id: uuid.UUID) -> bool:
    """Whether the account wrote any note about the client."""
    found = await conn.fetchval(
        "SELECT 1 FROM notes WHERE client_id = $1 AND author_id = $2 LIMIT 1", client_id, author_id
    )
    return found is not None


async def readers(conn: asyncpg.Connection, note_id: uuid.UUID) -> dict[uuid.UUID, str]:
    """Who may fetch a note and why."""
    rows = await conn.fetch("SELECT account_id, via FROM note_readers WHERE note_id = $1", note_id)
    return {r["account_id"]: r["via"] for r in rows}


_NOTE_SELECT = """
    SELECT n.seq, n.id, n.org_id, n.client_id, n.author_id, n.kind, n.amends_id, n.created_at,
           e.version AS envelope_version, e.envelope, e.envelope_sha256,
           coalesce((SELECT array_agg(a.id ORDER BY a.seq) FROM notes a WHERE a.amends_id = n.id), '{}')
               AS amended_by,
           w.wrapped_key
    FROM notes n
    JOIN LATERAL (
        SELECT version, envelope, envelope_sha256 FROM note_envelopes
        WHERE note_id = n.id ORDER BY version DESC LIMIT 1
    ) e ON true
    LEFT JOIN LATERAL (
        SELECT k.wrapped_key FROM note_key_wraps k
        JOIN emergency_access x ON x.id = k.emergency_access_id
        WHERE k.note_id = n.id AND k.account_id = $1 AND x.closed_at IS NULL AND x.expires_at > $2
        ORDER BY k.created_at DESC LIMIT 1
    ) w ON true
"""


async def get_note(
    conn: asyncpg.Connection, note_id: uuid.UUID, viewer: uuid.UUID, now: dt.datetime
) -> NoteRow | None:
    """One note with its current envelope (and a live break-glass wrap for the viewer)."""
    row = await conn.fetchrow(_NOTE_SELECT + " WHERE n.id = $3", viewer, now, note_id)
    return None if row is None else msgspec.convert(dict(row), NoteRow)


_READER = "EXISTS (SELECT 1 FROM note_readers r WHERE r.note_id = n.id AND r.account_id = $1)"
_PAGE = " AND n.client_id = $3 AND n.seq > $4 ORDER BY n.seq LIMIT $5"
_LIST_AS_READER = _NOTE_SELECT + " WHERE " + _READER + _PAGE
_LIST_WITH_EMERGENCY = _NOTE_SELECT + " WHERE (" + _READER + " OR w.wrapped_key IS NOT NULL)" + _PAGE


async def list_notes(
    conn: asyncpg.Connection,
    *,
    client_id: uuid.UUID,
    viewer: uuid.UUID,
    now: dt.datetime,
    after: int,
    limit: int,
    emergency: bool,
) -> list[NoteRow]:
    """A client's notes the viewer reads (as a reader, or through a live break-glass wrap)."""
    rows = await conn.fetch(
        _LIST_WITH_EMERGENCY if emergency else _LIST_AS_READER,
        viewer,
        now,
        client_id,
        after,
        limit,
    )
    return [msgspec.convert(dict(r), NoteRow) for r in rows]


async def insert_wraps(
    conn: asyncpg.Connection,
    *,
    emergency_access_id: uuid.UUID,
    account_id: uuid.UUID,
    key_version: int,
    wraps: list[tuple[uuid.UUID, bytes]],
    now: dt.datetime,
) -> None:
    """Store the custodian's re-wraps for one break-glass opening."""
    await conn.executemany(
        """
        INSERT INTO note_key_wraps
            (note_id, emergency_access_id, account_id, key_version, wrapped_key, created_at)
        VALUES ($1, $2, $3, $4, $5, $6)
        ON CONFLICT (note_id, emergency_access_id) DO UPDATE SET wrapped_key = EXCLUDED.wrapped_key,
            key_version = EXCLUDED.key_version, created_at = EXCLUDED.created_at
        """,
        [(note_id, emergency_access_id, account_id, key_version, key, now) for note_id, key in wraps],
    )

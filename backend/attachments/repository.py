"""SQL of attachments: one row per blob, its bytes in numbered chunks."""

from __future__ import annotations

import datetime as dt
import uuid

import asyncpg
import msgspec

__all__ = [
    "CHUNK_BYTES",
    "AttachmentRow",
    "get_attachment",
    "insert_attachment",
    "insert_chunk",
    "read_chunks",
]

CHUNK_BYTES = 256 * 1024
"""Largest stored chunk (the last one of a blob is shorter)."""


class AttachmentRow(msgspec.Struct, frozen=True, kw_only=True):
    """An attachment's metadata (never its bytes)."""

    id: uuid.UUID
    org_id: uuid.UUID
    conversation_id: uuid.UUID
    uploader_id: uuid.UUID
    size: int
    blake2b: bytes
    chunk_count: int
    created_at: dt.datetime


_COLUMNS = "id, org_id, conversation_id, uploader_id, size, blake2b, chunk_count, created_at"


async def get_attachment(conn: asyncpg.Connection, attachment_id: uuid.UUID) -> AttachmentRow | None:
    """The attachment's metadata, or None."""
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM attachments WHERE id = $1", attachment_id)  # noqa: S608 -- constant column list
    return None if row is None else msgspec.convert(dict(row), AttachmentRow)


async def insert_attachment(conn: asyncpg.Connection, row: AttachmentRow) -> bool:
    """Insert the metadata; False if the id is taken (waits for a concurrent insert to end)."""
    inserted = await conn.fetchval(
        f"""
        INSERT INTO attachments ({_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
        ON CONFLICT (id) DO NOTHING
        RETURNING true
        """,  # noqa: S608 -- constant column list
        row.id,
        row.org_id,
        row.conversation_id,
        row.uploader_id,
        row.size,
        row.blake2b,
        row.chunk_count,
        row.created_at,
    )
    return bool(inserted)


async def insert_chunk(conn: asyncpg.Connection, attachment_id: uuid.UUID, n: int, data: bytes) -> None:
    """Store chunk ``n`` of an attachment."""
    await conn.execute(
        "INSERT INTO attachment_chunks (attachment_id, n, data) VALUES ($1, $2, $3)", attachment_id, n, data
    )


async def read_chunks(
    conn: asyncpg.Connection, attachment_id: uuid.UUID, first: int, count: int
) -> list[bytes]:
    """Chunks ``first`` .. ``first + count - 1`` of an attachment, in order."""
    rows = await conn.fetch(
        "SELECT data FROM attachment_chunks WHERE attachment_id = $1 AND n >= $2 AND n < $3 ORDER BY n",
        attachment_id,
        first,
        first + count,
    )
    return [bytes(r[0]) for r in rows]

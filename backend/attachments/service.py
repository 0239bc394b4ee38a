"""Attachment rules: who may upload and download, size and digest checks, idempotent ids.

An upload is authorized (``SEND_MESSAGE`` on the conversation) before its body is
read. The body is then spooled to an unlinked temporary file while it is counted and
hashed: past ``attachment_max_bytes`` it is refused at once (413), and a BLAKE2b-256
other than the one announced in ``X-Content-BLAKE2b`` is refused (422) without
touching the database. Only a complete, matching blob is stored, in one short
transaction with its audit event, in chunks of at most 256 KiB; no pooled connection
waits on a slow client and memory stays constant whatever the size.

The id is the client's (it is bound into the encryption): the same id with the same
digest returns the first answer without reading the body again; another digest,
conversation or uploader under that id is a conflict.

A download is authorized (``READ_CONVERSATION`` on the attachment's conversation,
404 for anyone else) and audited before its first byte, then streamed chunk by chunk.
"""

from __future__ import annotations

import asyncio
import hashlib
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import IO

import asyncpg
import structlog

from backend.attachments import repository as repo
from backend.attachments.errors import DigestMismatchError, PayloadTooLargeError
from backend.attachments.schemas import AttachmentCreated
from backend.audit_trail import Action, AuditContext, AuditEvent, record
from backend.audit_trail.refusals import Refusals, audit_refusals
from backend.auth.principal import Principal
from backend.db.pool import connection, transaction
from backend.db.tenancy import tenant_transaction
from backend.errors import ConflictError, NotFoundError
from backend.messaging import repository as messaging_repo
from backend.messaging.service import Attempt, authorize
from backend.policy import Action as PolicyAction
from backend.policy import Decision
from backend.runtime import Runtime

__all__ = ["READ_BATCH", "download_chunks", "open_download", "upload"]

READ_BATCH = 4
"""Chunks fetched per query on download (1 MiB at most in memory)."""

_log = structlog.get_logger("confide.attachments")


def _event(
    principal: Principal,
    event_type: str,
    action: Action,
    conversation: messaging_repo.ConversationRow,
    decision: Decision,
    attachment_id: uuid.UUID,
) -> AuditEvent:
    return AuditEvent(
        action=action,
        event_type=event_type,
        org_id=conversation.org_id,
        agent_account_id=principal.account_id,
        agent_role=principal.role,  # type: ignore[arg-type]
        entity_type="attachment",
        entity_id=attachment_id,
        subject_id=conversation.client_id,
        purpose_of_use="TREAT",
        consent_id=decision.consent_id,
    )


def _created(row: repo.AttachmentRow) -> AttachmentCreated:
    return AttachmentCreated(id=row.id, size=row.size, digest=row.blake2b.hex())


def _replay(
    existing: repo.AttachmentRow, principal: Principal, conversation_id: uuid.UUID, digest: bytes
) -> AttachmentCreated:
    """The first answer for a retried upload, or a conflict if it is another blob."""
    if (
        existing.conversation_id != conversation_id
        or existing.uploader_id != principal.account_id
        or existing.blake2b != digest
    ):
        raise ConflictError("A different attachment was already uploaded with this id.")
    return _created(existing)


def _write(spool: IO[bytes], update: Callable[[bytes], None], data: bytes) -> None:
    update(data)
    spool.write(data)


async def _spool(body: AsyncIterator[bytes], spool: IO[bytes], limit: int) -> tuple[int, bytes]:
    """Copy ``body`` into ``spool``; returns (size, BLAKE2b-256). 413 past ``limit`` bytes."""
    hasher = hashlib.blake2b(digest_size=32)
    size = 0
    pending = bytearray()
    async for part in body:
        size += len(part)
        if size > limit:
            raise PayloadTooLargeError
        pending += part
        if len(pending) >= repo.CHUNK_BYTES:
            await asyncio.to_thread(_write, spool, hasher.update, bytes(pending))
            pending.clear()
    if pending:
        await asyncio.to_thread(_write, spool, hasher.update, bytes(pending))
    return size, hasher.digest()


async def upload(
    rt: Runtime,
    principal: Principal,
    conversation_id: uuid.UUID,
    *,
    attachment_id: uuid.UUID,
    digest: bytes,
    content_length: int | None,
    body: AsyncIterator[bytes],
    ctx: AuditContext,
) -> tuple[AttachmentCreated, bool]:
    """Check and store an encrypted blob; ``(result, created)``."""
    limit = rt.settings.attachment_max_bytes
    if content_length is not None and content_length > limit:
        raise PayloadTooLargeError
    async with _refusals_audited(rt, ctx) as (conn, refusals), tenant_transaction(conn, principal.org_id):
        attempt = Attempt(refusals, "attachment.create", Action.CREATE, ("attachment", attachment_id))
        await authorize(rt, conn, principal, conversation_id, PolicyAction.SEND_MESSAGE, attempt)
        existing = await repo.get_attachment(conn, attachment_id)
    if existing is not None:
        return _replay(existing, principal, conversation_id, digest), False
    with tempfile.TemporaryFile() as spool:
        size, received = await _spool(body, spool, limit)
        if received != digest:
            raise DigestMismatchError
        now = rt.clock.now()
        # The caller may have been removed while uploading: decide again before storing.
        async with _refusals_audited(rt, ctx) as (conn, refusals), tenant_transaction(conn, principal.org_id):
            conversation, _, decision = await authorize(
                rt, conn, principal, conversation_id, PolicyAction.SEND_MESSAGE,
                Attempt(refusals, "attachment.create", Action.CREATE, ("attachment", attachment_id)),
            )  # fmt: skip
            row = repo.AttachmentRow(
                id=attachment_id,
                org_id=conversation.org_id,
                conversation_id=conversation_id,
                uploader_id=principal.account_id,
                size=size,
                blake2b=received,
                chunk_count=-(-size // repo.CHUNK_BYTES),
                created_at=now,
            )
            if not await repo.insert_attachment(conn, row):
                # A concurrent upload of the same id committed first.
                stored = await repo.get_attachment(conn, attachment_id)
                if stored is None:  # pragma: no cover -- attachments are never deleted mid-request
                    raise ConflictError
                return _replay(stored, principal, conversation_id, digest), False
            spool.seek(0)
            for n in range(row.chunk_count):
                data = await asyncio.to_thread(spool.read, repo.CHUNK_BYTES)
                await repo.insert_chunk(conn, attachment_id, n, data)
            await record(
                conn,
                _event(principal, "attachment.create", Action.CREATE, conversation, decision, attachment_id),
                ctx,
                now,
            )
    return _created(row), True


async def open_download(
    rt: Runtime, principal: Principal, attachment_id: uuid.UUID, ctx: AuditContext
) -> repo.AttachmentRow:
    """Authorize and audit a download; the attachment's metadata."""
    async with _refusals_audited(rt, ctx) as (conn, refusals), tenant_transaction(conn, principal.org_id):
        row = await repo.get_attachment(conn, attachment_id)
        if row is None:
            raise NotFoundError
        conversation, _, decision = await authorize(
            rt, conn, principal, row.conversation_id, PolicyAction.READ_CONVERSATION,
            Attempt(refusals, "attachment.read", Action.READ, ("attachment", attachment_id)),
        )  # fmt: skip
        event = _event(principal, "attachment.read", Action.READ, conversation, decision, attachment_id)
        # Like messages, an attachment is for those who were members when it was shared:
        # someone who joined later gets nothing older than their membership.
        joined = await messaging_repo.joined_at(conn, row.conversation_id, principal.account_id)
        if row.uploader_id != principal.account_id and (joined is None or joined > row.created_at):
            raise refusals.refuse(event, "not_recipient", NotFoundError())
        await record(conn, event, ctx, rt.clock.now())
    return row


@asynccontextmanager
async def _refusals_audited(
    rt: Runtime, ctx: AuditContext
) -> AsyncIterator[tuple[asyncpg.Connection, Refusals]]:
    """A pooled connection and the refusals noted on it, audited if the block raises for one."""
    async with (
        connection(rt.require_pool(), rt.settings.db_acquire_timeout_s) as conn,
        audit_refusals(conn, ctx, rt.clock.now()) as refusals,
    ):
        yield conn, refusals


async def download_chunks(rt: Runtime, row: repo.AttachmentRow) -> AsyncIterator[bytes]:
    """The stored bytes, a few chunks per query, each query on a freshly acquired connection.

    Each read is a transaction of the attachment's organization (row-level security):
    two round trips more per batch of a MiB, against the megabyte it carries.
    """
    for first in range(0, row.chunk_count, READ_BATCH):
        wanted = min(READ_BATCH, row.chunk_count - first)
        async with transaction(
            rt.require_pool(), rt.settings.db_acquire_timeout_s, org_id=row.org_id, readonly=True
        ) as conn:
            chunks = await repo.read_chunks(conn, row.id, first, wanted)
        if len(chunks) != wanted:  # pragma: no cover -- deleted by retention mid-download
            _log.warning("attachment_chunks_missing")
            return
        for chunk in chunks:
            yield chunk

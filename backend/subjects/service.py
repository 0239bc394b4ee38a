"""The data-subject export (GDPR Art. 15 access, Art. 20 portability).

``GET /v1/me/export`` streams everything held about the caller as one JSON Lines
archive (format: ``crypto/SPEC.md`` section 15, ``docs/export-schema.json``):

- **One snapshot, constant memory.** Every section is read by cursor, a batch at a
  time, inside one REPEATABLE READ READ ONLY transaction, so the archive is consistent
  and memory stays bounded by a batch whatever its size.
- **Bounded.** One export per account at a time (a transaction-scoped advisory lock,
  held for the whole stream, so it is released however the stream ends) and at most
  half the pool's connections per process (each export holds one for its duration);
  beyond either, 429 with Retry-After.
- **Audited before the first byte.** The ``subject.export`` event (entity: the export
  id that the archive's manifest carries, purpose ``PATRQT``) is committed *before* any
  data leaves, in its own transaction taken after the snapshot. A single transaction for
  the event and the reads would lose the event whenever the stream does not complete
  (a client that disconnects or stalls past the idle timeout, a crash), after part of
  the data was already sent: no disclosure without its record.
- **Sealed.** The trailer carries the line count, a BLAKE2b-256 digest of every line and
  the counts per section, signed with the server's receipt key, so the opener detects a
  truncated or altered archive.

Content stays end-to-end encrypted: envelopes, bundles, the key backup and consent
statements are the stored bytes, which the server cannot read.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator
from typing import Final

import msgspec
import structlog

from backend.audit_trail import Action, AuditContext, AuditEvent, record
from backend.auth.principal import Principal
from backend.db.pool import connection, transaction
from backend.db.tenancy import tenant_transaction
from backend.errors import ThrottledError
from backend.policy import Action as PolicyAction
from backend.policy import Resource, require
from backend.runtime import Runtime
from backend.subjects import repository as repo
from crypto.public.export import (
    EXPORT_FORMAT,
    EXPORT_VERSION,
    ArchiveTally,
    Manifest,
    Trailer,
    export_signed_bytes,
)

__all__ = ["MEDIA_TYPE", "ExportStream", "open_export"]

MEDIA_TYPE: Final = "application/jsonl"
_RETRY_AFTER_S: Final = 30
# A slow reader may hold the export's transaction open between fetches this long.
_IDLE_IN_TRANSACTION: Final = "10min"
_ENCODER: Final = msgspec.json.Encoder()
_log = structlog.get_logger("confide.subjects")

# Exports running in this process, per runtime (each holds a pooled connection).
_running: dict[int, int] = {}


def _line(value: msgspec.Struct) -> bytes:
    return _ENCODER.encode(value) + b"\n"


class _Slot:
    """One of the process's export slots, or :class:`ThrottledError` when none is free."""

    def __init__(self, rt: Runtime) -> None:
        self.key = id(rt)
        if _running.get(self.key, 0) >= max(1, rt.settings.db_pool_max // 2):
            raise ThrottledError(_RETRY_AFTER_S, "Too many exports are running. Try again shortly.")
        _running[self.key] = _running.get(self.key, 0) + 1

    def release(self) -> None:
        left = _running[self.key] - 1
        if left:
            _running[self.key] = left
        else:
            del _running[self.key]


async def _archive(
    rt: Runtime, principal: Principal, ctx: AuditContext, export_id: uuid.UUID
) -> AsyncGenerator[bytes, None]:
    """The archive's bytes; the first chunk (the manifest) only once checks and audit passed."""
    slot = _Slot(rt)
    try:
        async with (
            connection(rt.require_pool(), rt.settings.db_acquire_timeout_s) as conn,
            tenant_transaction(conn, principal.org_id, isolation="repeatable_read", readonly=True),
        ):
            await conn.execute(f"SET LOCAL idle_in_transaction_session_timeout = '{_IDLE_IN_TRANSACTION}'")
            # The snapshot every section is read from was taken as the transaction began.
            if not await repo.try_lock(conn, principal.account_id):
                raise ThrottledError(_RETRY_AFTER_S, "An export of this account is already running.")
            now = rt.clock.now()
            async with transaction(
                rt.require_pool(), rt.settings.db_acquire_timeout_s, org_id=principal.org_id
            ) as audit_conn:
                await record(
                    audit_conn,
                    AuditEvent(
                        action=Action.READ,
                        event_type="subject.export",
                        org_id=principal.org_id,
                        agent_account_id=principal.account_id,
                        agent_role=principal.role,  # type: ignore[arg-type]  # a Principal's role is one of the four
                        entity_type="subject_export",
                        entity_id=export_id,
                        subject_id=principal.account_id,
                        purpose_of_use="PATRQT",
                    ),
                    ctx,
                    now,
                )
            sections = tuple(repo.SECTION_ORDER)
            manifest = _line(
                Manifest(
                    format=EXPORT_FORMAT,
                    version=EXPORT_VERSION,
                    export_id=export_id,
                    generated_at=now,
                    account_id=principal.account_id,
                    organization_id=principal.org_id,
                    role=principal.role,
                    sections=sections,
                    server_key=rt.keys.receipt_public_key,
                )
            )
            tally = ArchiveTally(sections)
            tally.add(manifest, None)
            yield manifest
            for name, section in repo.SECTION_ORDER.items():
                async for batch in repo.records(conn, section, principal.account_id, principal.org_id):
                    lines = [_line(item) for item in batch]
                    for line in lines:
                        tally.add(line, name)
                    yield b"".join(lines)
        digest = tally.digest()
        signed = export_signed_bytes(
            export_id=export_id, account_id=principal.account_id, lines=tally.lines, digest=digest
        )
        trailer = Trailer(
            export_id=export_id,
            lines=tally.lines,
            blake2b=digest,
            counts=tally.counts,
            signature=rt.keys.sign_receipt(signed),
        )
        _log.info("subject_export_complete", count=tally.lines)
        yield _line(trailer)
    finally:
        slot.release()


class ExportStream:
    """The archive's chunks: the manifest already produced, the rest as it is read.

    :meth:`aclose` ends the export at once (transaction, lock and slot released); a
    stream that is dropped unread is closed by the event loop's generator finalizer.
    """

    def __init__(self, first: bytes, rest: AsyncGenerator[bytes, None]) -> None:
        self._first: bytes | None = first
        self._rest = rest

    def __aiter__(self) -> ExportStream:
        return self

    async def __anext__(self) -> bytes:
        if self._first is not None:
            first, self._first = self._first, None
            return first
        return await anext(self._rest)

    async def aclose(self) -> None:
        """Stop reading and release what the export holds."""
        await self._rest.aclose()


async def open_export(rt: Runtime, principal: Principal, ctx: AuditContext) -> ExportStream:
    """Check, lock, audit and start the caller's export; the stream of its bytes.

    Everything that can refuse the export (policy, a running export, no free slot, the
    database) happens before this returns, so a refusal is a problem document and never
    a truncated archive.

    Raises:
        ThrottledError: an export of this account is running, or the process runs as
            many exports as it allows.
        UnavailableError: no database connection in time.
    """
    require(
        principal.actor,
        PolicyAction.EXPORT_OWN_DATA,
        Resource(org_id=principal.org_id, owner_id=principal.account_id),
    )
    stream = _archive(rt, principal, ctx, uuid.uuid4())
    first = await anext(stream)
    return ExportStream(first, stream)

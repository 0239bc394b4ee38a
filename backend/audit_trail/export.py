"""Streaming export of the audit trail: JSON Lines (verifiable), CSV, FHIR R4 Bundle.

Constant memory: the export reads a server-side cursor inside one read-only
repeatable-read transaction, :data:`CHUNK` rows at a time, and hands each chunk to
the :mod:`audit` writers (encoding runs in a worker thread, off the event loop).

The JSON Lines export is bound to the newest checkpoint, embedded in its header with
any witness cosignatures. Without filters it is *complete*: every leaf of that
checkpoint in index order, the caller's organization's with their exact bytes and
everyone else's as hash-only lines, so ``confide audit verify`` can check that nothing
is missing and recompute the root (inclusion proofs on request). With filters it holds
the matching events of the organization only, each with its inclusion proof, and
declares its filters (organization included). CSV and FHIR are views of the
organization's matching events, not proofs. Starting an export writes an audit event.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Final, Literal

import asyncpg
import msgspec

from audit.export import ExportFilters, ExportRecord, write_jsonl
from audit.formats import write_csv, write_fhir_bundle
from audit.leaf import format_recorded
from backend.audit_trail import event_queries as events
from backend.audit_trail import repository as repo
from backend.audit_trail.errors import NoCheckpointError
from backend.audit_trail.proofs import BlockProofs
from backend.audit_trail.schemas import EventFilters
from backend.audit_trail.service import audit_read, check_window, require_officer
from backend.audit_trail.writer import AuditContext
from backend.auth.principal import Principal
from backend.db.pool import connection
from backend.db.tenancy import tenant_transaction
from backend.runtime import Runtime

__all__ = ["CHUNK", "MEDIA_TYPES", "ExportFormat", "ExportPlan", "prepare_export", "stream_export"]

ExportFormat = Literal["jsonl", "csv", "fhir"]
CHUNK: Final = 5_000
MEDIA_TYPES: Final[dict[str, str]] = {
    "jsonl": "application/jsonl",
    "csv": "text/csv; charset=utf-8",
    "fhir": "application/fhir+json",
}
# A slow reader may hold the export's transaction open between fetches this long.
_IDLE_IN_TRANSACTION: Final = "10min"


class ExportPlan(msgspec.Struct, frozen=True, kw_only=True):
    """What an export will stream, fixed before the first byte."""

    fmt: ExportFormat
    note: str
    size: int
    filters: EventFilters
    complete: bool
    proofs: bool

    @property
    def header_filters(self) -> ExportFilters:
        """The filters the JSON Lines header declares (none for a complete export)."""
        if self.complete:
            return ExportFilters()
        f = self.filters
        return ExportFilters(
            since=format_recorded(f.since) if f.since else None,
            until=format_recorded(f.until) if f.until else None,
            subject=f.subject,
            actor=f.actor,
            types=f.types,
            org=f.org_id,
            outcomes=f.outcomes,
        )


async def prepare_export(
    rt: Runtime,
    conn: asyncpg.Connection,
    principal: Principal,
    ctx: AuditContext,
    *,
    filters: EventFilters,
    fmt: ExportFormat,
    proofs: bool,
) -> ExportPlan:
    """Check access, pick the newest checkpoint and record the export (committed first)."""
    require_officer(principal)
    check_window(filters.since, filters.until)
    async with tenant_transaction(conn, principal.org_id):
        latest = await repo.latest_checkpoint(conn)
        if latest is None:
            raise NoCheckpointError
        cosigs = await repo.cosignatures(conn, latest.size)
        await audit_read(conn, rt, principal, ctx, "audit.export", subject=filters.subject, detail=fmt)
    complete = fmt == "jsonl" and not filters.narrowed
    return ExportPlan(
        fmt=fmt,
        note=latest.note + "".join(c.signature_line for c in cosigs),
        size=latest.size,
        filters=filters,
        complete=complete,
        proofs=fmt == "jsonl" and (proofs or not complete),
    )


class _Feed:
    """Records handed to a streaming writer one chunk at a time."""

    def __init__(self) -> None:
        self.queue: deque[ExportRecord] = deque()

    def __iter__(self) -> Iterator[ExportRecord]:
        return self

    def __next__(self) -> ExportRecord:
        if self.queue:
            return self.queue.popleft()
        raise StopIteration


class _Encoder:
    """Drives one :mod:`audit` writer: each record yields exactly one piece of output."""

    def __init__(self, plan: ExportPlan) -> None:
        self.plan = plan
        self.feed = _Feed()
        self.lines: Iterator[bytes | str]
        if plan.fmt == "jsonl":
            self.lines = write_jsonl(
                self.feed, checkpoint_note=plan.note, filters=plan.header_filters, proofs=plan.proofs
            )
        elif plan.fmt == "csv":
            self.lines = write_csv(self.feed)
        else:
            self.lines = write_fhir_bundle(self.feed)

    @staticmethod
    def _bytes(piece: bytes | str) -> bytes:
        return piece if isinstance(piece, bytes) else piece.encode()

    def head(self) -> bytes:
        return self._bytes(next(self.lines))

    def chunk(self, rows: Sequence[asyncpg.Record], proofs: BlockProofs | None) -> bytes:
        for row in rows:
            index = row["idx"]
            proof = proofs.proof(index) if proofs is not None else None
            self.feed.queue.append(ExportRecord(index, row["leaf_hash"], row["leaf"], proof))
        return b"".join(self._bytes(next(self.lines)) for _ in rows)

    def tail(self) -> bytes:
        return b"".join(self._bytes(piece) for piece in self.lines)


async def stream_export(rt: Runtime, plan: ExportPlan) -> AsyncIterator[bytes]:
    """Yield the export's bytes chunk by chunk (its own connection and transaction)."""
    encoder = _Encoder(plan)
    proofs = BlockProofs(plan.size) if plan.proofs else None
    sql, args = events.export_query(plan.filters, plan.size, complete=plan.complete)
    async with (
        connection(rt.require_pool(), rt.settings.db_acquire_timeout_s) as conn,
        conn.transaction(isolation="repeatable_read", readonly=True),
    ):
        await conn.execute(f"SET LOCAL idle_in_transaction_session_timeout = '{_IDLE_IN_TRANSACTION}'")
        cursor = await conn.cursor(sql, *args)
        yield encoder.head()
        while rows := await cursor.fetch(CHUNK):
            if proofs is not None:
                await proofs.load(conn, [row["idx"] for row in rows])
            yield await asyncio.to_thread(encoder.chunk, rows, proofs)
    yield encoder.tail()

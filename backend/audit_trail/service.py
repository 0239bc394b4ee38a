"""Audit trail rules: who may read what, proofs, cosignatures, search, disclosures, breach scope.

Compliance officers read their own organization's trail (policy action
``READ_AUDIT_TRAIL``); a client reads the accounting of disclosures of their own
records (``READ_OWN_DISCLOSURES``). Reads that return events are themselves audited,
in the same transaction as the read; tree heads and proofs (hashes only) are not,
so that witnesses polling the log do not grow it.
"""

from __future__ import annotations

import datetime as dt
import uuid

import asyncpg

from audit.checkpoint import CHECKPOINT_SPEC, verify_checkpoint
from audit.errors import VerificationError
from audit.leaf import decode_leaf
from audit.note import COSIGNATURE_V1, VerifierKey, parse_note
from backend.audit_trail import event_queries as events
from backend.audit_trail import repository as repo
from backend.audit_trail.errors import (
    CosignatureRejectedError,
    InvalidWindowError,
    NoCheckpointError,
    TreeSizeError,
)
from backend.audit_trail.log_key import log_signer
from backend.audit_trail.proofs import consistency_proof, inclusion_proof
from backend.audit_trail.schemas import (
    CheckpointView,
    ConsistencyProofView,
    CosignatureRequest,
    CosignatureView,
    DisclosurePage,
    EventFilters,
    EventPage,
    EventView,
    InclusionProofView,
    LogKeyView,
    LogStatus,
)
from backend.audit_trail.writer import Action, AuditContext, AuditEvent, record
from backend.auth.principal import Principal
from backend.db.tenancy import tenant_transaction
from backend.errors import NotFoundError
from backend.http.cursors import decode_cursor, encode_cursor
from backend.policy import Action as PolicyAction
from backend.policy import Resource, require
from backend.runtime import Runtime

__all__ = [
    "MAX_PAGE",
    "add_cosignature",
    "audit_read",
    "check_window",
    "disclosures",
    "get_checkpoint",
    "get_consistency_proof",
    "get_inclusion_proof",
    "log_key",
    "require_officer",
    "search_events",
    "status",
]

MAX_PAGE = 500


def require_officer(principal: Principal) -> None:
    """Compliance officers only, within their organization."""
    require(principal.actor, PolicyAction.READ_AUDIT_TRAIL, Resource(org_id=principal.org_id))


async def audit_read(
    conn: asyncpg.Connection,
    rt: Runtime,
    principal: Principal,
    ctx: AuditContext,
    event_type: str,
    *,
    subject: uuid.UUID | None = None,
    detail: str | None = None,
) -> None:
    """Record that ``principal`` read the audit trail (inside the caller's transaction)."""
    await record(
        conn,
        AuditEvent(
            action=Action.READ,
            event_type=event_type,
            outcome_reason=detail,
            org_id=principal.org_id,
            agent_account_id=principal.account_id,
            agent_role=principal.role,  # type: ignore[arg-type]  # a Principal's role is one of the four
            subject_id=subject,
        ),
        ctx,
        rt.clock.now(),
    )


def log_key(rt: Runtime) -> LogKeyView:
    """The log's public key (public: it is what verifiers must already trust)."""
    signer = log_signer(rt.settings)
    return LogKeyView(origin=signer.name, vkey=str(signer.verifier()), checkpoint_spec=CHECKPOINT_SPEC)


def _cosigned(row: repo.CheckpointRow, cosigs: list[repo.CosignatureRow]) -> CheckpointView:
    return CheckpointView(
        size=row.size,
        root=row.root,
        note=row.note + "".join(c.signature_line for c in cosigs),
        created_at=row.created_at,
        cosignatures=[CosignatureView(witness=c.witness_key, cosigned_at=c.cosigned_at) for c in cosigs],
    )


async def get_checkpoint(
    conn: asyncpg.Connection, principal: Principal, size: int | None = None
) -> CheckpointView:
    """The newest checkpoint (or the one of ``size``) with its stored cosignatures."""
    require_officer(principal)
    row = await (repo.latest_checkpoint(conn) if size is None else repo.checkpoint(conn, size))
    if row is None:
        raise NoCheckpointError
    return _cosigned(row, await repo.cosignatures(conn, row.size))


async def _tree_size(conn: asyncpg.Connection) -> int:
    return (await repo.tree_state(conn)).size


async def get_inclusion_proof(
    rt: Runtime,
    conn: asyncpg.Connection,
    principal: Principal,
    index: int,
    size: int | None,
    ctx: AuditContext,
) -> InclusionProofView:
    """Leaf ``index`` of the caller's organization and its proof to the tree of ``size`` (default: newest).

    The leaf is one event of the trail, whole (agent, subject, purpose...): reading it is
    audited like a search, or an officer could page through the trail index by index
    without a trace.
    """
    require_officer(principal)
    if size is None:
        latest = await repo.latest_checkpoint(conn)
        if latest is None:
            raise NoCheckpointError
        size = latest.size
    if not 0 <= index < size <= await _tree_size(conn):
        raise TreeSizeError
    async with tenant_transaction(conn, principal.org_id):
        leaf = await repo.leaf_at(conn, index)
        if leaf is None or leaf.org_id != principal.org_id:
            raise NotFoundError("No event of your organization has this index.")
        proof = await inclusion_proof(conn, index, size)
        await audit_read(conn, rt, principal, ctx, "audit.proof")
    return InclusionProofView(index=index, size=size, leaf_hash=leaf.leaf_hash, leaf=leaf.leaf, proof=proof)


async def get_consistency_proof(
    conn: asyncpg.Connection, principal: Principal, old: int, new: int
) -> ConsistencyProofView:
    """Proof that the tree of size ``new`` extends the tree of size ``old``."""
    require_officer(principal)
    if not 0 <= old <= new <= await _tree_size(conn):
        raise TreeSizeError
    return ConsistencyProofView(old=old, new=new, proof=await consistency_proof(conn, old, new))


async def add_cosignature(
    rt: Runtime, conn: asyncpg.Connection, principal: Principal, req: CosignatureRequest, ctx: AuditContext
) -> CheckpointView:
    """Store a witness cosignature after verifying it against a checkpoint this log signed."""
    require_officer(principal)
    log_key_ = log_signer(rt.settings).verifier()
    try:
        witness = VerifierKey.parse(req.witness_key.strip())
        if witness.sig_type != COSIGNATURE_V1:
            raise CosignatureRejectedError("The witness key must be a cosignature key (type 0x04).")
        verified = verify_checkpoint(req.note, [log_key_], witness_keys=[witness])
        text = parse_note(req.note)
    except VerificationError as exc:
        raise CosignatureRejectedError from exc
    size = verified.checkpoint.size
    async with tenant_transaction(conn, principal.org_id):
        stored = await repo.checkpoint(conn, size)
        if stored is None or parse_note(stored.note).text != text.text:
            raise CosignatureRejectedError("The cosigned checkpoint is not one this log signed.")
        (line,) = [s.line() for s in text.signatures if (s.name, s.key_id) == (witness.name, witness.key_id)]
        cosig = repo.CosignatureRow(str(witness), line, verified.cosignatures[witness.name])
        await repo.insert_cosignature(conn, size, cosig, rt.clock.now())
        await record(
            conn,
            AuditEvent(
                action=Action.CREATE,
                event_type="audit.cosignature",
                org_id=principal.org_id,
                agent_account_id=principal.account_id,
                agent_role=principal.role,  # type: ignore[arg-type]  # a Principal's role is one of the four
            ),
            ctx,
            rt.clock.now(),
        )
        return _cosigned(stored, await repo.cosignatures(conn, size))


async def status(rt: Runtime, conn: asyncpg.Connection, principal: Principal) -> LogStatus:
    """Tree size, newest checkpoint, and how many events wait for the integrator."""
    require_officer(principal)
    state = await repo.tree_state(conn)
    latest = await repo.latest_checkpoint(conn)
    pending = await repo.pending_status(conn)
    lag = 0.0
    if pending.oldest_recorded_at is not None:
        lag = max(0.0, (rt.clock.now() - pending.oldest_recorded_at).total_seconds())
    return LogStatus(
        tree_size=state.size,
        checkpoint_size=latest.size if latest else None,
        checkpoint_created_at=latest.created_at if latest else None,
        pending_events=pending.pending,
        lag_s=round(lag, 3),
    )


def _encode_cursor(rt: Runtime, scope: str, seq: int) -> str:
    return encode_cursor(rt.keys, scope, seq)


def _decode_cursor(rt: Runtime, scope: str, cursor: str | None) -> int | None:
    # Authenticated like every other cursor: a forged or moved one is 400, never a 500.
    return None if cursor is None else decode_cursor(rt.keys, scope, cursor)


_EARLIEST = dt.datetime(1900, 1, 1, tzinfo=dt.UTC)
_LATEST = dt.datetime(9000, 1, 1, tzinfo=dt.UTC)


def check_window(since: dt.datetime | None, until: dt.datetime | None) -> None:
    """Refuse naive times, times outside 1900-9000 and an empty window."""
    for moment in (since, until):
        if moment is not None and (moment.utcoffset() is None or not _EARLIEST <= moment <= _LATEST):
            raise InvalidWindowError
    if since is not None and until is not None and since >= until:
        raise InvalidWindowError


def _limit(limit: int) -> int:
    return max(1, min(limit, MAX_PAGE))


async def search_events(
    rt: Runtime,
    conn: asyncpg.Connection,
    principal: Principal,
    filters: EventFilters,
    ctx: AuditContext,
    *,
    cursor: str | None,
    limit: int,
) -> EventPage:
    """A page of the organization's events matching ``filters``, newest first (audited)."""
    require_officer(principal)
    check_window(filters.since, filters.until)
    scope = f"audit-events:{principal.org_id}"
    before = _decode_cursor(rt, scope, cursor)
    page = _limit(limit)
    async with tenant_transaction(conn, principal.org_id):
        await audit_read(conn, rt, principal, ctx, "audit.search", subject=filters.subject)
        rows = await events.search(conn, filters, before_seq=before, limit=page + 1)
    items = [EventView(index=row.index, event=decode_leaf(row.leaf)) for row in rows[:page]]
    more = len(rows) > page
    return EventPage(items=items, next_cursor=_encode_cursor(rt, scope, rows[page - 1].seq) if more else None)


async def disclosures(
    rt: Runtime,
    conn: asyncpg.Connection,
    principal: Principal,
    ctx: AuditContext,
    *,
    cursor: str | None,
    limit: int,
) -> DisclosurePage:
    """The client's accounting of disclosures: who else accessed their records, when, why."""
    require(
        principal.actor,
        PolicyAction.READ_OWN_DISCLOSURES,
        Resource(org_id=principal.org_id, owner_id=principal.account_id),
    )
    scope = f"disclosures:{principal.account_id}"
    before = _decode_cursor(rt, scope, cursor)
    page = _limit(limit)
    async with tenant_transaction(conn, principal.org_id):
        await audit_read(conn, rt, principal, ctx, "audit.disclosures", subject=principal.account_id)
        rows = await events.disclosures(
            conn, principal.org_id, principal.account_id, before_seq=before, limit=page + 1
        )
    more = len(rows) > page
    return DisclosurePage(
        items=[item for _, item in rows[:page]],
        next_cursor=_encode_cursor(rt, scope, rows[page - 1][0]) if more else None,
    )

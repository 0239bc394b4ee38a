"""Erasure requests (GDPR Art. 17): filed by the client, decided by a compliance officer.

The client gets a receipt token when filing (stored only as SHA-256): once the erasure
has run, the account cannot log in any more, and the token is how the person sees the
outcome and the list of what was kept and why. Carrying out an approved request is
:mod:`backend.erasure.executor`'s work.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import uuid

import asyncpg

from backend.audit_trail import Action, AuditContext, AuditEvent, record
from backend.auth.principal import Principal
from backend.db.tenancy import tenant_transaction
from backend.erasure import repository as repo
from backend.erasure.schemas import (
    ErasureDecision,
    ErasureFiled,
    ErasureList,
    ErasureRequestBody,
    ErasureView,
    KeptItem,
)
from backend.errors import ConflictError, NotFoundError
from backend.http.cursors import encode_cursor, page_before
from backend.policy import Action as PolicyAction
from backend.policy import Resource, require
from backend.runtime import Runtime

__all__ = ["RECEIPT_PREFIX", "decide", "file_request", "list_own", "list_requests", "outcome"]

RECEIPT_PREFIX = "cfe_"
_RECEIPT_RE = re.compile(r"^cfe_[A-Za-z0-9_-]{43}$")
MAX_PAGE = 100


def _receipt() -> tuple[str, bytes]:
    token = RECEIPT_PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode("ascii").rstrip("=")
    return token, hashlib.sha256(token.encode("ascii")).digest()


def _view(row: repo.RequestRow) -> ErasureView:
    return ErasureView(
        id=row.id,
        client_id=row.client_id,
        status=row.status,  # type: ignore[arg-type]
        filed_at=row.filed_at,
        reason=row.reason,
        decided_at=row.decided_at,
        decided_by=row.decided_by,
        decision_reason=row.decision_reason,
        started_at=row.started_at,
        completed_at=row.completed_at,
        deleted=row.deleted,
        kept=[KeptItem(category=k["category"], count=k["count"], basis=k["basis"]) for k in row.kept],
    )


def _event(
    principal: Principal | None,
    event_type: str,
    action: Action,
    row: repo.RequestRow,
    reason: str | None = None,
) -> AuditEvent:
    return AuditEvent(
        action=action,
        event_type=event_type,
        outcome_reason=reason,
        org_id=row.org_id,
        agent_account_id=principal.account_id if principal else None,
        agent_role=principal.role if principal else None,  # type: ignore[arg-type]
        entity_type="erasure_request",
        entity_id=row.id,
        subject_id=row.client_id,
    )


async def file_request(
    rt: Runtime, conn: asyncpg.Connection, principal: Principal, body: ErasureRequestBody, ctx: AuditContext
) -> ErasureFiled:
    """A client asks for erasure; one open request at a time (409 otherwise)."""
    require(
        principal.actor,
        PolicyAction.REQUEST_ERASURE,
        Resource(org_id=principal.org_id, owner_id=principal.account_id),
    )
    token, digest = _receipt()
    now = rt.clock.now()
    async with tenant_transaction(conn, principal.org_id):
        row = await repo.insert_request(
            conn,
            request_id=uuid.uuid4(),
            org_id=principal.org_id,
            client_id=principal.account_id,
            reason=body.reason,
            receipt_digest=digest,
            now=now,
        )
        if row is None:
            raise ConflictError("An erasure request is already open for this account.")
        await record(conn, _event(principal, "erasure.request", Action.CREATE, row), ctx, now)
    return ErasureFiled(request=_view(row), receipt_token=token)


async def list_own(
    rt: Runtime, conn: asyncpg.Connection, principal: Principal, ctx: AuditContext
) -> ErasureList:
    """The caller's own requests and their outcomes, newest first."""
    require(
        principal.actor,
        PolicyAction.READ_OWN_ERASURE_REQUESTS,
        Resource(org_id=principal.org_id, owner_id=principal.account_id),
    )
    now = rt.clock.now()
    async with tenant_transaction(conn, principal.org_id):
        rows = await repo.list_requests(
            conn,
            org_id=principal.org_id,
            client_id=principal.account_id,
            status=None,
            before_seq=None,
            limit=MAX_PAGE,
        )
        await record(
            conn,
            AuditEvent(
                action=Action.READ,
                event_type="erasure.list",
                org_id=principal.org_id,
                agent_account_id=principal.account_id,
                agent_role=principal.role,  # type: ignore[arg-type]
                subject_id=principal.account_id,
            ),
            ctx,
            now,
        )
    return ErasureList(items=[_view(r) for r in rows], next_cursor=None)


async def list_requests(
    rt: Runtime,
    conn: asyncpg.Connection,
    principal: Principal,
    ctx: AuditContext,
    *,
    status: str | None,
    cursor: str | None,
    limit: int,
) -> ErasureList:
    """A compliance officer's listing of the organization's requests, newest first."""
    require(principal.actor, PolicyAction.LIST_ERASURE_REQUESTS, Resource(org_id=principal.org_id))
    scope = f"erasure-requests:{principal.org_id}:{status or ''}"
    before = page_before(rt.keys, scope, cursor, limit, MAX_PAGE)
    now = rt.clock.now()
    async with tenant_transaction(conn, principal.org_id):
        rows = await repo.list_requests(
            conn, org_id=principal.org_id, client_id=None, status=status, before_seq=before, limit=limit + 1
        )
        await record(
            conn,
            AuditEvent(
                action=Action.READ,
                event_type="erasure.list",
                org_id=principal.org_id,
                agent_account_id=principal.account_id,
                agent_role=principal.role,  # type: ignore[arg-type]
            ),
            ctx,
            now,
        )
    page = rows[:limit]
    return ErasureList(
        items=[_view(r) for r in page],
        next_cursor=encode_cursor(rt.keys, scope, page[-1].seq) if len(rows) > limit else None,
    )


async def decide(
    rt: Runtime,
    conn: asyncpg.Connection,
    principal: Principal,
    request_id: uuid.UUID,
    body: ErasureDecision,
    ctx: AuditContext,
) -> ErasureView:
    """Approve or reject a pending request, with a reason (never one's own)."""
    require(principal.actor, PolicyAction.LIST_ERASURE_REQUESTS, Resource(org_id=principal.org_id))
    now = rt.clock.now()
    async with tenant_transaction(conn, principal.org_id):
        row = await repo.lock_request(conn, request_id, skip_locked=False)
        if row is None:
            raise NotFoundError
        require(
            principal.actor, PolicyAction.DECIDE_ERASURE, Resource(org_id=row.org_id, owner_id=row.client_id)
        )
        if row.status != "pending":
            raise ConflictError("The request was already decided.")
        status = "approved" if body.decision == "approve" else "rejected"
        decided = await repo.set_decision(
            conn, request_id, status=status, by=principal.account_id, reason=body.reason, now=now
        )
        await record(conn, _event(principal, "erasure.decide", Action.UPDATE, decided, status), ctx, now)
    return _view(decided)


async def outcome(
    rt: Runtime, conn: asyncpg.Connection, request_id: uuid.UUID, token: str | None, ctx: AuditContext
) -> ErasureView:
    """A request's outcome for whoever holds its receipt token (404 for anything else)."""
    if token is None or not _RECEIPT_RE.match(token):
        raise NotFoundError
    digest = hashlib.sha256(token.encode("ascii")).digest()
    now = rt.clock.now()
    async with conn.transaction():
        row = await repo.get_request_by_receipt(conn, request_id, digest)
        if row is None or not hmac.compare_digest(row.receipt_digest, digest):
            raise NotFoundError
        await record(conn, _event(None, "erasure.outcome", Action.READ, row), ctx, now)
    return _view(row)

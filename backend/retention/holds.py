"""Legal holds: compliance officers place and release them, with a reason; everything audited.

A hold stops every deletion it covers (retention and erasure alike): the sweeps leave
held rows out, and triggers refuse any statement that would remove one (migration 0010).
"""

from __future__ import annotations

import uuid

import asyncpg

from backend.audit_trail import Action, AuditContext, AuditEvent, record
from backend.auth.principal import Principal
from backend.db.tenancy import tenant_transaction
from backend.errors import ConflictError, InvalidInputError, NotFoundError
from backend.http.cursors import encode_cursor, page_before
from backend.policy import Action as PolicyAction
from backend.policy import Resource, require
from backend.retention import repository as repo
from backend.retention.schemas import HoldCreate, HoldList, HoldRelease, HoldView
from backend.runtime import Runtime

__all__ = ["list_holds", "place_hold", "release_hold"]

MAX_PAGE = 100


def _view(row: repo.HoldRow) -> HoldView:
    return HoldView(
        id=row.id,
        scope=row.scope,  # type: ignore[arg-type]
        client_id=row.client_id,
        conversation_id=row.conversation_id,
        reason=row.reason,
        placed_by=row.placed_by,
        placed_at=row.placed_at,
        active=row.released_at is None,
        released_by=row.released_by,
        released_at=row.released_at,
        release_reason=row.release_reason,
    )


def _event(
    principal: Principal, event_type: str, action: Action, row: repo.HoldRow, subject: uuid.UUID | None
) -> AuditEvent:
    return AuditEvent(
        action=action,
        event_type=event_type,
        org_id=row.org_id,
        agent_account_id=principal.account_id,
        agent_role=principal.role,  # type: ignore[arg-type]
        entity_type="legal_hold",
        entity_id=row.id,
        subject_id=subject,
    )


async def place_hold(
    rt: Runtime, conn: asyncpg.Connection, principal: Principal, body: HoldCreate, ctx: AuditContext
) -> HoldView:
    """Hold everything about a client, or one conversation."""
    require(principal.actor, PolicyAction.PLACE_LEGAL_HOLD, Resource(org_id=principal.org_id))
    if (body.scope == "client") != (body.client_id is not None) or (body.scope == "conversation") != (
        body.conversation_id is not None
    ):
        raise InvalidInputError(
            "A client hold names client_id only; a conversation hold conversation_id only."
        )
    now = rt.clock.now()
    async with tenant_transaction(conn, principal.org_id):
        if body.client_id is not None:
            found = await repo.client_org(conn, body.client_id)
            if found is None:
                raise NotFoundError
            require(
                principal.actor,
                PolicyAction.PLACE_LEGAL_HOLD,
                Resource(org_id=found[0], target_role=found[1], client_id=body.client_id),  # type: ignore[arg-type]
            )
            subject: uuid.UUID | None = body.client_id
        else:
            conversation = await repo.conversation_org(conn, body.conversation_id)  # type: ignore[arg-type]
            if conversation is None:
                raise NotFoundError
            require(principal.actor, PolicyAction.PLACE_LEGAL_HOLD, Resource(org_id=conversation[0]))
            subject = conversation[1]
        row = await repo.insert_hold(
            conn,
            hold_id=uuid.uuid4(),
            org_id=principal.org_id,
            scope=body.scope,
            client_id=body.client_id,
            conversation_id=body.conversation_id,
            reason=body.reason,
            by=principal.account_id,
            now=now,
        )
        await record(conn, _event(principal, "legal_hold.place", Action.CREATE, row, subject), ctx, now)
    return _view(row)


async def release_hold(
    rt: Runtime,
    conn: asyncpg.Connection,
    principal: Principal,
    hold_id: uuid.UUID,
    body: HoldRelease,
    ctx: AuditContext,
) -> HoldView:
    """Release a hold (once); deletions it stopped resume with the next retention run."""
    require(principal.actor, PolicyAction.RELEASE_LEGAL_HOLD, Resource(org_id=principal.org_id))
    now = rt.clock.now()
    async with tenant_transaction(conn, principal.org_id):
        row = await repo.get_hold(conn, hold_id, lock=True)
        if row is None:
            raise NotFoundError
        require(principal.actor, PolicyAction.RELEASE_LEGAL_HOLD, Resource(org_id=row.org_id))
        if row.released_at is not None:
            raise ConflictError("The hold was already released.")
        released = await repo.release_hold(
            conn, hold_id, by=principal.account_id, reason=body.reason, now=now
        )
        subject = row.client_id
        if subject is None and row.conversation_id is not None:
            found = await repo.conversation_org(conn, row.conversation_id)
            subject = found[1] if found else None
        await record(
            conn, _event(principal, "legal_hold.release", Action.UPDATE, released, subject), ctx, now
        )
    return _view(released)


async def list_holds(
    rt: Runtime,
    conn: asyncpg.Connection,
    principal: Principal,
    ctx: AuditContext,
    *,
    active: bool | None,
    cursor: str | None,
    limit: int,
) -> HoldList:
    """The organization's holds, newest first (``active`` filters on released or not)."""
    require(principal.actor, PolicyAction.LIST_LEGAL_HOLDS, Resource(org_id=principal.org_id))
    scope = f"legal-holds:{principal.org_id}"
    before = page_before(rt.keys, scope, cursor, limit, MAX_PAGE)
    now = rt.clock.now()
    async with tenant_transaction(conn, principal.org_id):
        rows = await repo.list_holds(
            conn, principal.org_id, active=active, before_seq=before, limit=limit + 1
        )
        await record(
            conn,
            AuditEvent(
                action=Action.READ,
                event_type="legal_hold.list",
                org_id=principal.org_id,
                agent_account_id=principal.account_id,
                agent_role=principal.role,  # type: ignore[arg-type]
            ),
            ctx,
            now,
        )
    page = rows[:limit]
    return HoldList(
        items=[_view(r) for r in page],
        next_cursor=encode_cursor(rt.keys, scope, page[-1].seq) if len(rows) > limit else None,
    )

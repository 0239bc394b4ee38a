"""Access to one client's record: every read goes through the policy and is audited.

Outside the client's circle (see :mod:`backend.policy.decide`) the answer is the 404 of
a client that does not exist; the refused attempt is audited all the same
(:mod:`backend.audit_trail.refusals`).
"""

from __future__ import annotations

import uuid

import asyncpg
import msgspec

from backend.accounts import repository as accounts_repo
from backend.audit_trail import Action, AuditContext, AuditEvent, record
from backend.audit_trail.refusals import audit_refusals
from backend.auth.principal import Principal
from backend.consent import repository as consent_repo
from backend.consent.service import load_client_facts
from backend.db.tenancy import tenant_transaction
from backend.errors import NotFoundError
from backend.policy import Action as PolicyAction
from backend.policy import Resource
from backend.runtime import Runtime

__all__ = ["ClientRecord", "read_client"]


class ClientRecord(msgspec.Struct, frozen=True, kw_only=True):
    """What a clinician may see about a client, and on what basis."""

    id: uuid.UUID
    display_name: str
    basis: str
    consent_id: uuid.UUID | None
    emergency_access_id: uuid.UUID | None


async def read_client(
    rt: Runtime, conn: asyncpg.Connection, principal: Principal, client_id: uuid.UUID, ctx: AuditContext
) -> ClientRecord:
    """Read a client's record (``records.read``), naming the consent or break-glass that allowed it."""
    now = rt.clock.now()
    async with audit_refusals(conn, ctx, now) as refusals, tenant_transaction(conn, principal.org_id):
        target = await consent_repo.account_role(conn, client_id)
        if target is None or target[1] != "client" or target[0] != principal.org_id:
            raise NotFoundError
        facts = await load_client_facts(conn, principal.account_id, client_id, now)
        event = AuditEvent(
            action=Action.READ,
            event_type="client.read",
            org_id=target[0],
            agent_account_id=principal.account_id,
            agent_role=principal.role,  # type: ignore[arg-type]
            entity_type="client",
            entity_id=client_id,
            subject_id=client_id,
            purpose_of_use="TREAT",
        )
        decision = refusals.require(
            principal.actor,
            PolicyAction.READ_CLIENT_RECORD,
            Resource(org_id=target[0], client_id=client_id),
            facts,
            attempt=event,
        )
        name = await accounts_repo.display_name(conn, client_id)
        await record(
            conn,
            msgspec.structs.replace(
                event,
                purpose_of_use="ETREAT" if decision.emergency_access_id else "TREAT",
                consent_id=decision.consent_id,
            ),
            ctx,
            now,
        )
    return ClientRecord(
        id=client_id,
        display_name=str(name),
        basis=decision.reason,
        consent_id=decision.consent_id,
        emergency_access_id=decision.emergency_access_id,
    )

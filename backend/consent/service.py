"""Consent rules: client-signed grants and revocations, receipts, expiry, break-glass.

Consent is a sequence of events per client (grant, revoke, expire), append-only;
``consents`` is its projection, written in the same transaction as each event. The
client signs every grant and revocation with its Ed25519 key (crypto/SPEC.md), the
server verifies it against the client's current published key bundle, stores the
statement as it was signed, and returns a receipt it signs itself. Anyone holding the
client's public key can check a consent without trusting the server.

A client has at most one active consent per (grantee, purpose): another grant is a 409
until the first is revoked or has expired (index ``consents_one_active``, migration 0016).
Every decision locks the consents it rests on (``repository.CONSENT_FACTS_SQL``), and a
revocation locks its consent first, so an access is audited before a revocation or not
allowed at all.
"""

from __future__ import annotations

import datetime as dt
import uuid

import asyncpg
import msgspec

from backend.audit_trail import Action, AuditContext, AuditEvent, record
from backend.audit_trail.refusals import audit_refusals
from backend.auth.principal import Principal
from backend.consent import repository as repo
from backend.consent.receipts import ConsentReceipt, receipt_signed_bytes, statement_digest
from backend.consent.schemas import (
    ConsentEventView,
    ConsentGranted,
    ConsentHistory,
    ConsentList,
    ConsentView,
    EmergencyAccessList,
    EmergencyAccessRequest,
    EmergencyAccessView,
)
from backend.db.tenancy import system_transaction, tenant_transaction
from backend.errors import ConflictError, InvalidInputError, NotFoundError
from backend.keys import repository as keys_repo
from backend.policy import Action as PolicyAction
from backend.policy import Facts, Resource, require
from backend.realtime.outbox import publish
from backend.runtime import Runtime
from crypto.public import (
    ConsentAction,
    ConsentStatement,
    decode_bundle,
    decode_consent,
    encode,
    verify_consent,
)

__all__ = [
    "approve_emergency",
    "close_emergency",
    "expire_due",
    "grant",
    "history",
    "list_consents",
    "list_emergencies",
    "load_client_facts",
    "open_emergency",
    "revoke",
]


_CLOCK_LEEWAY = dt.timedelta(seconds=60)
_ONE_ACTIVE = "An active consent to this grantee for this purpose exists; revoke it before granting another."


def _view(row: repo.ConsentRow, now: dt.datetime) -> ConsentView:
    status = row.status
    if status == "active" and row.valid_until is not None and row.valid_until <= now:
        status = "expired"  # in force no longer, whether or not the sweep has recorded it
    return ConsentView(
        consent_id=row.consent_id,
        client_id=row.client_id,
        grantee_type=row.grantee_type,  # type: ignore[arg-type]
        grantee_id=row.grantee_id,
        scopes=list(row.scopes),
        purpose=row.purpose,
        valid_from=row.valid_from,
        valid_until=row.valid_until,
        status=status,  # type: ignore[arg-type]
        granted_at=row.granted_at,
        ended_at=row.ended_at,
    )


def _event(
    principal: Principal | None,
    event_type: str,
    action: Action,
    *,
    org_id: uuid.UUID,
    client_id: uuid.UUID,
    consent_id: uuid.UUID,
) -> AuditEvent:
    return AuditEvent(
        action=action,
        event_type=event_type,
        org_id=org_id,
        agent_account_id=principal.account_id if principal else None,
        agent_role=principal.role if principal else None,  # type: ignore[arg-type]
        entity_type="consent",
        entity_id=consent_id,
        subject_id=client_id,
        consent_id=consent_id,
    )


def _receipt(rt: Runtime, *, consent_id: uuid.UUID, event_id: uuid.UUID, event: str, statement: bytes,
             now: dt.datetime) -> ConsentReceipt:  # fmt: skip
    digest = statement_digest(statement)
    message = receipt_signed_bytes(
        consent_id=consent_id, event_id=event_id, event=event, statement_sha256=digest, recorded_at=now
    )
    return ConsentReceipt(
        version=1,
        consent_id=consent_id,
        event_id=event_id,
        event=event,  # type: ignore[arg-type]
        statement_sha256=digest,
        recorded_at=now,
        server_key=rt.keys.receipt_public_key,
        signature=rt.keys.sign_receipt(message),
    )


async def _verify_statement(conn: asyncpg.Connection, statement: ConsentStatement) -> None:
    """The statement is signed by the client's current, unrevoked key."""
    bundles = await keys_repo.list_bundles(conn, statement.client.account_id)
    live = [b for b in bundles if b.revoked_at is None]
    if not live or live[-1].key_version != bundles[-1].key_version:
        raise InvalidInputError("Publish a current key bundle before signing consent.")
    if live[-1].key_version != statement.client.key_version:
        raise InvalidInputError("Consent must be signed with the current key.")
    verify_consent(statement, decode_bundle(live[-1].bundle))


async def grant(
    rt: Runtime,
    conn: asyncpg.Connection,
    principal: Principal,
    statement: ConsentStatement,
    ctx: AuditContext,
) -> tuple[ConsentGranted, bool]:
    """Record a client's signed grant; ``(result, created)`` (a repeat is idempotent)."""
    require(
        principal.actor,
        PolicyAction.GRANT_CONSENT,
        Resource(org_id=statement.organization_id, client_id=statement.client.account_id),
    )
    if statement.action is not ConsentAction.GRANT:
        raise InvalidInputError("This statement is not a grant.")
    now = rt.clock.now()
    if statement.issued_at > now + _CLOCK_LEEWAY:
        raise InvalidInputError("The statement is dated in the future.")
    if statement.valid_until is not None and statement.valid_until <= now:
        raise InvalidInputError("The consent would already have expired.")
    if statement.grantee_type == "organization" and statement.grantee_id != principal.org_id:
        raise InvalidInputError("An organization grant must name this organization.")
    statement_json = encode(statement)
    async with tenant_transaction(conn, principal.org_id):
        if statement.grantee_type != "organization":
            grantee = await repo.account_role(conn, statement.grantee_id)
            if (
                grantee is None
                or grantee[0] != principal.org_id
                or grantee[1] != "clinician"
                or grantee[2] != "active"
            ):
                raise InvalidInputError("The grantee is not an active clinician of this organization.")
        await _verify_statement(conn, statement)
        existing = await repo.get_consent(conn, statement.consent_id, lock=True)
        if existing is not None:
            events = await repo.list_events(conn, statement.consent_id)
            first = events[0]
            if existing.client_id != principal.account_id or first.statement != statement_json:
                raise ConflictError("This consent id is already used.")
            receipt = decode_receipt(first.receipt)
            return ConsentGranted(consent=_view(existing, now), receipt=receipt), False
        current = await repo.find_active(
            conn,
            client_id=principal.account_id,
            grantee_type=statement.grantee_type,
            grantee_id=statement.grantee_id,
            purpose=statement.purpose,
        )
        if current is not None:
            if current.valid_until is None or current.valid_until > now:
                raise ConflictError(_ONE_ACTIVE)
            await _record_expiry(conn, current, ctx, now)  # over, but not swept yet
        event_id = uuid.uuid4()
        receipt = _receipt(
            rt,
            consent_id=statement.consent_id,
            event_id=event_id,
            event="grant",
            statement=statement_json,
            now=now,
        )
        await repo.insert_event(
            conn,
            event_id=event_id,
            consent_id=statement.consent_id,
            org_id=principal.org_id,
            client_id=principal.account_id,
            kind="grant",
            statement=statement_json,
            receipt=encode_receipt(receipt),
            now=now,
        )
        row = repo.ConsentRow(
            consent_id=statement.consent_id,
            org_id=principal.org_id,
            client_id=principal.account_id,
            client_key_version=statement.client.key_version,
            grantee_type=statement.grantee_type,
            grantee_id=statement.grantee_id,
            scopes=sorted(statement.scopes),
            purpose=statement.purpose,
            # A back-dated grant cannot reach back before the server recorded it.
            valid_from=max(statement.valid_from, now),
            valid_until=statement.valid_until,
            status="active",
            granted_at=now,
            ended_at=None,
        )
        try:
            await repo.insert_consent(conn, row)
        except asyncpg.UniqueViolationError as exc:  # a concurrent grant committed first
            if exc.constraint_name == "consents_one_active":
                raise ConflictError(_ONE_ACTIVE) from exc
            raise ConflictError("This consent is being recorded; retry.") from exc
        await record(
            conn,
            _event(principal, "consent.grant", Action.CREATE, org_id=row.org_id, client_id=row.client_id,
                   consent_id=row.consent_id),
            ctx,
            now,
        )  # fmt: skip
    return ConsentGranted(consent=_view(row, now), receipt=receipt), True


async def revoke(
    rt: Runtime,
    conn: asyncpg.Connection,
    principal: Principal,
    consent_id: uuid.UUID,
    *,
    statement: ConsentStatement,
    ctx: AuditContext,
) -> ConsentGranted:
    """Record a client's signed revocation; it takes effect on the very next request."""
    now = rt.clock.now()
    async with audit_refusals(conn, ctx, now) as refusals, tenant_transaction(conn, principal.org_id):
        row = await repo.get_consent(conn, consent_id, lock=True)
        if row is None:
            raise NotFoundError("No such consent.")
        refusals.require(
            principal.actor,
            PolicyAction.REVOKE_CONSENT,
            Resource(org_id=row.org_id, client_id=row.client_id),
            attempt=_event(principal, "consent.revoke", Action.UPDATE, org_id=row.org_id,
                           client_id=row.client_id, consent_id=consent_id),
        )  # fmt: skip
        if (
            statement.action is not ConsentAction.REVOKE
            or statement.consent_id != consent_id
            or statement.client.account_id != row.client_id
            or statement.organization_id != row.org_id
            or statement.grantee_type != row.grantee_type
            or statement.grantee_id != row.grantee_id
            or sorted(statement.scopes) != sorted(row.scopes)
        ):
            raise InvalidInputError("The revocation does not match the consent it names.")
        if row.status != "active":
            raise ConflictError("This consent has already ended.")
        await _verify_statement(conn, statement)
        statement_json = encode(statement)
        event_id = uuid.uuid4()
        receipt = _receipt(
            rt, consent_id=consent_id, event_id=event_id, event="revoke", statement=statement_json, now=now
        )
        await repo.insert_event(
            conn,
            event_id=event_id,
            consent_id=consent_id,
            org_id=row.org_id,
            client_id=row.client_id,
            kind="revoke",
            statement=statement_json,
            receipt=encode_receipt(receipt),
            now=now,
        )
        await repo.end_consent(conn, consent_id, "revoked", now)
        await record(
            conn,
            _event(principal, "consent.revoke", Action.UPDATE, org_id=row.org_id, client_id=row.client_id,
                   consent_id=consent_id),
            ctx,
            now,
        )  # fmt: skip
        ended = await repo.get_consent(conn, consent_id)
    if ended is None:  # pragma: no cover -- the row was locked above in this transaction
        raise NotFoundError
    return ConsentGranted(consent=_view(ended, now), receipt=receipt)


async def list_consents(
    rt: Runtime, conn: asyncpg.Connection, principal: Principal, ctx: AuditContext
) -> ConsentList:
    """Consents the caller may see: a client theirs, a clinician those naming them, compliance all."""
    require(principal.actor, PolicyAction.LIST_CONSENTS, Resource(org_id=principal.org_id))
    now = rt.clock.now()
    async with tenant_transaction(conn, principal.org_id):
        match principal.role:
            case "client":
                rows = await repo.list_consents(conn, org_id=principal.org_id, client_id=principal.account_id)
            case "clinician":
                rows = await repo.list_for_clinician(
                    conn, org_id=principal.org_id, clinician_id=principal.account_id
                )
            case "compliance_officer":
                rows = await repo.list_consents(conn, org_id=principal.org_id)
            case _:
                rows = []
        await record(
            conn,
            AuditEvent(
                action=Action.READ,
                event_type="consent.list",
                org_id=principal.org_id,
                agent_account_id=principal.account_id,
                agent_role=principal.role,  # type: ignore[arg-type]
                entity_type="consent",
                subject_id=principal.account_id if principal.role == "client" else None,
            ),
            ctx,
            now,
        )
    return ConsentList(items=[_view(row, now) for row in rows])


async def history(
    rt: Runtime, conn: asyncpg.Connection, principal: Principal, consent_id: uuid.UUID, ctx: AuditContext
) -> ConsentHistory:
    """A consent's events with the client's statements and the server's receipts."""
    now = rt.clock.now()
    async with audit_refusals(conn, ctx, now) as refusals, tenant_transaction(conn, principal.org_id):
        row = await repo.get_consent(conn, consent_id)
        if row is None:
            raise NotFoundError("No such consent.")
        event = _event(principal, "consent.read", Action.READ, org_id=row.org_id, client_id=row.client_id,
                       consent_id=consent_id)  # fmt: skip
        refusals.require(
            principal.actor,
            PolicyAction.READ_CONSENT,
            Resource(org_id=row.org_id, client_id=row.client_id, grantee_id=row.grantee_id),
            attempt=event,
        )
        events = await repo.list_events(conn, consent_id)
        await record(conn, event, ctx, now)
    return ConsentHistory(
        consent=_view(row, now),
        events=[
            ConsentEventView(
                kind=e.kind,  # type: ignore[arg-type]
                recorded_at=e.recorded_at,
                statement=decode_consent(e.statement) if e.statement is not None else None,
                receipt=decode_receipt(e.receipt) if e.receipt is not None else None,
            )
            for e in events
        ],
    )


async def expire_due(rt: Runtime, conn: asyncpg.Connection, ctx: AuditContext, *, batch: int = 500) -> int:
    """Record expiry events for consents whose validity ended; returns how many."""
    now = rt.clock.now()
    async with system_transaction(conn):
        rows = await repo.due_for_expiry(conn, now, batch)
        for row in rows:
            await _record_expiry(conn, row, ctx, now)
    return len(rows)


async def _record_expiry(conn: asyncpg.Connection, row: repo.ConsentRow, ctx: AuditContext,
                         now: dt.datetime) -> None:  # fmt: skip
    """Record that a consent's validity ended (the row is locked by the caller)."""
    await repo.insert_event(
        conn,
        event_id=uuid.uuid4(),
        consent_id=row.consent_id,
        org_id=row.org_id,
        client_id=row.client_id,
        kind="expire",
        statement=None,
        receipt=None,
        now=now,
    )
    await repo.end_consent(conn, row.consent_id, "expired", now)
    await record(
        conn,
        _event(None, "consent.expire", Action.UPDATE, org_id=row.org_id, client_id=row.client_id,
               consent_id=row.consent_id),
        ctx,
        now,
    )  # fmt: skip


async def load_client_facts(
    conn: asyncpg.Connection, actor_id: uuid.UUID, client_id: uuid.UUID, now: dt.datetime
) -> Facts:
    """What the policy needs to decide on ``actor_id``'s access to one client's data."""
    consents, emergencies, treats = await repo.load_actor_facts(conn, client_id, actor_id)
    return Facts(now=now, treats=treats, consents=tuple(consents), emergencies=tuple(emergencies))


def _emergency_view(row: repo.EmergencyRow, now: dt.datetime) -> EmergencyAccessView:
    if row.closed_at is not None:
        status = "closed"
    elif row.expires_at <= now:
        status = "expired"
    elif row.approved_by is not None:
        status = "approved"
    else:
        status = "pending_approval"
    return EmergencyAccessView(
        id=row.id,
        client_id=row.client_id,
        clinician_id=row.clinician_id,
        reason=row.reason,
        opened_at=row.opened_at,
        expires_at=row.expires_at,
        status=status,  # type: ignore[arg-type]
        approved_by=row.approved_by,
    )


def _emergency_event(principal: Principal, event_type: str, row: repo.EmergencyRow) -> AuditEvent:
    return AuditEvent(
        action=Action.EXECUTE,
        event_type=event_type,
        org_id=row.org_id,
        agent_account_id=principal.account_id,
        agent_role=principal.role,  # type: ignore[arg-type]
        entity_type="emergency_access",
        entity_id=row.id,
        subject_id=row.client_id,
        purpose_of_use="ETREAT",
    )


async def open_emergency(
    rt: Runtime,
    conn: asyncpg.Connection,
    principal: Principal,
    req: EmergencyAccessRequest,
    ctx: AuditContext,
) -> EmergencyAccessView:
    """A clinician opens break-glass access to one client, for a stated reason and a short time."""
    now = rt.clock.now()
    row = repo.EmergencyRow(
        id=uuid.uuid4(),
        org_id=principal.org_id,
        client_id=req.client_id,
        clinician_id=principal.account_id,
        reason=req.reason,
        opened_at=now,
        expires_at=now + dt.timedelta(seconds=req.duration_s),
        approved_by=None,
        approved_at=None,
        closed_at=None,
    )
    async with tenant_transaction(conn, principal.org_id):
        target = await repo.account_role(conn, req.client_id)
        if target is None or target[1] != "client":
            raise NotFoundError
        require(
            principal.actor,
            PolicyAction.OPEN_EMERGENCY_ACCESS,
            Resource(org_id=target[0], client_id=req.client_id),
        )
        await repo.insert_emergency(conn, row)
        await record(conn, _emergency_event(principal, "emergency.open", row), ctx, now)
        # The client is told (ids only; the push stream and their disclosures carry it).
        await publish(conn, [req.client_id], "emergency.opened", {"emergency_access_id": str(row.id)}, now)
    return _emergency_view(row, now)


async def approve_emergency(
    rt: Runtime, conn: asyncpg.Connection, principal: Principal, access_id: uuid.UUID, ctx: AuditContext
) -> EmergencyAccessView:
    """A second person, holding the custodian key, approves a break-glass opening.

    A refused approval (the opening clinician approving their own, say) is audited.
    """
    now = rt.clock.now()
    async with audit_refusals(conn, ctx, now) as refusals, tenant_transaction(conn, principal.org_id):
        row = await repo.get_emergency(conn, access_id)
        if row is None:
            raise NotFoundError("No such emergency access.")
        refusals.require(
            principal.actor,
            PolicyAction.APPROVE_EMERGENCY_ACCESS,
            Resource(org_id=row.org_id, owner_id=row.clinician_id, client_id=row.client_id),
            attempt=_emergency_event(principal, "emergency.approve", row),
        )
        if row.closed_at is not None or row.expires_at <= now:
            raise ConflictError("This emergency access has ended.")
        if row.approved_by is None:
            await repo.approve_emergency(conn, access_id, principal.account_id, now)
            await record(conn, _emergency_event(principal, "emergency.approve", row), ctx, now)
        approved = await repo.get_emergency(conn, access_id)
    if approved is None:  # pragma: no cover -- the row was locked above in this transaction
        raise NotFoundError
    return _emergency_view(approved, now)


async def close_emergency(
    rt: Runtime, conn: asyncpg.Connection, principal: Principal, access_id: uuid.UUID, ctx: AuditContext
) -> EmergencyAccessView:
    """End a break-glass opening early (its clinician or a compliance officer; others: refused, audited)."""
    now = rt.clock.now()
    async with audit_refusals(conn, ctx, now) as refusals, tenant_transaction(conn, principal.org_id):
        row = await repo.get_emergency(conn, access_id)
        if row is None or row.org_id != principal.org_id:
            raise NotFoundError("No such emergency access.")
        refusals.require(
            principal.actor,
            PolicyAction.CLOSE_EMERGENCY_ACCESS,
            Resource(org_id=row.org_id, owner_id=row.clinician_id, client_id=row.client_id),
            attempt=_emergency_event(principal, "emergency.close", row),
        )
        await repo.close_emergency(conn, access_id, now)
        await record(conn, _emergency_event(principal, "emergency.close", row), ctx, now)
        closed = await repo.get_emergency(conn, access_id)
    if closed is None:  # pragma: no cover -- the row was locked above in this transaction
        raise NotFoundError
    return _emergency_view(closed, now)


async def list_emergencies(
    rt: Runtime, conn: asyncpg.Connection, principal: Principal, ctx: AuditContext
) -> EmergencyAccessList:
    """Compliance sees every break-glass opening of the organization; a clinician their own."""
    require(principal.actor, PolicyAction.LIST_EMERGENCY_ACCESS, Resource(org_id=principal.org_id))
    now = rt.clock.now()
    clinician = principal.account_id if principal.role == "clinician" else None
    async with tenant_transaction(conn, principal.org_id):
        rows = await repo.list_emergencies(conn, org_id=principal.org_id, clinician_id=clinician)
        await record(
            conn,
            AuditEvent(
                action=Action.READ,
                event_type="emergency.list",
                org_id=principal.org_id,
                agent_account_id=principal.account_id,
                agent_role=principal.role,  # type: ignore[arg-type]
                entity_type="emergency_access",
            ),
            ctx,
            now,
        )
    return EmergencyAccessList(items=[_emergency_view(r, now) for r in rows])


def encode_receipt(receipt: ConsentReceipt) -> bytes:
    """Receipts are stored as the JSON that was returned."""
    return msgspec.json.encode(receipt)


def decode_receipt(data: bytes | None) -> ConsentReceipt:
    """A stored receipt."""
    if data is None:  # pragma: no cover -- grants and revocations always carry one (table check)
        raise NotFoundError
    return msgspec.json.decode(data, type=ConsentReceipt)

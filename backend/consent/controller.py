"""HTTP routes: consents, receipts, history, break-glass."""

from __future__ import annotations

import uuid
from typing import Annotated

from litestar import Controller, Response, get, post
from litestar.params import JSONBody, PathParameter

from backend.consent import service
from backend.consent.schemas import (
    ConsentGranted,
    ConsentHistory,
    ConsentList,
    EmergencyAccessList,
    EmergencyAccessRequest,
    EmergencyAccessView,
    ReceiptKey,
)
from backend.http.deps import AuditCtxDep, DbDep, PrincipalDep, RuntimeDep
from crypto.public import ConsentStatement, limits

__all__ = ["ConsentController", "EmergencyAccessController"]

ConsentId = Annotated[uuid.UUID, PathParameter(description="The consent's id.")]
AccessId = Annotated[uuid.UUID, PathParameter(description="The emergency access's id.")]

_CONSENT_DOC = (
    "Consent is one legal basis among others. Revoking it stops what it allowed (messaging, "
    "reading or sharing records by its grantee) from the very next request; it never deletes "
    "records the law requires to keep (treatment records rest on GDPR Art. 9(2)(h) and HIPAA "
    "treatment)."
)


class ConsentController(Controller):
    """``/v1/consents``."""

    path = "/v1/consents"
    tags = ("consent",)

    @post(
        "/",
        operation_id="grantConsent",
        request_max_body_size=limits.MAX_CONSENT_JSON_BYTES,
        description="A client grants consent with a statement signed by their current key. " + _CONSENT_DOC,
    )
    async def grant(
        self,
        data: JSONBody[ConsentStatement],
        runtime: RuntimeDep,
        db: DbDep,
        principal: PrincipalDep,
        audit_ctx: AuditCtxDep,
    ) -> Response[ConsentGranted]:
        """Record a signed grant; returns the consent and the server's signed receipt."""
        granted, created = await service.grant(runtime, db, principal, data, audit_ctx)
        return Response(granted, status_code=201 if created else 200)

    @get("/", operation_id="listConsents")
    async def list_consents(
        self, runtime: RuntimeDep, db: DbDep, principal: PrincipalDep, audit_ctx: AuditCtxDep
    ) -> ConsentList:
        """A client's own consents; a clinician's those naming them; compliance all of the organization."""
        return await service.list_consents(runtime, db, principal, audit_ctx)

    @post(
        "/{consent_id:uuid}/revoke",
        operation_id="revokeConsent",
        status_code=200,
        request_max_body_size=limits.MAX_CONSENT_JSON_BYTES,
        description="Revoke with a statement signed like the grant. " + _CONSENT_DOC,
    )
    async def revoke(
        self,
        consent_id: ConsentId,
        data: JSONBody[ConsentStatement],
        runtime: RuntimeDep,
        db: DbDep,
        principal: PrincipalDep,
        audit_ctx: AuditCtxDep,
    ) -> ConsentGranted:
        """Record a signed revocation; effective from the next request."""
        return await service.revoke(runtime, db, principal, consent_id, statement=data, ctx=audit_ctx)

    @get("/{consent_id:uuid}/receipt", operation_id="getConsentReceipt")
    async def receipt(
        self,
        consent_id: ConsentId,
        runtime: RuntimeDep,
        db: DbDep,
        principal: PrincipalDep,
        audit_ctx: AuditCtxDep,
    ) -> ConsentHistory:
        """The consent with the signed statements and receipts of its grant (and revocation)."""
        full = await service.history(runtime, db, principal, consent_id, audit_ctx)
        return ConsentHistory(consent=full.consent, events=[e for e in full.events if e.receipt is not None])

    @get("/{consent_id:uuid}/history", operation_id="getConsentHistory")
    async def history(
        self,
        consent_id: ConsentId,
        runtime: RuntimeDep,
        db: DbDep,
        principal: PrincipalDep,
        audit_ctx: AuditCtxDep,
    ) -> ConsentHistory:
        """Every event of the consent, oldest first (grant, revoke, expire)."""
        return await service.history(runtime, db, principal, consent_id, audit_ctx)

    @get("/receipt-key", operation_id="getConsentReceiptKey", opt={"public": True})
    async def receipt_key(self, runtime: RuntimeDep) -> ReceiptKey:
        """The server's Ed25519 public key that verifies consent receipts."""
        return ReceiptKey(algorithm="Ed25519", public_key=runtime.keys.receipt_public_key)


class EmergencyAccessController(Controller):
    """``/v1/emergency-access``: break-glass, audited with purpose of use ETREAT."""

    path = "/v1/emergency-access"
    tags = ("consent",)

    @post(
        "/",
        operation_id="openEmergencyAccess",
        description=(
            "A clinician without consent opens emergency access to one client for a written "
            "reason and a bounded time (default 1 h). It is audited with purpose ETREAT, the "
            "client sees it in their disclosures, compliance in its listing. Content stays "
            "end-to-end encrypted: a second person holding the custodian key must approve."
        ),
    )
    async def open(
        self,
        data: JSONBody[EmergencyAccessRequest],
        runtime: RuntimeDep,
        db: DbDep,
        principal: PrincipalDep,
        audit_ctx: AuditCtxDep,
    ) -> EmergencyAccessView:
        """Open break-glass access."""
        return await service.open_emergency(runtime, db, principal, data, audit_ctx)

    @get("/", operation_id="listEmergencyAccess")
    async def list_openings(
        self, runtime: RuntimeDep, db: DbDep, principal: PrincipalDep, audit_ctx: AuditCtxDep
    ) -> EmergencyAccessList:
        """Compliance: every opening of the organization; a clinician: their own."""
        return await service.list_emergencies(runtime, db, principal, audit_ctx)

    @post("/{access_id:uuid}/approve", operation_id="approveEmergencyAccess", status_code=200)
    async def approve(
        self,
        access_id: AccessId,
        runtime: RuntimeDep,
        db: DbDep,
        principal: PrincipalDep,
        audit_ctx: AuditCtxDep,
    ) -> EmergencyAccessView:
        """Second-person approval (admin or compliance officer, never the requester)."""
        return await service.approve_emergency(runtime, db, principal, access_id, audit_ctx)

    @post("/{access_id:uuid}/close", operation_id="closeEmergencyAccess", status_code=200)
    async def close(
        self,
        access_id: AccessId,
        runtime: RuntimeDep,
        db: DbDep,
        principal: PrincipalDep,
        audit_ctx: AuditCtxDep,
    ) -> EmergencyAccessView:
        """End an opening early."""
        return await service.close_emergency(runtime, db, principal, access_id, audit_ctx)

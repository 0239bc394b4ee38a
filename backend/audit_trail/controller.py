"""HTTP routes of the audit trail: ``/v1/audit/...`` for compliance officers, ``/v1/me/disclosures``."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Annotated, Literal

from litestar import Controller, MediaType, get, post
from litestar.params import JSONBody, QueryParameter
from litestar.response import Stream
from litestar.status_codes import HTTP_201_CREATED

from backend.audit_trail import breach, export, service
from backend.audit_trail.schemas import (
    BreachScope,
    CheckpointView,
    ConsistencyProofView,
    CosignatureRequest,
    DisclosurePage,
    EventFilters,
    EventPage,
    InclusionProofView,
    LogKeyView,
    LogStatus,
)
from backend.auth.principal import Principal
from backend.errors import InvalidInputError
from backend.http.deps import AuditCtxDep, DbDep, PrincipalDep, RuntimeDep

__all__ = ["AuditController", "DisclosuresController"]

_TYPE_RE = re.compile(r"^[a-z][a-z0-9_.\-]{0,63}$")
Index = Annotated[int, QueryParameter(ge=0, le=(1 << 62))]
Since = Annotated[
    dt.datetime | None, QueryParameter(description="Recorded at or after (RFC 3339, with zone).")
]
Until = Annotated[dt.datetime | None, QueryParameter(description="Recorded before (RFC 3339, with zone).")]
Subject = Annotated[uuid.UUID | None, QueryParameter(description="The client concerned.")]
Actor = Annotated[uuid.UUID | None, QueryParameter(description="The account that acted.")]
Types = Annotated[
    list[str] | None,
    QueryParameter(name="type", description="Event type codes (repeat the parameter).", max_items=20),
]
Outcomes = Annotated[
    list[Literal[0, 4, 8, 12]] | None,
    QueryParameter(name="outcome", description="FHIR outcome codes (repeat the parameter).", max_items=4),
]
Cursor = Annotated[
    str | None, QueryParameter(description="next_cursor of the previous page.", max_length=200)
]
Limit = Annotated[int, QueryParameter(ge=1, description=f"Page size (at most {service.MAX_PAGE}).")]


def _filters(
    principal: Principal,
    since: dt.datetime | None,
    until: dt.datetime | None,
    subject: uuid.UUID | None,
    actor: uuid.UUID | None,
    types: list[str] | None,
    outcomes: list[Literal[0, 4, 8, 12]] | None,
) -> EventFilters:
    if types and not all(_TYPE_RE.match(value) for value in types):
        raise InvalidInputError("Event types are codes such as auth.login.")
    return EventFilters(
        org_id=principal.org_id,
        since=since,
        until=until,
        subject=subject,
        actor=actor,
        types=tuple(sorted(set(types))) if types else None,
        outcomes=tuple(sorted(set(outcomes))) if outcomes else None,
    )


class AuditController(Controller):
    """The verifiable audit log: key, checkpoints, proofs, search, export, breach scope."""

    path = "/v1/audit"
    tags = ("audit",)

    @get("/log-key", operation_id="getAuditLogKey", opt={"public": True})
    async def log_key(self, runtime: RuntimeDep) -> LogKeyView:
        """The log's public key (verifier key of its checkpoints); public."""
        return service.log_key(runtime)

    @get("/checkpoint", operation_id="getAuditCheckpoint")
    async def checkpoint(
        self,
        db: DbDep,
        principal: PrincipalDep,
        size: Annotated[
            int | None, QueryParameter(ge=0, le=(1 << 62), description="A stored checkpoint's size.")
        ] = None,
    ) -> CheckpointView:
        """The newest signed checkpoint (or the one of ``size``), with witness cosignatures."""
        return await service.get_checkpoint(db, principal, size)

    @get("/status", operation_id="getAuditLogStatus")
    async def status(self, runtime: RuntimeDep, db: DbDep, principal: PrincipalDep) -> LogStatus:
        """Tree size, newest checkpoint, and integration lag."""
        return await service.status(runtime, db, principal)

    @get("/proofs/inclusion", operation_id="getAuditInclusionProof")
    async def inclusion(
        self,
        runtime: RuntimeDep,
        db: DbDep,
        principal: PrincipalDep,
        audit_ctx: AuditCtxDep,
        index: Index,
        size: Annotated[
            int | None, QueryParameter(ge=1, le=(1 << 62), description="Tree size; default: newest.")
        ] = None,
    ) -> InclusionProofView:
        """Leaf ``index`` (an event of the caller's organization) and its inclusion proof (audited)."""
        return await service.get_inclusion_proof(runtime, db, principal, index, size, audit_ctx)

    @get("/proofs/consistency", operation_id="getAuditConsistencyProof")
    async def consistency(
        self,
        db: DbDep,
        principal: PrincipalDep,
        old: Annotated[int, QueryParameter(ge=0, le=(1 << 62))],
        new: Annotated[int, QueryParameter(ge=0, le=(1 << 62))],
    ) -> ConsistencyProofView:
        """Proof that the tree of size ``new`` extends the tree of size ``old``."""
        return await service.get_consistency_proof(db, principal, old, new)

    @post("/cosignatures", operation_id="addAuditCosignature", status_code=HTTP_201_CREATED)
    async def cosign(
        self,
        data: JSONBody[CosignatureRequest],
        runtime: RuntimeDep,
        db: DbDep,
        principal: PrincipalDep,
        audit_ctx: AuditCtxDep,
    ) -> CheckpointView:
        """Store a witness's cosignature of a checkpoint; answers the cosigned checkpoint."""
        return await service.add_cosignature(runtime, db, principal, data, audit_ctx)

    @get("/events", operation_id="listAuditEvents")
    async def events(
        self,
        runtime: RuntimeDep,
        db: DbDep,
        principal: PrincipalDep,
        audit_ctx: AuditCtxDep,
        since: Since = None,
        until: Until = None,
        subject: Subject = None,
        actor: Actor = None,
        types: Types = None,
        outcomes: Outcomes = None,
        cursor: Cursor = None,
        limit: Limit = 100,
    ) -> EventPage:
        """The organization's events, newest first, filtered; keyset-paginated. Audited."""
        filters = _filters(principal, since, until, subject, actor, types, outcomes)
        return await service.search_events(
            runtime, db, principal, filters, audit_ctx, cursor=cursor, limit=limit
        )

    @get("/export", operation_id="exportAuditTrail")
    async def export(
        self,
        runtime: RuntimeDep,
        db: DbDep,
        principal: PrincipalDep,
        audit_ctx: AuditCtxDep,
        fmt: Annotated[
            Literal["jsonl", "csv", "fhir"], QueryParameter(name="format", description="Export format.")
        ] = "jsonl",
        proofs: Annotated[
            bool, QueryParameter(description="Inclusion proofs in a complete JSON Lines export too.")
        ] = False,
        since: Since = None,
        until: Until = None,
        subject: Subject = None,
        actor: Actor = None,
        types: Types = None,
        outcomes: Outcomes = None,
    ) -> Stream:
        """Stream the trail (JSON Lines verifiable offline, CSV, FHIR R4 Bundle). Audited."""
        filters = _filters(principal, since, until, subject, actor, types, outcomes)
        plan = await export.prepare_export(
            runtime, db, principal, audit_ctx, filters=filters, fmt=fmt, proofs=proofs
        )
        extension = {"jsonl": "jsonl", "csv": "csv", "fhir": "json"}[fmt]
        return Stream(
            export.stream_export(runtime, plan),
            media_type=export.MEDIA_TYPES[fmt],
            headers={
                "Content-Disposition": f'attachment; filename="audit-{plan.size}.{extension}"',
                "X-Audit-Tree-Size": str(plan.size),
            },
        )

    @get("/breach-scope", operation_id="getBreachScope")
    async def breach_scope(
        self,
        runtime: RuntimeDep,
        db: DbDep,
        principal: PrincipalDep,
        audit_ctx: AuditCtxDep,
        account: Annotated[uuid.UUID | None, QueryParameter(description="The compromised account.")] = None,
        session: Annotated[uuid.UUID | None, QueryParameter(description="The compromised session.")] = None,
        since: Since = None,
        until: Until = None,
    ) -> BreachScope:
        """Clients and records an account (or a session's window) touched. Audited."""
        return await breach.breach_scope(
            runtime, db, principal, audit_ctx, account=account, session=session, since=since, until=until
        )

    @get("/breach-scope/summary", operation_id="getBreachScopeSummary", media_type=MediaType.TEXT)
    async def breach_summary(
        self,
        runtime: RuntimeDep,
        db: DbDep,
        principal: PrincipalDep,
        audit_ctx: AuditCtxDep,
        account: Annotated[uuid.UUID | None, QueryParameter(description="The compromised account.")] = None,
        session: Annotated[uuid.UUID | None, QueryParameter(description="The compromised session.")] = None,
        since: Since = None,
        until: Until = None,
    ) -> str:
        """The breach-scope report as a plain-text summary. Audited."""
        scope = await breach.breach_scope(
            runtime, db, principal, audit_ctx, account=account, session=session, since=since, until=until
        )
        return breach.render_text(scope)


class DisclosuresController(Controller):
    """A client's accounting of disclosures."""

    path = "/v1/me"
    tags = ("audit",)

    @get("/disclosures", operation_id="listMyDisclosures")
    async def disclosures(
        self,
        runtime: RuntimeDep,
        db: DbDep,
        principal: PrincipalDep,
        audit_ctx: AuditCtxDep,
        cursor: Cursor = None,
        limit: Limit = 100,
    ) -> DisclosurePage:
        """Who else accessed or changed the caller's records, when, and under which consent or purpose."""
        return await service.disclosures(runtime, db, principal, audit_ctx, cursor=cursor, limit=limit)

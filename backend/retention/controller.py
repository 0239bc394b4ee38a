"""HTTP routes of retention: policies, runs, legal holds."""

from __future__ import annotations

import uuid
from typing import Annotated

from litestar import Controller, get, post, put
from litestar.params import JSONBody, PathParameter, QueryParameter

from backend.http.deps import AuditCtxDep, DbDep, PrincipalDep, RuntimeDep
from backend.retention import holds, service
from backend.retention.schemas import (
    HoldCreate,
    HoldList,
    HoldRelease,
    HoldView,
    PolicyList,
    PolicyUpdate,
    PolicyView,
    RunList,
)

__all__ = ["LegalHoldsController", "RetentionController"]

CategoryParam = Annotated[
    str, PathParameter(description="Data category (messages, notes, audit_events, ...).", max_length=64)
]
HoldId = Annotated[uuid.UUID, PathParameter(description="The legal hold's id.")]
Cursor = Annotated[
    str | None, QueryParameter(description="next_cursor of the previous page.", max_length=200)
]
Limit = Annotated[int, QueryParameter(ge=1, le=service.MAX_PAGE, description="Page size.")]
Active = Annotated[bool | None, QueryParameter(description="Only active (true) or released (false) holds.")]


class RetentionController(Controller):
    """``/v1/retention``."""

    path = "/v1/retention"
    tags = ("retention",)

    @get("/policies", operation_id="listRetentionPolicies")
    async def list_policies(self, runtime: RuntimeDep, db: DbDep, principal: PrincipalDep) -> PolicyList:
        """How long each category of data is kept, from which event, and on which legal basis."""
        return await service.list_policies(runtime, db, principal)

    @put(
        "/policies/{category:str}",
        operation_id="setRetentionPolicy",
        description=(
            "Admins set a category's period (never under the deployment's floor, `floor_days`: "
            "422 otherwise) and its legal basis. Audited with the old and new values."
        ),
    )
    async def set_policy(
        self,
        category: CategoryParam,
        data: JSONBody[PolicyUpdate],
        runtime: RuntimeDep,
        db: DbDep,
        principal: PrincipalDep,
        audit_ctx: AuditCtxDep,
    ) -> PolicyView:
        """Change the organization's policy for one category."""
        return await service.set_policy(runtime, db, principal, category, data, audit_ctx)

    @get("/runs", operation_id="listRetentionRuns")
    async def list_runs(
        self,
        runtime: RuntimeDep,
        db: DbDep,
        principal: PrincipalDep,
        cursor: Cursor = None,
        limit: Limit = 20,
    ) -> RunList:
        """Retention runs, newest first, with this organization's counts per category."""
        return await service.list_runs(runtime, db, principal, cursor=cursor, limit=limit)


class LegalHoldsController(Controller):
    """``/v1/legal-holds``: compliance officers only."""

    path = "/v1/legal-holds"
    tags = ("retention",)

    @post(
        "/",
        operation_id="placeLegalHold",
        status_code=201,
        description=(
            "Hold everything about a client (`scope: client`: account, keys, notes, consent records, "
            "every conversation they are or were in, audit events naming them) or one conversation "
            "(`scope: conversation`). Nothing a hold covers is deleted, by retention or by erasure."
        ),
    )
    async def place(
        self,
        data: JSONBody[HoldCreate],
        runtime: RuntimeDep,
        db: DbDep,
        principal: PrincipalDep,
        audit_ctx: AuditCtxDep,
    ) -> HoldView:
        """Place a legal hold, with a reason."""
        return await holds.place_hold(runtime, db, principal, data, audit_ctx)

    @get("/", operation_id="listLegalHolds")
    async def list_holds(
        self,
        runtime: RuntimeDep,
        db: DbDep,
        principal: PrincipalDep,
        audit_ctx: AuditCtxDep,
        active: Active = None,
        cursor: Cursor = None,
        limit: Limit = 50,
    ) -> HoldList:
        """The organization's holds, newest first."""
        return await holds.list_holds(
            runtime, db, principal, audit_ctx, active=active, cursor=cursor, limit=limit
        )

    @post("/{hold_id:uuid}/release", operation_id="releaseLegalHold", status_code=200)
    async def release(
        self,
        hold_id: HoldId,
        data: JSONBody[HoldRelease],
        runtime: RuntimeDep,
        db: DbDep,
        principal: PrincipalDep,
        audit_ctx: AuditCtxDep,
    ) -> HoldView:
        """Release a hold, with a reason; what it stopped resumes with the next retention run."""
        return await holds.release_hold(runtime, db, principal, hold_id, data, audit_ctx)

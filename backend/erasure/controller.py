"""HTTP routes of erasure (GDPR Art. 17): filing, listing, deciding, and the outcome by receipt."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from litestar import Controller, Response, get, post
from litestar.background_tasks import BackgroundTask
from litestar.params import HeaderParameter, JSONBody, PathParameter, QueryParameter

from backend.erasure import executor, service
from backend.erasure.schemas import (
    ErasureDecision,
    ErasureFiled,
    ErasureList,
    ErasureRequestBody,
    ErasureView,
)
from backend.http.deps import AuditCtxDep, DbDep, PrincipalDep, RuntimeDep

__all__ = ["ErasureRequestsController", "MyErasureRequestsController"]

RequestId = Annotated[uuid.UUID, PathParameter(description="The erasure request's id.")]
Cursor = Annotated[
    str | None, QueryParameter(description="next_cursor of the previous page.", max_length=200)
]
Limit = Annotated[int, QueryParameter(ge=1, le=service.MAX_PAGE, description="Page size.")]
StatusFilter = Annotated[
    Literal["pending", "rejected", "approved", "held", "completed"] | None,
    QueryParameter(description="Only requests in this state."),
]
Receipt = Annotated[
    str | None,
    HeaderParameter(
        name="Erasure-Receipt", description="The receipt_token given when the request was filed."
    ),
]

_KEPT = (
    "What no legal obligation or hold keeps is deleted; clinical notes, consent records, the audit "
    "log, emergency-access records and anything under a legal hold are kept, and listed in `kept` "
    "with their legal basis (GDPR Art. 17(3)). The account is pseudonymized and can no longer log in."
)


class MyErasureRequestsController(Controller):
    """``/v1/me/erasure-requests``: a client's own requests."""

    path = "/v1/me/erasure-requests"
    tags = ("data subject rights",)

    @post("/", operation_id="fileErasureRequest", status_code=201, description=_KEPT)
    async def file(
        self,
        data: JSONBody[ErasureRequestBody],
        runtime: RuntimeDep,
        db: DbDep,
        principal: PrincipalDep,
        audit_ctx: AuditCtxDep,
    ) -> ErasureFiled:
        """Ask for erasure; keep the receipt token to see the outcome once the account is gone."""
        return await service.file_request(runtime, db, principal, data, audit_ctx)

    @get("/", operation_id="listMyErasureRequests")
    async def list_own(
        self, runtime: RuntimeDep, db: DbDep, principal: PrincipalDep, audit_ctx: AuditCtxDep
    ) -> ErasureList:
        """The caller's requests and their outcomes."""
        return await service.list_own(runtime, db, principal, audit_ctx)


class ErasureRequestsController(Controller):
    """``/v1/erasure-requests``: review by compliance officers, and the outcome by receipt."""

    path = "/v1/erasure-requests"
    tags = ("data subject rights",)

    @get("/", operation_id="listErasureRequests")
    async def list_requests(
        self,
        runtime: RuntimeDep,
        db: DbDep,
        principal: PrincipalDep,
        audit_ctx: AuditCtxDep,
        status: StatusFilter = None,
        cursor: Cursor = None,
        limit: Limit = 50,
    ) -> ErasureList:
        """The organization's requests, newest first (compliance officers)."""
        return await service.list_requests(
            runtime, db, principal, audit_ctx, status=status, cursor=cursor, limit=limit
        )

    @post(
        "/{request_id:uuid}/decision", operation_id="decideErasureRequest", status_code=200, description=_KEPT
    )
    async def decide(
        self,
        request_id: RequestId,
        data: JSONBody[ErasureDecision],
        runtime: RuntimeDep,
        db: DbDep,
        principal: PrincipalDep,
        audit_ctx: AuditCtxDep,
    ) -> Response[ErasureView]:
        """Approve (the erasure starts at once, in the background) or reject, with a reason."""
        view = await service.decide(runtime, db, principal, request_id, data, audit_ctx)
        background = (
            BackgroundTask(executor.execute_in_background, runtime, request_id, audit_ctx)
            if view.status == "approved"
            else None
        )
        return Response(view, background=background)

    @get("/{request_id:uuid}/outcome", operation_id="getErasureOutcome", opt={"public": True})
    async def outcome(
        self,
        request_id: RequestId,
        runtime: RuntimeDep,
        db: DbDep,
        audit_ctx: AuditCtxDep,
        receipt: Receipt = None,
    ) -> ErasureView:
        """A request's state and outcome, for the holder of its receipt token (404 otherwise)."""
        return await service.outcome(runtime, db, request_id, receipt, audit_ctx)

"""HTTP routes: the caller's account, staff accounts, invites."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, get, post
from litestar.params import JSONBody, PathParameter
from litestar.status_codes import HTTP_201_CREATED

from backend.accounts import service
from backend.accounts.schemas import (
    AccountView,
    CreateStaffRequest,
    InviteCreated,
    InviteRequest,
    RedeemInviteRequest,
)
from backend.http.deps import AuditCtxDep, DbDep, PrincipalDep, RuntimeDep

__all__ = ["AccountsController"]


class AccountsController(Controller):
    """``/v1/me``, ``/v1/accounts``, ``/v1/invites``."""

    path = "/v1"
    tags = ("accounts",)

    @get("/me", operation_id="getMe", opt={"mfa_enrollment": True})
    async def get_me(self, principal: PrincipalDep) -> AccountView:
        """The caller's own account."""
        return service.me(principal)

    @post("/accounts", operation_id="createStaffAccount", status_code=HTTP_201_CREATED)
    async def create_account(
        self,
        data: JSONBody[CreateStaffRequest],
        runtime: RuntimeDep,
        db: DbDep,
        principal: PrincipalDep,
        audit_ctx: AuditCtxDep,
    ) -> AccountView:
        """Admins create clinician, compliance officer and admin accounts (clients come by invite)."""
        return await service.create_staff(runtime, db, principal, data, audit_ctx)

    @post("/invites", operation_id="createInvite", status_code=HTTP_201_CREATED)
    async def create_invite(
        self,
        data: JSONBody[InviteRequest],
        runtime: RuntimeDep,
        db: DbDep,
        principal: PrincipalDep,
        audit_ctx: AuditCtxDep,
    ) -> InviteCreated:
        """Clinicians issue a single-use, expiring invite code for a new client."""
        return await service.create_invite(runtime, db, principal, data, audit_ctx)

    @post(
        "/invites/{code:str}/redeem",
        operation_id="redeemInvite",
        status_code=HTTP_201_CREATED,
        opt={"public": True},
    )
    async def redeem_invite(
        self,
        code: Annotated[str, PathParameter(description="The invite code.", max_length=64)],
        data: JSONBody[RedeemInviteRequest],
        runtime: RuntimeDep,
        db: DbDep,
        audit_ctx: AuditCtxDep,
    ) -> AccountView:
        """Create a client account with an invite code; then log in."""
        return await service.redeem_invite(runtime, db, code, data, audit_ctx)

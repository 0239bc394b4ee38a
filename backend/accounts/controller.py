"""HTTP routes: the caller's account, staff accounts and their access, invites."""

from __future__ import annotations

import uuid
from typing import Annotated

from litestar import Controller, get, post, put
from litestar.params import JSONBody, PathParameter
from litestar.status_codes import HTTP_201_CREATED

from backend.accounts import access, service
from backend.accounts.schemas import (
    AccountView,
    CreateStaffRequest,
    InviteCreated,
    InviteRequest,
    RedeemInviteRequest,
    RoleChangeRequest,
    StatusChangeRequest,
)
from backend.http.deps import AuditCtxDep, DbDep, PrincipalDep, RuntimeDep

__all__ = ["AccountsController"]

AccountId = Annotated[uuid.UUID, PathParameter(description="The account whose access changes.")]


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

    @put(
        "/accounts/{account_id:uuid}/role",
        operation_id="setAccountRole",
        description=(
            "An admin gives a staff member another staff role (clients keep theirs). Every session "
            "of the account ends at once (401 on its next request; the push stream closes) and the "
            "next login carries the new role. A clinician who takes another role leaves every "
            "conversation. 409 when it would leave the organization without an active admin."
        ),
    )
    async def set_role(
        self,
        account_id: AccountId,
        data: JSONBody[RoleChangeRequest],
        runtime: RuntimeDep,
        db: DbDep,
        principal: PrincipalDep,
        audit_ctx: AuditCtxDep,
    ) -> AccountView:
        """Change a staff member's role."""
        return await access.change_role(runtime, db, principal, account_id, data, audit_ctx)

    @put(
        "/accounts/{account_id:uuid}/status",
        operation_id="setAccountStatus",
        description=(
            "An admin disables an account or re-enables it. Disabling ends every session at once "
            "(401 on the next request; the push stream closes); a disabled account's login is "
            "refused exactly like a wrong password. 409 when it would leave the organization "
            "without an active admin, or for an erased account."
        ),
    )
    async def set_status(
        self,
        account_id: AccountId,
        data: JSONBody[StatusChangeRequest],
        runtime: RuntimeDep,
        db: DbDep,
        principal: PrincipalDep,
        audit_ctx: AuditCtxDep,
    ) -> AccountView:
        """Disable or re-enable an account."""
        return await access.change_status(runtime, db, principal, account_id, data, audit_ctx)

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

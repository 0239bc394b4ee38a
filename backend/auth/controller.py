"""HTTP routes of authentication. Thin: parse, call the service, shape the answer."""

from __future__ import annotations

from litestar import Controller, post
from litestar.params import JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_204_NO_CONTENT

from backend.auth import service
from backend.auth.schemas import (
    LoginRequest,
    LoginResponse,
    PasswordChangeRequest,
    RecoveryCodesResponse,
    TotpConfirmRequest,
    TotpEnrollmentResponse,
)
from backend.http.deps import AuditCtxDep, DbDep, PrincipalDep, RuntimeDep

__all__ = ["AuthController"]


class AuthController(Controller):
    """``/v1/auth``: sessions, passwords and second factors."""

    path = "/v1/auth"
    tags = ("auth",)

    @post(
        "/login",
        operation_id="login",
        status_code=HTTP_200_OK,
        opt={"public": True},
        summary="Log in",
        description=(
            "Exchange organization, email and password (plus a TOTP or recovery code when a "
            "second factor is enrolled) for a bearer token. Repeated failures are throttled "
            "per account and per client address (429 with Retry-After)."
        ),
    )
    async def login(
        self, data: JSONBody[LoginRequest], runtime: RuntimeDep, db: DbDep, audit_ctx: AuditCtxDep
    ) -> LoginResponse:
        """Open a session."""
        return await service.login(runtime, db, data, audit_ctx)

    @post(
        "/logout",
        operation_id="logout",
        status_code=HTTP_204_NO_CONTENT,
        opt={"mfa_enrollment": True},
    )
    async def logout(
        self, runtime: RuntimeDep, db: DbDep, principal: PrincipalDep, audit_ctx: AuditCtxDep
    ) -> None:
        """End this session."""
        await service.logout(runtime, db, principal, audit_ctx)

    @post(
        "/logout-all",
        operation_id="logoutAll",
        status_code=HTTP_204_NO_CONTENT,
        opt={"mfa_enrollment": True},
    )
    async def logout_all(
        self, runtime: RuntimeDep, db: DbDep, principal: PrincipalDep, audit_ctx: AuditCtxDep
    ) -> None:
        """End every session of this account."""
        await service.logout_all(runtime, db, principal, audit_ctx)

    @post("/password", operation_id="changePassword", status_code=HTTP_204_NO_CONTENT)
    async def change_password(
        self,
        data: JSONBody[PasswordChangeRequest],
        runtime: RuntimeDep,
        db: DbDep,
        principal: PrincipalDep,
        audit_ctx: AuditCtxDep,
    ) -> None:
        """Change the password; every other session of the account is revoked."""
        await service.change_password(runtime, db, principal, data, audit_ctx)

    @post(
        "/mfa/totp",
        operation_id="enrollTotp",
        status_code=HTTP_200_OK,
        opt={"mfa_enrollment": True},
    )
    async def enroll_totp(
        self, runtime: RuntimeDep, db: DbDep, principal: PrincipalDep, audit_ctx: AuditCtxDep
    ) -> TotpEnrollmentResponse:
        """Start TOTP enrolment: returns the seed once."""
        return await service.enroll_totp(runtime, db, principal, audit_ctx)

    @post(
        "/mfa/totp/confirm",
        operation_id="confirmTotp",
        status_code=HTTP_200_OK,
        opt={"mfa_enrollment": True},
    )
    async def confirm_totp(
        self,
        data: JSONBody[TotpConfirmRequest],
        runtime: RuntimeDep,
        db: DbDep,
        principal: PrincipalDep,
        audit_ctx: AuditCtxDep,
    ) -> RecoveryCodesResponse:
        """Confirm TOTP with a current code; returns single-use recovery codes once."""
        return await service.confirm_totp(runtime, db, principal, data.code, audit_ctx)

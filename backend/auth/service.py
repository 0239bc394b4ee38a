"""Authentication rules: login with throttling and MFA, sessions, password and TOTP changes.

Every outcome that matters is audited in the transaction that makes it durable:
a failed login commits its throttle counter and its audit event together, then
the caller gets its 401.
"""

from __future__ import annotations

import base64
import datetime as dt
import secrets
import uuid

import asyncpg

from backend.audit_trail import Action, AuditContext, AuditEvent, Outcome, record
from backend.auth import repository as repo
from backend.auth import totp
from backend.auth.passwords import check_password_policy
from backend.auth.principal import Principal
from backend.auth.schemas import (
    LoginRequest,
    LoginResponse,
    PasswordChangeRequest,
    RecoveryCodesResponse,
    TotpEnrollmentResponse,
)
from backend.auth.throttle import ThrottlePolicy, after_failure, retry_after
from backend.auth.tokens import new_token, token_digest
from backend.db.tenancy import tenant_transaction
from backend.errors import (
    AuthenticationError,
    ConflictError,
    MfaRequiredError,
    ThrottledError,
)
from backend.policy import Action as PolicyAction
from backend.policy import Resource, require
from backend.runtime import Runtime
from backend.server_keys import SealError

__all__ = [
    "Principal",
    "authenticate",
    "change_password",
    "confirm_totp",
    "enroll_totp",
    "login",
    "logout",
    "logout_all",
]

RECOVERY_CODE_COUNT = 10


def _policies(rt: Runtime) -> tuple[ThrottlePolicy, ThrottlePolicy]:
    s = rt.settings
    account = ThrottlePolicy(
        free_failures=s.throttle_account_free_failures,
        base_delay_s=s.throttle_base_delay_s,
        max_delay_s=s.throttle_max_delay_s,
        window_s=s.throttle_window_s,
    )
    address = ThrottlePolicy(
        free_failures=s.throttle_address_free_failures,
        base_delay_s=s.throttle_base_delay_s,
        max_delay_s=s.throttle_max_delay_s,
        window_s=s.throttle_window_s,
    )
    return account, address


def _login_event(
    outcome: Outcome,
    reason: str | None,
    account: repo.LoginAccount | None,
) -> AuditEvent:
    return AuditEvent(
        action=Action.EXECUTE,
        event_type="auth.login",
        outcome=outcome,
        outcome_reason=reason,
        org_id=account.org_id if account else None,
        agent_account_id=account.id if account else None,
        agent_role=account.role if account else None,  # type: ignore[arg-type]
        entity_type="account" if account else None,
        entity_id=account.id if account else None,
        subject_id=account.id if account and account.role == "client" else None,
    )


async def login(rt: Runtime, conn: asyncpg.Connection, req: LoginRequest, ctx: AuditContext) -> LoginResponse:
    """Check credentials and open a session; raise on any failure (after auditing it)."""
    # Shed a login storm before any database work: a login the hashing queue would refuse
    # costs nothing but this check (it is not a failed attempt of anyone's).
    rt.passwords.check_admission()
    now = rt.clock.now()
    account_key = rt.keys.digest("login-account", f"{req.organization}\0{req.email.casefold()}")
    address_key = rt.keys.digest("login-address", ctx.address or "unknown")
    account_policy, address_policy = _policies(rt)

    # Refuse locked keys before spending a hash on them.
    account_state = await repo.load_throttle(conn, "account", account_key, lock=False)
    address_state = await repo.load_throttle(conn, "address", address_key, lock=False)
    wait = max(retry_after(account_state, now) or 0, retry_after(address_state, now) or 0)
    account = await repo.find_login_account(conn, req.organization, req.email)
    if wait:
        async with conn.transaction():
            await record(conn, _login_event(Outcome.MINOR_FAILURE, "throttled", account), ctx, now)
        raise ThrottledError(retry_after=wait)

    stored = account.password_hash if account is not None and account.status == "active" else None
    matched, needs_rehash = await rt.passwords.verify(stored, req.password)
    failure_keys = (
        ("account", account_key, account_policy),
        ("address", address_key, address_policy),
    )
    if not matched or account is None:
        # A disabled account is refused exactly like a wrong password (same answer, same
        # hashing work), so a login does not tell a disabled account from an unknown one;
        # only the audit trail says which.
        reason = (
            "bad_credentials"
            if account is None or account.status == "active"
            else f"account_{account.status}"
        )
        await _record_failure(conn, keys=failure_keys, account=account, reason=reason, ctx=ctx, now=now)
        raise AuthenticationError("The organization, email or password is not correct.")

    if account.totp_secret_sealed is not None:
        if req.totp_code is None and req.recovery_code is None:
            async with conn.transaction():
                await record(conn, _login_event(Outcome.MINOR_FAILURE, "mfa_required", account), ctx, now)
            raise MfaRequiredError
        async with tenant_transaction(conn, account.org_id):
            second_factor_ok = await _second_factor_ok(rt, conn, account, req, now)
        if not second_factor_ok:
            await _record_failure(
                conn,
                keys=failure_keys,
                account=account,
                reason="bad_second_factor",
                ctx=ctx,
                now=now,
            )
            raise AuthenticationError("The one-time code is not valid.")

    upgraded_hash = await rt.passwords.hash(req.password) if needs_rehash else None
    async with tenant_transaction(conn, account.org_id):
        response = await _open_session(
            rt, conn, account, mfa_satisfied=account.totp_secret_sealed is not None, now=now
        )
        if upgraded_hash is not None:
            await repo.rehash_password(conn, account.id, upgraded_hash)
        await repo.clear_throttle(conn, "account", account_key)
        await record(conn, _login_event(Outcome.SUCCESS, None, account), ctx, now)
    return response


async def _record_failure(
    conn: asyncpg.Connection,
    *,
    keys: tuple[tuple[str, bytes, ThrottlePolicy], ...],
    account: repo.LoginAccount | None,
    reason: str,
    ctx: AuditContext,
    now: dt.datetime,
) -> None:
    """Count a failed attempt against every throttle key and audit it, in one commit."""
    async with conn.transaction():
        for scope, key, policy in keys:
            state = await repo.load_throttle(conn, scope, key, lock=True)
            await repo.save_throttle(conn, scope, key, after_failure(state, policy, now), now)
        await record(conn, _login_event(Outcome.MINOR_FAILURE, reason, account), ctx, now)


async def _second_factor_ok(
    rt: Runtime,
    conn: asyncpg.Connection,
    account: repo.LoginAccount,
    req: LoginRequest,
    now: dt.datetime,
) -> bool:
    if req.totp_code is not None:
        secret = _unseal_totp(rt, account.id, account.totp_secret_sealed)
        step = totp.verify_totp(secret, req.totp_code, now, account.totp_last_step)
        return step is not None and await repo.record_totp_step(conn, account.id, step)
    digest = rt.keys.digest("recovery-code", f"{account.id}\0{req.recovery_code}")
    return await repo.consume_recovery_code(conn, account.id, digest, now)


def _unseal_totp(rt: Runtime, account_id: uuid.UUID, sealed: bytes | None) -> bytes:
    if sealed is None:  # pragma: no cover -- callers check enrolment first
        raise AuthenticationError
    try:
        return rt.keys.unseal(sealed, f"totp:{account_id}")
    except SealError as exc:
        # The server key changed or the row was tampered with: fail closed.
        raise AuthenticationError("The second factor cannot be checked.") from exc


def mfa_required_for(rt: Runtime, role: str) -> bool:
    """Whether accounts of ``role`` must enrol a second factor."""
    return role in rt.settings.mfa_required_roles


async def _open_session(
    rt: Runtime,
    conn: asyncpg.Connection,
    account: repo.LoginAccount,
    *,
    mfa_satisfied: bool,
    now: dt.datetime,
) -> LoginResponse:
    s = rt.settings
    token = new_token()
    absolute = now + dt.timedelta(seconds=s.session_absolute_timeout_s)
    idle = min(absolute, now + dt.timedelta(seconds=s.session_idle_timeout_s))
    await repo.create_session(
        conn,
        account_id=account.id,
        org_id=account.org_id,
        digest=token_digest(token),
        mfa_satisfied=mfa_satisfied,
        now=now,
        idle_expires_at=idle,
        absolute_expires_at=absolute,
    )
    return LoginResponse(
        token=token,
        token_type="Bearer",  # noqa: S106 -- the scheme name, not a secret
        account_id=account.id,
        role=account.role,
        expires_at=absolute,
        idle_timeout_s=s.session_idle_timeout_s,
        mfa_enrollment_required=mfa_required_for(rt, account.role) and not mfa_satisfied,
    )


async def authenticate(rt: Runtime, conn: asyncpg.Connection, token: str | None) -> Principal:
    """The principal behind a bearer token; raises :class:`AuthenticationError`."""
    if token is None:
        raise AuthenticationError
    s = rt.settings
    found = await repo.touch_session(
        conn,
        token_digest(token),
        rt.clock.now(),
        s.session_idle_timeout_s,
        s.session_touch_interval_s,
    )
    if found is None:
        raise AuthenticationError("The session is missing, expired or revoked.")
    return found


def _session_event(event_type: str, principal: Principal, outcome: Outcome = Outcome.SUCCESS) -> AuditEvent:
    return AuditEvent(
        action=Action.EXECUTE if event_type.startswith("auth.log") else Action.UPDATE,
        event_type=event_type,
        outcome=outcome,
        org_id=principal.org_id,
        agent_account_id=principal.account_id,
        agent_role=principal.role,  # type: ignore[arg-type]
        entity_type="account",
        entity_id=principal.account_id,
        subject_id=principal.account_id if principal.role == "client" else None,
    )


def _own_account(principal: Principal) -> None:
    """Every change to one's own sessions and credentials goes through the policy too."""
    require(
        principal.actor,
        PolicyAction.MANAGE_OWN_ACCOUNT,
        Resource(org_id=principal.org_id, owner_id=principal.account_id),
    )


async def logout(rt: Runtime, conn: asyncpg.Connection, principal: Principal, ctx: AuditContext) -> None:
    """End the caller's session."""
    _own_account(principal)
    now = rt.clock.now()
    async with tenant_transaction(conn, principal.org_id):
        await repo.revoke_session(conn, principal.session_id, "logout", now)
        await record(conn, _session_event("auth.logout", principal), ctx, now)


async def logout_all(rt: Runtime, conn: asyncpg.Connection, principal: Principal, ctx: AuditContext) -> int:
    """End every session of the caller's account, this one included."""
    _own_account(principal)
    now = rt.clock.now()
    async with tenant_transaction(conn, principal.org_id):
        count = await repo.revoke_account_sessions(conn, principal.account_id, "logout_all", now)
        await record(conn, _session_event("auth.logout_all", principal), ctx, now)
    return count


async def change_password(
    rt: Runtime,
    conn: asyncpg.Connection,
    principal: Principal,
    req: PasswordChangeRequest,
    ctx: AuditContext,
) -> None:
    """Check the current password, set the new one, revoke every other session."""
    _own_account(principal)
    now = rt.clock.now()
    # A stolen session must not become an unthrottled password oracle: wrong current
    # passwords are counted and back off like failed logins.
    key = rt.keys.digest("password-change", str(principal.account_id))
    policy, _ = _policies(rt)
    wait = retry_after(await repo.load_throttle(conn, "account", key, lock=False), now)
    if wait:
        raise ThrottledError(retry_after=wait)
    async with tenant_transaction(conn, principal.org_id):
        account = await repo.get_login_account(conn, principal.account_id)
    matched, _ = await rt.passwords.verify(account.password_hash, req.current_password)
    if not matched:
        async with tenant_transaction(conn, principal.org_id):
            state = await repo.load_throttle(conn, "account", key, lock=True)
            await repo.save_throttle(conn, "account", key, after_failure(state, policy, now), now)
            await record(
                conn,
                _session_event("auth.password_change", principal, Outcome.MINOR_FAILURE),
                ctx,
                now,
            )
        raise AuthenticationError("The current password is not correct.")
    check_password_policy(
        req.new_password, mfa_required=mfa_required_for(rt, account.role), email=account.email
    )
    new_hash = await rt.passwords.hash(req.new_password)
    async with tenant_transaction(conn, principal.org_id):
        await repo.set_password_hash(conn, account.id, new_hash, now)
        await repo.revoke_account_sessions(
            conn, account.id, "password_change", now, keep=principal.session_id
        )
        await record(conn, _session_event("auth.password_change", principal), ctx, now)


async def enroll_totp(
    rt: Runtime, conn: asyncpg.Connection, principal: Principal, ctx: AuditContext
) -> TotpEnrollmentResponse:
    """Create a pending TOTP seed for the caller (refused when one is active)."""
    _own_account(principal)
    now = rt.clock.now()
    async with tenant_transaction(conn, principal.org_id):
        account = await repo.get_login_account(conn, principal.account_id)
        if account.totp_secret_sealed is not None:
            raise ConflictError("A second factor is already enrolled.")
        secret = totp.generate_secret()
        await repo.set_totp_pending(conn, account.id, rt.keys.seal(secret, f"totp:{account.id}"))
        await record(conn, _session_event("auth.mfa_enroll", principal), ctx, now)
    return TotpEnrollmentResponse(
        secret=totp.encode_secret(secret),
        otpauth_uri=totp.provisioning_uri(
            secret, issuer=rt.settings.totp_issuer, account_label=str(account.id)
        ),
        digits=totp.DIGITS,
        period_s=totp.STEP_SECONDS,
    )


async def confirm_totp(
    rt: Runtime, conn: asyncpg.Connection, principal: Principal, code: str, ctx: AuditContext
) -> RecoveryCodesResponse:
    """Activate the pending seed with a valid code; issue recovery codes.

    The session that confirms becomes MFA-satisfied; every other session of the
    account is revoked (they were opened without the second factor).
    """
    _own_account(principal)
    now = rt.clock.now()
    async with tenant_transaction(conn, principal.org_id):
        account = await repo.get_login_account(conn, principal.account_id)
        if account.totp_secret_sealed is not None:
            raise ConflictError("A second factor is already enrolled.")
        if account.totp_pending_sealed is None:
            raise ConflictError("Start enrolment first.")
        secret = _unseal_totp(rt, account.id, account.totp_pending_sealed)
        step = totp.verify_totp(secret, code, now, None)
        if step is None:
            ok = False
        else:
            ok = True
            codes = [_recovery_code() for _ in range(RECOVERY_CODE_COUNT)]
            digests = [rt.keys.digest("recovery-code", f"{account.id}\0{c}") for c in codes]
            await repo.enable_totp(conn, account.id, account.totp_pending_sealed, step, now)
            await repo.replace_recovery_codes(conn, account.id, digests, now)
            await repo.mark_session_mfa(conn, principal.session_id)
            await repo.revoke_account_sessions(conn, account.id, "mfa_change", now, keep=principal.session_id)
            await record(conn, _session_event("auth.mfa_confirm", principal), ctx, now)
    if not ok:
        async with tenant_transaction(conn, principal.org_id):
            await record(conn, _session_event("auth.mfa_confirm", principal, Outcome.MINOR_FAILURE), ctx, now)
        raise AuthenticationError("The one-time code is not valid.")
    return RecoveryCodesResponse(recovery_codes=codes)


def _recovery_code() -> str:
    raw = base64.b32encode(secrets.token_bytes(7)).decode("ascii").lower()[:10]
    return f"{raw[:5]}-{raw[5:]}"

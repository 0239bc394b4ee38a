"""Account rules: bootstrap of the first admin, staff creation, client invites."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import re
import secrets
import uuid

import asyncpg

from backend.accounts import repository as repo
from backend.accounts.schemas import (
    AccountView,
    CreateStaffRequest,
    InviteCreated,
    InviteRequest,
    RedeemInviteRequest,
)
from backend.audit_trail import Action, AuditContext, AuditEvent, Outcome, record
from backend.auth.passwords import check_password_policy
from backend.auth.principal import Principal
from backend.auth.service import mfa_required_for
from backend.db.tenancy import tenant_transaction
from backend.errors import ConflictError, InvalidInputError, NotFoundError
from backend.policy import Action as PolicyAction
from backend.policy import Resource, require
from backend.runtime import Runtime

__all__ = ["account_view", "bootstrap_admin", "create_invite", "create_staff", "me", "redeem_invite"]

_INVITE_CODE_RE = re.compile(r"^[a-z2-7]{32}$")
_SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")


def account_view(row: repo.AccountRow) -> AccountView:
    """An account row as its answer."""
    return AccountView(
        id=row.id,
        organization_id=row.org_id,
        email=row.email,
        display_name=row.display_name,
        role=row.role,  # type: ignore[arg-type]
        status=row.status,  # type: ignore[arg-type]
        mfa_enabled=row.mfa_enabled,
        created_at=row.created_at,
    )


def _invite_digest(code: str) -> bytes:
    return hashlib.sha256(code.encode("ascii")).digest()


def _account_created_event(
    account: repo.AccountRow, *, agent: Principal | None, agent_role: str | None = None
) -> AuditEvent:
    return AuditEvent(
        action=Action.CREATE,
        event_type="account.create",
        org_id=account.org_id,
        agent_account_id=agent.account_id if agent else account.id,
        agent_role=(agent.role if agent else agent_role),  # type: ignore[arg-type]
        entity_type="account",
        entity_id=account.id,
        subject_id=account.id if account.role == "client" else None,
    )


def me(principal: Principal) -> AccountView:
    """The caller's own account, as loaded with the session (one query per request)."""
    require(
        principal.actor,
        PolicyAction.READ_SELF,
        Resource(org_id=principal.org_id, owner_id=principal.account_id),
    )
    return AccountView(
        id=principal.account_id,
        organization_id=principal.org_id,
        email=principal.email,
        display_name=principal.display_name,
        role=principal.role,  # type: ignore[arg-type]
        status="active",
        mfa_enabled=principal.mfa_enabled,
        created_at=principal.account_created_at,
    )


async def create_staff(
    rt: Runtime,
    conn: asyncpg.Connection,
    principal: Principal,
    req: CreateStaffRequest,
    ctx: AuditContext,
) -> AccountView:
    """An admin creates a clinician, compliance officer or admin in their organization."""
    require(
        principal.actor,
        PolicyAction.CREATE_STAFF_ACCOUNT,
        Resource(org_id=principal.org_id, target_role=req.role),
    )
    check_password_policy(req.password, mfa_required=mfa_required_for(rt, req.role), email=req.email)
    password_hash = await rt.passwords.hash(req.password)
    now = rt.clock.now()
    async with tenant_transaction(conn, principal.org_id):
        row = await repo.insert_account(
            conn,
            org_id=principal.org_id,
            email=req.email,
            display_name=req.display_name,
            role=req.role,
            password_hash=password_hash,
            created_by=principal.account_id,
            now=now,
        )
        if row is None:
            raise ConflictError("An account with this email exists in the organization.")
        await record(conn, _account_created_event(row, agent=principal), ctx, now)
    return account_view(row)


async def create_invite(
    rt: Runtime,
    conn: asyncpg.Connection,
    principal: Principal,
    req: InviteRequest,
    ctx: AuditContext,
) -> InviteCreated:
    """A clinician issues a single-use, expiring invite code for a new client."""
    require(principal.actor, PolicyAction.CREATE_INVITE, Resource(org_id=principal.org_id))
    now = rt.clock.now()
    code = base64.b32encode(secrets.token_bytes(20)).decode("ascii").lower()
    expires_at = now + dt.timedelta(seconds=req.ttl_s or rt.settings.invite_ttl_s)
    async with tenant_transaction(conn, principal.org_id):
        invite_id = await repo.insert_invite(
            conn,
            org_id=principal.org_id,
            digest=_invite_digest(code),
            created_by=principal.account_id,
            now=now,
            expires_at=expires_at,
        )
        await record(
            conn,
            AuditEvent(
                action=Action.CREATE,
                event_type="invite.create",
                org_id=principal.org_id,
                agent_account_id=principal.account_id,
                agent_role="clinician",
                entity_type="invite",
                entity_id=invite_id,
            ),
            ctx,
            now,
        )
    return InviteCreated(id=invite_id, code=code, expires_at=expires_at)


async def redeem_invite(
    rt: Runtime, conn: asyncpg.Connection, code: str, req: RedeemInviteRequest, ctx: AuditContext
) -> AccountView:
    """Create a client account from an invite; the inviting clinician becomes its clinician.

    An unknown, used or expired code all answer 404 alike.
    """
    if not _INVITE_CODE_RE.match(code):
        raise NotFoundError("The invite does not exist or is no longer valid.")
    check_password_policy(req.password, mfa_required=mfa_required_for(rt, "client"), email=req.email)
    password_hash = await rt.passwords.hash(req.password)
    now = rt.clock.now()
    row: repo.AccountRow | None = None
    async with conn.transaction():
        # Claiming the invite also enters its organization for this transaction.
        invite = await repo.claim_invite(conn, _invite_digest(code), now)
        if invite is not None:
            row = await repo.insert_account(
                conn,
                org_id=invite.org_id,
                email=req.email,
                display_name=req.display_name,
                role="client",
                password_hash=password_hash,
                created_by=invite.created_by,
                now=now,
            )
            if row is None:
                raise ConflictError("An account with this email exists in the organization.")
            await repo.mark_invite_redeemed(conn, invite.id, row.id, now)
            await repo.insert_care_relationship(
                conn,
                org_id=invite.org_id,
                client_id=row.id,
                clinician_id=invite.created_by,
                source="invite",
                now=now,
            )
            await record(conn, _account_created_event(row, agent=None, agent_role="client"), ctx, now)
            await record(
                conn,
                AuditEvent(
                    action=Action.UPDATE,
                    event_type="invite.redeem",
                    org_id=invite.org_id,
                    agent_account_id=row.id,
                    agent_role="client",
                    entity_type="invite",
                    entity_id=invite.id,
                    subject_id=row.id,
                ),
                ctx,
                now,
            )
    if row is None:
        async with conn.transaction():
            await record(
                conn,
                AuditEvent(
                    action=Action.UPDATE,
                    event_type="invite.redeem",
                    outcome=Outcome.MINOR_FAILURE,
                    outcome_reason="invalid_code",
                ),
                ctx,
                now,
            )
        raise NotFoundError("The invite does not exist or is no longer valid.")
    return account_view(row)


async def bootstrap_admin(
    rt: Runtime,
    conn: asyncpg.Connection,
    *,
    org_slug: str,
    org_name: str,
    email: str,
    display_name: str,
    password: str,
    ctx: AuditContext,
) -> AccountView:
    """Create an organization (if new) and its first admin; refused once it has one."""
    if not _SLUG_RE.match(org_slug):
        raise InvalidInputError("The organization slug must be 2-63 of a-z, 0-9 and '-'.")
    check_password_policy(password, mfa_required=mfa_required_for(rt, "admin"), email=email)
    password_hash = await rt.passwords.hash(password)
    now = rt.clock.now()
    existing = await repo.get_org_by_slug(conn, org_slug)
    org_id = existing or uuid.uuid4()
    async with tenant_transaction(conn, org_id):
        if existing is None:
            await repo.insert_org(conn, org_slug, org_name, now, org_id=org_id)
            await record(
                conn,
                AuditEvent(
                    action=Action.CREATE,
                    event_type="organization.create",
                    org_id=org_id,
                    entity_type="organization",
                    entity_id=org_id,
                ),
                ctx,
                now,
            )
        elif await repo.count_admins(conn, org_id) > 0:
            raise ConflictError("The organization already has an admin; create more through the API.")
        row = await repo.insert_account(
            conn,
            org_id=org_id,
            email=email,
            display_name=display_name,
            role="admin",
            password_hash=password_hash,
            created_by=None,
            now=now,
        )
        if row is None:
            raise ConflictError("An account with this email exists in the organization.")
        await record(conn, _account_created_event(row, agent=None, agent_role="admin"), ctx, now)
    return account_view(row)

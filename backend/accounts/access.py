"""Access changes by an organization's admins: a staff member's role, an account's status.

Both take effect on the affected person's very next request, and nothing cached
outlives them:

- the principal is rebuilt from the database on every request (one query checks the
  token and reads the account's current role and status), so no role is cached
  between requests;
- a change revokes every session of the account (``role_change``, or
  ``account_disabled``): requests made with them get 401 from then on, and a new
  login starts with the new role. A disabled account cannot log in; it is refused
  exactly like a wrong password (same status, same body, same Argon2id work), so a
  login attempt does not tell whether an account exists or is disabled (A-05b);
- the push stream re-checks its session on every read: the change queues an
  ``account.access_changed`` event for the account (and every active admin of the
  organization), whose notification wakes the account's streams in every server
  process; they find their session ended, send ``session.ended`` and close.

A clinician who takes another role leaves every conversation in the same transaction
(the other members stop encrypting to them) and no longer brings in clients with
their open invites; their care relationships and the consents naming them stay on
record, and the policy grants nothing through them to anyone but a clinician.
Disabling keeps memberships (an account may come back): a disabled member cannot
log in to fetch anything. It does start the ``key_backups`` retention period (the
account's ``closed_at``, migration 0010): an account disabled for longer than the
organization's period loses its encrypted key backup (docs/API.md).

Only an admin may change access (403 otherwise, whatever the target); an account of
another organization, or none, is 404. An organization always keeps an active admin:
the last one cannot be demoted or disabled (409), in the service under the
organization's admin lock and again in the database (migration 0014). Every change,
and every no-op, is audited in its transaction (``account.role_change`` or
``account.status_change``, subtype ``<before>_to_<after>``).
"""

from __future__ import annotations

import datetime as dt
import uuid

import asyncpg

from backend.accounts import repository as repo
from backend.accounts.schemas import AccountView, RoleChangeRequest, StatusChangeRequest
from backend.accounts.service import account_view
from backend.audit_trail import Action, AuditContext, AuditEvent, record
from backend.auth import repository as auth_repo
from backend.auth.principal import Principal
from backend.db.tenancy import tenant_transaction
from backend.errors import ConflictError, InvalidInputError, NotFoundError
from backend.messaging import repository as messaging_repo
from backend.policy import Action as PolicyAction
from backend.policy import Resource, require
from backend.realtime.outbox import publish
from backend.runtime import Runtime

__all__ = ["ACCESS_CHANGED", "change_role", "change_status"]

ACCESS_CHANGED = "account.access_changed"
"""Push event kind: an account's role or status changed (ids and codes only)."""

_STAFF_ROLES = frozenset({"clinician", "compliance_officer", "admin"})
_LAST_ADMIN = "An organization keeps at least one active admin."


def _access_event(principal: Principal, target: repo.AccountRow, event_type: str, change: str) -> AuditEvent:
    return AuditEvent(
        action=Action.UPDATE,
        event_type=event_type,
        outcome_reason=change,
        org_id=target.org_id,
        agent_account_id=principal.account_id,
        agent_role="admin",
        entity_type="account",
        entity_id=target.id,
        subject_id=target.id if target.role == "client" else None,
    )


async def _target(conn: asyncpg.Connection, principal: Principal, account_id: uuid.UUID) -> repo.AccountRow:
    """The account to change, locked, after the organization's admin lock (404 if not ours)."""
    await repo.lock_admins(conn, principal.org_id)
    target = await repo.get_account(conn, account_id)
    if target is None or target.org_id != principal.org_id:
        raise NotFoundError
    return target


async def _keep_an_admin(conn: asyncpg.Connection, target: repo.AccountRow) -> list[uuid.UUID]:
    """The active admins; 409 if ``target`` is the last one (the caller is about to end that)."""
    admins = await repo.active_admin_ids(conn, target.org_id)
    if target.role == "admin" and target.status == "active" and admins == [target.id]:
        raise ConflictError(_LAST_ADMIN)
    return admins


async def _announce(
    conn: asyncpg.Connection, target: repo.AccountRow, admins: list[uuid.UUID], change: str, now: dt.datetime
) -> None:
    """Tell the account (its open streams then close) and the organization's admins."""
    await publish(
        conn, [target.id, *admins], ACCESS_CHANGED, {"account_id": str(target.id), "change": change}, now
    )


async def _leave_conversations(
    conn: asyncpg.Connection,
    principal: Principal,
    target: repo.AccountRow,
    ctx: AuditContext,
    now: dt.datetime,
) -> None:
    """A clinician taking another role leaves every conversation; the others are told."""
    for left in await messaging_repo.remove_from_every_conversation(conn, target.id, now):
        await record(
            conn,
            AuditEvent(
                action=Action.UPDATE,
                event_type="conversation.member_remove",
                org_id=target.org_id,
                agent_account_id=principal.account_id,
                agent_role="admin",
                entity_type="account",
                entity_id=target.id,
                subject_id=left.client_id,
                outcome_reason="role_change",
            ),
            ctx,
            now,
        )
        await publish(
            conn,
            left.remaining,
            "conversation.members_changed",
            {"conversation_id": str(left.conversation_id)},
            now,
        )


async def change_role(
    rt: Runtime,
    conn: asyncpg.Connection,
    principal: Principal,
    account_id: uuid.UUID,
    req: RoleChangeRequest,
    ctx: AuditContext,
) -> AccountView:
    """An admin gives a staff member another staff role; their sessions end."""
    require(principal.actor, PolicyAction.MANAGE_ACCOUNTS, Resource(org_id=principal.org_id))
    now = rt.clock.now()
    async with tenant_transaction(conn, principal.org_id):
        target = await _target(conn, principal, account_id)
        if target.role not in _STAFF_ROLES:
            raise InvalidInputError("Only staff accounts change role; a client's account keeps its role.")
        change = f"{target.role}_to_{req.role}"
        row = target
        if req.role != target.role:
            admins = await _keep_an_admin(conn, target)
            if target.role == "clinician":
                await _leave_conversations(conn, principal, target, ctx, now)
            row = await repo.set_role(conn, target.id, req.role)
            await auth_repo.revoke_account_sessions(conn, target.id, "role_change", now)
            await _announce(conn, row, admins, "role", now)
        await record(conn, _access_event(principal, target, "account.role_change", change), ctx, now)
    return account_view(row)


async def change_status(
    rt: Runtime,
    conn: asyncpg.Connection,
    principal: Principal,
    account_id: uuid.UUID,
    req: StatusChangeRequest,
    ctx: AuditContext,
) -> AccountView:
    """An admin disables an account (its sessions end) or re-enables it."""
    require(principal.actor, PolicyAction.MANAGE_ACCOUNTS, Resource(org_id=principal.org_id))
    now = rt.clock.now()
    async with tenant_transaction(conn, principal.org_id):
        target = await _target(conn, principal, account_id)
        if target.status == "erased":
            raise ConflictError("An erased account stays erased.")
        change = f"{target.status}_to_{req.status}"
        row = target
        if req.status != target.status:
            admins = await _keep_an_admin(conn, target) if req.status == "disabled" else []
            row = await repo.set_status(conn, target.id, req.status, now)
            if req.status == "disabled":
                await auth_repo.revoke_account_sessions(conn, target.id, "account_disabled", now)
            else:
                admins = await repo.active_admin_ids(conn, target.org_id)
            await _announce(conn, row, admins, "status", now)
        await record(conn, _access_event(principal, target, "account.status_change", change), ctx, now)
    return account_view(row)

"""``decide(actor, action, resource) -> Decision``: pure, table-tested, fail closed.

The policy sees only facts that were loaded before it was called; it does no I/O.
An action it does not know is denied. Organization boundary first: nothing
crosses organizations, and a resource of another organization is reported as
``not_found`` so that its existence does not leak.
"""

from __future__ import annotations

import enum
import uuid
from typing import Literal, assert_never

import msgspec

from backend.errors import ForbiddenError, NotFoundError

__all__ = ["Action", "Actor", "Decision", "Resource", "decide", "require"]

Role = Literal["client", "clinician", "compliance_officer", "admin"]
STAFF_ROLES: frozenset[str] = frozenset({"clinician", "compliance_officer", "admin"})


class Action(enum.StrEnum):
    """Everything an account can ask to do."""

    READ_SELF = "account.read_self"
    CREATE_STAFF_ACCOUNT = "account.create_staff"
    CREATE_INVITE = "invite.create"
    # Key directory: an account manages its own keys and backup; anyone in the
    # organization may read anyone's public keys (to encrypt to them).
    MANAGE_OWN_KEYS = "keys.manage_own"
    READ_PUBLIC_KEYS = "keys.read"
    # Audit trail: compliance officers read and export their organization's trail;
    # a client reads the accounting of disclosures of their own records.
    READ_AUDIT_TRAIL = "audit.read"
    READ_OWN_DISCLOSURES = "audit.read_own_disclosures"


class Actor(msgspec.Struct, frozen=True, kw_only=True):
    """Who asks: an authenticated account."""

    account_id: uuid.UUID
    org_id: uuid.UUID
    role: Role


class Resource(msgspec.Struct, frozen=True, kw_only=True):
    """What is asked about, with the facts the decision needs."""

    org_id: uuid.UUID
    owner_id: uuid.UUID | None = None
    target_role: Role | None = None


class Decision(msgspec.Struct, frozen=True, kw_only=True):
    """The answer, with the reason (a code) and the consent that allowed it, if any."""

    allowed: bool
    reason: str
    consent_id: uuid.UUID | None = None


def _deny(reason: str) -> Decision:
    return Decision(allowed=False, reason=reason)


def _allow(reason: str, consent_id: uuid.UUID | None = None) -> Decision:
    return Decision(allowed=True, reason=reason, consent_id=consent_id)


def decide(actor: Actor, action: Action, resource: Resource) -> Decision:
    """Decide whether ``actor`` may perform ``action`` on ``resource``."""
    if actor.org_id != resource.org_id:
        return _deny("not_found")
    match action:
        case Action.READ_SELF:
            if resource.owner_id == actor.account_id:
                return _allow("self")
            return _deny("not_found")
        case Action.CREATE_STAFF_ACCOUNT:
            if actor.role != "admin":
                return _deny("role")
            if resource.target_role not in STAFF_ROLES:
                return _deny("target_role")
            return _allow("admin")
        case Action.CREATE_INVITE:
            if actor.role != "clinician":
                return _deny("role")
            return _allow("clinician")
        case Action.MANAGE_OWN_KEYS:
            if resource.owner_id != actor.account_id:
                return _deny("not_found")
            return _allow("self")
        case Action.READ_PUBLIC_KEYS:
            return _allow("same_organization")
        case Action.READ_AUDIT_TRAIL:
            if actor.role != "compliance_officer":
                return _deny("role")
            return _allow("compliance_officer")
        case Action.READ_OWN_DISCLOSURES:
            if actor.role != "client" or resource.owner_id != actor.account_id:
                return _deny("role")
            return _allow("self")
    assert_never(action)


def require(actor: Actor, action: Action, resource: Resource) -> Decision:
    """:func:`decide`, raising ``NotFoundError``/``ForbiddenError`` on denial."""
    decision = decide(actor, action, resource)
    if decision.allowed:
        return decision
    if decision.reason == "not_found":
        raise NotFoundError
    raise ForbiddenError

"""``decide(actor, action, resource, facts) -> Decision``: pure, table-tested, fail closed.

The one access-policy function. Every route asks it; nothing else grants access.
It sees only facts loaded before it was called (in the request's own transaction,
so a revocation that committed is seen by the very next request); it does no I/O
and caches nothing. Checks run in one order for every action: organization
boundary (a resource of another organization is ``not_found``, so its existence
does not leak), then role, then relationship and consent. An action it does not
know is denied.

A client's data has a circle: the client, the clinicians who treat them (a care
relationship), the clinicians an unrevoked consent of theirs names (in force or not),
and those with a break-glass opening for them that is not closed.
Whoever is outside it (other clients, admins, compliance officers, other clinicians)
is told ``not_found``, exactly as for a client who does not exist; inside it, a
refusal is ``forbidden`` with its reason (for example ``no_consent``: the clinician
knows the client, and may ask for consent or open break-glass).

Consent is not the only legal basis: treatment records rest on their own basis
(GDPR Art. 9(2)(h), HIPAA treatment). What consent allows here (messaging, reading
and sharing records by its grantee) stops the moment it is revoked or expires;
records already made are kept as the law requires.
"""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from typing import Literal, assert_never

import msgspec

from backend.errors import ForbiddenError, NotFoundError

__all__ = [
    "Action",
    "Actor",
    "ConsentFact",
    "Decision",
    "EmergencyFact",
    "Facts",
    "Resource",
    "decide",
    "require",
]

Role = Literal["client", "clinician", "compliance_officer", "admin"]
STAFF_ROLES: frozenset[str] = frozenset({"clinician", "compliance_officer", "admin"})
CUSTODIAN_ROLES: frozenset[str] = frozenset({"admin", "compliance_officer"})


class Action(enum.StrEnum):
    """Everything an account can ask to do."""

    READ_SELF = "account.read_self"
    MANAGE_OWN_ACCOUNT = "account.manage_own"  # sessions, password, second factor
    # GDPR Art. 15/20: every account (staff included) downloads what is held about it.
    EXPORT_OWN_DATA = "subject.export"
    CREATE_STAFF_ACCOUNT = "account.create_staff"
    # Admins change a staff member's role and disable or re-enable accounts.
    MANAGE_ACCOUNTS = "account.manage"
    CREATE_INVITE = "invite.create"
    # Key directory: an account manages its own keys and backup; anyone in the
    # organization may read anyone's public keys (to encrypt to them).
    MANAGE_OWN_KEYS = "keys.manage_own"
    READ_PUBLIC_KEYS = "keys.read"
    # Audit trail: compliance officers read and export their organization's trail;
    # a client reads the accounting of disclosures of their own records.
    READ_AUDIT_TRAIL = "audit.read"
    READ_OWN_DISCLOSURES = "audit.read_own_disclosures"
    # Consent: only the client grants or revokes their own consent.
    GRANT_CONSENT = "consent.grant"
    REVOKE_CONSENT = "consent.revoke"
    LIST_CONSENTS = "consent.list"
    READ_CONSENT = "consent.read"
    # A client's data, as consent (or break-glass) allows.
    READ_CLIENT_RECORD = "client.records.read"
    SHARE_CLIENT_RECORD = "client.records.share"
    MESSAGE_CLIENT = "client.messaging"
    # Conversations: clinicians start them; members read and send; a clinician member
    # manages membership; a support-group client joins by their own consent.
    CREATE_CONVERSATION = "conversation.create"
    READ_CONVERSATION = "conversation.read"
    SEND_MESSAGE = "conversation.send"
    MANAGE_MEMBERS = "conversation.manage_members"
    JOIN_CONVERSATION = "conversation.join"
    # Session notes: a clinician who treats the client (or whom consent allows) writes
    # them; the organization's admins register the custodian key notes are sealed to.
    WRITE_NOTE = "note.write"
    SHARE_NOTE = "note.share"
    MANAGE_CUSTODIAN_KEY = "custodian_key.manage"
    # Break-glass.
    OPEN_EMERGENCY_ACCESS = "emergency.open"
    APPROVE_EMERGENCY_ACCESS = "emergency.approve"
    CLOSE_EMERGENCY_ACCESS = "emergency.close"
    LIST_EMERGENCY_ACCESS = "emergency.list"
    # Retention: everyone may read the periods that apply to their data (GDPR Art. 13(2)(a));
    # admins set them; admins and compliance officers read the record of runs.
    READ_RETENTION_POLICIES = "retention.policies.read"
    SET_RETENTION_POLICY = "retention.policies.set"
    READ_RETENTION_RUNS = "retention.runs.read"
    # Legal holds are placed, released and listed by compliance officers only.
    PLACE_LEGAL_HOLD = "legal_hold.place"
    RELEASE_LEGAL_HOLD = "legal_hold.release"
    LIST_LEGAL_HOLDS = "legal_hold.list"
    # Erasure (GDPR Art. 17): a client files and follows their own request; a compliance
    # officer lists and decides requests, never one about themselves.
    REQUEST_ERASURE = "erasure.request"
    READ_OWN_ERASURE_REQUESTS = "erasure.read_own"
    LIST_ERASURE_REQUESTS = "erasure.list"
    DECIDE_ERASURE = "erasure.decide"


# The consent scope each client-data action needs.
SCOPE_OF: dict[Action, str] = {
    Action.READ_CLIENT_RECORD: "records.read",
    Action.SHARE_CLIENT_RECORD: "records.share",
    Action.MESSAGE_CLIENT: "messaging",
}
# What break-glass opens: reading records in an emergency, nothing else.
EMERGENCY_ACTIONS: frozenset[Action] = frozenset({Action.READ_CLIENT_RECORD})


class Actor(msgspec.Struct, frozen=True, kw_only=True):
    """Who asks: an authenticated account."""

    account_id: uuid.UUID
    org_id: uuid.UUID
    role: Role


class Resource(msgspec.Struct, frozen=True, kw_only=True):
    """What is asked about."""

    org_id: uuid.UUID
    owner_id: uuid.UUID | None = None
    target_role: Role | None = None
    client_id: uuid.UUID | None = None
    grantee_id: uuid.UUID | None = None
    membership: Literal["none", "invited", "active", "removed"] = "none"
    """The actor's membership of the conversation concerned."""


class ConsentFact(msgspec.Struct, frozen=True, kw_only=True):
    """One consent of the client concerned, as stored."""

    consent_id: uuid.UUID
    grantee_type: Literal["clinician", "organization"]
    grantee_id: uuid.UUID
    scopes: frozenset[str]
    valid_from: dt.datetime
    valid_until: dt.datetime | None
    status: Literal["active", "revoked", "expired"]


class EmergencyFact(msgspec.Struct, frozen=True, kw_only=True):
    """One break-glass opening for the client concerned."""

    access_id: uuid.UUID
    clinician_id: uuid.UUID
    expires_at: dt.datetime
    closed: bool


class Facts(msgspec.Struct, frozen=True, kw_only=True):
    """What was loaded about the client concerned, and when."""

    now: dt.datetime
    treats: bool = False
    """The actor has a care relationship with the client (they treat them)."""
    consents: tuple[ConsentFact, ...] = ()
    emergencies: tuple[EmergencyFact, ...] = ()


class Decision(msgspec.Struct, frozen=True, kw_only=True):
    """The answer, with the reason (a code) and what allowed it, if anything."""

    allowed: bool
    reason: str
    consent_id: uuid.UUID | None = None
    emergency_access_id: uuid.UUID | None = None


def _deny(reason: str) -> Decision:
    return Decision(allowed=False, reason=reason)


def _allow(reason: str, consent_id: uuid.UUID | None = None) -> Decision:
    return Decision(allowed=True, reason=reason, consent_id=consent_id)


def _consent_for(actor: Actor, scope: str, facts: Facts) -> ConsentFact | None:
    for consent in facts.consents:
        in_force = (
            consent.status == "active"
            and consent.valid_from <= facts.now
            and (consent.valid_until is None or facts.now < consent.valid_until)
        )
        # A grant to a clinician names them; a grant to the organization reaches only
        # the clinicians who treat the client (the care relationship).
        names_actor = (consent.grantee_type == "clinician" and consent.grantee_id == actor.account_id) or (
            consent.grantee_type == "organization" and consent.grantee_id == actor.org_id and facts.treats
        )
        if in_force and names_actor and scope in consent.scopes:
            return consent
    return None


def _emergency_for(actor: Actor, facts: Facts) -> EmergencyFact | None:
    for opening in facts.emergencies:
        if opening.clinician_id == actor.account_id and not opening.closed and facts.now < opening.expires_at:
            return opening
    return None


def _knows_client(actor: Actor, facts: Facts) -> bool:
    """Whether a clinician is inside the client's circle (see the module docstring)."""
    return (
        facts.treats
        or any(c.grantee_type == "clinician" and c.grantee_id == actor.account_id for c in facts.consents)
        or any(e.clinician_id == actor.account_id for e in facts.emergencies)
    )


def _client_data(
    actor: Actor, action: Action, resource: Resource, facts: Facts | None, *, member: bool = False
) -> Decision:
    """Client data as consent (or break-glass) allows; ``member``: the actor already knows the client."""
    if resource.client_id is None or facts is None:
        return _deny("missing_facts")
    if actor.role == "client":
        return _allow("self") if resource.client_id == actor.account_id else _deny("not_found")
    if actor.role != "clinician":
        return _deny("role") if member else _deny("not_found")
    consent = _consent_for(actor, SCOPE_OF[action], facts)
    if consent is not None:
        return _allow("consent", consent.consent_id)
    if action in EMERGENCY_ACTIONS:
        opening = _emergency_for(actor, facts)
        if opening is not None:
            return Decision(allowed=True, reason="emergency", emergency_access_id=opening.access_id)
    if not member and not _knows_client(actor, facts):
        return _deny("not_found")
    return _deny("no_consent")


def decide(actor: Actor, action: Action, resource: Resource, facts: Facts | None = None) -> Decision:
    """Decide whether ``actor`` may perform ``action`` on ``resource`` given ``facts``."""
    if actor.org_id != resource.org_id:
        return _deny("not_found")
    match action:
        case Action.READ_SELF | Action.MANAGE_OWN_ACCOUNT | Action.EXPORT_OWN_DATA:
            if resource.owner_id == actor.account_id:
                return _allow("self")
            return _deny("not_found")
        case Action.MANAGE_ACCOUNTS:
            if actor.role != "admin":
                return _deny("role")
            return _allow("admin")
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
        case Action.GRANT_CONSENT | Action.REVOKE_CONSENT:
            # Staff can never create or end a consent on a client's behalf.
            if actor.role != "client":
                return _deny("role")
            if resource.client_id != actor.account_id:
                return _deny("not_found")
            return _allow("self")
        case Action.LIST_CONSENTS:
            return _allow("filtered_by_role")
        case Action.READ_CONSENT:
            if actor.role == "compliance_officer":
                return _allow("compliance_officer")
            if actor.account_id in {resource.client_id, resource.grantee_id}:
                return _allow("party")
            return _deny("not_found")
        case Action.READ_CLIENT_RECORD | Action.SHARE_CLIENT_RECORD | Action.MESSAGE_CLIENT:
            return _client_data(actor, action, resource, facts)
        case Action.CREATE_CONVERSATION:
            if actor.role != "clinician":
                return _deny("role")
            if resource.client_id is None:
                return _allow("clinician")  # a support group: clients join by their own consent
            return _client_data(actor, Action.MESSAGE_CLIENT, resource, facts)
        case Action.READ_CONVERSATION | Action.SEND_MESSAGE:
            if resource.membership != "active":
                return _deny("not_found")
            if actor.role == "client":
                return _allow("member")
            if actor.role != "clinician":
                return _deny("role")  # only clients and clinicians take part in conversations
            if resource.client_id is None:
                return _allow("member")
            return _client_data(actor, Action.MESSAGE_CLIENT, resource, facts, member=True)
        case Action.MANAGE_MEMBERS:
            if resource.membership != "active":
                return _deny("not_found")
            if actor.role != "clinician":
                return _deny("role")
            if resource.client_id is not None:
                # In a client's conversation, only while the client's consent still allows it.
                return _client_data(actor, Action.MESSAGE_CLIENT, resource, facts, member=True)
            return _allow("clinician_member")
        case Action.JOIN_CONVERSATION:
            if actor.role != "client" or resource.membership != "invited":
                return _deny("not_found")
            return _allow("own_consent")
        case Action.WRITE_NOTE:
            if actor.role == "client" and resource.client_id == actor.account_id:
                return _deny("role")  # a client's own record: they know it, they do not write notes
            if actor.role != "clinician":
                return _deny("not_found")
            if resource.client_id is None or facts is None:
                return _deny("missing_facts")
            if facts.treats:
                return _allow("treatment")  # treatment records rest on their own legal basis
            consent = _consent_for(actor, "records.read", facts)
            if consent is not None:
                return _allow("consent", consent.consent_id)
            if not _knows_client(actor, facts):
                return _deny("not_found")
            return _deny("no_relationship")
        case Action.SHARE_NOTE:
            # The author shares (adds wrapped keys) while they treat the client, or while the
            # client's consent lets them share records (scope records.share).
            if actor.role != "clinician" or resource.owner_id != actor.account_id:
                return _deny("not_author")
            if resource.client_id is None or facts is None:
                return _deny("missing_facts")
            if facts.treats:
                return _allow("treatment")
            consent = _consent_for(actor, "records.share", facts)
            if consent is not None:
                return _allow("consent", consent.consent_id)
            return _deny("no_consent")
        case Action.MANAGE_CUSTODIAN_KEY:
            if actor.role != "admin":
                return _deny("role")
            return _allow("admin")
        case Action.OPEN_EMERGENCY_ACCESS:
            if actor.role != "clinician":
                return _deny("role")
            return _allow("clinician")
        case Action.APPROVE_EMERGENCY_ACCESS:
            if actor.role not in CUSTODIAN_ROLES:
                return _deny("role")
            if resource.owner_id == actor.account_id:
                return _deny("dual_control")
            return _allow("custodian")
        case Action.CLOSE_EMERGENCY_ACCESS:
            # Its clinician ends it early, or a compliance officer; to anyone else the opening
            # answers like one that does not exist.
            if resource.owner_id == actor.account_id:
                return _allow("owner")
            if actor.role == "compliance_officer":
                return _allow("compliance_officer")
            return _deny("not_found")
        case Action.LIST_EMERGENCY_ACCESS:
            if actor.role in {"compliance_officer", "clinician"}:
                return _allow("filtered_by_role")
            return _deny("role")
        case Action.READ_RETENTION_POLICIES:
            return _allow("same_organization")
        case Action.SET_RETENTION_POLICY:
            if actor.role != "admin":
                return _deny("role")
            return _allow("admin")
        case Action.READ_RETENTION_RUNS:
            if actor.role not in {"admin", "compliance_officer"}:
                return _deny("role")
            return _allow("filtered_by_role")
        case Action.PLACE_LEGAL_HOLD | Action.RELEASE_LEGAL_HOLD | Action.LIST_LEGAL_HOLDS:
            if actor.role != "compliance_officer":
                return _deny("role")
            if resource.target_role is not None and resource.target_role != "client":
                return _deny("target_role")  # holds are on clients (or conversations)
            return _allow("compliance_officer")
        case Action.REQUEST_ERASURE | Action.READ_OWN_ERASURE_REQUESTS:
            if actor.role != "client":
                return _deny("role")
            if resource.owner_id != actor.account_id:
                return _deny("not_found")
            return _allow("self")
        case Action.LIST_ERASURE_REQUESTS:
            if actor.role != "compliance_officer":
                return _deny("role")
            return _allow("compliance_officer")
        case Action.DECIDE_ERASURE:
            if actor.role != "compliance_officer":
                return _deny("role")
            if resource.owner_id is None or resource.owner_id == actor.account_id:
                return _deny("own_request")
            return _allow("compliance_officer")
    assert_never(action)


def require(actor: Actor, action: Action, resource: Resource, facts: Facts | None = None) -> Decision:
    """:func:`decide`, raising ``NotFoundError``/``ForbiddenError`` on denial."""
    decision = decide(actor, action, resource, facts)
    if decision.allowed:
        return decision
    if decision.reason == "not_found":
        raise NotFoundError
    raise ForbiddenError

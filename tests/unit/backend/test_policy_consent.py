"""The consent matrix of the policy: roles, actions, relationship and consent state."""

from __future__ import annotations

import datetime as dt
import itertools
import uuid

import pytest

from backend.policy import Action, Actor, ConsentFact, EmergencyFact, Facts, Resource, decide

NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
ORG = uuid.uuid4()
OTHER_ORG = uuid.uuid4()
CLIENT = uuid.uuid4()
DOC = uuid.uuid4()
OTHER_DOC = uuid.uuid4()
HOUR = dt.timedelta(hours=1)

ACTIONS = {
    Action.READ_CLIENT_RECORD: "records.read",
    Action.MESSAGE_CLIENT: "messaging",
    Action.SHARE_CLIENT_RECORD: "records.share",
}


def consent(state: str, scope: str) -> tuple[ConsentFact, ...]:  # noqa: PLR0911 -- one return per state
    base = {
        "consent_id": uuid.UUID(int=1),
        "grantee_type": "clinician",
        "grantee_id": DOC,
        "scopes": frozenset({scope}),
        "valid_from": NOW - HOUR,
        "valid_until": NOW + HOUR,
        "status": "active",
    }
    match state:
        case "none":
            return ()
        case "active":
            return (ConsentFact(**base),)  # type: ignore[arg-type]
        case "active_org":
            return (ConsentFact(**{**base, "grantee_type": "organization", "grantee_id": ORG}),)  # type: ignore[arg-type]
        case "other_scope":
            return (ConsentFact(**{**base, "scopes": frozenset({"unrelated.scope"})}),)  # type: ignore[arg-type]
        case "other_clinician":
            return (ConsentFact(**{**base, "grantee_id": OTHER_DOC}),)  # type: ignore[arg-type]
        case "expired":
            return (ConsentFact(**{**base, "valid_until": NOW}),)  # type: ignore[arg-type]
        case "not_yet_valid":
            return (ConsentFact(**{**base, "valid_from": NOW + dt.timedelta(seconds=1)}),)  # type: ignore[arg-type]
        case "revoked":
            return (ConsentFact(**{**base, "status": "revoked"}),)  # type: ignore[arg-type]
    raise AssertionError(state)


STATES = [
    "none",
    "active",
    "active_org",
    "other_scope",
    "other_clinician",
    "expired",
    "not_yet_valid",
    "revoked",
]
ROLES = ["client_self", "client_other", "clinician", "compliance_officer", "admin"]


# Consent states whose consent names the clinician (DOC): they know the client.
NAMES_DOC = {"active", "other_scope", "expired", "not_yet_valid", "revoked"}


def expected(role: str, state: str, treats: bool, same_org: bool) -> str:
    """The table, written out: 'allow', 'forbidden' or 'not_found'.

    Outside the client's circle (A-02) is 'not_found', as for a client that does not
    exist: another client, admins, compliance officers, and clinicians who neither treat
    the client nor are named by a consent of theirs.
    """
    if not same_org:
        return "not_found"
    if role == "client_self":
        return "allow"
    if role in {"client_other", "compliance_officer", "admin"}:
        return "not_found"
    if state == "active" or (state == "active_org" and treats):
        return "allow"
    return "forbidden" if treats or state in NAMES_DOC else "not_found"


@pytest.mark.parametrize(
    ("role", "action", "state", "treats", "same_org"),
    list(itertools.product(ROLES, ACTIONS, STATES, [True, False], [True, False])),
)
def test_client_data_matrix(role: str, action: Action, state: str, treats: bool, same_org: bool) -> None:
    actor_id = {"client_self": CLIENT, "client_other": uuid.uuid4()}.get(role, DOC)
    actor_role = "client" if role.startswith("client") else role
    actor = Actor(account_id=actor_id, org_id=ORG, role=actor_role)  # type: ignore[arg-type]
    resource = Resource(org_id=ORG if same_org else OTHER_ORG, client_id=CLIENT)
    facts = Facts(now=NOW, treats=treats, consents=consent(state, ACTIONS[action]))
    decision = decide(actor, action, resource, facts)
    want = expected(role, state, treats, same_org)
    assert decision.allowed == (want == "allow")
    if want == "not_found":
        assert decision.reason == "not_found"
    if want == "forbidden":
        assert decision.reason != "not_found"
    if want == "allow" and role == "clinician":
        assert decision.consent_id == uuid.UUID(int=1), "the audit event names the consent that allowed it"


def test_missing_facts_fail_closed() -> None:
    actor = Actor(account_id=DOC, org_id=ORG, role="clinician")
    assert not decide(actor, Action.READ_CLIENT_RECORD, Resource(org_id=ORG, client_id=CLIENT)).allowed
    assert not decide(actor, Action.READ_CLIENT_RECORD, Resource(org_id=ORG), Facts(now=NOW)).allowed


@pytest.mark.parametrize(
    ("closed", "expires_in_s", "who", "action", "allowed"),
    [
        (False, 60, DOC, Action.READ_CLIENT_RECORD, True),
        (False, 0, DOC, Action.READ_CLIENT_RECORD, False),  # TTL over
        (True, 60, DOC, Action.READ_CLIENT_RECORD, False),  # closed early
        (False, 60, OTHER_DOC, Action.READ_CLIENT_RECORD, False),  # someone else's break-glass
        (False, 60, DOC, Action.MESSAGE_CLIENT, False),  # break-glass opens records, not messaging
        (False, 60, DOC, Action.SHARE_CLIENT_RECORD, False),
    ],
)
def test_break_glass(closed: bool, expires_in_s: int, who: uuid.UUID, action: Action, allowed: bool) -> None:
    actor = Actor(account_id=DOC, org_id=ORG, role="clinician")
    opening = EmergencyFact(
        access_id=uuid.UUID(int=7),
        clinician_id=who,
        expires_at=NOW + dt.timedelta(seconds=expires_in_s),
        closed=closed,
    )
    decision = decide(
        actor, action, Resource(org_id=ORG, client_id=CLIENT), Facts(now=NOW, emergencies=(opening,))
    )
    assert decision.allowed == allowed
    if allowed:
        assert decision.reason == "emergency"
        assert decision.emergency_access_id == uuid.UUID(int=7)


@pytest.mark.parametrize("role", ["client", "clinician", "compliance_officer", "admin"])
def test_consent_management_rules(role: str) -> None:
    me = uuid.uuid4()
    actor = Actor(account_id=me, org_id=ORG, role=role)  # type: ignore[arg-type]
    own = Resource(org_id=ORG, client_id=me)
    for action in (Action.GRANT_CONSENT, Action.REVOKE_CONSENT):
        assert decide(actor, action, own).allowed == (role == "client"), "staff never consent for a client"
        assert not decide(actor, action, Resource(org_id=ORG, client_id=uuid.uuid4())).allowed
    assert decide(actor, Action.LIST_CONSENTS, Resource(org_id=ORG)).allowed
    read_other = decide(
        actor, Action.READ_CONSENT, Resource(org_id=ORG, client_id=uuid.uuid4(), grantee_id=DOC)
    )
    assert read_other.allowed == (role == "compliance_officer")
    assert decide(actor, Action.READ_CONSENT, Resource(org_id=ORG, client_id=me, grantee_id=DOC)).allowed
    assert decide(actor, Action.OPEN_EMERGENCY_ACCESS, Resource(org_id=ORG, client_id=CLIENT)).allowed == (
        role == "clinician"
    )
    approve_other = decide(actor, Action.APPROVE_EMERGENCY_ACCESS, Resource(org_id=ORG, owner_id=DOC))
    assert approve_other.allowed == (role in {"admin", "compliance_officer"})
    approve_own = decide(actor, Action.APPROVE_EMERGENCY_ACCESS, Resource(org_id=ORG, owner_id=me))
    assert not approve_own.allowed, "dual control: nobody approves their own break-glass"
    close_own = decide(actor, Action.CLOSE_EMERGENCY_ACCESS, Resource(org_id=ORG, owner_id=me))
    assert close_own.allowed, "whoever opened it may end it early"
    close_other = decide(actor, Action.CLOSE_EMERGENCY_ACCESS, Resource(org_id=ORG, owner_id=DOC))
    assert close_other.allowed == (role == "compliance_officer")
    assert close_other.allowed or close_other.reason == "not_found", "others are told it does not exist"
    listing = decide(actor, Action.LIST_EMERGENCY_ACCESS, Resource(org_id=ORG))
    assert listing.allowed == (role in {"clinician", "compliance_officer"})


@pytest.mark.parametrize(
    ("treats", "scope", "author", "allowed"),
    [
        (True, None, True, True),  # the treating author shares on the treatment basis
        (False, "records.share", True, True),  # or as the client's consent allows
        (False, "records.read", True, False),  # reading is not sharing
        (False, None, True, False),
        (True, None, False, False),  # only the author re-issues a note's envelope
    ],
)
def test_share_note(treats: bool, scope: str | None, author: bool, allowed: bool) -> None:
    actor = Actor(account_id=DOC, org_id=ORG, role="clinician")
    consents = consent("active", scope) if scope else ()
    resource = Resource(org_id=ORG, client_id=CLIENT, owner_id=DOC if author else OTHER_DOC)
    decision = decide(actor, Action.SHARE_NOTE, resource, Facts(now=NOW, treats=treats, consents=consents))
    assert decision.allowed == allowed

"""The policy's retention, legal-hold and erasure cells, role by role."""

from __future__ import annotations

import uuid

import pytest

from backend.policy import Action, Actor, Resource, decide

ORG = uuid.uuid4()
OTHER_ORG = uuid.uuid4()
ME = uuid.uuid4()
SOMEONE = uuid.uuid4()
ROLES = ["client", "clinician", "compliance_officer", "admin"]

# action -> roles allowed, for a resource in the caller's organization.
EXPECTED = {
    Action.READ_RETENTION_POLICIES: set(ROLES),
    Action.SET_RETENTION_POLICY: {"admin"},
    Action.READ_RETENTION_RUNS: {"admin", "compliance_officer"},
    Action.PLACE_LEGAL_HOLD: {"compliance_officer"},
    Action.RELEASE_LEGAL_HOLD: {"compliance_officer"},
    Action.LIST_LEGAL_HOLDS: {"compliance_officer"},
    Action.LIST_ERASURE_REQUESTS: {"compliance_officer"},
}


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("action", list(EXPECTED))
def test_role_table(role: str, action: Action) -> None:
    actor = Actor(account_id=ME, org_id=ORG, role=role)  # type: ignore[arg-type]
    decision = decide(actor, action, Resource(org_id=ORG))
    assert decision.allowed == (role in EXPECTED[action]), decision.reason
    if not decision.allowed:
        assert decision.reason == "role"
    elsewhere = decide(actor, action, Resource(org_id=OTHER_ORG))
    assert not elsewhere.allowed
    assert elsewhere.reason == "not_found"


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("action", [Action.REQUEST_ERASURE, Action.READ_OWN_ERASURE_REQUESTS])
def test_erasure_is_filed_by_the_client_for_themselves(role: str, action: Action) -> None:
    actor = Actor(account_id=ME, org_id=ORG, role=role)  # type: ignore[arg-type]
    own = decide(actor, action, Resource(org_id=ORG, owner_id=ME))
    assert own.allowed == (role == "client")
    other = decide(actor, action, Resource(org_id=ORG, owner_id=SOMEONE))
    assert not other.allowed
    assert other.reason == ("not_found" if role == "client" else "role")


@pytest.mark.parametrize("role", ROLES)
def test_erasure_is_decided_by_a_compliance_officer_never_about_themselves(role: str) -> None:
    actor = Actor(account_id=ME, org_id=ORG, role=role)  # type: ignore[arg-type]
    decision = decide(actor, Action.DECIDE_ERASURE, Resource(org_id=ORG, owner_id=SOMEONE))
    assert decision.allowed == (role == "compliance_officer")
    own = decide(actor, Action.DECIDE_ERASURE, Resource(org_id=ORG, owner_id=ME))
    assert not own.allowed
    assert own.reason == ("own_request" if role == "compliance_officer" else "role")
    unnamed = decide(actor, Action.DECIDE_ERASURE, Resource(org_id=ORG))
    assert not unnamed.allowed, "fail closed without the request's client"


@pytest.mark.parametrize("target", ["clinician", "compliance_officer", "admin"])
def test_holds_are_placed_on_clients_only(target: str) -> None:
    officer = Actor(account_id=ME, org_id=ORG, role="compliance_officer")
    staff = decide(officer, Action.PLACE_LEGAL_HOLD, Resource(org_id=ORG, target_role=target))  # type: ignore[arg-type]
    assert not staff.allowed
    assert staff.reason == "target_role"
    assert decide(officer, Action.PLACE_LEGAL_HOLD, Resource(org_id=ORG, target_role="client")).allowed

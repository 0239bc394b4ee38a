"""The policy function, cell by cell."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from backend.errors import ForbiddenError, NotFoundError
from backend.policy import Action, Actor, Facts, Resource, decide, require

ORG = uuid.uuid4()
OTHER_ORG = uuid.uuid4()
ME = uuid.uuid4()
ROLES = ["client", "clinician", "compliance_officer", "admin"]

EXPECTED_CREATE_STAFF = {"admin"}
EXPECTED_INVITE = {"clinician"}


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("org", ["same", "other"])
def test_decision_table(role: str, org: str) -> None:
    actor = Actor(account_id=ME, org_id=ORG, role=role)  # type: ignore[arg-type]
    org_id = ORG if org == "same" else OTHER_ORG
    read_self = decide(actor, Action.READ_SELF, Resource(org_id=org_id, owner_id=ME))
    staff = decide(actor, Action.CREATE_STAFF_ACCOUNT, Resource(org_id=org_id, target_role="clinician"))
    invite = decide(actor, Action.CREATE_INVITE, Resource(org_id=org_id))
    if org == "other":
        assert not read_self.allowed
        assert not staff.allowed
        assert not invite.allowed
        assert {read_self.reason, staff.reason, invite.reason} == {"not_found"}
        return
    assert read_self.allowed
    assert staff.allowed == (role in EXPECTED_CREATE_STAFF)
    assert invite.allowed == (role in EXPECTED_INVITE)


def test_read_of_someone_else_is_not_found() -> None:
    actor = Actor(account_id=ME, org_id=ORG, role="admin")
    decision = decide(actor, Action.READ_SELF, Resource(org_id=ORG, owner_id=uuid.uuid4()))
    assert not decision.allowed
    assert decision.reason == "not_found"


def test_admin_cannot_create_clients() -> None:
    actor = Actor(account_id=ME, org_id=ORG, role="admin")
    assert not decide(actor, Action.CREATE_STAFF_ACCOUNT, Resource(org_id=ORG, target_role="client")).allowed


def test_require_maps_denials() -> None:
    actor = Actor(account_id=ME, org_id=ORG, role="client")
    with pytest.raises(NotFoundError):
        require(actor, Action.CREATE_INVITE, Resource(org_id=OTHER_ORG))
    with pytest.raises(ForbiddenError):
        require(actor, Action.CREATE_INVITE, Resource(org_id=ORG))
    assert require(actor, Action.READ_SELF, Resource(org_id=ORG, owner_id=ME)).allowed


@pytest.mark.parametrize("role", ROLES)
def test_key_and_audit_rules(role: str) -> None:
    actor = Actor(account_id=ME, org_id=ORG, role=role)  # type: ignore[arg-type]
    other = uuid.uuid4()
    assert decide(actor, Action.MANAGE_OWN_KEYS, Resource(org_id=ORG, owner_id=ME)).allowed
    assert decide(actor, Action.MANAGE_OWN_KEYS, Resource(org_id=ORG, owner_id=other)).reason == "not_found"
    assert decide(actor, Action.READ_PUBLIC_KEYS, Resource(org_id=ORG, owner_id=other)).allowed
    assert not decide(actor, Action.READ_PUBLIC_KEYS, Resource(org_id=OTHER_ORG, owner_id=other)).allowed
    audit = decide(actor, Action.READ_AUDIT_TRAIL, Resource(org_id=ORG))
    assert audit.allowed == (role == "compliance_officer")
    own = decide(actor, Action.READ_OWN_DISCLOSURES, Resource(org_id=ORG, owner_id=ME))
    assert own.allowed == (role == "client")
    assert not decide(actor, Action.READ_OWN_DISCLOSURES, Resource(org_id=ORG, owner_id=other)).allowed


@pytest.mark.parametrize("role", ROLES)
def test_only_admins_manage_accounts(role: str) -> None:
    """A-10/A-06b: role changes and disabling are the admins' alone; another organization is not found."""
    actor = Actor(account_id=ME, org_id=ORG, role=role)  # type: ignore[arg-type]
    assert decide(actor, Action.MANAGE_ACCOUNTS, Resource(org_id=ORG)).allowed == (role == "admin")
    elsewhere = decide(actor, Action.MANAGE_ACCOUNTS, Resource(org_id=OTHER_ORG))
    assert elsewhere.reason == "not_found"


@pytest.mark.parametrize("role", ROLES)
def test_only_clients_and_clinicians_take_part_in_conversations(role: str) -> None:
    """A-10: a member whose role changed away from clinician reads no group any more."""
    actor = Actor(account_id=ME, org_id=ORG, role=role)  # type: ignore[arg-type]
    group = Resource(org_id=ORG, membership="active")
    assert decide(actor, Action.READ_CONVERSATION, group).allowed == (role in {"client", "clinician"})
    assert decide(actor, Action.READ_CONVERSATION, Resource(org_id=ORG)).reason == "not_found"


@pytest.mark.parametrize("role", ROLES)
def test_notes_about_a_client_outside_the_circle_are_not_found(role: str) -> None:
    """A-02: writing a note about someone else's client answers like a client that does not exist."""
    actor = Actor(account_id=ME, org_id=ORG, role=role)  # type: ignore[arg-type]
    facts = Facts(now=dt.datetime(2026, 6, 1, tzinfo=dt.UTC))
    stranger = decide(actor, Action.WRITE_NOTE, Resource(org_id=ORG, client_id=uuid.uuid4()), facts)
    assert stranger.reason == "not_found"
    own = decide(actor, Action.WRITE_NOTE, Resource(org_id=ORG, client_id=ME), facts)
    assert own.reason == ("role" if role == "client" else "not_found")
    treated = decide(
        actor,
        Action.WRITE_NOTE,
        Resource(org_id=ORG, client_id=uuid.uuid4()),
        Facts(now=facts.now, treats=True),
    )
    assert treated.allowed == (role == "clinician")

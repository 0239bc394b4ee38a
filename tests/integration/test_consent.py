"""Consent and break-glass through the real app: signed statements, receipts, the policy at work."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg
import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from backend.clock import FrozenClock
from backend.consent.receipts import ConsentReceipt, verify_receipt
from crypto.client import generate_identity, sign_consent
from crypto.client.keys import IdentityKeys
from crypto.public import ConsentAction, encode
from tests.helpers import Account, Clinic, audit_rows, make_clinic, make_staff, problem

SCOPES = ("messaging", "records.read")


@dataclass
class World:
    clinic: Clinic
    identity: IdentityKeys
    org_id: uuid.UUID
    other_doc: Account


def _json(value: Any) -> Any:
    return msgspec.json.decode(encode(value))


def statement(
    world: World,
    clock: FrozenClock,
    *,
    action: ConsentAction = ConsentAction.GRANT,
    consent_id: uuid.UUID | None = None,
    grantee: uuid.UUID | None = None,
    grantee_type: str = "clinician",
    scopes: tuple[str, ...] = SCOPES,
    hours: int = 24,
    identity: IdentityKeys | None = None,
) -> Any:
    start = clock.now().replace(microsecond=0) - dt.timedelta(minutes=1)
    signed = sign_consent(
        identity or world.identity,
        action=action,
        consent_id=consent_id or uuid.uuid4(),
        organization_id=world.org_id,
        grantee_type=grantee_type,  # type: ignore[arg-type]
        grantee_id=grantee or world.clinic.clinician.id,
        scopes=scopes,
        purpose="TREAT",
        valid_from=start,
        valid_until=start + dt.timedelta(hours=hours),
        clock=clock.now,
    )
    return _json(signed)


@pytest.fixture
async def world(client: AsyncTestClient[Litestar], app: Litestar, db: asyncpg.Connection) -> World:
    clinic = await make_clinic(client, app, db)
    identity = generate_identity(clinic.client.id)
    published = await client.put("/v1/me/keys", json=_json(identity.bundle), headers=clinic.client.headers)
    assert published.status_code == 201
    org_id = uuid.UUID((await client.get("/v1/me", headers=clinic.client.headers)).json()["organization_id"])
    other = await make_staff(client, app, clinic.admin, "clinician", "other.doc@clinic.example")
    return World(clinic, identity, org_id, other)


async def test_grant_receipt_and_access(
    client: AsyncTestClient[Litestar], world: World, clock: FrozenClock, db: asyncpg.Connection
) -> None:
    doc, patient = world.clinic.clinician, world.clinic.client
    record = f"/v1/clients/{patient.id}"
    # The inviting clinician treats the client, but without consent reads nothing.
    assert (await client.get(record, headers=doc.headers)).status_code == 403
    body = statement(world, clock)
    granted = await client.post("/v1/consents", json=body, headers=patient.headers)
    assert granted.status_code == 201, granted.text
    receipt = msgspec.convert(granted.json()["receipt"], ConsentReceipt, strict=False)
    key = await client.get("/v1/consents/receipt-key")
    verify_receipt(receipt, msgspec.convert(key.json(), dict)["public_key"] and receipt.server_key)
    assert (await client.post("/v1/consents", json=body, headers=patient.headers)).status_code == 200, (
        "idempotent"
    )

    allowed = await client.get(record, headers=doc.headers)
    assert allowed.status_code == 200, allowed.text
    assert allowed.json()["basis"] == "consent"
    assert allowed.json()["consent_id"] == body["consent_id"]
    # Another clinician of the same organization is not named by the consent: outside the
    # client's circle, the answer is that of a client that does not exist.
    assert (await client.get(record, headers=world.other_doc.headers)).status_code == 404
    reads = await audit_rows(db, "client.read")
    allowed_reads = [r for r in reads if r["outcome"] == 0]
    assert len(allowed_reads) == 1
    assert str(allowed_reads[0]["consent_id"]) == body["consent_id"], "the audit event names the consent"
    # The refused attempts are on the trail too, with the policy's reason.
    refused = [(r["agent_account_id"], r["outcome"], r["outcome_reason"]) for r in reads if r["outcome"] != 0]
    assert refused == [(doc.id, 4, "no_consent"), (world.other_doc.id, 4, "not_found")]


async def test_revocation_takes_effect_on_the_next_request(
    client: AsyncTestClient[Litestar], world: World, clock: FrozenClock, db: asyncpg.Connection
) -> None:
    """A clinician holding a valid session is refused on the very next request after revocation."""
    doc, patient = world.clinic.clinician, world.clinic.client
    grant = statement(world, clock)
    assert (await client.post("/v1/consents", json=grant, headers=patient.headers)).status_code == 201
    record = f"/v1/clients/{patient.id}"
    assert (await client.get(record, headers=doc.headers)).status_code == 200
    revoke = statement(world, clock, action=ConsentAction.REVOKE, consent_id=uuid.UUID(grant["consent_id"]))
    revoked = await client.post(
        f"/v1/consents/{grant['consent_id']}/revoke", json=revoke, headers=patient.headers
    )
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["consent"]["status"] == "revoked"
    assert (await client.get(record, headers=doc.headers)).status_code == 403
    again = await client.post(
        f"/v1/consents/{grant['consent_id']}/revoke", json=revoke, headers=patient.headers
    )
    assert again.status_code == 409
    history = await client.get(f"/v1/consents/{grant['consent_id']}/history", headers=doc.headers)
    assert [e["kind"] for e in history.json()["events"]] == ["grant", "revoke"]
    # The events are append-only in the database as well.
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await db.execute("DELETE FROM consent_events")


async def test_expiry_takes_effect_without_any_job(
    client: AsyncTestClient[Litestar], app: Litestar, world: World, clock: FrozenClock, db: asyncpg.Connection
) -> None:
    from backend.audit_trail import AuditContext  # noqa: PLC0415
    from backend.consent.service import expire_due  # noqa: PLC0415
    from tests.helpers import runtime_of  # noqa: PLC0415

    doc, patient = world.clinic.clinician, world.clinic.client
    grant = statement(world, clock, hours=1)
    await client.post("/v1/consents", json=grant, headers=patient.headers)
    assert (await client.get(f"/v1/clients/{patient.id}", headers=doc.headers)).status_code == 200
    for _ in range(6):  # an hour passes; both keep their sessions alive
        clock.advance(600)
        assert (await client.get("/v1/me", headers=doc.headers)).status_code == 200
        assert (await client.get("/v1/me", headers=patient.headers)).status_code == 200
    assert (await client.get(f"/v1/clients/{patient.id}", headers=doc.headers)).status_code == 403
    listed = (await client.get("/v1/consents", headers=patient.headers)).json()["items"]
    assert listed[0]["status"] == "expired"
    assert await expire_due(runtime_of(app), db, AuditContext(source_instance="test")) == 1
    assert await expire_due(runtime_of(app), db, AuditContext(source_instance="test")) == 0
    kinds = await db.fetch("SELECT kind FROM consent_events ORDER BY seq")
    assert [r["kind"] for r in kinds] == ["grant", "expire"]


async def test_organization_grant_reaches_only_treating_clinicians(
    client: AsyncTestClient[Litestar], world: World, clock: FrozenClock
) -> None:
    patient = world.clinic.client
    org_grant = statement(world, clock, grantee=world.org_id, grantee_type="organization")
    assert (await client.post("/v1/consents", json=org_grant, headers=patient.headers)).status_code == 201
    assert (
        await client.get(f"/v1/clients/{patient.id}", headers=world.clinic.clinician.headers)
    ).status_code == 200
    assert (await client.get(f"/v1/clients/{patient.id}", headers=world.other_doc.headers)).status_code == 404
    # Listing follows the same rule: the organization grant is not shown to a clinician who does
    # not treat the client (it would reveal the organization's client list).
    mine = (await client.get("/v1/consents", headers=world.clinic.clinician.headers)).json()["items"]
    theirs = (await client.get("/v1/consents", headers=world.other_doc.headers)).json()["items"]
    assert [c["consent_id"] for c in mine] == [org_grant["consent_id"]]
    assert theirs == []


@pytest.mark.parametrize(
    ("case", "status", "slug"),
    [
        ("staff posts a statement", 403, "forbidden"),
        ("signed by another key", 422, "bad-signature"),
        ("tampered scope", 422, "bad-signature"),
        ("grantee not a clinician", 422, "invalid-input"),
        ("already expired", 422, "invalid-input"),
        ("revoke statement posted as grant", 422, "invalid-input"),
        ("unknown field", 400, "validation"),
        ("reused id, other statement", 409, "conflict"),
    ],
)
async def test_bad_consents_are_refused(
    client: AsyncTestClient[Litestar],
    world: World,
    clock: FrozenClock,
    db: asyncpg.Connection,
    case: str,
    status: int,
    slug: str,
) -> None:
    patient = world.clinic.client
    headers = patient.headers
    body = statement(world, clock)
    if case == "staff posts a statement":
        headers = world.clinic.clinician.headers
    elif case == "signed by another key":
        body = statement(world, clock, identity=generate_identity(patient.id))
    elif case == "tampered scope":
        body["scopes"] = ["messaging", "records.read", "records.share"]
    elif case == "grantee not a clinician":
        body = statement(world, clock, grantee=world.clinic.admin.id)
    elif case == "already expired":
        body = statement(world, clock, hours=1)
        for _ in range(7):  # time passes while the client's session stays alive
            clock.advance(600)
            assert (await client.get("/v1/me", headers=headers)).status_code == 200
    elif case == "revoke statement posted as grant":
        body = statement(world, clock, action=ConsentAction.REVOKE)
    elif case == "unknown field":
        body["note"] = "extra"
    else:
        first = statement(world, clock)
        assert (await client.post("/v1/consents", json=first, headers=headers)).status_code == 201
        body = statement(world, clock, consent_id=uuid.UUID(first["consent_id"]), scopes=("messaging",))
    before = await db.fetchval("SELECT count(*) FROM consent_events")
    response = await client.post("/v1/consents", json=body, headers=headers)
    assert response.status_code == status, response.text
    assert problem(response)["type"].endswith(slug)
    assert await db.fetchval("SELECT count(*) FROM consent_events") == before


async def test_listing_is_filtered_by_role(
    client: AsyncTestClient[Litestar], app: Litestar, world: World, clock: FrozenClock
) -> None:
    patient = world.clinic.client
    mine = statement(world, clock)
    other = statement(world, clock, grantee=world.other_doc.id)
    for body in (mine, other):
        assert (await client.post("/v1/consents", json=body, headers=patient.headers)).status_code == 201
    compliance = await make_staff(client, app, world.clinic.admin, "compliance_officer", "co@clinic.example")

    async def ids(headers: dict[str, str]) -> set[str]:
        response = await client.get("/v1/consents", headers=headers)
        assert response.status_code == 200
        return {item["consent_id"] for item in response.json()["items"]}

    assert await ids(patient.headers) == {mine["consent_id"], other["consent_id"]}
    assert await ids(world.clinic.clinician.headers) == {mine["consent_id"]}
    assert await ids(compliance.headers) == {mine["consent_id"], other["consent_id"]}
    assert await ids(world.clinic.admin.headers) == set()
    # The receipt of someone else's consent does not exist for another clinician.
    foreign = await client.get(
        f"/v1/consents/{other['consent_id']}/receipt", headers=world.clinic.clinician.headers
    )
    assert foreign.status_code == 404
    own = await client.get(
        f"/v1/consents/{mine['consent_id']}/receipt", headers=world.clinic.clinician.headers
    )
    assert own.status_code == 200
    assert own.json()["events"][0]["statement"]["consent_id"] == mine["consent_id"]


async def test_break_glass_dual_control(
    client: AsyncTestClient[Litestar], app: Litestar, world: World, clock: FrozenClock, db: asyncpg.Connection
) -> None:
    doc, patient, admin = world.other_doc, world.clinic.client, world.clinic.admin
    record = f"/v1/clients/{patient.id}"
    assert (await client.get(record, headers=doc.headers)).status_code == 404, "not in the client's circle"
    no_reason = await client.post(
        "/v1/emergency-access", json={"client_id": str(patient.id)}, headers=doc.headers
    )
    assert no_reason.status_code == 400
    body = {"client_id": str(patient.id), "reason": "Client unreachable after a crisis call; safety check."}
    as_admin = await client.post("/v1/emergency-access", json=body, headers=admin.headers)
    assert as_admin.status_code == 403
    opened = await client.post("/v1/emergency-access", json=body, headers=doc.headers)
    assert opened.status_code == 201, opened.text
    access = opened.json()
    assert access["status"] == "pending_approval"
    allowed = await client.get(record, headers=doc.headers)
    assert allowed.status_code == 200
    assert allowed.json()["basis"] == "emergency"
    told = await db.fetchval(
        "SELECT count(*) FROM account_events WHERE account_id = $1 AND kind = 'emergency.opened'", patient.id
    )
    assert told == 1, "the client is told about the break-glass"
    assert (
        await client.get(f"/v1/clients/{patient.id}", headers=world.clinic.clinician.headers)
    ).status_code == 403

    # Dual control: the requester cannot approve; a custodian (admin) can.
    self_approve = await client.post(f"/v1/emergency-access/{access['id']}/approve", headers=doc.headers)
    assert self_approve.status_code == 403
    approved = await client.post(f"/v1/emergency-access/{access['id']}/approve", headers=admin.headers)
    assert approved.status_code == 200
    assert approved.json()["status"] == "approved"

    # The client sees the break-glass in their accounting of disclosures.
    disclosures = (await client.get("/v1/me/disclosures", headers=patient.headers)).json()["items"]
    emergency_seen = [d for d in disclosures if d["purpose"] == "ETREAT" and d["agent_id"] == str(doc.id)]
    assert {d["type"] for d in emergency_seen} >= {"emergency.open", "client.read"}
    compliance = await make_staff(client, app, admin, "compliance_officer", "co2@clinic.example")
    listing = await client.get("/v1/emergency-access", headers=compliance.headers)
    assert [item["id"] for item in listing.json()["items"]] == [access["id"]]
    events = await audit_rows(db)
    emergency = [
        e for e in events if e["event_type"] in {"emergency.open", "client.read"} and e["purpose_of_use"]
    ]
    assert {e["purpose_of_use"] for e in emergency if e["agent_account_id"] == doc.id} == {"ETREAT"}
    assert all(e["subject_id"] == patient.id for e in emergency)

    for _ in range(6):  # the hour of break-glass passes with the sessions kept alive
        clock.advance(601)
        for account in (doc, admin):
            assert (await client.get("/v1/me", headers=account.headers)).status_code == 200
    assert (await client.get(record, headers=doc.headers)).status_code == 403, "break-glass ends at its TTL"
    late = await client.post(f"/v1/emergency-access/{access['id']}/approve", headers=admin.headers)
    assert late.status_code == 409


@pytest.mark.parametrize("state", ["none", "active", "active_org", "expired", "revoked"])
async def test_http_matrix_matches_the_policy_table(
    client: AsyncTestClient[Litestar],
    app: Litestar,
    db: asyncpg.Connection,
    world: World,
    clock: FrozenClock,
    state: str,
) -> None:
    """The same table as tests/unit/backend/test_policy_consent.py, through HTTP: 200, 403 or 404."""
    patient = world.clinic.client
    if state != "none":
        grantee = world.org_id if state == "active_org" else world.clinic.clinician.id
        body = statement(
            world,
            clock,
            grantee=grantee,
            grantee_type="organization" if state == "active_org" else "clinician",
        )
        assert (await client.post("/v1/consents", json=body, headers=patient.headers)).status_code == 201
        if state == "revoked":
            revoke = statement(
                world,
                clock,
                action=ConsentAction.REVOKE,
                consent_id=uuid.UUID(body["consent_id"]),
                grantee=grantee,
            )
            url = f"/v1/consents/{body['consent_id']}/revoke"
            assert (await client.post(url, json=revoke, headers=patient.headers)).status_code == 200
        if state == "expired":
            await db.execute("ALTER TABLE consents DISABLE TRIGGER consents_transition")
            await db.execute(
                "UPDATE consents SET valid_from = valid_from - interval '2 hours',"
                " valid_until = valid_from - interval '1 hour'"
            )
            await db.execute("ALTER TABLE consents ENABLE TRIGGER consents_transition")
    compliance = await make_staff(client, app, world.clinic.admin, "compliance_officer", "co3@clinic.example")
    outsider_clinic = await make_clinic(client, app, db, slug="outside")
    other_client = outsider_clinic.client
    treating_granted = state in {"active", "active_org"}
    expected = {
        "the client": (patient, 200),
        "the treating clinician (named or via the organization)": (
            world.clinic.clinician,
            200 if treating_granted else 403,
        ),
        # Outside the client's circle: the answer of a client that does not exist.
        "a clinician who does not treat the client": (world.other_doc, 404),
        "a compliance officer": (compliance, 404),
        "an admin": (world.clinic.admin, 404),
        "a clinician of another organization": (outsider_clinic.clinician, 404),
        "a client of another organization": (other_client, 404),
    }
    for who, (account, status) in expected.items():
        response = await client.get(f"/v1/clients/{patient.id}", headers=account.headers)
        assert response.status_code == status, f"{state}: {who} got {response.status_code}"
    unknown = await client.get(f"/v1/clients/{uuid.uuid4()}", headers=world.clinic.clinician.headers)
    foreign = await client.get(f"/v1/clients/{patient.id}", headers=outsider_clinic.clinician.headers)
    hidden = await client.get(f"/v1/clients/{patient.id}", headers=world.other_doc.headers)
    assert unknown.status_code == foreign.status_code == hidden.status_code == 404
    # No existence leak: an unknown id, another organization's client and a client outside
    # the caller's circle answer alike.
    shapes = [{k: v for k, v in r.json().items() if k != "request_id"} for r in (unknown, foreign, hidden)]
    assert shapes[0] == shapes[1] == shapes[2]


async def test_a_clinician_outside_the_circle_cannot_tell_a_client_exists(
    client: AsyncTestClient[Litestar], world: World, db: asyncpg.Connection
) -> None:
    """A-02: starting a conversation with a client one does not know answers like a client_id of nobody."""
    patient, stranger = world.clinic.client, world.other_doc

    async def start(client_id: uuid.UUID) -> Any:
        body = {"id": str(uuid.uuid4()), "kind": "direct", "client_id": str(client_id)}
        response = await client.post("/v1/conversations", json=body, headers=stranger.headers)
        assert response.status_code == 422, response.text
        return {k: v for k, v in problem(response).items() if k != "request_id"}

    assert await start(patient.id) == await start(uuid.uuid4())
    refused = [r for r in await audit_rows(db, "conversation.create") if r["outcome"] != 0]
    assert [(r["agent_account_id"], r["subject_id"], r["outcome_reason"]) for r in refused] == [
        (stranger.id, patient.id, "not_found")
    ]
    # Staff who never start conversations are refused alike, whatever the id names.
    admin = world.clinic.admin
    for client_id in (patient.id, uuid.uuid4()):
        body = {"id": str(uuid.uuid4()), "kind": "direct", "client_id": str(client_id)}
        assert (await client.post("/v1/conversations", json=body, headers=admin.headers)).status_code == 403

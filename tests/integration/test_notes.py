"""Session notes through the real app with real keys: custodian, amendments, shares, break-glass."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import asyncpg
import httpx
import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from backend.clock import FrozenClock
from crypto.client import InnerPayload, generate_identity, open_envelope, seal_envelope, share_envelope
from crypto.client.keys import IdentityKeys
from crypto.public import Envelope, EnvelopeKind, KeyBundle
from tests.helpers import Account, Clinic, audit_rows, make_clinic, make_staff, problem
from tests.messaging_helpers import as_json, consent_to, publish_keys


@dataclass
class Practice:
    clinic: Clinic
    org_id: uuid.UUID
    doc: IdentityKeys
    patient: IdentityKeys
    custodian: IdentityKeys
    colleague: Account
    colleague_keys: IdentityKeys


def note(
    author: IdentityKeys,
    client_id: uuid.UUID,
    text: str,
    readers: list[KeyBundle],
    *,
    amends: uuid.UUID | None = None,
) -> Envelope:
    return seal_envelope(
        author,
        kind=EnvelopeKind.NOTE_AMENDMENT if amends else EnvelopeKind.NOTE,
        context_id=client_id,
        item_id=uuid.uuid4(),
        payload=InnerPayload(version=1, content_type="text/markdown", body=text.encode()),
        recipients=readers,
        references=amends,
    )


def opened(envelope_json: object, reader: IdentityKeys, author: KeyBundle, client_id: uuid.UUID) -> str:
    envelope = msgspec.convert(envelope_json, Envelope, strict=False)
    result = open_envelope(
        envelope,
        reader=reader,
        sender_bundle=author,
        context_id=client_id,
        kinds={EnvelopeKind.NOTE, EnvelopeKind.NOTE_AMENDMENT},
    )
    return result.payload.body.decode()


@pytest.fixture
async def practice(client: AsyncTestClient[Litestar], app: Litestar, db: asyncpg.Connection) -> Practice:
    clinic = await make_clinic(client, app, db)
    org_id = uuid.UUID((await client.get("/v1/me", headers=clinic.client.headers)).json()["organization_id"])
    custodian = generate_identity(org_id)
    registered = await client.put(
        "/v1/organization/custodian-key", json=as_json(custodian.bundle), headers=clinic.admin.headers
    )
    assert registered.status_code == 201, registered.text
    colleague = await make_staff(client, app, clinic.admin, "clinician", "colleague@clinic.example")
    return Practice(
        clinic,
        org_id,
        await publish_keys(client, clinic.clinician),
        await publish_keys(client, clinic.client),
        custodian,
        colleague,
        await publish_keys(client, colleague),
    )


async def test_write_read_amend_and_custodian(
    client: AsyncTestClient[Litestar], practice: Practice, db: asyncpg.Connection
) -> None:
    doc, patient = practice.clinic.clinician, practice.clinic.client
    url = f"/v1/clients/{patient.id}/notes"
    first = note(
        practice.doc,
        patient.id,
        "Session 1: anxiety, sleep.",
        [practice.doc.bundle, practice.custodian.bundle],
    )
    stored = await client.post(url, json=as_json(first), headers=doc.headers)
    assert stored.status_code == 201, stored.text
    assert (await client.post(url, json=as_json(first), headers=doc.headers)).status_code == 200, "idempotent"

    listing = (await client.get(url, headers=doc.headers)).json()["items"]
    assert [n["id"] for n in listing] == [str(first.item_id)]
    assert (
        opened(listing[0]["envelope"], practice.doc, practice.doc.bundle, patient.id)
        == "Session 1: anxiety, sleep."
    )
    # The practice can read its records without the clinician (custodian key, held offline).
    assert opened(listing[0]["envelope"], practice.custodian, practice.doc.bundle, patient.id).startswith(
        "Session 1"
    )

    amendment = note(
        practice.doc,
        patient.id,
        "Correction: sleep improved.",
        [practice.doc.bundle, practice.custodian.bundle],
        amends=first.item_id,
    )
    amended = await client.post(
        f"/v1/notes/{first.item_id}/amendments", json=as_json(amendment), headers=doc.headers
    )
    assert amended.status_code == 201, amended.text
    original = (await client.get(f"/v1/notes/{first.item_id}", headers=doc.headers)).json()
    assert original["amended_by"] == [str(amendment.item_id)]
    assert (
        opened(original["envelope"], practice.doc, practice.doc.bundle, patient.id)
        == "Session 1: anxiety, sleep."
    )
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await db.execute("UPDATE note_envelopes SET envelope = envelope")
    assert [r["event_type"] for r in await audit_rows(db) if r["event_type"].startswith("note.")] == [
        "note.create",
        "note.list",
        "note.amend",
        "note.read",
    ]


@pytest.mark.parametrize(
    ("case", "status", "slug"),
    [
        ("custodian left out", 409, "recipients-mismatch"),
        ("unconsented colleague added", 409, "recipients-mismatch"),
        ("wrong context", 422, "invalid-input"),
        ("a client writes", 403, "forbidden"),
        ("a message instead of a note", 422, "invalid-input"),
    ],
)
async def test_bad_notes_are_refused(
    client: AsyncTestClient[Litestar],
    practice: Practice,
    db: asyncpg.Connection,
    case: str,
    status: int,
    slug: str,
) -> None:
    doc, patient = practice.clinic.clinician, practice.clinic.client
    readers = [practice.doc.bundle, practice.custodian.bundle]
    headers = doc.headers
    envelope = note(practice.doc, patient.id, "text", readers)
    if case == "custodian left out":
        envelope = note(practice.doc, patient.id, "text", [practice.doc.bundle])
    elif case == "unconsented colleague added":
        envelope = note(practice.doc, patient.id, "text", [*readers, practice.colleague_keys.bundle])
    elif case == "wrong context":
        envelope = note(practice.doc, uuid.uuid4(), "text", readers)
    elif case == "a client writes":
        envelope = note(
            practice.patient, patient.id, "text", [practice.patient.bundle, practice.custodian.bundle]
        )
        headers = patient.headers
    elif case == "a message instead of a note":
        envelope = seal_envelope(
            practice.doc,
            kind=EnvelopeKind.MESSAGE,
            context_id=patient.id,
            item_id=uuid.uuid4(),
            payload=InnerPayload(version=1, content_type="text/plain", body=b"x"),
            recipients=readers,
        )
    response = await client.post(f"/v1/clients/{patient.id}/notes", json=as_json(envelope), headers=headers)
    assert response.status_code == status, response.text
    assert problem(response)["type"].endswith(slug)
    assert await db.fetchval("SELECT count(*) FROM notes") == 0


async def test_share_with_client_and_consented_colleague(
    client: AsyncTestClient[Litestar], practice: Practice, clock: FrozenClock
) -> None:
    doc, patient, colleague = practice.clinic.clinician, practice.clinic.client, practice.colleague
    written = note(
        practice.doc, patient.id, "Plan: CBT weekly.", [practice.doc.bundle, practice.custodian.bundle]
    )
    await client.post(f"/v1/clients/{patient.id}/notes", json=as_json(written), headers=doc.headers)
    # The colleague has no consent nor care relationship: outside the client's circle, the
    # answer is that of a client that does not exist; the author may not share with them.
    assert (await client.get(f"/v1/clients/{patient.id}/notes", headers=colleague.headers)).status_code == 404
    to_colleague = share_envelope(written, sender=practice.doc, add=[practice.colleague_keys.bundle])
    refused = await client.post(
        f"/v1/notes/{written.item_id}/shares", json=as_json(to_colleague), headers=doc.headers
    )
    assert refused.status_code == 409
    # Sharing with the client is always allowed; nothing but wrapped keys may change.
    to_client = share_envelope(written, sender=practice.doc, add=[practice.patient.bundle])
    shared = await client.post(
        f"/v1/notes/{written.item_id}/shares", json=as_json(to_client), headers=doc.headers
    )
    assert shared.status_code == 200, shared.text
    mine = (await client.get(f"/v1/clients/{patient.id}/notes", headers=patient.headers)).json()["items"]
    assert (
        opened(mine[0]["envelope"], practice.patient, practice.doc.bundle, patient.id) == "Plan: CBT weekly."
    )
    # After the client consents (records.read) the colleague may be shared with.
    await consent_to(
        client, patient, practice.patient, practice.org_id, colleague.id, clock, scopes=("records.read",)
    )
    both = share_envelope(to_client, sender=practice.doc, add=[practice.colleague_keys.bundle])
    assert (
        await client.post(f"/v1/notes/{written.item_id}/shares", json=as_json(both), headers=doc.headers)
    ).status_code == 200
    theirs = (await client.get(f"/v1/clients/{patient.id}/notes", headers=colleague.headers)).json()["items"]
    assert (
        opened(theirs[0]["envelope"], practice.colleague_keys, practice.doc.bundle, patient.id)
        == "Plan: CBT weekly."
    )
    tampered = as_json(both)
    tampered["ciphertext"] = as_json(note(practice.doc, patient.id, "other", [practice.doc.bundle]))[
        "ciphertext"
    ]
    bad = await client.post(f"/v1/notes/{written.item_id}/shares", json=tampered, headers=doc.headers)
    assert bad.status_code == 422


async def test_author_keeps_access_without_consent_others_do_not(
    client: AsyncTestClient[Litestar], app: Litestar, db: asyncpg.Connection, practice: Practice
) -> None:
    doc, patient = practice.clinic.clinician, practice.clinic.client
    written = note(practice.doc, patient.id, "Intake.", [practice.doc.bundle, practice.custodian.bundle])
    await client.post(f"/v1/clients/{patient.id}/notes", json=as_json(written), headers=doc.headers)
    # The treating clinician has no consent (only the care relationship): they still read what they wrote.
    assert [
        n["id"]
        for n in (await client.get(f"/v1/clients/{patient.id}/notes", headers=doc.headers)).json()["items"]
    ] == [str(written.item_id)]
    other = await make_clinic(client, app, db, slug="other-practice")
    assert (
        await client.get(f"/v1/notes/{written.item_id}", headers=other.clinician.headers)
    ).status_code == 404
    assert (
        await client.get(f"/v1/clients/{patient.id}/notes", headers=other.clinician.headers)
    ).status_code == 404
    # A colleague of the same organization who cannot read the note is told what an unknown
    # note id tells, in reading and in writing, and the attempts are audited.
    hidden = await client.get(f"/v1/notes/{written.item_id}", headers=practice.colleague.headers)
    unknown = await client.get(f"/v1/notes/{uuid.uuid4()}", headers=practice.colleague.headers)
    amend = note(practice.doc, patient.id, "x", [practice.doc.bundle], amends=written.item_id)
    hidden_amend = await client.post(
        f"/v1/notes/{written.item_id}/amendments", json=as_json(amend), headers=practice.colleague.headers
    )
    assert hidden.status_code == unknown.status_code == hidden_amend.status_code == 404
    assert _shape(hidden) == _shape(unknown) == _shape(hidden_amend)
    refused = [
        (r["event_type"], r["outcome_reason"])
        for r in await audit_rows(db)
        if r["agent_account_id"] == practice.colleague.id and r["outcome"] != 0
    ]
    assert refused == [("note.read", "not_reader"), ("note.amend", "not_reader")]


async def test_a_consent_based_author_keeps_their_notes_after_the_consent_is_revoked(
    client: AsyncTestClient[Litestar], practice: Practice, clock: FrozenClock
) -> None:
    """Authorship keeps a clinician in the client's circle for what they wrote (no care relationship)."""
    import datetime as dt  # noqa: PLC0415

    from crypto.client import sign_consent  # noqa: PLC0415
    from crypto.public import ConsentAction  # noqa: PLC0415

    patient, colleague = practice.clinic.client, practice.colleague
    granted = await consent_to(client, patient, practice.patient, practice.org_id, colleague.id, clock)
    written = note(
        practice.colleague_keys,
        patient.id,
        "Consult.",
        [practice.colleague_keys.bundle, practice.custodian.bundle],
    )
    created = await client.post(
        f"/v1/clients/{patient.id}/notes", json=as_json(written), headers=colleague.headers
    )
    assert created.status_code == 201, created.text
    start = clock.now().replace(microsecond=0) - dt.timedelta(minutes=1)
    revocation = sign_consent(
        practice.patient, action=ConsentAction.REVOKE, consent_id=uuid.UUID(granted["consent_id"]),
        organization_id=practice.org_id, grantee_type="clinician", grantee_id=colleague.id,
        scopes=("messaging", "records.read"), purpose="TREAT", valid_from=start,
        valid_until=start + dt.timedelta(days=30), clock=clock.now,
    )  # fmt: skip
    revoked = await client.post(
        f"/v1/consents/{granted['consent_id']}/revoke", json=as_json(revocation), headers=patient.headers
    )
    assert revoked.status_code == 200, revoked.text
    listing = await client.get(f"/v1/clients/{patient.id}/notes", headers=colleague.headers)
    assert listing.status_code == 200, listing.text
    assert [n["id"] for n in listing.json()["items"]] == [str(written.item_id)]
    assert (await client.get(f"/v1/notes/{written.item_id}", headers=colleague.headers)).status_code == 200
    # Writing needs the consent again.
    again = note(
        practice.colleague_keys,
        patient.id,
        "More.",
        [practice.colleague_keys.bundle, practice.custodian.bundle],
    )
    refused = await client.post(
        f"/v1/clients/{patient.id}/notes", json=as_json(again), headers=colleague.headers
    )
    assert refused.status_code in {403, 404}, refused.text


def _shape(response: httpx.Response) -> dict[str, object]:
    """What a caller learns from a problem document (the request id aside)."""
    return {k: v for k, v in problem(response).items() if k != "request_id"} | {
        "status": response.status_code
    }


async def test_custodian_key_rules(client: AsyncTestClient[Litestar], practice: Practice) -> None:
    admin, doc = practice.clinic.admin, practice.clinic.clinician
    fetched = await client.get("/v1/organization/custodian-key", headers=doc.headers)
    assert fetched.status_code == 200
    assert fetched.json()["bundle"]["account_id"] == str(practice.org_id)
    wrong_account = generate_identity(uuid.uuid4())
    r = await client.put(
        "/v1/organization/custodian-key", json=as_json(wrong_account.bundle), headers=admin.headers
    )
    assert r.status_code == 422
    r = await client.put(
        "/v1/organization/custodian-key", json=as_json(practice.custodian.bundle), headers=doc.headers
    )
    assert r.status_code == 403
    reset = generate_identity(practice.org_id, key_version=2)
    r = await client.put("/v1/organization/custodian-key", json=as_json(reset.bundle), headers=admin.headers)
    assert r.status_code == 422, "a new custodian key must be signed by the previous one"


async def test_break_glass_with_custodian_rewrap(
    client: AsyncTestClient[Litestar],
    db: asyncpg.Connection,
    practice: Practice,
    clock: FrozenClock,
) -> None:
    """Dual approval: access alone opens nothing; the custodian's holder re-wraps keys; TTL ends it."""
    from crypto.client import open_envelope_with_wrap, rewrap_for  # noqa: PLC0415

    doc, patient, colleague, admin = (
        practice.clinic.clinician,
        practice.clinic.client,
        practice.colleague,
        practice.clinic.admin,
    )
    written = note(
        practice.doc, patient.id, "Safety plan: call 988.", [practice.doc.bundle, practice.custodian.bundle]
    )
    assert (
        await client.post(f"/v1/clients/{patient.id}/notes", json=as_json(written), headers=doc.headers)
    ).status_code == 201
    opened_access = await client.post(
        "/v1/emergency-access",
        json={"client_id": str(patient.id), "reason": "Client in crisis, treating clinician unreachable."},
        headers=colleague.headers,
    )
    access_id = opened_access.json()["id"]
    before = (await client.get(f"/v1/clients/{patient.id}/notes", headers=colleague.headers)).json()["items"]
    assert before == [], "break-glass alone opens nothing: content stays end-to-end encrypted"

    wrap = rewrap_for(
        written,
        custodian=practice.custodian,
        sender_bundle=practice.doc.bundle,
        context_id=patient.id,
        kinds={EnvelopeKind.NOTE},
        reader_bundle=practice.colleague_keys.bundle,
    )
    body = {"key_version": 1, "wraps": [{"note_id": str(written.item_id), "wrapped_key": as_json(wrap)}]}
    url = f"/v1/emergency-access/{access_id}/key-wraps"
    assert (await client.post(url, json=body, headers=colleague.headers)).status_code == 403, (
        "no self-approval"
    )
    assert (await client.post(url, json={**body, "key_version": 2}, headers=admin.headers)).status_code == 422
    foreign = {"key_version": 1, "wraps": [{"note_id": str(uuid.uuid4()), "wrapped_key": as_json(wrap)}]}
    assert (await client.post(url, json=foreign, headers=admin.headers)).status_code == 422
    approved = await client.post(url, json=body, headers=admin.headers)
    assert approved.status_code == 200, approved.text

    items = (await client.get(f"/v1/clients/{patient.id}/notes", headers=colleague.headers)).json()["items"]
    assert len(items) == 1
    got = items[0]
    wrapped = msgspec.convert(got["emergency_wrapped_key"], bytes, strict=False)
    envelope = msgspec.convert(got["envelope"], Envelope, strict=False)
    text = open_envelope_with_wrap(
        envelope,
        reader=practice.colleague_keys,
        wrapped_key=wrapped,
        sender_bundle=practice.doc.bundle,
        context_id=patient.id,
        kinds={EnvelopeKind.NOTE},
    ).payload.body.decode()
    assert text == "Safety plan: call 988."
    events = {r["event_type"]: r for r in await audit_rows(db)}
    assert events["emergency.rewrap"]["purpose_of_use"] == "ETREAT"
    assert events["note.list"]["purpose_of_use"] in {"ETREAT", "TREAT"}
    # When the hour is over, the wrap is no longer served.
    for _ in range(7):
        clock.advance(600)
        assert (await client.get("/v1/me", headers=colleague.headers)).status_code == 200
    assert (await client.get(f"/v1/clients/{patient.id}/notes", headers=colleague.headers)).status_code == 403

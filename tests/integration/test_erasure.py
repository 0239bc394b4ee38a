"""Erasure (GDPR Art. 17) end to end over HTTP: request, review, deletion, pseudonymization, what is kept."""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from audit.verify import verify_export
from backend.clock import FrozenClock
from backend.db.embedded import EmbeddedPostgres
from backend.retention import run_retention
from crypto.client import InnerPayload, create_key_backup, seal_envelope
from crypto.client.keys import IdentityKeys
from crypto.public import EnvelopeKind, limits
from tests.audit_helpers import integrate_all, log_vkey, make_officer, wait_for
from tests.conftest import ROOT
from tests.helpers import (
    CLIENT_PASSWORD,
    Account,
    Clinic,
    login,
    make_clinic,
    problem,
    runtime_of,
)
from tests.messaging_helpers import as_json, consent_to, publish_keys, seal

EMAIL = "Zelda.Marker-7731@Example.org"
NAME = "Zelda Marker-7731"


@dataclass
class Story:
    clinic: Clinic
    officer: Account
    patient: Account
    doc_keys: IdentityKeys
    pat_keys: IdentityKeys
    conversation_id: uuid.UUID
    note_id: uuid.UUID


async def _patient(client: AsyncTestClient[Litestar], clinician: Account) -> Account:
    invite = await client.post("/v1/invites", json={}, headers=clinician.headers)
    assert invite.status_code == 201, invite.text
    redeemed = await client.post(
        f"/v1/invites/{invite.json()['code']}/redeem",
        json={"email": EMAIL, "display_name": NAME, "password": CLIENT_PASSWORD},
    )
    assert redeemed.status_code == 201, redeemed.text
    patient = Account(uuid.UUID(redeemed.json()["id"]), EMAIL, CLIENT_PASSWORD, "client", clinician.org_slug)
    response = await login(client, patient)
    assert response.status_code == 200, response.text
    patient.token = response.json()["token"]
    return patient


@pytest.fixture
async def story(
    client: AsyncTestClient[Litestar], app: Litestar, db: asyncpg.Connection, clock: FrozenClock
) -> Story:
    """A client with keys, a key backup, consent, a conversation, an attachment and a note."""
    clinic = await make_clinic(client, app, db)
    officer = await make_officer(client, app, clinic)
    patient = await _patient(client, clinic.clinician)
    org_id = uuid.UUID((await client.get("/v1/me", headers=patient.headers)).json()["organization_id"])
    doc_keys = await publish_keys(client, clinic.clinician)
    pat_keys = await publish_keys(client, patient)
    backup = create_key_backup(
        pat_keys,
        "a passphrase for the backup",
        opslimit=limits.BACKUP_OPSLIMIT_MIN,
        memlimit=limits.BACKUP_MEMLIMIT_MIN,
    )
    assert (
        await client.put("/v1/me/key-backup", json=as_json(backup), headers=patient.headers)
    ).status_code == 201
    await consent_to(client, patient, pat_keys, org_id, clinic.clinician.id, clock)
    conversation_id = uuid.uuid4()
    created = await client.post(
        "/v1/conversations",
        json={"id": str(conversation_id), "kind": "direct", "client_id": str(patient.id)},
        headers=clinic.clinician.headers,
    )
    assert created.status_code == 201, created.text
    bundles = [doc_keys.bundle, pat_keys.bundle]
    for sender, keys, text in ((clinic.clinician, doc_keys, "How are you?"), (patient, pat_keys, "Better.")):
        sent = await client.post(
            f"/v1/conversations/{conversation_id}/messages",
            json=as_json(seal(keys, conversation_id, text, bundles)),
            headers=sender.headers,
        )
        assert sent.status_code == 201, sent.text
    blob = b"\x01" * 4096
    uploaded = await client.post(
        f"/v1/conversations/{conversation_id}/attachments",
        params={"id": str(uuid.uuid4())},
        content=blob,
        headers={
            **patient.headers,
            "Content-Type": "application/octet-stream",
            "X-Content-BLAKE2b": hashlib.blake2b(blob, digest_size=32).hexdigest(),
        },
    )
    assert uploaded.status_code == 201, uploaded.text
    envelope = seal_envelope(
        doc_keys,
        kind=EnvelopeKind.NOTE,
        context_id=patient.id,
        item_id=uuid.uuid4(),
        payload=InnerPayload(version=1, content_type="text/markdown", body=b"Session 1."),
        recipients=[doc_keys.bundle],
    )
    written = await client.post(
        f"/v1/clients/{patient.id}/notes", json=as_json(envelope), headers=clinic.clinician.headers
    )
    assert written.status_code == 201, written.text
    return Story(clinic, officer, patient, doc_keys, pat_keys, conversation_id, envelope.item_id)


async def _file(
    client: AsyncTestClient[Litestar], patient: Account, reason: str | None = None
) -> dict[str, Any]:
    filed = await client.post(
        "/v1/me/erasure-requests", json={"reason": reason} if reason else {}, headers=patient.headers
    )
    assert filed.status_code == 201, filed.text
    body: dict[str, Any] = filed.json()
    return body


async def _outcome(client: AsyncTestClient[Litestar], filed: dict[str, Any]) -> httpx.Response:
    response: httpx.Response = await client.get(
        f"/v1/erasure-requests/{filed['request']['id']}/outcome",
        headers={"Erasure-Receipt": filed["receipt_token"]},
    )
    return response


async def _decide(
    client: AsyncTestClient[Litestar], officer: Account, request_id: str, decision: str = "approve"
) -> httpx.Response:
    response: httpx.Response = await client.post(
        f"/v1/erasure-requests/{request_id}/decision",
        json={"decision": decision, "reason": "Identity verified, no exemption beyond Art. 17(3)."},
        headers=officer.headers,
    )
    return response


async def _wait_status(
    client: AsyncTestClient[Litestar], filed: dict[str, Any], status: str
) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    async def reached() -> bool:
        response = await _outcome(client, filed)
        assert response.status_code == 200, response.text
        seen.update(response.json())
        return bool(seen["status"] == status)

    await wait_for(reached)
    return seen


async def _dump(database_url: str, tmp_path: Path) -> bytes:
    pg_dump = EmbeddedPostgres(ROOT / ".data" / "pg-test").binary("pg_dump")
    out = tmp_path / "dump.sql"
    await asyncio.to_thread(
        subprocess.run, [str(pg_dump), "--data-only", "-f", str(out), database_url], check=True, timeout=120
    )
    return out.read_bytes()


async def test_erasure_end_to_end(
    client: AsyncTestClient[Litestar],
    app: Litestar,
    story: Story,
    db: asyncpg.Connection,
    database_url: str,
    tmp_path: Path,
) -> None:
    """After erasure no row names the email or name, login refuses it, the audit trail verifies."""
    patient, officer, clinic = story.patient, story.officer, story.clinic
    before = await _dump(database_url, tmp_path)
    assert EMAIL.encode() in before, "the dump shows the person before erasure"
    assert NAME.encode() in before
    filed = await _file(client, patient, reason=f"Please erase everything about {EMAIL}.")
    assert filed["request"]["status"] == "pending"
    assert filed["receipt_token"].startswith("cfe_")
    again = await client.post("/v1/me/erasure-requests", json={}, headers=patient.headers)
    assert again.status_code == 409, "one open request at a time"
    mine = (await client.get("/v1/me/erasure-requests", headers=patient.headers)).json()["items"]
    assert [r["id"] for r in mine] == [filed["request"]["id"]]

    listing = await client.get("/v1/erasure-requests", params={"status": "pending"}, headers=officer.headers)
    assert listing.status_code == 200, listing.text
    assert [r["id"] for r in listing.json()["items"]] == [filed["request"]["id"]]
    for someone in (clinic.admin, clinic.clinician, patient):
        denied = await _decide(client, someone, filed["request"]["id"])
        assert denied.status_code == 403, someone.role
        assert problem(denied)["type"].endswith("forbidden")

    decided = await _decide(client, officer, filed["request"]["id"])
    assert decided.status_code == 200, decided.text
    assert decided.json()["status"] in {"approved", "completed"}
    assert (await _decide(client, officer, filed["request"]["id"])).status_code == 409, "decided once"
    outcome = await _wait_status(client, filed, "completed")

    # What was kept, and why (Art. 17(3)); the client's own words are gone.
    kept = {item["category"]: item for item in outcome["kept"]}
    assert {"notes", "consent_events", "audit_events", "key_bundles", "account"} <= set(kept)
    assert kept["notes"]["count"] == 1
    assert "Art. 17(3)" in kept["notes"]["basis"]
    assert outcome["reason"] is None
    assert outcome["deleted"]["messages"] == 2
    assert outcome["deleted"]["attachments"] == 1
    assert outcome["deleted"]["key_backups"] == 1

    # The account is gone as a login and as an identity.
    assert (await login(client, patient)).status_code == 401
    for path in ("/v1/me", "/v1/me/erasure-requests", "/v1/me/export", "/v1/me/key-backup"):
        assert (await client.get(path, headers=patient.headers)).status_code == 401, path
    row = await db.fetchrow(
        "SELECT email, display_name, status, password_hash, totp_secret_sealed, erased_at FROM accounts"
        " WHERE id = $1",
        patient.id,
    )
    assert row is not None
    assert row["status"] == "erased"
    assert row["email"].endswith("@erased.invalid")
    assert row["password_hash"] is None
    assert row["erased_at"] is not None
    pseudonym = Account(patient.id, row["email"], CLIENT_PASSWORD, "client", patient.org_slug)
    assert (await login(client, pseudonym)).status_code == 401, "the pseudonym is no login either"
    for table, column in (
        ("messages", "conversation_id"),
        ("attachments", "conversation_id"),
        ("conversations", "id"),
    ):
        count = await db.fetchval(f"SELECT count(*) FROM {table} WHERE {column} = $1", story.conversation_id)  # noqa: S608
        assert count == 0, table
    for table in ("key_backups", "sessions", "recovery_codes", "account_events", "care_relationships"):
        column = "client_id" if table == "care_relationships" else "account_id"
        assert await db.fetchval(f"SELECT count(*) FROM {table} WHERE {column} = $1", patient.id) == 0, table  # noqa: S608
    assert await db.fetchval("SELECT count(*) FROM notes WHERE id = $1", story.note_id) == 1
    assert await db.fetchval(
        "SELECT bool_and(revoked_at IS NOT NULL) FROM key_bundles WHERE account_id = $1", patient.id
    ), "public keys kept (consent statements are signed with them), revoked"
    assert (
        await db.fetchval(
            "SELECT count(*) FROM consents WHERE client_id = $1 AND status = 'active'", patient.id
        )
        == 0
    )

    # No row anywhere names the person.
    dump = await _dump(database_url, tmp_path)
    for marker in (EMAIL, EMAIL.lower(), NAME):
        assert marker.encode() not in dump, marker

    # The audit trail still verifies, erasure events included.
    types = [r["event_type"] for r in await db.fetch("SELECT event_type FROM audit_events ORDER BY seq")]
    assert {
        "erasure.request",
        "erasure.decide",
        "erasure.start",
        "erasure.messages",
        "erasure.complete",
    } <= set(types)
    size = await integrate_all(app, db)
    export = await client.get("/v1/audit/export", params={"format": "jsonl"}, headers=officer.headers)
    assert export.status_code == 200, export.text
    summary = verify_export(export.content.splitlines(), [log_vkey(app)])
    assert summary.complete
    assert summary.count == size


async def test_a_legal_hold_stops_erasure_until_released(
    client: AsyncTestClient[Litestar], app: Litestar, story: Story, db: asyncpg.Connection
) -> None:
    patient, officer = story.patient, story.officer
    hold = await client.post(
        "/v1/legal-holds",
        json={"scope": "client", "client_id": str(patient.id), "reason": "Complaint filed with the board."},
        headers=officer.headers,
    )
    assert hold.status_code == 201, hold.text
    filed = await _file(client, patient)
    assert (await _decide(client, officer, filed["request"]["id"])).status_code == 200
    held = await _wait_status(client, filed, "held")
    assert held["started_at"] is None
    assert (await client.get("/v1/me", headers=patient.headers)).status_code == 200, (
        "nothing erased under a hold"
    )
    assert (
        await db.fetchval("SELECT count(*) FROM messages WHERE conversation_id = $1", story.conversation_id)
        == 2
    )
    report = await run_retention(runtime_of(app), db, dry_run=False, trigger="cli")
    assert report.counts["erasure_requests"].held == 1

    released = await client.post(
        f"/v1/legal-holds/{hold.json()['id']}/release",
        json={"reason": "The board closed the complaint."},
        headers=officer.headers,
    )
    assert released.status_code == 200, released.text
    report = await run_retention(runtime_of(app), db, dry_run=False, trigger="cli")
    assert report.counts["erasure_requests"].deleted == 1
    done = await _wait_status(client, filed, "completed")
    assert done["deleted"]["messages"] == 2


async def test_a_held_conversation_is_kept_and_listed(
    client: AsyncTestClient[Litestar], story: Story, db: asyncpg.Connection
) -> None:
    patient, officer = story.patient, story.officer
    hold = await client.post(
        "/v1/legal-holds",
        json={
            "scope": "conversation",
            "conversation_id": str(story.conversation_id),
            "reason": "Subpoena received.",
        },
        headers=officer.headers,
    )
    assert hold.status_code == 201, hold.text
    filed = await _file(client, patient)
    assert (await _decide(client, officer, filed["request"]["id"])).status_code == 200
    done = await _wait_status(client, filed, "completed")
    kept = {item["category"]: item for item in done["kept"]}
    assert kept["held_messages"]["count"] == 2
    assert "legal hold" in kept["held_messages"]["basis"]
    assert kept["held_attachments"]["count"] == 1
    assert (
        await db.fetchval("SELECT count(*) FROM messages WHERE conversation_id = $1", story.conversation_id)
        == 2
    )
    assert (await login(client, patient)).status_code == 401


async def test_rejection_and_bad_input(
    client: AsyncTestClient[Litestar], story: Story, db: asyncpg.Connection
) -> None:
    patient, officer, clinic = story.patient, story.officer, story.clinic
    for staff in (clinic.admin, clinic.clinician, officer):
        assert (
            await client.post("/v1/me/erasure-requests", json={}, headers=staff.headers)
        ).status_code == 403
    assert (await client.get("/v1/erasure-requests", headers=patient.headers)).status_code == 403
    unknown = await client.post(
        "/v1/me/erasure-requests", json={"reason": "x", "extra": 1}, headers=patient.headers
    )
    assert unknown.status_code == 400
    filed = await _file(client, patient)
    short = await client.post(
        f"/v1/erasure-requests/{filed['request']['id']}/decision",
        json={"decision": "approve", "reason": "ok"},
        headers=officer.headers,
    )
    assert short.status_code == 400, "a decision states its reason"
    odd = await client.post(
        f"/v1/erasure-requests/{filed['request']['id']}/decision",
        json={"decision": "maybe", "reason": "Not sure what to do here."},
        headers=officer.headers,
    )
    assert odd.status_code == 400
    missing = await _decide(client, officer, str(uuid.uuid4()))
    assert missing.status_code == 404
    rejected = await _decide(client, officer, filed["request"]["id"], "reject")
    assert rejected.status_code == 200, rejected.text
    assert rejected.json()["status"] == "rejected"
    assert (await client.get("/v1/me", headers=patient.headers)).status_code == 200
    assert (await _outcome(client, filed)).json()["status"] == "rejected"
    # Without the receipt, or with another, the outcome does not exist.
    url = f"/v1/erasure-requests/{filed['request']['id']}/outcome"
    assert (await client.get(url)).status_code == 404
    assert (await client.get(url, headers={"Erasure-Receipt": "cfe_" + "A" * 43})).status_code == 404
    # A new request may follow a rejected one.
    assert (await client.post("/v1/me/erasure-requests", json={}, headers=patient.headers)).status_code == 201
    # The database refuses a decision by the subject and a reopened decision.
    with pytest.raises(asyncpg.CheckViolationError):
        await db.execute(
            "UPDATE erasure_requests SET status = 'pending', decided_by = NULL, decided_at = NULL,"
            " decision_reason = NULL WHERE id = $1",
            uuid.UUID(filed["request"]["id"]),
        )

"""Streaming export over HTTP in the three formats, checked with the offline verifier."""

from __future__ import annotations

import base64
import csv
import io
import json
import uuid
from pathlib import Path

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from audit.cli import EXIT_OK, verify_command
from audit.export import ExportFilters
from audit.leaf import decode_leaf
from audit.verify import verify_export
from backend.audit_trail import Action, AuditContext, AuditEvent, record
from backend.clock import SystemClock
from tests.audit_helpers import integrate_all, log_vkey, make_officer
from tests.helpers import Account, make_clinic


async def _notes_read(
    db: asyncpg.Connection, org: uuid.UUID, agent: uuid.UUID, subject: uuid.UUID, n: int
) -> None:
    ctx = AuditContext(source_instance="test-1", request_id="req-export-1")
    async with db.transaction():
        for _ in range(n):
            event = AuditEvent(
                action=Action.READ,
                event_type="note.read",
                org_id=org,
                agent_account_id=agent,
                agent_role="clinician",
                entity_type="note",
                entity_id=uuid.uuid4(),
                subject_id=subject,
            )
            await record(db, event, ctx, SystemClock().now())


async def _export(client: AsyncTestClient[Litestar], officer: Account, **params: str) -> bytes:
    response = await client.get("/v1/audit/export", params=params, headers=officer.headers)
    assert response.status_code == 200, response.text
    return response.content


@pytest.fixture
async def two_orgs(
    app: Litestar, client: AsyncTestClient[Litestar], db: asyncpg.Connection
) -> tuple[Account, Account, uuid.UUID, int]:
    clinic = await make_clinic(client, app, db)
    officer = await make_officer(client, app, clinic)
    other = await make_clinic(client, app, db, "other")
    org = await db.fetchval("SELECT org_id FROM accounts WHERE id = $1", officer.id)
    other_org = await db.fetchval("SELECT org_id FROM accounts WHERE id = $1", other.admin.id)
    await _notes_read(db, org, clinic.clinician.id, clinic.client.id, 30)
    await _notes_read(db, other_org, other.clinician.id, other.client.id, 20)
    size = await integrate_all(app, db, batch=17)
    return officer, clinic.clinician, org, size


async def test_complete_export_verifies_offline_and_hides_other_organizations(
    app: Litestar,
    client: AsyncTestClient[Litestar],
    db: asyncpg.Connection,
    two_orgs: tuple[Account, Account, uuid.UUID, int],
    tmp_path: Path,
) -> None:
    officer, _, org, size = two_orgs
    for proofs in ("false", "true"):
        body = await _export(client, officer, format="jsonl", proofs=proofs)
        path = tmp_path / f"export-{proofs}.jsonl"
        path.write_bytes(body)
        out = io.StringIO()
        assert verify_command(path, [str(log_vkey(app))], out=out, require_complete=True) == EXIT_OK, (
            out.getvalue()
        )
        summary = verify_export(body.splitlines(), [log_vkey(app)])
        assert summary.complete
        assert summary.count == size
        lines = [json.loads(line) for line in body.splitlines()[1:-1]]
        hidden = [line for line in lines if line.get("pruned")]
        assert hidden, "the other organization's events are hash-only"
        shown = [decode_leaf(base64.b64decode(line["leaf"])) for line in lines if "leaf" in line]
        assert {event.agent.org for event in shown} == {org}
        assert all(("proof" in line) == (proofs == "true") for line in lines)
    exports = await db.fetchval("SELECT count(*) FROM audit_events WHERE event_type = 'audit.export'")
    assert exports == 2, "every export is itself audited"


async def test_filtered_export_carries_proofs_and_declares_its_filters(
    app: Litestar,
    client: AsyncTestClient[Litestar],
    two_orgs: tuple[Account, Account, uuid.UUID, int],
    tmp_path: Path,
) -> None:
    officer, clinician, org, _ = two_orgs
    body = await _export(client, officer, format="jsonl", actor=str(clinician.id), type="note.read")
    summary = verify_export(body.splitlines(), [log_vkey(app)])
    assert not summary.complete
    assert summary.count == summary.proofs_checked == 30
    assert summary.filters == ExportFilters(actor=clinician.id, types=("note.read",), org=org)
    path = tmp_path / "filtered.jsonl"
    path.write_bytes(body)
    out = io.StringIO()
    assert verify_command(path, [str(log_vkey(app))], out=out) == EXIT_OK
    refused = io.StringIO()
    assert verify_command(path, [str(log_vkey(app))], out=refused, require_complete=True) != EXIT_OK


async def test_csv_and_fhir_exports(
    client: AsyncTestClient[Litestar], two_orgs: tuple[Account, Account, uuid.UUID, int]
) -> None:
    officer, clinician, org, _ = two_orgs
    rows = list(csv.DictReader(io.StringIO((await _export(client, officer, format="csv")).decode())))
    assert rows
    assert {row["agent_org"] for row in rows} == {str(org)}
    fhir = json.loads(await _export(client, officer, format="fhir", actor=str(clinician.id)))
    assert fhir["resourceType"] == "Bundle"
    codes = [e["resource"]["type"]["code"] for e in fhir["entry"]]
    assert codes.count("note.read") == 30
    assert {e["resource"]["resourceType"] for e in fhir["entry"]} == {"AuditEvent"}
    response = await client.get("/v1/audit/export?format=xml", headers=officer.headers)
    assert response.status_code == 400

"""Retention policies, runs and legal holds over HTTP: who may do what, bad input, audit, tenancy."""

from __future__ import annotations

import uuid

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from backend.clock import FrozenClock
from backend.retention import run_retention
from backend.settings import SettingsError
from tests import retention_helpers as seed
from tests.audit_helpers import make_officer
from tests.conftest import make_settings
from tests.helpers import Clinic, audit_rows, make_client, make_clinic, problem, runtime_of
from tests.retention_helpers import days

BASIS = "State law requires clinical records for seven years after the last entry."


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(seed.real_now() - days(1))


@pytest.fixture
async def clinic(client: AsyncTestClient[Litestar], app: Litestar, db: asyncpg.Connection) -> Clinic:
    return await make_clinic(client, app, db)


async def _org(db: asyncpg.Connection, account_id: uuid.UUID) -> uuid.UUID:
    org: uuid.UUID = await db.fetchval("SELECT org_id FROM accounts WHERE id = $1", account_id)
    return org


async def test_everyone_reads_the_policies(client: AsyncTestClient[Litestar], clinic: Clinic) -> None:
    """GDPR Art. 13(2)(a): the people whose data it is may read how long it is kept."""
    response = await client.get("/v1/retention/policies", headers=clinic.client.headers)
    assert response.status_code == 200, response.text
    items = {p["category"]: p for p in response.json()["items"]}
    assert list(items) == [
        "messages", "attachments", "notes", "consent_events",
        "sessions", "invites", "key_backups", "audit_events",
    ]  # fmt: skip
    audit = items["audit_events"]
    assert (audit["period_days"], audit["action"], audit["counts_from"]) == (3650, "prune_to_hash", "created")
    assert audit["floor_days"] == 2192
    assert "ASTM E2147" in audit["legal_basis"]
    assert items["key_backups"]["counts_from"] == "account_closed"
    assert all(p["is_default"] for p in items.values())


async def test_admins_change_a_policy_within_the_floor(
    client: AsyncTestClient[Litestar], app: Litestar, clinic: Clinic, db: asyncpg.Connection
) -> None:
    officer = await make_officer(client, app, clinic)
    url = "/v1/retention/policies/notes"
    body = {"period_days": 2557, "legal_basis": BASIS}
    for someone in (clinic.client, clinic.clinician, officer):
        denied = await client.put(url, json=body, headers=someone.headers)
        assert denied.status_code == 403, someone.role
    admin = clinic.admin.headers
    assert (await client.put("/v1/retention/policies/letters", json=body, headers=admin)).status_code == 404
    for category, period in (
        ("notes", 2000),
        ("audit_events", 2191),
        ("messages", 6),
        ("consent_events", 30),
    ):
        below = await client.put(
            f"/v1/retention/policies/{category}",
            json={"period_days": period, "legal_basis": BASIS},
            headers=admin,
        )
        assert below.status_code == 422, category
        assert problem(below)["type"].endswith("invalid-input")
    for bad in (
        {"period_days": 0, "legal_basis": BASIS},
        {"period_days": 40_000, "legal_basis": BASIS},
        {"period_days": 3000, "legal_basis": "short"},
        {"period_days": 3000, "legal_basis": BASIS, "action": "delete"},
    ):
        assert (await client.put(url, json=bad, headers=admin)).status_code == 400, bad

    changed = await client.put(url, json=body, headers=admin)
    assert changed.status_code == 200, changed.text
    assert changed.json()["period_days"] == 2557
    assert changed.json()["is_default"] is False
    assert changed.json()["updated_by"] == str(clinic.admin.id)
    (event,) = await audit_rows(db, "retention.policy_update")
    assert event["outcome_reason"] == "period_shortened"
    change = await db.fetchrow("SELECT * FROM retention_policy_changes WHERE id = $1", event["entity_id"])
    assert change is not None
    assert (change["old_period_days"], change["new_period_days"]) == (3650, 2557)
    assert change["new_legal_basis"] == BASIS
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await db.execute("DELETE FROM retention_policy_changes")
    # Another organization keeps the default.
    other = await make_clinic(client, app, db, slug="other")
    theirs = (await client.get("/v1/retention/policies", headers=other.client.headers)).json()["items"]
    assert next(p for p in theirs if p["category"] == "notes")["period_days"] == 3650


async def test_the_database_keeps_the_audit_log_six_years(db: asyncpg.Connection) -> None:
    with pytest.raises(asyncpg.CheckViolationError):
        await db.execute("UPDATE retention_policies SET period_days = 2000 WHERE category = 'audit_events'")
    with pytest.raises(asyncpg.CheckViolationError):
        await db.execute("UPDATE retention_policies SET period_days = 0 WHERE category = 'sessions'")
    with pytest.raises(asyncpg.CheckViolationError):
        await db.execute("UPDATE retention_policies SET action = 'delete' WHERE category = 'audit_events'")


def test_settings_never_lower_the_audit_floor_under_six_years() -> None:
    with pytest.raises(SettingsError, match="CONFIDE_RETENTION_AUDIT_FLOOR_DAYS"):
        make_settings(retention_audit_floor_days=2000)


async def test_an_organizations_policy_applies_to_its_rows_only(
    client: AsyncTestClient[Litestar],
    app: Litestar,
    clinic: Clinic,
    db: asyncpg.Connection,
    clock: FrozenClock,
) -> None:
    admin = clinic.admin
    shorter = await client.put(
        "/v1/retention/policies/messages",
        json={"period_days": 30, "legal_basis": "Messages are deleted after a month in this practice."},
        headers=admin.headers,
    )
    assert shorter.status_code == 200, shorter.text
    ours = seed.SeedOrg(
        id=await _org(db, admin.id),
        slug="clinic",
        admin=admin.id,
        clinician=clinic.clinician.id,
        officer=admin.id,
    )
    theirs = await seed.seed_org(db, "theirs", clock.now() - days(400), clients=1)
    for org, patient in ((ours, clinic.client.id), (theirs, theirs.clients[0])):
        conv = await seed.conversation(db, org, clock.now() - days(400), client=patient, members=[patient])
        await seed.message(db, org, conv, org.clinician, clock.now() - days(40), [patient])
    report = await run_retention(runtime_of(app), db, dry_run=False, trigger="cli")
    assert report.counts["messages"].deleted == 1
    remaining = await db.fetch("SELECT org_id FROM messages")
    assert [r["org_id"] for r in remaining] == [theirs.id]

    # Each organization sees its own counts of a run, admins and compliance officers only.
    runs = await client.get("/v1/retention/runs", headers=admin.headers)
    assert runs.status_code == 200, runs.text
    (run,) = runs.json()["items"]
    assert run["counts"]["messages"] == {"candidates": 1, "held": 0, "deleted": 1, "skipped": 0}
    assert run["status"] == "completed"
    other = await make_clinic(client, app, db, slug="another")
    elsewhere = (await client.get("/v1/retention/runs", headers=other.admin.headers)).json()["items"]
    assert "messages" not in elsewhere[0]["counts"]
    for someone in (clinic.client, clinic.clinician):
        assert (await client.get("/v1/retention/runs", headers=someone.headers)).status_code == 403


async def test_runs_are_paged(
    client: AsyncTestClient[Litestar], app: Litestar, clinic: Clinic, db: asyncpg.Connection
) -> None:
    for _ in range(3):
        await run_retention(runtime_of(app), db, dry_run=True, trigger="cli")
    page = (await client.get("/v1/retention/runs", params={"limit": 2}, headers=clinic.admin.headers)).json()
    assert len(page["items"]) == 2
    assert all(r["dry_run"] for r in page["items"])
    rest = await client.get(
        "/v1/retention/runs", params={"limit": 2, "cursor": page["next_cursor"]}, headers=clinic.admin.headers
    )
    assert len(rest.json()["items"]) == 1
    assert rest.json()["next_cursor"] is None
    for params in ({"limit": 0}, {"limit": 101}, {"cursor": "x" * 32}, {"cursor": "x" * 300}):
        bad = await client.get("/v1/retention/runs", params=params, headers=clinic.admin.headers)
        assert bad.status_code == 400, params


async def test_legal_holds_are_for_compliance_officers(
    client: AsyncTestClient[Litestar], app: Litestar, clinic: Clinic, db: asyncpg.Connection
) -> None:
    officer = await make_officer(client, app, clinic)
    body = {"scope": "client", "client_id": str(clinic.client.id), "reason": "Litigation hold: case 2024-17."}
    for someone in (clinic.admin, clinic.clinician, clinic.client):
        assert (await client.post("/v1/legal-holds", json=body, headers=someone.headers)).status_code == 403
        assert (await client.get("/v1/legal-holds", headers=someone.headers)).status_code == 403
    placed = await client.post("/v1/legal-holds", json=body, headers=officer.headers)
    assert placed.status_code == 201, placed.text
    hold = placed.json()
    assert hold["active"] is True
    assert hold["placed_by"] == str(officer.id)

    other = await make_clinic(client, app, db, slug="elsewhere")
    for bad, status in (
        ({**body, "client_id": str(clinic.clinician.id)}, 403),  # holds are on clients
        ({**body, "client_id": str(uuid.uuid4())}, 404),
        ({**body, "client_id": str(other.client.id)}, 404),  # another organization's client
        ({"scope": "conversation", "conversation_id": str(uuid.uuid4()), "reason": body["reason"]}, 404),
        ({**body, "conversation_id": str(uuid.uuid4())}, 422),
        ({"scope": "conversation", "reason": body["reason"]}, 422),
        ({**body, "reason": "too short"}, 400),
        ({**body, "scope": "everything"}, 400),
        ({**body, "until": "forever"}, 400),
    ):
        response = await client.post("/v1/legal-holds", json=bad, headers=officer.headers)
        assert response.status_code == status, bad

    listing = (await client.get("/v1/legal-holds", params={"active": "true"}, headers=officer.headers)).json()
    assert [h["id"] for h in listing["items"]] == [hold["id"]]
    url = f"/v1/legal-holds/{hold['id']}/release"
    assert (await client.post(url, json={"reason": "short"}, headers=officer.headers)).status_code == 400
    assert (
        await client.post(url, json={"reason": "Case closed."}, headers=clinic.admin.headers)
    ).status_code == 403
    released = await client.post(url, json={"reason": "Case closed by settlement."}, headers=officer.headers)
    assert released.status_code == 200, released.text
    assert released.json()["active"] is False
    assert (
        await client.post(url, json={"reason": "Case closed again."}, headers=officer.headers)
    ).status_code == 409
    missing = f"/v1/legal-holds/{uuid.uuid4()}/release"
    assert (
        await client.post(missing, json={"reason": "Case closed again."}, headers=officer.headers)
    ).status_code == 404
    theirs = await make_officer(client, app, other, "co@elsewhere.example")
    assert (
        await client.post(url, json={"reason": "Not ours to release."}, headers=theirs.headers)
    ).status_code == 404
    assert (await client.get("/v1/legal-holds", headers=theirs.headers)).json()["items"] == []
    active = (await client.get("/v1/legal-holds", params={"active": "true"}, headers=officer.headers)).json()
    assert active["items"] == []
    types = [r["event_type"] for r in await audit_rows(db) if r["event_type"].startswith("legal_hold.")]
    assert types.count("legal_hold.place") == 1
    assert types.count("legal_hold.release") == 1
    (placed_event,) = await audit_rows(db, "legal_hold.place")
    assert placed_event["subject_id"] == clinic.client.id
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await db.execute("DELETE FROM legal_holds")


async def test_a_conversation_hold_names_its_client(
    client: AsyncTestClient[Litestar],
    app: Litestar,
    clinic: Clinic,
    db: asyncpg.Connection,
    clock: FrozenClock,
) -> None:
    officer = await make_officer(client, app, clinic)
    org = seed.SeedOrg(
        id=await _org(db, clinic.admin.id), slug="clinic", admin=clinic.admin.id,
        clinician=clinic.clinician.id, officer=officer.id,
    )  # fmt: skip
    second = await make_client(client, clinic.clinician, "second@clinic.example")
    conv = await seed.conversation(db, org, clock.now(), client=second.id, members=[second.id])
    placed = await client.post(
        "/v1/legal-holds",
        json={"scope": "conversation", "conversation_id": str(conv), "reason": "Preserve for the inquiry."},
        headers=officer.headers,
    )
    assert placed.status_code == 201, placed.text
    (event,) = await audit_rows(db, "legal_hold.place")
    assert event["subject_id"] == second.id
    released = await client.post(
        f"/v1/legal-holds/{placed.json()['id']}/release",
        json={"reason": "The inquiry is over."},
        headers=officer.headers,
    )
    assert released.status_code == 200, released.text
    (event,) = await audit_rows(db, "legal_hold.release")
    assert event["subject_id"] == second.id

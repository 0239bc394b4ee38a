"""Access changes by admins (A-10, A-06b): role changes and disabling take effect on the next request."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import asyncpg
import httpx
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from backend.accounts.repository import get_account
from backend.app import create_app
from backend.clock import FrozenClock
from backend.messaging.repository import remove_from_every_conversation
from tests.conftest import make_settings
from tests.helpers import (
    Account,
    Clinic,
    audit_rows,
    login,
    login_with_mfa,
    make_clinic,
    make_staff,
    problem,
)
from tests.integration.test_push import SseReader, live_server
from tests.messaging_helpers import consent_to, publish_keys


def _shape(response: httpx.Response) -> tuple[int, dict[str, Any]]:
    """What a caller learns from a problem answer: status and document, request id aside."""
    return response.status_code, {k: v for k, v in problem(response).items() if k != "request_id"}


async def _org_id(client: Any, account: Account) -> uuid.UUID:
    return uuid.UUID((await client.get("/v1/me", headers=account.headers)).json()["organization_id"])


async def _set(client: Any, admin: Account, account_id: uuid.UUID, what: str, value: str) -> httpx.Response:
    response: httpx.Response = await client.put(
        f"/v1/accounts/{account_id}/{what}", json={what: value}, headers=admin.headers
    )
    return response


async def test_role_revoked_during_a_session_is_refused_on_the_next_request(
    client: AsyncTestClient[Litestar], app: Litestar, db: asyncpg.Connection, clock: FrozenClock
) -> None:
    """A-10: a clinician moved to a non-clinical role is refused at once, audited, and told to admins."""
    clinic = await make_clinic(client, app, db)
    admin, doc, patient = clinic.admin, clinic.clinician, clinic.client
    org_id = await _org_id(client, patient)
    doc_keys = await publish_keys(client, doc)
    pat_keys = await publish_keys(client, patient)
    await consent_to(client, patient, pat_keys, org_id, doc.id, clock)
    record = f"/v1/clients/{patient.id}"
    assert (await client.get(record, headers=doc.headers)).status_code == 200
    conversation_id = uuid.uuid4()
    created = await client.post(
        "/v1/conversations",
        json={"id": str(conversation_id), "kind": "direct", "client_id": str(patient.id)},
        headers=doc.headers,
    )
    assert created.status_code == 201, created.text
    invite = await client.post("/v1/invites", json={}, headers=doc.headers)
    assert invite.status_code == 201
    assert doc_keys

    changed = await _set(client, admin, doc.id, "role", "compliance_officer")
    assert changed.status_code == 200, changed.text
    assert changed.json()["role"] == "compliance_officer"

    # The very next request with the session opened as a clinician is refused.
    assert (await client.get(record, headers=doc.headers)).status_code == 401
    assert (await client.get("/v1/me", headers=doc.headers)).status_code == 401
    reasons = await db.fetch("SELECT revoked_reason FROM sessions WHERE account_id = $1", doc.id)
    assert {r["revoked_reason"] for r in reasons} == {"role_change"}
    # A new login carries the new role: the client's record is now outside the caller's
    # circle, answered like a client that does not exist.
    await login_with_mfa(client, doc, app)
    assert (await client.get("/v1/me", headers=doc.headers)).json()["role"] == "compliance_officer"
    hidden = await client.get(record, headers=doc.headers)
    unknown = await client.get(f"/v1/clients/{uuid.uuid4()}", headers=doc.headers)
    assert _shape(hidden) == _shape(unknown)
    assert hidden.status_code == 404
    # They left the conversation (the client is told), and their open invite brings in nobody.
    members = (await client.get(f"/v1/conversations/{conversation_id}", headers=patient.headers)).json()
    assert [m["account_id"] for m in members["members"]] == [str(patient.id)]
    told = await db.fetchval(
        "SELECT count(*) FROM account_events WHERE account_id = $1 AND kind = 'conversation.members_changed'",
        patient.id,
    )
    assert told == 1
    redeem = await client.post(
        f"/v1/invites/{invite.json()['code']}/redeem",
        json={"email": "late@clinic.example", "display_name": "Late", "password": "a long client password 1"},
    )
    assert redeem.status_code == 404

    # The access change is on the audit trail, and the admins were notified (ids only).
    (event,) = await audit_rows(db, "account.role_change")
    assert (event["agent_account_id"], event["entity_id"], event["outcome"]) == (admin.id, doc.id, 0)
    assert event["outcome_reason"] == "clinician_to_compliance_officer"
    removed = await audit_rows(db, "conversation.member_remove")
    assert [(r["entity_id"], r["subject_id"]) for r in removed] == [(doc.id, patient.id)]
    notified = await db.fetch(
        "SELECT account_id, payload FROM account_events WHERE kind = 'account.access_changed'"
    )
    assert {r["account_id"] for r in notified} == {admin.id, doc.id}
    assert all(json.loads(r["payload"]) == {"account_id": str(doc.id), "change": "role"} for r in notified)


async def test_only_admins_change_access_and_only_in_their_organization(
    client: AsyncTestClient[Litestar], app: Litestar, db: asyncpg.Connection
) -> None:
    """Non-admins get 403 whatever the target; another organization's account is an unknown id."""
    clinic = await make_clinic(client, app, db)
    other = await make_clinic(client, app, db, slug="elsewhere")
    for caller in (clinic.clinician, clinic.client):
        for what, value in (("role", "admin"), ("status", "disabled")):
            for target in (clinic.admin.id, uuid.uuid4()):
                refused = await _set(client, caller, target, what, value)
                assert refused.status_code == 403, (caller.role, what)
    for what, value in (("role", "admin"), ("status", "disabled")):
        foreign = await _set(client, other.admin, clinic.clinician.id, what, value)
        unknown = await _set(client, other.admin, uuid.uuid4(), what, value)
        assert foreign.status_code == 404
        assert _shape(foreign) == _shape(unknown)
    # A client keeps the client role; unknown fields are refused.
    assert (await _set(client, clinic.admin, clinic.client.id, "role", "clinician")).status_code == 422
    sneaky = await client.put(
        f"/v1/accounts/{clinic.clinician.id}/role",
        json={"role": "clinician", "org_id": str(uuid.uuid4())},
        headers=clinic.admin.headers,
    )
    assert sneaky.status_code == 400
    # A no-op is audited but ends no session.
    same = await _set(client, clinic.admin, clinic.clinician.id, "role", "clinician")
    assert same.status_code == 200
    assert (await client.get("/v1/me", headers=clinic.clinician.headers)).status_code == 200
    assert [r["outcome_reason"] for r in await audit_rows(db, "account.role_change")] == [
        "clinician_to_clinician"
    ]
    assert await db.fetchval("SELECT count(*) FROM accounts WHERE role = 'admin' AND status = 'active'") == 2


async def test_an_organization_keeps_an_active_admin(
    client: AsyncTestClient[Litestar], app: Litestar, db: asyncpg.Connection
) -> None:
    """The last active admin can be neither demoted nor disabled; with a second one, either can."""
    clinic = await make_clinic(client, app, db)
    admin = clinic.admin
    for what, value in (("role", "clinician"), ("status", "disabled")):
        refused = await _set(client, admin, admin.id, what, value)
        assert refused.status_code == 409, refused.text
    assert (await client.get("/v1/me", headers=admin.headers)).status_code == 200, "nothing changed"
    second = await make_staff(client, app, admin, "admin", "admin2@clinic.example")
    demoted = await _set(client, second, admin.id, "role", "clinician")
    assert demoted.status_code == 200
    assert (await client.get("/v1/me", headers=admin.headers)).status_code == 401
    assert (await _set(client, second, second.id, "status", "disabled")).status_code == 409
    # The database holds the rule too, whoever writes.
    with pytest.raises(asyncpg.CheckViolationError, match="at least one active admin"):
        await db.execute("UPDATE accounts SET status = 'disabled' WHERE id = $1", second.id)
    with pytest.raises(asyncpg.CheckViolationError, match="at least one active admin"):
        await db.execute("UPDATE accounts SET role = 'clinician' WHERE id = $1", second.id)


async def _waits_for_a_lock(
    db: asyncpg.Connection,
    waiter: asyncpg.Connection,
    *,
    advisory: bool = False,
    task: asyncio.Task[str] | None = None,
) -> None:
    """Return once ``waiter``'s statement is blocked on a lock, an advisory one if asked (bounded: 10 s).

    ``task``, the statement's, must still be waiting meanwhile.
    """
    pid = waiter.get_server_pid()

    async def blocked() -> bool:
        row = await db.fetchrow(
            "SELECT wait_event_type, wait_event FROM pg_stat_activity WHERE pid = $1", pid
        )
        return row is not None and row[0] == "Lock" and (not advisory or row[1] == "advisory")

    deadline = time.monotonic() + 10
    while not await blocked():
        assert task is None or not task.done(), "the statement went through without waiting"
        assert time.monotonic() < deadline, "the statement never waited for a lock"
        await asyncio.sleep(0.01)  # polling a condition, with a deadline


async def test_two_admins_disabling_each_other_at_once_leave_one(
    client: AsyncTestClient[Litestar], app: Litestar, db: asyncpg.Connection, database_url: str
) -> None:
    """The database serializes an organization's admin changes: the second waits, then is refused."""
    clinic = await make_clinic(client, app, db)
    second = await make_staff(client, app, clinic.admin, "admin", "admin2@clinic.example")
    first_conn, second_conn = await asyncpg.connect(database_url), await asyncpg.connect(database_url)
    try:
        first_tx, second_tx = first_conn.transaction(), second_conn.transaction()
        await first_tx.start()
        await second_tx.start()
        await first_conn.execute("UPDATE accounts SET status = 'disabled' WHERE id = $1", second.id)
        waiting = asyncio.create_task(
            second_conn.execute("UPDATE accounts SET status = 'disabled' WHERE id = $1", clinic.admin.id)
        )
        await _waits_for_a_lock(db, second_conn, advisory=True, task=waiting)
        await first_tx.commit()
        with pytest.raises(asyncpg.CheckViolationError):
            await asyncio.wait_for(waiting, timeout=10)
        await second_tx.rollback()
    finally:
        await first_conn.close()
        await second_conn.close()
    assert await db.fetchval("SELECT count(*) FROM accounts WHERE role = 'admin' AND status = 'active'") == 1


async def test_disabled_account_is_refused_at_once_and_its_stream_closes(
    database_url: str, db: asyncpg.Connection, clock: FrozenClock
) -> None:
    """A-06b: disabling ends sessions (401 next) and the push stream; login fails like a wrong password."""
    settings = make_settings(events_keepalive_s=60)
    app = create_app(settings, clock=clock, database_url=database_url)
    async with live_server(app) as base_url, httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        clinic: Clinic = await make_clinic(http, app, db)
        admin, doc = clinic.admin, clinic.clinician
        # No stream polls on its own: only the change's notification can wake it.
        app.state.runtime.require_hub().poll_s = 60
        async with http.stream("GET", "/v1/events", headers=doc.headers) as response:
            assert response.status_code == 200
            reader = SseReader(response)
            await reader.comment("stream open")
            disabled = await _set(http, admin, doc.id, "status", "disabled")
            assert disabled.status_code == 200, disabled.text
            assert disabled.json()["status"] == "disabled"
            events = []
            while (event := await reader.next(within_s=5)) is not None:
                events.append(event["event"])
        assert events == ["session.ended"]
        assert (await http.get("/v1/me", headers=doc.headers)).status_code == 401

        # Login is refused exactly as a wrong password or an unknown account is.
        refused = await login(http, doc)
        wrong = await login(http, Account(admin.id, admin.email, "not the password", "admin", admin.org_slug))
        nobody = await login(
            http, Account(uuid.uuid4(), "nobody@clinic.example", "x" * 20, "", admin.org_slug)
        )
        assert _shape(refused) == _shape(wrong) == _shape(nobody)
        assert refused.status_code == 401
        reasons = [r["outcome_reason"] for r in await audit_rows(db, "auth.login") if r["outcome"] != 0]
        assert "account_disabled" in reasons
        (change,) = await audit_rows(db, "account.status_change")
        assert (change["agent_account_id"], change["entity_id"], change["outcome_reason"]) == (
            admin.id,
            doc.id,
            "active_to_disabled",
        )

        enabled = await _set(http, admin, doc.id, "status", "active")
        assert enabled.status_code == 200
        await login_with_mfa(http, doc, app)
        assert (await http.get("/v1/me", headers=doc.headers)).status_code == 200


async def _direct_conversation(
    client: AsyncTestClient[Litestar], app: Litestar, db: asyncpg.Connection, clock: FrozenClock, kind: str
) -> tuple[Any, uuid.UUID, uuid.UUID]:
    clinic = await make_clinic(client, app, db)
    doc, patient = clinic.clinician, clinic.client
    org_id = uuid.UUID((await client.get("/v1/me", headers=patient.headers)).json()["organization_id"])
    await publish_keys(client, doc)
    patient_keys = await publish_keys(client, patient)
    await consent_to(client, patient, patient_keys, org_id, doc.id, clock)
    conversation = uuid.uuid4()
    body: dict[str, str] = {"id": str(conversation), "kind": kind}
    if kind == "direct":
        body["client_id"] = str(patient.id)
    created = await client.post("/v1/conversations", json=body, headers=doc.headers)
    assert created.status_code == 201, created.text
    return clinic, org_id, conversation


async def test_an_addition_racing_a_role_change_never_leaves_staff_in_a_conversation(
    client: AsyncTestClient[Litestar],
    app: Litestar,
    db: asyncpg.Connection,
    clock: FrozenClock,
    database_url: str,
) -> None:
    """Migration 0018: the addition waits for the role change and then sees the new role."""
    clinic, org_id, group = await _direct_conversation(client, app, db, clock, "support_group")
    doc = clinic.clinician
    adder, changer = await asyncpg.connect(database_url), await asyncpg.connect(database_url)
    try:
        # The role change is under way (as backend.accounts.access does it) ...
        await changer.execute("BEGIN")
        assert await get_account(changer, doc.id) is not None
        await remove_from_every_conversation(changer, doc.id, clock.now())
        await changer.execute("UPDATE accounts SET role = 'admin' WHERE id = $1", doc.id)
        # ... when an addition that read the old role writes the membership.
        await adder.execute("BEGIN")
        adding = asyncio.create_task(
            adder.execute(
                "INSERT INTO conversation_members (conversation_id, org_id, account_id, status, added_by, "
                "added_at, joined_at) VALUES ($1, $2, $3, 'active', $3, now(), now()) "
                "ON CONFLICT (conversation_id, account_id) DO UPDATE "
                "SET status = 'active', removed_at = NULL",
                group,
                org_id,
                doc.id,
            )
        )
        await _waits_for_a_lock(db, adder)
        assert not adding.done(), "the addition waits for the role change"
        await changer.execute("COMMIT")
        with pytest.raises(asyncpg.CheckViolationError, match="only clients and clinicians"):
            await adding
    finally:
        await adder.close()
        await changer.close()
    staff_members = await db.fetchval(
        "SELECT count(*) FROM conversation_members m JOIN accounts a ON a.id = m.account_id "
        "WHERE m.status <> 'removed' AND a.role NOT IN ('client', 'clinician')"
    )
    assert staff_members == 0


async def test_a_role_change_racing_a_send_waits_for_it_without_a_deadlock(
    client: AsyncTestClient[Litestar],
    app: Litestar,
    db: asyncpg.Connection,
    clock: FrozenClock,
    database_url: str,
) -> None:
    """The send holds its members FOR SHARE, then its recipients' foreign keys take KEY SHARE."""
    from backend.messaging.repository import _LOAD_CONTEXT_FOR_SEND  # noqa: PLC0415

    clinic, _, conversation = await _direct_conversation(client, app, db, clock, "direct")
    doc, patient = clinic.clinician, clinic.client
    sender, changer = await asyncpg.connect(database_url), await asyncpg.connect(database_url)
    try:
        await sender.execute("BEGIN")
        await sender.fetchrow(_LOAD_CONTEXT_FOR_SEND, conversation, patient.id, uuid.uuid4(), True)
        await changer.execute("BEGIN")
        # The role change's lock of the account ...
        assert await get_account(changer, doc.id) is not None
        removal = asyncio.create_task(remove_from_every_conversation(changer, doc.id, clock.now()))
        await _waits_for_a_lock(db, changer)
        assert not removal.done(), "the removal waits for the send's hold on the membership"
        # ... does not stop the send's recipient rows (their foreign key's KEY SHARE lock).
        await sender.execute("SELECT 1 FROM ONLY accounts x WHERE id = $1 FOR KEY SHARE OF x", doc.id)
        await sender.execute("COMMIT")
        assert [left.conversation_id for left in await removal] == [conversation]
        await changer.execute("COMMIT")
    finally:
        await sender.close()
        await changer.close()

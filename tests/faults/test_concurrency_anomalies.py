"""F-06: concurrent consent and membership changes leave a state some serial order explains.

Eight tasks, each with its own HTTP client against the real app, run a seeded, bounded
random history (8 x 25 operations) on one client's care team: the client grants and
revokes consent (scope ``messaging``) to three clinicians; the team's lead adds and
removes those clinicians and sends messages sealed for whoever may read them (a 409
naming the stale keys makes the sender adjust and try again, as a real client does).
Every operation is recorded: invocation, completion, status, request id.

Checks, against the history and the database:

- nothing acknowledged is lost: each acknowledged operation has exactly one audit event
  (found by its request id) and its effect is in the database; a refused one has none;
- the history is strictly serializable: there is a serial order of *every* operation
  (refusals included) that respects real time, gives each operation the result it got,
  and ends in the database's final state (:func:`tests.histories.linearize`); the audit
  log orders acknowledged operations consistently with real time;
- at most one consent is active per (client, grantee, purpose), and the database itself
  refuses a second one (migration 0016);
- a removed member cannot read what was sent after their removal: every message's
  recipients are exactly who could read at its place in the serial order, a removed
  member's fetch is refused, and a re-added member's fetch holds only their messages.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from backend.clock import FrozenClock
from backend.settings import Settings
from crypto.client import sign_consent
from crypto.client.keys import IdentityKeys
from crypto.public import ConsentAction
from tests.conftest import make_settings
from tests.helpers import Account, make_clinic, make_staff
from tests.histories import History, Op, linearize, on_app_loop, real_time_violations
from tests.messaging_helpers import as_json, consent_to, publish_keys, seal

SEED = 20240606
TASKS = 8
OPS_PER_TASK = 25
SEND_ATTEMPTS = 3
#: The audit event each kind of operation writes when it succeeds.
EVENT_OF = {
    "grant": "consent.grant",
    "revoke": "consent.revoke",
    "add": "conversation.member_add",
    "remove": "conversation.member_remove",
    "send": "message.create",
}


@pytest.fixture
def settings() -> Settings:
    # Enough connections for every task at once, and no rate limit between them.
    return make_settings(db_pool_max=10, rate_limit_rps=100_000, rate_limit_burst=100_000)


@dataclass
class Team:
    org_id: uuid.UUID
    patient: Account
    lead: Account
    others: list[Account]
    keys: dict[uuid.UUID, IdentityKeys]
    conversation_id: uuid.UUID


@pytest.fixture
async def team(
    client: AsyncTestClient[Litestar], app: Litestar, db: asyncpg.Connection, clock: FrozenClock
) -> Team:
    clinic = await make_clinic(client, app, db)
    others = [
        await make_staff(client, app, clinic.admin, "clinician", f"doc{n}@clinic.example") for n in (2, 3, 4)
    ]
    keys = {a.id: await publish_keys(client, a) for a in (clinic.client, clinic.clinician, *others)}
    org_id = uuid.UUID((await client.get("/v1/me", headers=clinic.client.headers)).json()["organization_id"])
    await consent_to(client, clinic.client, keys[clinic.client.id], org_id, clinic.clinician.id, clock,
                     scopes=("messaging",))  # fmt: skip
    conversation_id = uuid.uuid4()
    created = await client.post(
        "/v1/conversations",
        json={"id": str(conversation_id), "kind": "care_team", "client_id": str(clinic.client.id)},
        headers=clinic.clinician.headers,
    )
    assert created.status_code == 201, created.text
    return Team(org_id, clinic.client, clinic.clinician, others, keys, conversation_id)


# -- the model ---------------------------------------------------------------------------
#
# State: per clinician (in team.others order), the id of their active consent (or None)
# and their membership ("none", "active", "removed").

State = tuple[tuple[uuid.UUID | None, ...], tuple[str, ...]]


def readers(team: Team, state: State) -> frozenset[uuid.UUID]:
    """Who may read a message sent in ``state``: the client, the lead, consented active members."""
    consents, members = state
    allowed = {team.patient.id, team.lead.id}
    for n, doc in enumerate(team.others):
        if members[n] == "active" and consents[n] is not None:
            allowed.add(doc.id)
    return frozenset(allowed)


def step(team: Team, state: State, op: Op) -> State | None:  # noqa: PLR0911 -- one branch per outcome
    """The state after ``op`` if its observed result is possible in ``state``."""
    consents, members = state
    if op.kind == "send":
        fits = frozenset(op.args["recipients"]) == readers(team, state)
        return state if fits == op.ok else None
    n = op.args["who"]
    match op.kind, op.status:
        case "grant", 201:
            return None if consents[n] is not None else (_put(consents, n, op.args["consent_id"]), members)
        case "grant", 409:
            return state if consents[n] is not None else None
        case "revoke", 200:
            return (_put(consents, n, None), members) if consents[n] == op.args["consent_id"] else None
        case "revoke", 409:
            return state if consents[n] != op.args["consent_id"] else None
        case "add", 200:
            return (consents, _put(members, n, "active")) if consents[n] is not None else None
        case "add", 422:
            return state if consents[n] is None else None
        case "remove", 200:
            return (consents, _put(members, n, "removed")) if members[n] == "active" else None
        case "remove", 404:
            return state if members[n] != "active" else None
    return None


def _put(values: tuple[Any, ...], n: int, value: Any) -> tuple[Any, ...]:
    return (*values[:n], value, *values[n + 1 :])


# -- the history -------------------------------------------------------------------------


@dataclass
class Shared:
    """What the tasks know of each other's acknowledged grants (to pick one to revoke)."""

    granted: dict[int, list[tuple[uuid.UUID, dict[str, Any]]]]
    #: A sender's belief about who reads, corrected by 409 answers.
    believed: set[uuid.UUID]


def _statement(team: Team, clock: FrozenClock, action: ConsentAction, consent_id: uuid.UUID, n: int) -> Any:
    start = clock.now().replace(microsecond=0) - dt.timedelta(minutes=1)
    return as_json(
        sign_consent(
            team.keys[team.patient.id],
            action=action,
            consent_id=consent_id,
            organization_id=team.org_id,
            grantee_type="clinician",
            grantee_id=team.others[n].id,
            scopes=("messaging",),
            purpose="TREAT",
            valid_from=start,
            valid_until=start + dt.timedelta(days=30),
            clock=clock.now,
        )
    )


async def _task(
    task: int, http: httpx.AsyncClient, team: Team, clock: FrozenClock, history: History, shared: Shared
) -> None:
    rng = random.Random(SEED * 100 + task)  # a reproducible schedule, not a secret
    base = f"/v1/conversations/{team.conversation_id}"
    patient, lead = team.patient.headers, team.lead.headers
    for _ in range(OPS_PER_TASK):
        kind = rng.choices(["grant", "revoke", "add", "remove", "send"], weights=[5, 4, 5, 4, 3])[0]
        n = rng.randrange(len(team.others))
        if kind == "revoke" and not shared.granted[n]:
            kind = "grant"
        if kind == "grant":
            consent_id = uuid.UUID(int=rng.getrandbits(128), version=4)
            body = _statement(team, clock, ConsentAction.GRANT, consent_id, n)
            args = {"who": n, "consent_id": consent_id}
            op = await history.run(
                http, task, "grant", args, "POST", "/v1/consents", headers=patient, body=body
            )
            if op.status == 201:
                shared.granted[n].append((consent_id, body))
        elif kind == "revoke":
            consent_id, _ = rng.choice(shared.granted[n])
            body = _statement(team, clock, ConsentAction.REVOKE, consent_id, n)
            args = {"who": n, "consent_id": consent_id}
            path = f"/v1/consents/{consent_id}/revoke"
            await history.run(http, task, "revoke", args, "POST", path, headers=patient, body=body)
        elif kind == "add":
            body = {"account_id": str(team.others[n].id)}
            await history.run(
                http, task, "add", {"who": n}, "POST", f"{base}/members", headers=lead, body=body
            )
        elif kind == "remove":
            path = f"{base}/members/{team.others[n].id}"
            await history.run(http, task, "remove", {"who": n}, "DELETE", path, headers=lead)
        else:
            await _send(task, http, team, history, shared, rng)
        await asyncio.sleep(0)


async def _send(
    task: int, http: httpx.AsyncClient, team: Team, history: History, shared: Shared, rng: random.Random
) -> None:
    """Seal for whoever the sender believes reads; on a 409, correct the belief and retry."""
    recipients = set(shared.believed)
    for _ in range(SEND_ATTEMPTS):
        message_id = uuid.UUID(int=rng.getrandbits(128), version=4)
        envelope = seal(team.keys[team.lead.id], team.conversation_id, f"note {message_id}",
                        [team.keys[a].bundle for a in recipients], item_id=message_id)  # fmt: skip
        op = await history.run(
            http, task, "send", {"recipients": frozenset(recipients), "message_id": message_id}, "POST",
            f"/v1/conversations/{team.conversation_id}/messages", headers=team.lead.headers,
            body=as_json(envelope),
        )  # fmt: skip
        if op.status != 409:
            return
        recipients -= {uuid.UUID(k["account_id"]) for k in op.body.get("unexpected_keys") or []}
        recipients |= {uuid.UUID(k["account_id"]) for k in op.body.get("missing_keys") or []}
        shared.believed = set(recipients)


# -- the test ----------------------------------------------------------------------------


async def test_concurrent_consent_and_membership_changes_are_serializable(
    client: AsyncTestClient[Litestar], team: Team, clock: FrozenClock, db: asyncpg.Connection
) -> None:
    """No lost update, a serial order explains everything, one active consent, removal holds."""
    history = History("f06")
    shared = Shared({n: [] for n in range(len(team.others))}, {team.patient.id, team.lead.id})

    async def workload(https: list[httpx.AsyncClient]) -> None:
        await asyncio.gather(*(_task(t, https[t], team, clock, history, shared) for t in range(TASKS)))

    await on_app_loop(client, TASKS, workload)
    ops = history.ops
    expected = {"grant": {201, 409}, "revoke": {200, 409}, "add": {200, 422}, "remove": {200, 404},
                "send": {201, 409}}  # fmt: skip
    unexpected = [op for op in ops if op.status not in expected[op.kind]]
    assert not unexpected, f"unexpected answers: {unexpected[:5]} {[op.body for op in unexpected[:3]]}"

    # Every acknowledged operation has exactly one audit event of success; a refused one none
    # (an audited refusal, outcome above 0, is not one).
    events = await db.fetch(
        "SELECT seq, request_id, event_type FROM audit_events WHERE request_id LIKE 'f06-%' AND outcome = 0 "
        "ORDER BY seq"
    )
    seq_of: dict[str, int] = {}
    for event in events:
        assert event["request_id"] not in seq_of, f"two audit events for {event['request_id']}"
        seq_of[event["request_id"]] = event["seq"]
    for op in ops:
        found = [e["event_type"] for e in events if e["request_id"] == op.request_id]
        assert found == ([EVENT_OF[op.kind]] if op.ok else []), (op, found)

    # 0 lost updates: each acknowledged write is in the database.
    final = await _final_state(db, team)
    for op in ops:
        if op.ok and op.kind == "grant":
            assert await db.fetchval("SELECT count(*) FROM consent_events WHERE consent_id = $1 AND "
                                     "kind = 'grant'", op.args["consent_id"]) == 1, op  # fmt: skip
        if op.ok and op.kind == "revoke":
            status = await db.fetchval(
                "SELECT status FROM consents WHERE consent_id = $1", op.args["consent_id"]
            )
            assert status == "revoked", op
        if op.ok and op.kind == "send":
            stored = await db.fetch("SELECT account_id FROM message_recipients r JOIN messages m ON m.seq = "
                                    "r.message_seq WHERE m.id = $1", op.args["message_id"])  # fmt: skip
            assert {r["account_id"] for r in stored} == set(op.args["recipients"]), op

    # Strict serializability: a serial order of every operation, ending in the final state.
    initial: State = ((None,) * len(team.others), ("none",) * len(team.others))
    order = linearize(
        ops,
        initial,
        lambda state, op: step(team, state, op),
        final=lambda state: state == final,
        hint=lambda op: (seq_of.get(op.request_id, 0), op.invoke),
    )
    assert order is not None, f"no serial order explains the history ({len(ops)} operations); final {final}"
    assert not real_time_violations(ops, seq_of), (
        "the audit log orders an operation before one that preceded it"
    )

    # One active consent per (client, grantee, purpose), and the database enforces it.
    assert await db.fetchval(
        "SELECT count(*) FROM (SELECT 1 FROM consents WHERE status = 'active' "
        "GROUP BY client_id, grantee_type, grantee_id, purpose HAVING count(*) > 1) d"
    ) == 0  # fmt: skip
    await _database_refuses_a_second_active_consent(db, team)

    # A removed member reads nothing sent after removal; a member reads exactly their messages.
    await _members_read_what_they_may(client, team, ops, final)
    kinds = {(op.kind, op.ok) for op in ops}
    assert {("grant", True), ("revoke", True), ("add", True), ("remove", True), ("send", True)} <= kinds


async def _final_state(db: asyncpg.Connection, team: Team) -> State:
    consents: list[uuid.UUID | None] = []
    members: list[str] = []
    for doc in team.others:
        active = await db.fetch(
            "SELECT consent_id FROM consents WHERE client_id = $1 AND grantee_id = $2 AND status = 'active'",
            team.patient.id,
            doc.id,
        )
        assert len(active) <= 1, "two active consents for one grantee and purpose"
        consents.append(active[0]["consent_id"] if active else None)
        status = await db.fetchval(
            "SELECT status FROM conversation_members WHERE conversation_id = $1 AND account_id = $2",
            team.conversation_id,
            doc.id,
        )
        members.append(status or "none")
    return tuple(consents), tuple(members)


async def _database_refuses_a_second_active_consent(db: asyncpg.Connection, team: Team) -> None:
    """As the superuser, bypassing the service: the unique index still refuses."""
    row = await db.fetchrow(
        "SELECT * FROM consents WHERE client_id = $1 AND grantee_id = $2 AND status = 'active'",
        team.patient.id,
        team.lead.id,
    )
    assert row is not None
    with pytest.raises(asyncpg.UniqueViolationError):
        await db.execute(
            """
            INSERT INTO consents (consent_id, org_id, client_id, client_key_version, grantee_type, grantee_id,
                                  scopes, purpose, valid_from, valid_until, status, granted_at, ended_at)
            SELECT $1, org_id, client_id, client_key_version, grantee_type, grantee_id, scopes, purpose,
                   valid_from, valid_until, status, granted_at, ended_at
            FROM consents WHERE consent_id = $2
            """,
            uuid.uuid4(),
            row["consent_id"],
        )


async def _members_read_what_they_may(
    http: AsyncTestClient[Litestar], team: Team, ops: list[Op], final: State
) -> None:
    consents, members = final
    sends = [op for op in ops if op.kind == "send" and op.ok]
    for n, doc in enumerate(team.others):
        page = await http.get(
            f"/v1/conversations/{team.conversation_id}/messages", params={"limit": 100}, headers=doc.headers
        )
        if members[n] != "active":
            assert page.status_code == 404, (
                f"member {n} ({members[n]}) read the conversation: {page.status_code}"
            )
        elif consents[n] is None:  # a member no consent names any more: refused, 403 or 404
            assert page.status_code in {403, 404}, (
                f"member {n} without consent read the conversation: {page.status_code}"
            )
        else:
            assert page.status_code == 200, page.text
            got = {uuid.UUID(m["id"]) for m in page.json()["items"]}
            mine = {op.args["message_id"] for op in sends if doc.id in op.args["recipients"]}
            assert got == mine, f"member {n} reads {len(got)} messages, was a recipient of {len(mine)}"

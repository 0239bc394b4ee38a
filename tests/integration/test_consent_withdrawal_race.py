"""A-08: reads racing a consent withdrawal are ordered before it, or refused.

A clinician's access to a client's conversation rests on the client's consent (scope
``messaging``). In each round, 20 reads of the conversation's messages by the clinician
and the client's withdrawal of that consent start at points a seeded scheduler picks
(each task first yields to the event loop a random number of times), on the app's own
event loop, each with its own HTTP client (:func:`tests.histories.on_app_loop`), so they
really interleave in the app and in PostgreSQL. Bounded: 6 rounds of 21 requests.

Pass: no read invoked after the withdrawal's answer came back succeeds, and every read
that succeeded has its audit event (naming the consent) before the withdrawal's in the
audit log; a refused read has no audit event of success.
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
from tests.helpers import Clinic, make_clinic
from tests.histories import History, Op, on_app_loop
from tests.messaging_helpers import as_json, publish_keys, seal

SEED = 8008
ROUNDS = 6
READS = 20
MAX_YIELDS = 40


@pytest.fixture
def settings() -> Settings:
    return make_settings(db_pool_max=10, rate_limit_rps=100_000, rate_limit_burst=100_000)


@dataclass
class Chat:
    clinic: Clinic
    org_id: uuid.UUID
    keys: IdentityKeys
    conversation_id: uuid.UUID


def _statement(chat: Chat, clock: FrozenClock, action: ConsentAction, consent_id: uuid.UUID) -> Any:
    start = clock.now().replace(microsecond=0) - dt.timedelta(minutes=1)
    return as_json(
        sign_consent(
            chat.keys,
            action=action,
            consent_id=consent_id,
            organization_id=chat.org_id,
            grantee_type="clinician",
            grantee_id=chat.clinic.clinician.id,
            scopes=("messaging",),
            purpose="TREAT",
            valid_from=start,
            valid_until=start + dt.timedelta(days=1),
            clock=clock.now,
        )
    )


async def _grant(client: AsyncTestClient[Litestar], chat: Chat, clock: FrozenClock) -> uuid.UUID:
    consent_id = uuid.uuid4()
    body = _statement(chat, clock, ConsentAction.GRANT, consent_id)
    granted = await client.post("/v1/consents", json=body, headers=chat.clinic.client.headers)
    assert granted.status_code == 201, granted.text
    return consent_id


@pytest.fixture
async def chat(
    client: AsyncTestClient[Litestar], app: Litestar, db: asyncpg.Connection, clock: FrozenClock
) -> Chat:
    clinic = await make_clinic(client, app, db)
    org_id = uuid.UUID((await client.get("/v1/me", headers=clinic.client.headers)).json()["organization_id"])
    doc_keys = await publish_keys(client, clinic.clinician)
    pat_keys = await publish_keys(client, clinic.client)
    made = Chat(clinic, org_id, pat_keys, uuid.uuid4())
    await _grant(client, made, clock)
    created = await client.post(
        "/v1/conversations",
        json={"id": str(made.conversation_id), "kind": "direct", "client_id": str(clinic.client.id)},
        headers=clinic.clinician.headers,
    )
    assert created.status_code == 201, created.text
    envelope = seal(doc_keys, made.conversation_id, "How are you today?", [doc_keys.bundle, pat_keys.bundle])
    sent = await client.post(
        f"/v1/conversations/{made.conversation_id}/messages",
        json=as_json(envelope),
        headers=clinic.clinician.headers,
    )
    assert sent.status_code == 201, sent.text
    return made


async def _round(
    client: AsyncTestClient[Litestar], chat: Chat, clock: FrozenClock, number: int, consent_id: uuid.UUID
) -> tuple[list[Op], Op]:
    """20 reads and one withdrawal, each started after a seeded number of yields."""
    rng = random.Random(SEED + number)  # a reproducible schedule, not a secret
    delays = [rng.randrange(MAX_YIELDS) for _ in range(READS + 1)]
    history = History(f"a08r{number}")
    revoke_body = _statement(chat, clock, ConsentAction.REVOKE, consent_id)
    doc, patient = chat.clinic.clinician, chat.clinic.client

    async def after(yields: int) -> None:
        for _ in range(yields):
            await asyncio.sleep(0)

    async def read(http: httpx.AsyncClient, n: int) -> Op:
        await after(delays[n])
        path = f"/v1/conversations/{chat.conversation_id}/messages"
        return await history.run(http, n, "read", {}, "GET", path, headers=doc.headers)

    async def revoke(http: httpx.AsyncClient) -> Op:
        await after(delays[READS])
        path = f"/v1/consents/{consent_id}/revoke"
        return await history.run(
            http, READS, "revoke", {}, "POST", path, headers=patient.headers, body=revoke_body
        )

    async def workload(https: list[httpx.AsyncClient]) -> tuple[list[Op], Op]:
        answers = await asyncio.gather(*(read(https[n], n) for n in range(READS)), revoke(https[READS]))
        return list(answers[:READS]), answers[READS]

    return await on_app_loop(client, READS + 1, workload)


async def test_no_read_succeeds_after_a_committed_withdrawal(
    client: AsyncTestClient[Litestar], chat: Chat, clock: FrozenClock, db: asyncpg.Connection
) -> None:
    """Reads racing a withdrawal: after it, none succeeds; before it in the audit log, every success."""
    consent_id = await db.fetchval(
        "SELECT consent_id FROM consents WHERE status = 'active' AND grantee_id = $1",
        chat.clinic.clinician.id,
    )
    succeeded = refused = overlapped = 0
    for number in range(ROUNDS):
        if number:
            consent_id = await _grant(client, chat, clock)
        reads, withdrawal = await _round(client, chat, clock, number, consent_id)
        assert withdrawal.status == 200, withdrawal.body
        events = {
            e["request_id"]: e
            for e in await db.fetch(
                "SELECT seq, request_id, event_type, consent_id FROM audit_events "
                "WHERE request_id LIKE $1 AND outcome = 0",
                f"a08r{number}-%",
            )
        }
        revoked = events[withdrawal.request_id]
        assert revoked["event_type"] == "consent.revoke"
        for op in reads:
            assert op.status in {200, 403, 404}, (op, op.body)
            if op.invoke > withdrawal.complete:
                assert not op.ok, f"round {number}: a read invoked after the withdrawal returned succeeded"
            if op.ok:
                event = events.get(op.request_id)
                assert event is not None, f"round {number}: a read succeeded without its audit event"
                assert event["event_type"] == "message.read"
                assert event["consent_id"] == consent_id, "the read's audit event names the consent"
                assert event["seq"] < revoked["seq"], (
                    f"round {number}: a read succeeded but is audited after the withdrawal "
                    f"({event['seq']} > {revoked['seq']})"
                )
            else:
                assert op.request_id not in events, f"round {number}: a refused read is audited as a success"
            succeeded += op.ok
            refused += not op.ok
            overlapped += op.invoke < withdrawal.complete and op.complete > withdrawal.invoke
    # The schedule did race them: some reads overlapped the withdrawal, some got through, some not.
    assert succeeded, "no read got through"
    assert refused, "no read was refused"
    assert overlapped, "no read overlapped a withdrawal"

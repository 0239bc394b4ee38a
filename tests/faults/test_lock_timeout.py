"""A lock held past the lock timeout is a transient failure: 503 with Retry-After, never a 500.

PostgreSQL answers a lock wait that outlasts ``lock_timeout`` (3 s here, below the 4 s
statement timeout) with SQLSTATE 55P03, which the service used to report as an internal
error. In-process app, real PostgreSQL; another session holds the table the route needs.
"""

from __future__ import annotations

import time
import uuid

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from backend.clock import FrozenClock
from backend.settings import Settings
from tests.conftest import make_settings
from tests.helpers import make_clinic, problem
from tests.messaging_helpers import as_json, consent_to, publish_keys, seal

STATEMENT_TIMEOUT_MS = 4_000
LOCK_TIMEOUT_S = 3.0


@pytest.fixture
def settings() -> Settings:
    return make_settings(db_statement_timeout_ms=STATEMENT_TIMEOUT_MS)


async def test_a_send_blocked_past_the_lock_timeout_gets_503_and_stores_nothing(
    client: AsyncTestClient[Litestar], app: Litestar, db: asyncpg.Connection, clock: FrozenClock
) -> None:
    clinic = await make_clinic(client, app, db)
    me = (await client.get("/v1/me", headers=clinic.client.headers)).json()
    doc_keys = await publish_keys(client, clinic.clinician)
    pat_keys = await publish_keys(client, clinic.client)
    await consent_to(
        client, clinic.client, pat_keys, uuid.UUID(me["organization_id"]), clinic.clinician.id, clock
    )
    conversation_id = uuid.uuid4()
    created = await client.post(
        "/v1/conversations",
        json={"id": str(conversation_id), "kind": "direct", "client_id": str(clinic.client.id)},
        headers=clinic.clinician.headers,
    )
    assert created.status_code == 201, created.text
    envelope = seal(doc_keys, conversation_id, "waits for a lock", [doc_keys.bundle, pat_keys.bundle])

    async with db.transaction():
        await db.execute("LOCK TABLE messages IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        response = await client.post(
            f"/v1/conversations/{conversation_id}/messages",
            json=as_json(envelope),
            headers=clinic.clinician.headers,
        )
        waited = time.monotonic() - started
    assert response.status_code == 503, response.text
    assert problem(response)["type"] == "urn:confide:problem:unavailable"
    assert response.headers["retry-after"] == "2"
    assert LOCK_TIMEOUT_S - 0.5 < waited < STATEMENT_TIMEOUT_MS / 1000, (
        "the lock timeout, not the statement timeout"
    )
    assert await db.fetchval("SELECT count(*) FROM messages WHERE id = $1", envelope.item_id) == 0

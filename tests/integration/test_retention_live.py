"""The retention job next to live traffic, on a schedule, and as the least-privileged application role."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from backend.app import create_app
from backend.clock import FrozenClock
from backend.retention import RetentionScheduler, RunReport, run_retention
from backend.retention.schemas import CategoryCounts
from tests import retention_helpers as seed
from tests.audit_helpers import wait_for
from tests.conftest import PgServer, make_settings
from tests.helpers import make_clinic, runtime_of
from tests.messaging_helpers import as_json, consent_to, publish_keys, seal
from tests.retention_helpers import days


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(seed.real_now() - days(1))


async def test_sends_succeed_while_the_job_deletes(
    client: AsyncTestClient[Litestar],
    app: Litestar,
    db: asyncpg.Connection,
    database_url: str,
    clock: FrozenClock,
) -> None:
    clinic = await make_clinic(client, app, db)
    org_id = uuid.UUID((await client.get("/v1/me", headers=clinic.client.headers)).json()["organization_id"])
    doc_keys = await publish_keys(client, clinic.clinician)
    pat_keys = await publish_keys(client, clinic.client)
    await consent_to(client, clinic.client, pat_keys, org_id, clinic.clinician.id, clock)
    conversation_id = uuid.uuid4()
    created = await client.post(
        "/v1/conversations",
        json={"id": str(conversation_id), "kind": "direct", "client_id": str(clinic.client.id)},
        headers=clinic.clinician.headers,
    )
    assert created.status_code == 201, created.text
    # Old messages in the same conversation, and in another one.
    org = seed.SeedOrg(id=org_id, slug="clinic", admin=clinic.admin.id, clinician=clinic.clinician.id,
                       officer=clinic.admin.id)  # fmt: skip
    await seed.bulk_messages(
        db, org, conversation_id, clinic.clinician.id, [clinic.client.id, clinic.clinician.id], 6_000,
        clock.now() - days(2000),
    )  # fmt: skip

    sends: list[int] = []
    during: list[int] = []
    finished = threading.Event()

    def progress(category: str, _: CategoryCounts, done: bool) -> None:
        if category == "messages" and not done:
            during.append(len(sends))

    async def traffic() -> None:
        bundles = [doc_keys.bundle, pat_keys.bundle]
        while not finished.is_set() and len(sends) < 500:
            envelope = seal(doc_keys, conversation_id, f"live message {len(sends)}", bundles)
            sent = await client.post(
                f"/v1/conversations/{conversation_id}/messages",
                json=as_json(envelope),
                headers=clinic.clinician.headers,
            )
            assert sent.status_code == 201, sent.text
            sends.append(sent.status_code)

    def job() -> RunReport:
        """The job in its own thread and event loop, as in its own process."""

        async def run() -> RunReport:
            conn = await asyncpg.connect(database_url)
            try:
                return await run_retention(
                    runtime_of(app), conn, dry_run=False, trigger="cli", batch_size=25, progress=progress
                )
            finally:
                await conn.close()

        try:
            return asyncio.run(run())
        finally:
            finished.set()

    report, _ = await asyncio.gather(asyncio.to_thread(job), traffic())
    assert report.counts["messages"].deleted == 6_000
    assert during[-1] > during[0], "sends completed between the job's batches"
    assert set(sends) == {201}
    page = await client.get(f"/v1/conversations/{conversation_id}/messages", headers=clinic.client.headers)
    assert page.status_code == 200
    remaining = await db.fetchval("SELECT count(*) FROM messages WHERE conversation_id = $1", conversation_id)
    assert remaining == len(sends), "every live message stays"


async def test_one_scheduler_runs_when_due(
    app: Litestar, db: asyncpg.Connection, database_url: str, clock: FrozenClock
) -> None:
    rt = runtime_of(app)
    first, second = RetentionScheduler(rt, database_url), RetentionScheduler(rt, database_url)
    reports = await asyncio.gather(first.tick(), second.tick())
    assert sum(r is not None for r in reports) == 1, (
        "one instance runs, the other finds the lock taken or the run done"
    )
    assert await first.tick() is None, "not due again before the interval"
    clock.advance(rt.settings.retention_interval_s + 1)
    assert await second.tick() is not None
    triggers = [r["trigger"] for r in await db.fetch("SELECT trigger FROM retention_runs ORDER BY seq")]
    assert triggers == ["scheduler", "scheduler"]


async def test_the_server_runs_the_scheduler_when_asked(
    db: asyncpg.Connection, database_url: str, clock: FrozenClock
) -> None:
    settings = make_settings(retention_scheduler=True, retention_interval_s=3600)
    app = create_app(settings, clock=clock, database_url=database_url)
    async with AsyncTestClient(app=app, base_url="http://127.0.0.1"):

        async def ran() -> bool:
            return bool(await db.fetchval("SELECT count(*) FROM retention_runs WHERE status = 'completed'"))

        await wait_for(ran)
    assert await db.fetchval("SELECT count(*) FROM retention_runs") == 1


@pytest.fixture
async def app_role(pg_server: PgServer, database_url: str) -> AsyncIterator[str]:
    role = f"confide_app_{uuid.uuid4().hex[:8]}"
    await pg_server.execute_admin(f'CREATE ROLE "{role}" LOGIN NOSUPERUSER NOINHERIT')
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("SELECT confide_grant_app_role($1)", role)
    finally:
        await conn.close()
    try:
        yield role
    finally:
        conn = await asyncpg.connect(database_url)
        try:
            for kind in ("TABLES", "SEQUENCES", "FUNCTIONS"):
                await conn.execute(f'REVOKE ALL ON ALL {kind} IN SCHEMA public FROM "{role}"')
            await conn.execute(f'REVOKE ALL ON SCHEMA public FROM "{role}"')
        finally:
            await conn.close()
        await pg_server.execute_admin(f'DROP ROLE IF EXISTS "{role}"')


def _as(database_url: str, role: str) -> str:
    scheme, rest = database_url.split("://", 1)
    return f"{scheme}://{role}@{rest.split('@', 1)[1]}"


async def test_the_app_role_deletes_only_through_the_retention_functions(
    app: Litestar, app_role: str, db: asyncpg.Connection, database_url: str, clock: FrozenClock
) -> None:
    """G-06 with retention: messages are deletable by the sweep functions, not by a DELETE."""
    now = clock.now()
    org = await seed.seed_org(db, "role", now - days(5000), clients=1)
    conv = await seed.conversation(db, org, now - days(5000), client=org.clients[0], members=[org.clients[0]])
    old = await seed.message(db, org, conv, org.clinician, now - days(2000), [org.clients[0]])
    young = await seed.message(db, org, conv, org.clinician, now - days(20), [org.clients[0]])
    await seed.note(db, org, org.clients[0], now - days(5000))
    await seed.consent(db, org, org.clients[0], now - days(5000), ended_at=now - days(4000), status="revoked")
    as_app = await asyncpg.connect(_as(database_url, app_role))
    try:
        for statement in (
            "DELETE FROM messages",
            "DELETE FROM notes",
            "DELETE FROM consent_events",
            "DELETE FROM attachments",
            "UPDATE messages SET envelope = envelope",
            "DELETE FROM retention_batches",
            "DELETE FROM legal_holds",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
                await as_app.execute(statement)
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await as_app.fetch("SELECT * FROM erasure_sweep_messages($1, 0, 10)", uuid.uuid4())
        report = await run_retention(runtime_of(app), as_app, dry_run=False, trigger="cli")
    finally:
        await as_app.close()
    assert report.status == "completed"
    assert report.counts["messages"].deleted == 1
    assert report.counts["notes"].deleted == 1
    assert report.counts["consent_events"].deleted == 2
    remaining = {r["id"] for r in await db.fetch("SELECT id FROM messages")}
    assert remaining == {young}
    assert old not in remaining

"""The network between the server and PostgreSQL misbehaves: latency, stalls, resets, drops.

One server process reaches its database only through :class:`~tests.faultproxy.FaultProxy`
on loopback (the embedded PostgreSQL listens on a Unix socket; the proxy adds the TCP hop).
Its timeouts are short so that each fault shows within seconds: statement timeout 1 s,
pool acquire 1 s, connect 1 s, request deadline 4 s. Each test injects one fault under a
small load of sends (PHI writes) and message reads (PHI reads), then lifts it, and checks:

- every answer is a success or a 503 ``unavailable`` problem document; never a 500, never
  a hang past the request deadline;
- the service recovers on its own within 10 s of the fault being lifted;
- nothing is half-written: every stored message has its recipients and its one audit
  event, every acknowledged send is stored, and a retry of an unanswered send with the same
  bytes returns the first answer (201 if it was lost, 200 if it was stored);
- the audit log stays dense.

Covers F-01 (latency), F-04 (resets) and the stall and drop cases of issue 8.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import statistics
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest

from audit.note import generate_signer
from tests.conftest import PgServer, as_role, with_database
from tests.e2e.conftest import RunningServer
from tests.e2e.test_multi_instance import _officer
from tests.e2e.test_push_two_processes import Parties, _set_up
from tests.faultproxy import FaultProxy
from tests.faults.support import (
    UNAVAILABLE,
    Ledger,
    Outcome,
    Servers,
    assert_log_dense,
    assert_nothing_half_written,
    integrated,
    request,
    retry_unresolved,
    seal_many,
    send,
    storm,
    summary,
    until,
    upstream_of,
    via,
)

pytestmark = pytest.mark.e2e

REQUEST_TIMEOUT_S = 4.0
STATEMENT_TIMEOUT_MS = 1_000
POOL_MAX = 4
# A request may end this long after its deadline: the cancelled query's clean-up (a cancel
# request, a rollback: each bounded by the statement timeout + 2 s) and a loaded machine.
# Without the bound a stalled request never ends at all.
SLACK_S = 5.0
RECOVERY_S = 10.0


@dataclass
class Rig:
    server: RunningServer
    proxy: FaultProxy
    parties: Parties
    officer: dict[str, str]
    http: httpx.AsyncClient
    db: asyncpg.Connection
    tmp_path: Path


@pytest.fixture(scope="module")
async def rig(pg_server: PgServer, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Rig]:
    name = await pg_server.create_database()
    database_url = with_database(pg_server.admin_url, name)
    app_url = as_role(database_url, pg_server.app_role) if pg_server.app_role else database_url
    tmp_path = tmp_path_factory.mktemp("network")
    servers = Servers(tmp_path)
    proxy = FaultProxy(upstream_of(database_url), seed=8).start()
    db = await asyncpg.connect(database_url)
    try:
        server = servers.start(
            via(app_url, proxy.address),
            CONFIDE_SECRET_KEY=base64.b64encode(secrets.token_bytes(32)).decode(),
            CONFIDE_AUDIT_LOG_KEY=str(generate_signer("network.confide.example/audit/v1")),
            CONFIDE_AUDIT_INTEGRATOR="true",
            CONFIDE_AUDIT_INTEGRATE_INTERVAL_S="0.2",
            CONFIDE_DB_STATEMENT_TIMEOUT_MS=str(STATEMENT_TIMEOUT_MS),
            CONFIDE_DB_ACQUIRE_TIMEOUT_S="1",
            CONFIDE_DB_CONNECT_TIMEOUT_S="1",
            CONFIDE_DB_POOL_MIN="1",
            CONFIDE_DB_POOL_MAX=str(POOL_MAX),
            CONFIDE_REQUEST_TIMEOUT_S=str(REQUEST_TIMEOUT_S),
            CONFIDE_LOG_LEVEL="warning",
        )
        async with httpx.AsyncClient(base_url=server.base_url, timeout=REQUEST_TIMEOUT_S + 10) as http:
            parties = await _set_up(server, http)
            officer = await _officer(http, parties.admin)
            yield Rig(server, proxy, parties, officer, http, db, tmp_path)
    finally:
        servers.stop_all()
        proxy.close()
        await db.close()
        await pg_server.drop_database(name)


async def _read(rig: Rig) -> Outcome:
    """A PHI read: the conversation's newest messages."""
    path = f"/v1/conversations/{rig.parties.conversation_id}/messages"
    return await request(rig.http, "GET", path, label="read", headers=rig.parties.pat, params={"limit": 5})


async def _load(
    rig: Rig, ledger: Ledger, *, seconds: float, messages: int, senders: int = 2, readers: int = 2
) -> list[Outcome]:
    """Sends and reads on concurrent connections for ``seconds``; the reads' outcomes are returned."""
    reads: list[Outcome] = []
    deadline = time.monotonic() + seconds

    async def reader() -> None:
        while time.monotonic() < deadline and len(reads) < 200:
            reads.append(await _read(rig))

    await asyncio.gather(
        storm(
            rig.http,
            rig.parties,
            seal_many(rig.parties, messages),
            ledger,
            workers=senders,
            duration_s=seconds,
        ),
        *(reader() for _ in range(readers)),
    )
    return reads


def _assert_bounded_and_clear(outcomes: list[Outcome], allowed: set[int]) -> None:
    """Every answer came before the deadline (plus slack) and is an allowed status or a 503 problem."""
    for outcome in outcomes:
        assert outcome.status is not None, f"no answer: {outcome}"
        assert outcome.elapsed_s < REQUEST_TIMEOUT_S + SLACK_S, f"past the deadline: {outcome}"
        if outcome.status == 503:
            assert outcome.problem_type == UNAVAILABLE, outcome
        else:
            assert outcome.status in allowed, outcome


async def _healthy(rig: Rig) -> bool:
    """A send and a read both succeed, quickly."""
    envelope = seal_many(rig.parties, 1, "probe")[0]
    sent = await send(rig.http, rig.parties, envelope, Ledger())
    read = await _read(rig)
    return sent.status == 201 and read.status == 200 and max(sent.elapsed_s, read.elapsed_s) < 1.0


async def _recovers(rig: Rig) -> float:
    return await until(lambda: _healthy(rig), "the service recovered", deadline_s=RECOVERY_S)


async def _server_connections(rig: Rig) -> int:
    """Backends of the server's pool (the LISTEN connection and this test's own excluded)."""
    count = await rig.db.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND application_name = 'confide' AND pid <> pg_backend_pid()"
    )
    return int(count)


@pytest.fixture
async def healthy(rig: Rig) -> AsyncIterator[Rig]:
    """Each test starts and ends with the network healed and the service answering."""
    rig.proxy.pass_through()
    await _recovers(rig)
    yield rig
    rig.proxy.pass_through()
    await _recovers(rig)


async def _settle_and_check(rig: Rig, ledger: Ledger) -> None:
    await retry_unresolved(rig.http, rig.parties, ledger)
    stored = await assert_nothing_half_written(rig.db, ledger)
    assert stored == len(ledger.outcomes)
    await until(lambda: integrated(rig.http, rig.officer), "the integrator caught up")
    await assert_log_dense(rig.db)


async def test_latency_requests_end_at_the_deadline_and_recover(healthy: Rig) -> None:
    """F-01: 500 ms ± 200 ms added to every database answer: slow or 503, never a hang; recovery."""
    rig = healthy
    ledger = Ledger()
    rig.proxy.latency(0.5, 0.2)
    reads = await _load(rig, ledger, seconds=6, messages=40, senders=1, readers=1)
    connections = await _server_connections(rig)
    health = await rig.http.get("/health/ready")
    rig.proxy.pass_through()
    recovered_s = await _recovers(rig)
    print(
        f"latency: sends {summary(ledger.all())}; reads {summary(reads)}; pool backends {connections}; "
        f"health {health.status_code} {health.json()}; recovered in {recovered_s:.1f} s"
    )
    _assert_bounded_and_clear(ledger.all(), {201})
    _assert_bounded_and_clear(reads, {200})
    assert connections <= POOL_MAX
    assert health.status_code == 200
    assert health.json() == {"status": "degraded", "database": "slow", "migrations": "current"}
    await _settle_and_check(rig, ledger)


async def test_stalled_connections_fail_at_the_deadline_and_the_pool_replaces_them(healthy: Rig) -> None:
    """Stalled: 503 by the deadline. Healed for new connections only: the pool recovers anyway."""
    rig = healthy
    ledger = Ledger()
    rig.proxy.stall()
    reads = await _load(rig, ledger, seconds=5, messages=20)
    health = await rig.http.get("/health/ready")
    # The old connections stay black holes (a firewall forgot them); new ones pass.
    rig.proxy.pass_through(existing=False)
    recovered_s = await _recovers(rig)
    print(
        f"stall: sends {summary(ledger.all())}; reads {summary(reads)}; health {health.status_code};"
        f" recovered in {recovered_s:.1f} s with the old connections still black-holed"
    )
    _assert_bounded_and_clear(ledger.all(), set())
    _assert_bounded_and_clear(reads, set())
    assert health.status_code == 503
    rig.proxy.pass_through()
    await _settle_and_check(rig, ledger)


async def test_resets_mid_request_leave_nothing_half_written(healthy: Rig) -> None:
    """F-04: RST on a share of connections, mid-request or mid-response: whole or nothing, retries agree."""
    rig = healthy
    ledger = Ledger()
    reads: list[Outcome] = []
    for _ in range(6):
        rig.proxy.reset(0.3)
        reads += await _load(rig, ledger, seconds=1, messages=15, readers=1)
    resets = rig.proxy.stats().resets
    rig.proxy.pass_through()
    print(f"resets: {resets}; sends {summary(ledger.all())}; reads {summary(reads)}")
    assert resets > 0
    _assert_bounded_and_clear(ledger.all(), {201})
    _assert_bounded_and_clear(reads, {200})
    await _settle_and_check(rig, ledger)


async def test_refused_and_dropped_connections_fail_fast(healthy: Rig) -> None:
    """Every connection reset or dropped at once: 503 well before the deadline; recovery."""
    rig = healthy
    for fault in (rig.proxy.reset, rig.proxy.drop):
        ledger = Ledger()
        fault(1.0)
        reads = await _load(rig, ledger, seconds=2, messages=10)
        rig.proxy.pass_through()
        recovered_s = await _recovers(rig)
        outcomes = ledger.all() + reads
        print(f"{fault.__name__} all: {summary(outcomes)}; recovered in {recovered_s:.1f} s")
        _assert_bounded_and_clear(outcomes, set())
        assert statistics.median(o.elapsed_s for o in outcomes) < REQUEST_TIMEOUT_S / 2, "fails fast"
        await _settle_and_check(rig, ledger)


SLOW_INSERT_SQL = """
CREATE FUNCTION test_slow_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_sleep(30);
    RETURN NEW;
END $$;
CREATE TRIGGER test_slow_insert BEFORE INSERT ON messages FOR EACH ROW EXECUTE FUNCTION test_slow_insert();
"""


async def test_statement_and_lock_timeouts_answer_503_and_store_nothing(healthy: Rig) -> None:
    """A statement past the statement timeout, and a lock held past the lock timeout: 503, nothing stored."""
    rig = healthy
    ledger = Ledger()
    # A test-only trigger makes every message insert outlast the statement timeout.
    await rig.db.execute(SLOW_INSERT_SQL)
    try:
        slow = [await send(rig.http, rig.parties, e, ledger) for e in seal_many(rig.parties, 2, "slow")]
    finally:
        await rig.db.execute("DROP TRIGGER test_slow_insert ON messages; DROP FUNCTION test_slow_insert()")
    # Another session holds the messages table: sends and reads wait for the lock, then give up.
    async with rig.db.transaction():
        await rig.db.execute("LOCK TABLE messages IN ACCESS EXCLUSIVE MODE")
        locked = [await send(rig.http, rig.parties, e, ledger) for e in seal_many(rig.parties, 2, "locked")]
        reads = [await _read(rig), await _read(rig)]
    print(
        f"statement timeout: {summary(slow)}; lock timeout: sends {summary(locked)}, reads {summary(reads)}"
    )
    for outcome in [*slow, *locked, *reads]:
        assert outcome.status == 503, outcome
        assert outcome.problem_type == UNAVAILABLE, outcome
        assert outcome.elapsed_s < STATEMENT_TIMEOUT_MS / 1000 + SLACK_S, outcome
    assert await assert_nothing_half_written(rig.db, ledger) == 0
    await _settle_and_check(rig, ledger)

"""PostgreSQL stopped under load, then started again; and PostgreSQL crashing mid-storm.

These tests run their *own* embedded cluster in a temporary directory (never the shared
test cluster), with one server process on it and the in-process audit integrator on.

- F-02: ``pg_ctl stop -m fast`` while sends, reads and logins run; 5 s later the cluster
  starts again. While it is down every request gets a 503 ``unavailable`` problem document
  quickly (the connection is refused, nothing waits for a deadline); no PHI route answers
  200 and no request gets an authorization decision (a forged token gets 503, not 401:
  nothing is decided without the database). The same server process recovers on its own
  within 10 s, and nothing acknowledged is lost.
- F-03: ``pg_ctl stop -m immediate`` (a crash: no checkpoint, crash recovery on start) at
  random points of a send storm, three times; clients retry every unacknowledged send with
  the same bytes.
  Every message acknowledged is stored exactly once with its recipients and exactly one
  audit event; retried sends that had been stored come back 200 with the first answer;
  the audit log is dense and verifies offline.
"""

from __future__ import annotations

import asyncio
import base64
import random
import secrets
import shutil
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest

from audit.note import generate_signer
from backend.db.database import EMBEDDED_DATABASE
from backend.db.embedded import EmbeddedPostgres
from backend.db.migrate import migrate
from tests.conftest import as_role
from tests.e2e.conftest import RunningServer
from tests.e2e.test_multi_instance import _officer
from tests.e2e.test_push_two_processes import Parties, _set_up
from tests.faults.support import (
    UNAVAILABLE,
    Ledger,
    Outcome,
    Servers,
    assert_log_dense,
    assert_nothing_half_written,
    export_and_verify,
    integrated,
    request,
    retry_unresolved,
    seal_many,
    send,
    storm,
    summary,
    until,
)

pytestmark = pytest.mark.e2e

OUTAGE_S = 5.0
REQUEST_TIMEOUT_S = 5.0
RECOVERY_S = 10.0
CRASHES = 3
APP_ROLE = "confide_app"
FORGED = {"Authorization": "Bearer " + "A" * 43}
PROBES = ("phi-read", "forged", "ready", "login")


@dataclass
class Rig:
    cluster: EmbeddedPostgres
    server: RunningServer
    parties: Parties
    officer: dict[str, str]
    http: httpx.AsyncClient
    tmp_path: Path

    async def db(self) -> asyncpg.Connection:
        return await asyncpg.connect(self.cluster.dsn(EMBEDDED_DATABASE))


@pytest.fixture(scope="module")
async def rig(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Rig]:
    tmp_path = tmp_path_factory.mktemp("pgdown")
    # Not under pytest's temporary root: a pytest started meanwhile (by anyone) takes the
    # "other" bits off that root, which locks out the cluster's own system user.
    data_dir = Path(tempfile.mkdtemp(prefix="confide-faults-pg-"))
    cluster = EmbeddedPostgres(data_dir)
    servers = Servers(tmp_path)
    try:
        await asyncio.to_thread(cluster.ensure_running)
        admin = await asyncpg.connect(cluster.dsn())
        try:
            await admin.execute(f'CREATE DATABASE "{EMBEDDED_DATABASE}"')
        finally:
            await admin.close()
        await migrate(cluster.dsn(EMBEDDED_DATABASE))
        admin = await asyncpg.connect(cluster.dsn(EMBEDDED_DATABASE))
        try:  # the server connects as a least-privileged application role, as in production
            await admin.execute(f'CREATE ROLE "{APP_ROLE}" LOGIN NOSUPERUSER NOBYPASSRLS NOINHERIT')
            await admin.execute("SELECT confide_grant_app_role($1)", APP_ROLE)
        finally:
            await admin.close()
        server = servers.start(
            as_role(cluster.dsn(EMBEDDED_DATABASE), APP_ROLE),
            CONFIDE_SECRET_KEY=base64.b64encode(secrets.token_bytes(32)).decode(),
            CONFIDE_AUDIT_LOG_KEY=str(generate_signer("pgdown.confide.example/audit/v1")),
            CONFIDE_AUDIT_INTEGRATOR="true",
            CONFIDE_AUDIT_INTEGRATE_INTERVAL_S="0.1",
            CONFIDE_DB_CONNECT_TIMEOUT_S="1",
            CONFIDE_DB_ACQUIRE_TIMEOUT_S="1",
            CONFIDE_DB_POOL_MAX="4",
            CONFIDE_REQUEST_TIMEOUT_S=str(REQUEST_TIMEOUT_S),
            CONFIDE_LOG_LEVEL="warning",
        )
        async with httpx.AsyncClient(base_url=server.base_url, timeout=REQUEST_TIMEOUT_S + 10) as http:
            parties = await _set_up(server, http)
            officer = await _officer(http, parties.admin)
            yield Rig(cluster, server, parties, officer, http, tmp_path)
    finally:
        servers.stop_all()
        await asyncio.to_thread(cluster.stop, "immediate")
        shutil.rmtree(data_dir, ignore_errors=True)


async def _healthy(rig: Rig) -> bool:
    envelope = seal_many(rig.parties, 1, "probe")[0]
    sent = await send(rig.http, rig.parties, envelope, Ledger())
    path = f"/v1/conversations/{rig.parties.conversation_id}/messages"
    read = await request(rig.http, "GET", path, label="read", headers=rig.parties.pat)
    return sent.status == 201 and read.status == 200


async def _settle_and_check(rig: Rig, ledger: Ledger) -> None:
    """Retry what was not acknowledged; check nothing is lost, duplicated or half-written."""
    await retry_unresolved(rig.http, rig.parties, ledger)
    db = await rig.db()
    try:
        assert await assert_nothing_half_written(db, ledger) == len(ledger.outcomes)
        await until(lambda: integrated(rig.http, rig.officer), "the integrator caught up")
        await assert_log_dense(db)
    finally:
        await db.close()
    await export_and_verify(rig.http, rig.officer, rig.server, rig.tmp_path)


async def test_database_stopped_for_5_s_fails_fast_closed_and_recovers(rig: Rig) -> None:
    """F-02: 503 problem documents, fast, while PostgreSQL is down; no PHI 200, no authz decision."""
    pid = rig.server.process.pid
    ledger = Ledger()
    probes: list[Outcome] = []
    messages = f"/v1/conversations/{rig.parties.conversation_id}/messages"
    stop = asyncio.Event()

    async def prober() -> None:
        """PHI reads with a valid token, any route with a forged one, logins, readiness."""
        login = {"organization": "push-e2e", "email": "pat@push.example", "password": "patient passphrase 1"}
        while not stop.is_set() and len(probes) < 2_000:
            probes.append(await request(rig.http, "GET", messages, label="phi-read", headers=rig.parties.pat))
            probes.append(await request(rig.http, "GET", messages, label="forged", headers=FORGED))
            probes.append(await request(rig.http, "GET", "/health/ready", label="ready"))
            probes.append(await request(rig.http, "POST", "/v1/auth/login", label="login", body=login))
            await asyncio.sleep(0.05)

    load = asyncio.gather(
        storm(
            rig.http,
            rig.parties,
            seal_many(rig.parties, 400),
            ledger,
            workers=2,
            duration_s=30,
            stop=stop,
            backoff_s=0.05,
            pace_s=0.02,
        ),
        prober(),
    )
    try:
        await until(_at_least(lambda: len(ledger.acknowledged()), 10), "sends before the outage")
        await asyncio.to_thread(rig.cluster.stop, "fast")
        down_at = time.monotonic()
        await asyncio.sleep(OUTAGE_S)  # the outage itself, not a wait for a condition
        up_from = time.monotonic()
        await asyncio.to_thread(rig.cluster.ensure_running)
        recovered_s = await until(lambda: _healthy(rig), "recovery after the restart", deadline_s=RECOVERY_S)
    finally:
        stop.set()
        async with asyncio.timeout(REQUEST_TIMEOUT_S + 10):
            await load

    during = [o for o in ledger.all() + probes if o.started >= down_at and o.started + o.elapsed_s <= up_from]
    by_kind = {label: summary(o for o in during if o.request_id == label) for label in PROBES}
    print(
        f"outage {up_from - down_at:.1f} s: sends {summary(o for o in during if o.request_id not in PROBES)};"
        f" {by_kind}; recovered {recovered_s:.1f} s after the restart"
    )
    assert len(during) > 20, "the outage saw traffic"
    for outcome in during:
        if outcome.request_id == "ready":
            assert outcome.status == 503, outcome
            continue
        assert outcome.status == 503, f"answered without the database: {outcome}"
        assert outcome.problem_type == UNAVAILABLE, outcome
        assert outcome.elapsed_s < REQUEST_TIMEOUT_S, outcome
    assert statistics.median(o.elapsed_s for o in during) < 1.0, "fails fast, not at the deadline"
    assert rig.server.process.poll() is None, "the same server process recovered"
    assert rig.server.process.pid == pid
    # With the database back, the forged token gets its decision: 401.
    forged = await request(rig.http, "GET", messages, label="forged", headers=FORGED)
    assert forged.status == 401, forged
    await _settle_and_check(rig, ledger)


async def test_database_crashes_mid_storm_keep_every_acknowledged_send_exactly_once(rig: Rig) -> None:
    """F-03: PostgreSQL killed (-m immediate) 3 times mid-storm; same-bytes retries; none lost or doubled."""
    ledger = Ledger()
    stop = asyncio.Event()
    load = asyncio.ensure_future(
        storm(
            rig.http,
            rig.parties,
            seal_many(rig.parties, 800),
            ledger,
            workers=4,
            duration_s=40,
            stop=stop,
            backoff_s=0.05,
            pace_s=0.02,
        )
    )
    try:
        for crash in range(CRASHES):
            acked, refused = len(ledger.acknowledged()), _refused(ledger)
            await until(
                _at_least(lambda: len(ledger.acknowledged()), acked + 15), f"sends before crash {crash}"
            )
            await asyncio.sleep(random.uniform(0, 0.2))  # a random point in the storm
            await asyncio.to_thread(rig.cluster.stop, "immediate")
            await until(_at_least(lambda: _refused(ledger), refused + 1), f"sends fail after crash {crash}")
            await asyncio.to_thread(rig.cluster.ensure_running)
            await until(lambda: _healthy(rig), f"recovery after crash {crash}", deadline_s=RECOVERY_S)
    finally:
        stop.set()
        async with asyncio.timeout(REQUEST_TIMEOUT_S + 10):
            await load
    in_doubt = ledger.unresolved()
    print(f"{CRASHES} crashes: {summary(ledger.all())}; unacknowledged, to retry: {len(in_doubt)}")
    await _settle_and_check(rig, ledger)
    retried = [ledger.outcomes[m][-1] for m in in_doubt]
    assert all(o.status in {200, 201} for o in retried)
    print(f"retries: {summary(retried)} (200: stored before the crash, answer lost)")


def _refused(ledger: Ledger) -> int:
    return sum(1 for o in ledger.all() if not o.acknowledged)


def _at_least(count: Callable[[], int], target: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return count() >= target

    return check

"""Two API processes on one PostgreSQL: shared push, one integrator leader, hand-over on death.

Each process runs the service *and* its in-process audit integrator, connected as its own
least-privileged role (granted by ``confide_grant_app_role``) so that ``pg_stat_activity``
names which process a backend serves. A test-only trigger holds the leader inside its
batch (after it has locked the tree state, before it can sign), which makes "the leader"
observable: exactly one backend is in a batch, and it is the one holding the
``audit_tree_state`` row. That process is then SIGKILLed mid-batch. Its transaction rolls
back, the other process takes over, and the log stays dense: every event has exactly one
index, no index is missing or repeated, and the export verifies with ``confide audit
verify``. Loopback and a Unix socket only; every wait has a deadline.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import itertools
import json
import secrets
import signal
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import asyncpg
import httpx
import pytest

from audit.note import generate_signer
from tests.conftest import PgServer
from tests.e2e.conftest import RunningServer
from tests.e2e.test_push_two_processes import Parties, _message_id, _send, _set_up
from tests.helpers import totp_code
from tests.integration.test_push import SseReader

pytestmark = pytest.mark.e2e

OFFICER_PW = "multi instance officer passphrase"
WAIT_S = 20.0

# Test-only: while test_gate.closed, an integrator that is about to store its checkpoint
# waits inside its batch, holding the tree-state row lock.
GATE_SQL = """
CREATE TABLE test_gate (closed boolean NOT NULL);
INSERT INTO test_gate VALUES (true);
CREATE FUNCTION test_gate_wait() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    WHILE (SELECT closed FROM test_gate) LOOP
        PERFORM pg_sleep(0.01);
    END LOOP;
    RETURN NEW;
END $$;
CREATE TRIGGER test_gate_wait BEFORE INSERT ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION test_gate_wait();
"""
IN_BATCH_SQL = """
SELECT pid, usename, backend_xid::text AS xid FROM pg_stat_activity
WHERE datname = current_database() AND state = 'active'
  AND query LIKE 'INSERT INTO audit_checkpoints%'
"""


def _as(database_url: str, role: str) -> str:
    scheme, rest = database_url.split("://", 1)
    return f"{scheme}://{role}@{rest.split('@', 1)[1]}"


@pytest.fixture
async def instance_roles(pg_server: PgServer, database_url: str) -> AsyncIterator[tuple[str, str]]:
    """One least-privileged database role per API process, so backends name their process."""
    tag = uuid.uuid4().hex[:8]
    roles = (f"confide_inst_a_{tag}", f"confide_inst_b_{tag}")
    for role in roles:
        await pg_server.execute_admin(f'CREATE ROLE "{role}" LOGIN NOSUPERUSER NOINHERIT')
    conn = await asyncpg.connect(database_url)
    try:
        for role in roles:
            await conn.execute("SELECT confide_grant_app_role($1)", role)
    finally:
        await conn.close()
    try:
        yield roles
    finally:
        conn = await asyncpg.connect(database_url)
        try:
            for role in roles:
                await conn.execute(f'DROP OWNED BY "{role}"')  # its privileges here; it owns nothing
        finally:
            await conn.close()
        for role in roles:
            await pg_server.execute_admin(f'DROP ROLE IF EXISTS "{role}"')


async def _until(check: Callable[[], Awaitable[bool]], what: str, deadline_s: float = WAIT_S) -> None:
    end = time.monotonic() + deadline_s
    while not await check():
        if time.monotonic() > end:
            raise TimeoutError(f"not before the deadline: {what}")
        await asyncio.sleep(0.02)


async def _officer(http: httpx.AsyncClient, admin: dict[str, str]) -> dict[str, str]:
    body = {
        "email": "co@push.example",
        "display_name": "CO",
        "role": "compliance_officer",
        "password": OFFICER_PW,
    }
    made = await http.post("/v1/accounts", json=body, headers=admin)
    assert made.status_code == 201, made.text
    login = {"organization": "push-e2e", "email": "co@push.example", "password": OFFICER_PW}
    response = await http.post("/v1/auth/login", json=login)
    assert response.status_code == 200, response.text
    headers = {"Authorization": f"Bearer {response.json()['token']}"}
    secret = (await http.post("/v1/auth/mfa/totp", headers=headers)).json()["secret"]
    code = totp_code(secret, dt.datetime.now(dt.UTC))
    confirmed = await http.post("/v1/auth/mfa/totp/confirm", json={"code": code}, headers=headers)
    assert confirmed.status_code == 200, confirmed.text
    return headers


async def _push_crosses(
    sender: httpx.AsyncClient, receiver: httpx.AsyncClient, p: Parties, text: str
) -> None:
    """A message sent through ``sender`` reaches the patient's stream on ``receiver``."""
    async with receiver.stream("GET", "/v1/events", headers=p.pat) as response:
        assert response.status_code == 200
        reader = SseReader(response)
        await reader.comment("stream open", within_s=10)
        sent = await _send(sender, p, text)
        assert _message_id(await reader.expect(within_s=10)) == str(sent)


def _integrated_ranges(log_path: Path) -> list[tuple[int, int]]:
    """[start, end) index ranges this process's integrator logged (``audit_integrated``)."""
    ranges = []
    for line in log_path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("event") == "audit_integrated":
            ranges.append((int(record["tree_size"]) - int(record["count"]), int(record["tree_size"])))
    return ranges


async def test_two_instances_share_push_and_hand_over_the_integrator(
    instance_roles: tuple[str, str],
    start_server: Callable[..., RunningServer],
    database_url: str,
    tmp_path: Path,
) -> None:
    """R-02 and the audit log's single writer: one leader at a time, and a dead leader is replaced."""
    common = {
        "CONFIDE_SECRET_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
        "CONFIDE_AUDIT_LOG_KEY": str(generate_signer("multi.confide.example/audit/v1")),
        "CONFIDE_AUDIT_INTEGRATOR": "true",
        "CONFIDE_AUDIT_INTEGRATE_INTERVAL_S": "0.05",
        # The held batch must not hit the statement timeout while the test looks at it.
        "CONFIDE_DB_STATEMENT_TIMEOUT_MS": "120000",
    }
    servers = {
        role: start_server(
            CONFIDE_DATABASE_URL=_as(database_url, role), CONFIDE_INSTANCE_ID=f"instance-{n}", **common
        )
        for n, role in enumerate(instance_roles)
    }
    a, b = servers.values()
    db = await asyncpg.connect(database_url)
    async with (
        httpx.AsyncClient(base_url=a.base_url, timeout=10) as http_a,
        httpx.AsyncClient(base_url=b.base_url, timeout=10) as http_b,
    ):
        clients = {a.base_url: http_a, b.base_url: http_b}
        parties = await _set_up(a, http_a)
        officer = await _officer(http_b, parties.admin)

        # 1. Push fans out across the processes, both ways (LISTEN/NOTIFY only).
        await _push_crosses(http_a, http_b, parties, "from A to B")
        await _push_crosses(http_b, http_a, parties, "from B to A")

        def settled(http: httpx.AsyncClient) -> Callable[[], Awaitable[bool]]:
            async def check() -> bool:
                status = (await http.get("/v1/audit/status", headers=officer)).json()
                return bool(
                    status["pending_events"] == 0 and status["checkpoint_size"] == status["tree_size"]
                )

            return check

        await _until(settled(http_b), "the integrators caught up")

        # 2. Hold the next batch inside its transaction: its process is the one leader.
        await db.execute(GATE_SQL)
        for role in instance_roles:
            await db.execute(f'GRANT SELECT ON test_gate TO "{role}"')
        await _send(http_b, parties, "an audited action while the gate is closed")
        await _until(lambda: _has_rows(db, IN_BATCH_SQL), "a leader is inside its batch")
        in_batch = await db.fetch(IN_BATCH_SQL)
        assert len(in_batch) == 1, "exactly one integrator is in a batch"
        (leader_backend,) = in_batch
        locker = await db.fetchval("SELECT xmax::text FROM audit_tree_state WHERE id = 1")
        assert locker == leader_backend["xid"], "the one in a batch holds the tree-state row"
        # Committed size while the leader holds the row: nobody else can move it.
        size_before = await db.fetchval("SELECT size FROM audit_tree_state")
        leader = servers[leader_backend["usename"]]
        survivor = b if leader is a else a
        # The follower is alive and integrating as usual, yet not in a batch: it skips the locked row.
        assert survivor.process.poll() is None
        assert (await clients[survivor.base_url].get("/health/ready")).status_code == 200
        assert await db.fetchval("SELECT size FROM audit_tree_state") == size_before

        # 3. The leader dies mid-batch. Its transaction rolls back once PostgreSQL notices.
        leader.process.send_signal(signal.SIGKILL)
        assert leader.process.wait(timeout=10) == -signal.SIGKILL
        await db.execute("UPDATE test_gate SET closed = false")

        async def leader_backend_gone() -> bool:
            return not await _has_rows(
                db, "SELECT 1 FROM pg_stat_activity WHERE pid = $1", leader_backend["pid"]
            )

        await _until(leader_backend_gone, "the dead leader's backend ended")

        # 4. The survivor takes over: everything pending is integrated, more work keeps flowing.
        http_s = clients[survivor.base_url]
        await _push_crosses(http_s, http_s, parties, "after the hand-over")
        await _until(settled(http_s), "the survivor integrated what the dead leader had taken")
        size_after = await db.fetchval("SELECT size FROM audit_tree_state")
        assert size_after > size_before

        # Dense: indexes 0..size-1, each once, one per event, nothing left queued.
        log = await db.fetchrow(
            "SELECT count(*) AS n, count(DISTINCT idx) AS distinct_idx, min(idx) AS lo, max(idx) AS hi,"
            " count(DISTINCT event_seq) AS events FROM audit_log"
        )
        assert log is not None
        assert (log["n"], log["distinct_idx"], log["events"]) == (size_after, size_after, size_after)
        assert (log["lo"], log["hi"]) == (0, size_after - 1)
        assert await db.fetchval("SELECT count(*) FROM audit_events") == size_after
        assert await db.fetchval("SELECT count(*) FROM audit_pending") == 0
        assert await db.fetchval("SELECT max(size) FROM audit_checkpoints") == size_after

        # What each process says it integrated tiles the log exactly: no index twice, none missed.
        by_process = {name: _integrated_ranges(s.log_path) for name, s in servers.items()}
        ranges = sorted(r for found in by_process.values() for r in found)
        assert ranges[0][0] == 0
        assert all(left[1] == right[0] for left, right in itertools.pairwise(ranges))
        assert ranges[-1][1] == size_after
        survivor_role = next(name for name, s in servers.items() if s is survivor)
        print(f"leader killed mid-batch at size {size_before}; batches per process: {by_process}")
        assert any(start <= size_before < end for start, end in by_process[survivor_role]), (
            "the survivor integrated the batch the dead leader had taken"
        )

        # 5. The log verifies offline.
        key_file = tmp_path / "log.vkey"
        key_file.write_text((await http_s.get("/v1/audit/log-key")).json()["vkey"], encoding="ascii")
        export = tmp_path / "export.jsonl"
        async with http_s.stream("GET", "/v1/audit/export", headers=officer) as response:
            assert response.status_code == 200
            with export.open("wb") as out:
                async for chunk in response.aiter_bytes():
                    out.write(chunk)
        verified = survivor.run_cli("audit", "verify", str(export), "--log-key", f"@{key_file}")
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert "complete" in verified.stdout
    await db.close()


async def _has_rows(db: asyncpg.Connection, sql: str, *args: object) -> bool:
    return bool(await db.fetch(sql, *args))

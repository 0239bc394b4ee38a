"""F-08: the retention job killed (SIGKILL) mid-run three times, then rerun, ends where a clean run ends."""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import signal
import subprocess
import sys
import urllib.parse
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from litestar import Litestar

from backend.retention import run_retention
from tests import retention_helpers as seed
from tests.audit_helpers import integrate_all, wait_for
from tests.conftest import PgServer, with_database
from tests.helpers import runtime_of
from tests.retention_helpers import days

CONFIDE = str(Path(sys.executable).parent / "confide")
BATCH = 50


async def _seed(app: Litestar, conn: asyncpg.Connection) -> None:
    now = seed.real_now()
    org = await seed.seed_org(conn, "crash", now - days(6000), clients=2)
    patient, held_patient = org.clients
    conv = await seed.conversation(
        conn, org, now - days(6000), client=patient, members=[patient, org.clinician]
    )
    held = await seed.conversation(conn, org, now - days(6000), client=held_patient, members=[held_patient])
    await conn.execute(
        """
        INSERT INTO legal_holds (id, org_id, scope, conversation_id, reason, placed_by, placed_at)
        VALUES ($1, $2, 'conversation', $3, 'preserve for litigation', $4, now())
        """,
        uuid.uuid4(),
        org.id,
        held,
        org.officer,
    )
    await seed.bulk_messages(
        conn, org, conv, org.clinician, [patient, org.clinician], 20_000, now - days(2000)
    )
    await seed.bulk_messages(conn, org, held, org.clinician, [held_patient], 300, now - days(2000))
    await seed.bulk_messages(conn, org, conv, patient, [patient, org.clinician], 200, now - days(10))
    for n in range(60):
        await seed.note(conn, org, patient, now - days(4000 if n % 2 else 100))
        await seed.session(conn, org, patient, now - days(100 if n % 2 else 1), revoked=True)
        await seed.attachment(conn, org, conv, patient, now - days(2000 if n % 2 else 10))
        await seed.audit_event(conn, org, now - days(4000 if n % 2 else 10))
    await integrate_all(app, conn)


@pytest.fixture
async def twins(app: Litestar, pg_server: PgServer, database_url: str) -> AsyncIterator[tuple[str, str]]:
    """The seeded database, and an identical copy of it for the uninterrupted run."""
    conn = await asyncpg.connect(database_url)
    try:
        await _seed(app, conn)
    finally:
        await conn.close()
    name = f"confide_t_{uuid.uuid4().hex[:16]}"
    source = urllib.parse.urlsplit(database_url).path.lstrip("/")
    await pg_server.execute_admin(f'CREATE DATABASE "{name}" TEMPLATE "{source}"')
    try:
        yield database_url, with_database(pg_server.admin_url, name)
    finally:
        await pg_server.drop_database(name)


def _start(database_url: str, tmp_path: Path) -> subprocess.Popen[str]:
    env = _start_env(database_url, tmp_path)
    env["CONFIDE_SECRET_KEY"] = base64.b64encode(secrets.token_bytes(32)).decode()
    return subprocess.Popen(
        [CONFIDE, "retention", "run", "--batch-size", str(BATCH)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def test_killed_runs_finish_where_a_clean_run_does(
    app: Litestar, twins: tuple[str, str], tmp_path: Path
) -> None:
    killed_url, clean_url = twins
    clean = await asyncpg.connect(clean_url)
    try:
        report = await run_retention(runtime_of(app), clean, dry_run=False, trigger="cli", batch_size=BATCH)
        assert report.status == "completed"
        assert report.counts["messages"].deleted == 20_000
        expected = await seed.snapshot(clean)
    finally:
        await clean.close()

    conn = await asyncpg.connect(killed_url)
    try:
        for _ in range(3):
            before = await conn.fetchval("SELECT count(*) FROM retention_batches")
            process = _start(killed_url, tmp_path)

            async def committed(before: int = before) -> bool:
                return int(await conn.fetchval("SELECT count(*) FROM retention_batches")) > before

            await wait_for(committed, deadline_s=60)
            process.send_signal(signal.SIGKILL)
            assert await asyncio.to_thread(process.wait, 30) == -signal.SIGKILL
            process.communicate()
            status = await conn.fetchval("SELECT status FROM retention_runs ORDER BY seq DESC LIMIT 1")
            assert status == "running", "killed mid-run (the run never recorded its end)"

        finished = await asyncio.to_thread(
            subprocess.run,
            [CONFIDE, "retention", "run", "--batch-size", str(BATCH)],
            env=_start_env(killed_url, tmp_path),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert finished.returncode == 0, finished.stderr
        assert "status: completed" in finished.stdout
        assert await seed.snapshot(conn) == expected, "the same rows remain as after a clean run"

        again = await asyncio.to_thread(
            subprocess.run,
            [CONFIDE, "retention", "run", "--quiet"],
            env=_start_env(killed_url, tmp_path),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert again.returncode == 0, again.stderr
        assert await seed.snapshot(conn) == expected, "a second run does nothing"
        counts = await conn.fetchval("SELECT counts FROM retention_runs ORDER BY seq DESC LIMIT 1")
        assert '"deleted": 0' in counts
        assert '"deleted": 1' not in counts

        runs = [r["status"] for r in await conn.fetch("SELECT status FROM retention_runs ORDER BY seq")]
        assert runs == ["abandoned", "abandoned", "abandoned", "completed", "completed"]
        # One audit event per committed batch, never two, never one without its batch.
        batches = {r["id"] for r in await conn.fetch("SELECT id FROM retention_batches")}
        events = [
            r["entity_id"]
            for r in await conn.fetch(
                "SELECT entity_id FROM audit_events WHERE entity_type = 'retention_batch'"
            )
        ]
        assert len(events) == len(set(events))
        assert set(events) == batches
        deleted = await conn.fetchval(
            "SELECT sum(deleted) FROM retention_batches WHERE category = 'messages'"
        )
        assert deleted == 20_000, "every message deleted exactly once over the four runs"
        held = await conn.fetchval(
            "SELECT count(*) FROM messages m"
            " JOIN held_conversations h ON h.conversation_id = m.conversation_id"
        )
        assert held == 300, "held rows are untouched"
    finally:
        await conn.close()


def _start_env(database_url: str, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONFIDE_")}
    env.update(
        {
            "CONFIDE_ENVIRONMENT": "test",
            "CONFIDE_DATABASE_URL": database_url,
            "CONFIDE_DATA_DIR": str(tmp_path),
            "CONFIDE_LOG_LEVEL": "warning",
        }
    )
    return env

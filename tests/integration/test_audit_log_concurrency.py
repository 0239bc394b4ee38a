"""Many writers, the integrator running, and a leader killed mid-batch: nothing lost or doubled."""

from __future__ import annotations

import asyncio
import sys
import uuid

import asyncpg

from audit.checkpoint import verify_checkpoint
from audit.merkle import leaf_hash, root_from_leaf_hashes
from backend.audit_trail import Action, AuditContext, AuditEvent, record
from backend.audit_trail.integrator import Integrator
from backend.audit_trail.log_key import log_signer
from backend.clock import SystemClock
from backend.settings import Settings
from tests.audit_helpers import wait_for
from tests.conftest import ROOT

WRITERS = 8
PER_WRITER = 150

# A leader that takes a batch, stores it, and hangs before signing until it is killed.
_HANGING_LEADER = """
import asyncio, sys
import asyncpg
from audit.note import NoteSigner
from backend.audit_trail import integrator
from backend.clock import SystemClock

def hang(*args, **kwargs):
    print("HOLDING", flush=True)
    sys.stdin.readline()

integrator.sign_checkpoint = hang

async def main():
    conn = await asyncpg.connect(sys.argv[1])
    signer = NoteSigner.parse(sys.argv[2])
    while True:
        await integrator.integrate_batch(conn, signer, SystemClock(), batch=200)
        await asyncio.sleep(0.005)

asyncio.run(main())
"""


async def _writer(database_url: str, n: int) -> None:
    conn = await asyncpg.connect(database_url)
    ctx = AuditContext(source_instance=f"writer-{n}")
    try:
        written = 0
        while written < PER_WRITER:
            batch = min(1 + written % 3, PER_WRITER - written)
            async with conn.transaction():
                for _ in range(batch):
                    event = AuditEvent(
                        action=Action.READ,
                        event_type="note.read",
                        org_id=uuid.uuid4(),
                        agent_account_id=uuid.uuid4(),
                        agent_role="clinician",
                        entity_type="note",
                        entity_id=uuid.uuid4(),
                    )
                    await record(conn, event, ctx, SystemClock().now())
            written += batch
    finally:
        await conn.close()


async def test_no_event_lost_or_duplicated_when_a_leader_dies_mid_batch(
    database_url: str, settings: Settings
) -> None:
    signer = log_signer(settings)
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    observer = await asyncpg.connect(database_url)
    integrator = Integrator(pool, signer, SystemClock(), batch=100, interval_s=0.01)
    leader = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _HANGING_LEADER,
        database_url,
        str(signer),
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        writers = [asyncio.create_task(_writer(database_url, n)) for n in range(WRITERS)]
        assert leader.stdout is not None
        assert await asyncio.wait_for(leader.stdout.readline(), timeout=30) == b"HOLDING\n"
        # While the dead-to-be leader holds the state row, nobody else integrates.
        integrator.start()
        held = await integrator.run_once()
        assert not held.leader
        leader.kill()
        await leader.wait()
        await asyncio.gather(*writers)
        total = WRITERS * PER_WRITER

        async def all_integrated() -> bool:
            count: int = await observer.fetchval("SELECT count(*) FROM audit_log")
            return count == total

        await wait_for(all_integrated, deadline_s=30)
        await integrator.stop()
        assert integrator.status.integrated == total
        rows = await observer.fetch(
            "SELECT l.idx, l.event_seq, l.leaf_hash, e.leaf FROM audit_log l "
            "JOIN audit_events e ON e.seq = l.event_seq ORDER BY l.idx"
        )
        assert [r["idx"] for r in rows] == list(range(total)), "indexes are dense"
        assert len({r["event_seq"] for r in rows}) == total, "no event twice"
        assert await observer.fetchval("SELECT count(*) FROM audit_events") == total, "no event lost"
        assert await observer.fetchval("SELECT count(*) FROM audit_pending") == 0
        hashes = [r["leaf_hash"] for r in rows]
        assert hashes == [leaf_hash(r["leaf"]) for r in rows]
        note = await observer.fetchval("SELECT note FROM audit_checkpoints ORDER BY size DESC LIMIT 1")
        final = verify_checkpoint(note, [signer.verifier()]).checkpoint
        assert (final.size, final.root) == (total, root_from_leaf_hashes(hashes))
    finally:
        if leader.returncode is None:
            leader.kill()
            await leader.wait()
        await integrator.stop()
        await observer.close()
        await pool.close()

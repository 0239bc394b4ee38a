"""G-07: a superuser who edits, deletes, reorders or truncates the log is caught, and where.

Each case changes the real database as the superuser, bypassing the append-only
triggers, then exports over HTTP and runs the offline verifier (``audit`` only).
"""

from __future__ import annotations

import io
import uuid
from pathlib import Path

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from audit.cli import EXIT_FAILED, EXIT_OK, consistency_command, verify_command
from audit.note import generate_signer
from backend.audit_trail import Action, AuditContext, AuditEvent, record
from backend.audit_trail.integrator import integrate_batch
from backend.audit_trail.log_key import log_signer
from backend.clock import SystemClock
from tests.audit_helpers import integrate_all, log_vkey, make_officer, rewrite_tail, without_triggers
from tests.helpers import Account, make_clinic, runtime_of

EVENTS = 40


@pytest.fixture
async def officer(app: Litestar, client: AsyncTestClient[Litestar], db: asyncpg.Connection) -> Account:
    clinic = await make_clinic(client, app, db)
    officer = await make_officer(client, app, clinic)
    org = await db.fetchval("SELECT org_id FROM accounts WHERE id = $1", officer.id)
    ctx = AuditContext(source_instance="test-1")
    async with db.transaction():
        for _ in range(EVENTS):
            event = AuditEvent(
                action=Action.READ,
                event_type="note.read",
                org_id=org,
                agent_account_id=clinic.clinician.id,
                agent_role="clinician",
                entity_type="note",
                entity_id=uuid.uuid4(),
                subject_id=clinic.client.id,
            )
            await record(db, event, ctx, SystemClock().now())
    await integrate_all(app, db)
    return officer


async def _verify(
    app: Litestar, client: AsyncTestClient[Litestar], officer: Account, tmp_path: Path, *, proofs: bool = True
) -> tuple[int, str]:
    response = await client.get(
        "/v1/audit/export", params={"proofs": str(proofs).lower()}, headers=officer.headers
    )
    assert response.status_code == 200
    path = tmp_path / f"export-{uuid.uuid4().hex}.jsonl"
    path.write_bytes(response.content)
    out = io.StringIO()
    return verify_command(path, [str(log_vkey(app))], out=out), out.getvalue()


async def test_untouched_log_verifies(
    app: Litestar, client: AsyncTestClient[Litestar], officer: Account, tmp_path: Path
) -> None:
    code, text = await _verify(app, client, officer, tmp_path)
    assert code == EXIT_OK, text


async def test_changed_event_bytes_are_named(
    app: Litestar, client: AsyncTestClient[Litestar], db: asyncpg.Connection, officer: Account, tmp_path: Path
) -> None:
    """Rewriting one stored event (its hash follows) breaks that leaf's proof: the verifier names it."""
    target = 17
    seq = await db.fetchval("SELECT event_seq FROM audit_log WHERE idx = $1", target)
    await without_triggers(
        db,
        ["audit_events"],
        "UPDATE audit_events SET leaf = replace(encode(leaf, 'escape'), 'note.read', 'note.redo')::bytea"
        " WHERE seq = $1",
        seq,
    )
    code, text = await _verify(app, client, officer, tmp_path)
    assert code == EXIT_FAILED
    assert f"(index {target})" in text


async def test_deleted_event_is_named(
    app: Litestar, client: AsyncTestClient[Litestar], db: asyncpg.Connection, officer: Account, tmp_path: Path
) -> None:
    target = 23
    await without_triggers(db, ["audit_log"], "DELETE FROM audit_log WHERE idx = $1", target)
    code, text = await _verify(app, client, officer, tmp_path, proofs=False)
    assert code == EXIT_FAILED
    assert f"missing from a complete export (index {target})" in text


async def test_reordered_events_are_named(
    app: Litestar, client: AsyncTestClient[Litestar], db: asyncpg.Connection, officer: Account, tmp_path: Path
) -> None:
    """Two events swap places (each index now holds the other's bytes): the first is named."""
    first, second = 5, 30
    rows = await db.fetch(
        "SELECT l.idx, e.seq, e.leaf FROM audit_log l JOIN audit_events e ON e.seq = l.event_seq"
        " WHERE l.idx = ANY($1::bigint[]) ORDER BY l.idx",
        [first, second],
    )
    (seq_a, leaf_a), (seq_b, leaf_b) = [(r["seq"], r["leaf"]) for r in rows]
    await without_triggers(
        db,
        ["audit_events"],
        "UPDATE audit_events SET leaf = CASE seq WHEN $1 THEN $4::bytea ELSE $3::bytea END"
        " WHERE seq IN ($1, $2)",
        seq_a,
        seq_b,
        leaf_a,
        leaf_b,
    )
    code, text = await _verify(app, client, officer, tmp_path)
    assert code == EXIT_FAILED
    assert f"(index {first})" in text


async def test_truncated_tail_resigned_with_another_key_is_refused(
    app: Litestar, client: AsyncTestClient[Litestar], db: asyncpg.Connection, officer: Account, tmp_path: Path
) -> None:
    kept = (await client.get("/v1/audit/checkpoint", headers=officer.headers)).json()
    await rewrite_tail(db, kept["size"] - 10, drop=1)
    forger = generate_signer(log_signer(runtime_of(app).settings).name)
    while (await integrate_batch(db, forger, SystemClock(), batch=1000)).integrated:
        pass
    code, text = await _verify(app, client, officer, tmp_path)
    assert code == EXIT_FAILED
    assert "no signature from a trusted key" in text
    # Re-signed with the real key (an insider holding it): the export verifies on its own,
    # but the checkpoint a verifier kept shows the rollback and the fork.
    await rewrite_tail(db, kept["size"] - 10, drop=1)
    await integrate_all(app, db)
    new = (await client.get("/v1/audit/checkpoint", headers=officer.headers)).json()
    code, text = await _verify(app, client, officer, tmp_path)
    assert code == EXIT_OK, text
    old_path, new_path, proof_path = tmp_path / "old.note", tmp_path / "new.note", tmp_path / "proof.txt"
    old_path.write_text(kept["note"])
    new_path.write_text(new["note"])
    proof = await client.get(
        f"/v1/audit/proofs/consistency?old={min(kept['size'], new['size'])}&new={new['size']}",
        headers=officer.headers,
    )
    proof_path.write_text("".join(f"{line}\n" for line in proof.json()["proof"]))
    out = io.StringIO()
    assert consistency_command(old_path, new_path, proof_path, [str(log_vkey(app))], out=out) == EXIT_FAILED
    assert any(word in out.getvalue() for word in ("rollback", "does not verify", "not consistent")), (
        out.getvalue()
    )

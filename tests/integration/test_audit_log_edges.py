"""Edges of the audit log: refusals, the integrator's re-check, the breach summary, the CLI's key errors."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import uuid
from pathlib import Path

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from audit.merkle import CompactRange
from backend.audit_trail.breach import render_text
from backend.audit_trail.integrator import Integrator, LogIntegrityError, _recheck
from backend.audit_trail.log_key import log_signer
from backend.audit_trail.repository import LogLeafRow, TreeState
from backend.audit_trail.schemas import BreachClient, BreachRecord, BreachScope
from backend.cli import main
from backend.clock import SystemClock
from backend.settings import SettingsError
from tests.audit_helpers import integrate_all, make_officer, wait_for
from tests.conftest import make_settings
from tests.helpers import make_clinic, problem


def _h(n: int) -> bytes:
    return hashlib.sha256(bytes([n])).digest()


def test_recheck_refuses_every_kind_of_mismatch() -> None:
    """Each re-read check of the integrator fails closed."""
    state = TreeState(0, [], hashlib.sha256(b"").digest())
    leaves = [b"a", b"b", b"c"]
    hashes = [hashlib.sha256(b"\x00" + leaf).digest() for leaf in leaves]
    compact = CompactRange()
    compact.extend(hashes)
    root = compact.root()
    stored = [LogLeafRow(h, leaf) for h, leaf in zip(hashes, leaves, strict=True)]
    edge = [compact.hashes[0], compact.hashes[1]]
    _recheck(state, hashes, stored, edge, root)
    with pytest.raises(LogIntegrityError, match="does not hold"):
        _recheck(state, hashes, stored[:2], edge, root)
    with pytest.raises(LogIntegrityError, match="re-hash"):
        _recheck(state, hashes, [*stored[:2], LogLeafRow(hashes[2], b"x")], edge, root)
    with pytest.raises(LogIntegrityError, match="computed root"):
        _recheck(state, hashes, stored, edge, _h(1))
    with pytest.raises(LogIntegrityError, match="not stored"):
        _recheck(state, hashes, stored, [edge[0], None], root)
    with pytest.raises(LogIntegrityError, match="stored nodes"):
        _recheck(state, hashes, stored, [edge[0], _h(2)], root)


def test_malformed_log_key_stops_start_up(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="CONFIDE_AUDIT_LOG_KEY"):
        log_signer(make_settings(audit_log_key="PRIVATE+KEY+nonsense"))
    with pytest.raises(SettingsError, match="CONFIDE_AUDIT_LOG_KEY_FILE"):
        log_signer(make_settings(audit_log_key=None, audit_log_key_file=str(tmp_path / "absent")))
    generated = make_settings(audit_log_key=None, data_dir=str(tmp_path / "data"))
    assert log_signer(generated).name == "localhost/confide-audit/v1"
    assert (tmp_path / "data" / "audit-log.key").stat().st_mode & 0o777 == 0o600
    with pytest.raises(SettingsError, match="CONFIDE_AUDIT_LOG_KEY"):
        make_settings(environment="production", audit_log_key=None)


def test_witness_command_refuses_unusable_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        *("audit", "witness", "--server", "http://127.0.0.1:9", "--state", str(tmp_path / "s")),
        *("--key", str(tmp_path / "absent"), "--log-key", "bad", "--token-file", str(tmp_path / "t")),
    ]
    assert main(argv) == 2
    assert "confide:" in capsys.readouterr().err


def test_breach_summary_names_ids_and_truncation() -> None:
    at = dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    client, record = uuid.uuid4(), uuid.uuid4()
    scope = BreachScope(
        account_id=uuid.uuid4(),
        session_id=uuid.uuid4(),
        since=at,
        until=at + dt.timedelta(hours=1),
        events=3,
        failures=1,
        event_types={"note.read": 3},
        clients=[BreachClient(client_id=client, events=3, first_at=at, last_at=at, actions=["R"])],
        records=[
            BreachRecord(
                entity_type="note",
                entity_id=record,
                subject_id=None,
                events=1,
                first_at=at,
                last_at=at,
                actions=["R"],
            )
        ],
        truncated=True,
    )
    text = render_text(scope)
    assert "session" in text
    assert str(client) in text
    assert str(record) in text
    assert "cut at" in text
    assert "2025-01-02 03:04:05 UTC" in text


async def test_refusals_over_http(
    app: Litestar, client: AsyncTestClient[Litestar], db: asyncpg.Connection
) -> None:
    clinic = await make_clinic(client, app, db)
    officer = await make_officer(client, app, clinic)
    assert (
        await client.get("/v1/audit/proofs/inclusion?index=0", headers=officer.headers)
    ).status_code == 404
    export = await client.get("/v1/audit/export", headers=officer.headers)
    assert problem(export)["type"].endswith("no-checkpoint")
    size = await integrate_all(app, db)
    beyond = await client.get(f"/v1/audit/proofs/inclusion?index={size}", headers=officer.headers)
    assert problem(beyond)["type"].endswith("invalid-tree-size")
    assert (
        await client.get(f"/v1/audit/checkpoint?size={size + 5}", headers=officer.headers)
    ).status_code == 404
    params = {
        "since": "2000-01-01T00:00:00Z",
        "until": "2100-01-01T00:00:00Z",
        "subject": str(clinic.client.id),
        "actor": str(clinic.client.id),
    }
    found = (await client.get("/v1/audit/events", params=params, headers=officer.headers)).json()
    assert found["items"], "the client's own login names them as subject and agent"
    empty = await client.get(
        "/v1/audit/events?since=2030-01-01T00:00:00Z&until=2020-01-01T00:00:00Z", headers=officer.headers
    )
    assert problem(empty)["type"].endswith("invalid-window")
    session = await db.fetchval("SELECT id FROM sessions WHERE account_id = $1 LIMIT 1", clinic.client.id)
    mismatch = await client.get(
        f"/v1/audit/breach-scope?session={session}&account={clinic.clinician.id}", headers=officer.headers
    )
    assert mismatch.status_code == 404
    window = await client.get(
        f"/v1/audit/breach-scope?account={clinic.clinician.id}&since=2100-01-01T00:00:00Z",
        headers=officer.headers,
    )
    assert problem(window)["type"].endswith("invalid-window")
    bad_cosig = await client.post(
        "/v1/audit/cosignatures", json={"note": "not a note", "witness_key": "nope"}, headers=officer.headers
    )
    assert problem(bad_cosig)["type"].endswith("cosignature-rejected")


async def test_integrator_loop_survives_database_errors(database_url: str) -> None:
    settings = make_settings()
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=1)
    integrator = Integrator(pool, log_signer(settings), SystemClock(), batch=10, interval_s=0.01)
    async with pool.acquire() as conn:
        await conn.execute("ALTER TABLE audit_tree_state RENAME TO audit_tree_state_away")
    runner = asyncio.create_task(integrator.run(until_idle=True))
    try:

        async def failed() -> bool:
            return integrator.status.errors > 0

        await wait_for(failed)
        async with pool.acquire() as conn:
            await conn.execute("ALTER TABLE audit_tree_state_away RENAME TO audit_tree_state")
        await asyncio.wait_for(runner, timeout=10)
    finally:
        runner.cancel()
        await pool.close()
    assert integrator.status.leader
    assert not integrator.status.running

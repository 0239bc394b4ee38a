"""The verifiable audit log against real PostgreSQL: writer leaves, integrator, proofs, routes."""

from __future__ import annotations

import asyncio
import hashlib
import uuid

import asyncpg
import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from audit.checkpoint import verify_checkpoint
from audit.cosignature import witness_checkpoint
from audit.leaf import decode_leaf
from audit.merkle import NodeID, leaf_hash, root_from_leaf_hashes
from audit.note import COSIGNATURE_V1, generate_signer
from audit.proofs import MemoryTree, verify_consistency, verify_inclusion
from backend.audit_trail import Action, AuditContext, AuditEvent, record
from backend.audit_trail import repository as audit_repository
from backend.audit_trail.integrator import LogIntegrityError, integrate_batch
from backend.audit_trail.log_key import log_signer
from backend.audit_trail.proofs import BlockProofs
from backend.clock import SystemClock
from backend.settings import Settings
from tests.audit_helpers import integrate_all, log_vkey, make_officer, wait_for
from tests.conftest import make_settings
from tests.helpers import make_clinic, problem, runtime_of

CTX = AuditContext(source_instance="test-1", request_id="req-abcdef12", address_digest=b"\xab" * 32)


def _read_event(
    org: uuid.UUID,
    agent: uuid.UUID,
    subject: uuid.UUID,
    *,
    purpose_of_use: str = "TREAT",
    consent_id: uuid.UUID | None = None,
) -> AuditEvent:
    return AuditEvent(
        action=Action.READ,
        event_type="note.read",
        org_id=org,
        agent_account_id=agent,
        agent_role="clinician",
        entity_type="note",
        entity_id=uuid.uuid4(),
        subject_id=subject,
        purpose_of_use=purpose_of_use,
        consent_id=consent_id,
    )


async def _write(db: asyncpg.Connection, events: list[AuditEvent]) -> None:
    async with db.transaction():
        for event in events:
            await record(db, event, CTX, SystemClock().now())


async def test_writer_stores_the_exact_leaf_and_its_hash(db: asyncpg.Connection) -> None:
    org, agent, subject = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await _write(db, [_read_event(org, agent, subject, consent_id=uuid.uuid4())])
    row = await db.fetchrow("SELECT * FROM audit_events")
    assert row is not None
    assert row["leaf_hash"] == hashlib.sha256(b"\x00" + row["leaf"]).digest()
    event = decode_leaf(row["leaf"])
    assert event.id == row["event_id"]
    assert event.agent.account == agent
    assert event.agent.org == org
    assert event.agent.network == "ab" * 32
    assert event.subject == subject
    assert event.entity is not None
    assert event.entity.id == str(row["entity_id"])
    assert event.request == "req-abcdef12"
    assert event.purpose == "TREAT"
    assert await db.fetchval("SELECT count(*) FROM audit_pending") == 1


async def test_unknown_purpose_code_fails_the_action(db: asyncpg.Connection) -> None:
    """Fail closed: an event that cannot be a leaf is not written, and neither is its action."""
    from audit.errors import AuditFormatError  # noqa: PLC0415

    with pytest.raises(AuditFormatError):
        await _write(db, [_read_event(uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), purpose_of_use="BOGUS")])
    assert await db.fetchval("SELECT count(*) FROM audit_events") == 0


async def _write_then_roll_back(db: asyncpg.Connection, org: uuid.UUID) -> None:
    transaction = db.transaction()
    await transaction.start()
    await record(db, _read_event(org, uuid.uuid4(), uuid.uuid4()), CTX, SystemClock().now())
    await transaction.rollback()


@pytest.fixture
def signer_settings() -> Settings:
    return make_settings()


async def test_integrator_gives_dense_indexes_and_stores_every_node(
    db: asyncpg.Connection, signer_settings: Settings
) -> None:
    signer = log_signer(signer_settings)
    org = uuid.uuid4()
    # Rolled-back transactions leave gaps in seq: the log's indexes must not have any.
    for n in range(37):
        if n % 5 == 0:
            await _write_then_roll_back(db, org)
        await _write(db, [_read_event(org, uuid.uuid4(), uuid.uuid4())])
    first = await integrate_batch(db, signer, SystemClock(), batch=10)
    assert (first.leader, first.integrated, first.size) == (True, 10, 10)
    assert first.lag_s is not None
    while (await integrate_batch(db, signer, SystemClock(), batch=10)).integrated:
        pass
    rows = await db.fetch(
        "SELECT l.idx, l.event_seq, l.leaf_hash, e.leaf FROM audit_log l "
        "JOIN audit_events e ON e.seq = l.event_seq ORDER BY l.idx"
    )
    assert [r["idx"] for r in rows] == list(range(37))
    assert len({r["event_seq"] for r in rows}) == 37
    hashes = [r["leaf_hash"] for r in rows]
    assert hashes == [leaf_hash(r["leaf"]) for r in rows]
    tree = MemoryTree(hashes)
    stored = await db.fetch("SELECT level, idx, hash FROM audit_tree_node")
    assert len(stored) == 37 - (37).bit_count()  # one node per merge: n - popcount(n)
    for r in stored:
        assert tree.node_hashes([NodeID(r["level"], r["idx"])]) == [r["hash"]]
    sizes = [r["size"] for r in await db.fetch("SELECT size FROM audit_checkpoints ORDER BY size")]
    assert sizes == [10, 20, 30, 37]
    note = await db.fetchval("SELECT note FROM audit_checkpoints WHERE size = 37")
    verified = verify_checkpoint(note, [signer.verifier()])
    assert verified.checkpoint.root == root_from_leaf_hashes(hashes)
    assert await db.fetchval("SELECT count(*) FROM audit_pending") == 0


async def test_empty_log_gets_a_signed_empty_checkpoint(
    db: asyncpg.Connection, signer_settings: Settings
) -> None:
    result = await integrate_batch(db, log_signer(signer_settings), SystemClock(), batch=10)
    assert (result.leader, result.integrated, result.size) == (True, 0, 0)
    assert await db.fetchval("SELECT size FROM audit_checkpoints") == 0


async def test_only_the_lock_holder_integrates(
    db: asyncpg.Connection, database_url: str, signer_settings: Settings
) -> None:
    await _write(db, [_read_event(uuid.uuid4(), uuid.uuid4(), uuid.uuid4())])
    other = await asyncpg.connect(database_url)
    try:
        async with other.transaction():
            await other.execute("SELECT 1 FROM audit_tree_state FOR UPDATE")
            result = await integrate_batch(db, log_signer(signer_settings), SystemClock(), batch=10)
            assert not result.leader
        result = await integrate_batch(db, log_signer(signer_settings), SystemClock(), batch=10)
        assert (result.leader, result.integrated) == (True, 1)
    finally:
        await other.close()


async def test_nothing_is_signed_when_the_reread_differs(
    db: asyncpg.Connection, signer_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The integrator re-hashes what it stored before signing; a mismatch rolls the batch back."""
    await _write(db, [_read_event(uuid.uuid4(), uuid.uuid4(), uuid.uuid4()) for _ in range(3)])
    real = audit_repository.log_leaves

    async def altered(conn: asyncpg.Connection, lo: int, hi: int) -> list[object]:
        rows = await real(conn, lo, hi)
        return [rows[0].__class__(rows[0].leaf_hash, rows[0].leaf + b" "), *rows[1:]]

    monkeypatch.setattr(audit_repository, "log_leaves", altered)
    with pytest.raises(LogIntegrityError):
        await integrate_batch(db, log_signer(signer_settings), SystemClock(), batch=10)
    assert await db.fetchval("SELECT count(*) FROM audit_log") == 0
    assert await db.fetchval("SELECT count(*) FROM audit_pending") == 3
    assert await db.fetchval("SELECT count(*) FROM audit_checkpoints") == 0


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_log SET leaf_hash = leaf_hash",
        "DELETE FROM audit_log",
        "TRUNCATE audit_log CASCADE",
        "UPDATE audit_tree_node SET hash = hash",
        "DELETE FROM audit_checkpoints",
        "UPDATE audit_tree_state SET size = 0",
        "DELETE FROM audit_tree_state",
    ],
)
async def test_log_tables_are_append_only(
    db: asyncpg.Connection, signer_settings: Settings, statement: str
) -> None:
    await _write(db, [_read_event(uuid.uuid4(), uuid.uuid4(), uuid.uuid4()) for _ in range(3)])
    await integrate_batch(db, log_signer(signer_settings), SystemClock(), batch=10)
    for role in ("origin", "replica"):
        await db.execute(f"SET session_replication_role = {role}")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await db.execute(statement)
    await db.execute("SET session_replication_role = origin")


@pytest.mark.parametrize("size", [1, 2, 1023, 1024, 1025, 2048 + 513, 3 * 1024])
def test_block_proofs_match_the_rfc_proofs(size: int) -> None:
    hashes = [hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(size)]
    tree = MemoryTree(hashes)
    builder = BlockProofs(size)

    class Fake:
        async def fetch(self, _sql: str, lo: int, hi: int) -> list[dict[str, bytes]]:
            return [{"leaf_hash": h} for h in hashes[lo:hi]]

    async def fake_nodes(_conn: object, nodes: list[NodeID]) -> dict[NodeID, bytes]:
        return dict(zip(nodes, tree.node_hashes(nodes), strict=True))

    indexes = sorted({0, size - 1, size // 2, min(size - 1, 1023), min(size - 1, 1024)})
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("backend.audit_trail.repository.fetch_nodes", fake_nodes)
        asyncio.run(builder.load(Fake(), indexes))  # type: ignore[arg-type]  # a fake with the one method used
    root = tree.root()
    for index in indexes:
        proof = builder.proof(index)
        assert proof == tree.inclusion_proof(index, size)
        verify_inclusion(hashes[index], index, size, proof, root)


# ---- over HTTP ---------------------------------------------------------------------------------


async def test_log_key_checkpoint_and_proofs(
    app: Litestar, client: AsyncTestClient[Litestar], db: asyncpg.Connection
) -> None:
    clinic = await make_clinic(client, app, db)
    officer = await make_officer(client, app, clinic)
    key = await client.get("/v1/audit/log-key")
    assert key.status_code == 200
    assert key.json()["vkey"] == str(log_vkey(app))
    assert (await client.get("/v1/audit/checkpoint", headers=officer.headers)).status_code == 404
    first = await integrate_all(app, db)
    cp1 = (await client.get("/v1/audit/checkpoint", headers=officer.headers)).json()
    assert cp1["size"] == first
    verify_checkpoint(cp1["note"], [log_vkey(app)])
    await client.get("/v1/me", headers=clinic.client.headers)
    await make_officer(client, app, clinic, "co2@clinic.example")
    second = await integrate_all(app, db)
    cp2 = (await client.get("/v1/audit/checkpoint", headers=officer.headers)).json()
    old = (await client.get(f"/v1/audit/checkpoint?size={first}", headers=officer.headers)).json()
    assert old["note"] == cp1["note"]
    proof = (
        await client.get(f"/v1/audit/proofs/consistency?old={first}&new={second}", headers=officer.headers)
    ).json()
    verify_consistency(first, second, _b64(cp1["root"]), _b64(cp2["root"]), [_b64(p) for p in proof["proof"]])
    for index in (0, second - 1):
        inc = (await client.get(f"/v1/audit/proofs/inclusion?index={index}", headers=officer.headers)).json()
        assert _b64(inc["leaf_hash"]) == leaf_hash(_b64(inc["leaf"]))
        verify_inclusion(
            _b64(inc["leaf_hash"]), index, second, [_b64(p) for p in inc["proof"]], _b64(cp2["root"])
        )
    beyond = await client.get(f"/v1/audit/proofs/consistency?old=0&new={second + 1}", headers=officer.headers)
    assert problem(beyond)["type"].endswith("invalid-tree-size")
    status = (await client.get("/v1/audit/status", headers=officer.headers)).json()
    assert status["tree_size"] == second
    assert status["pending_events"] == 2  # the two leaves read above: each read is audited (audit.proof)


def _b64(text: str) -> bytes:
    import base64  # noqa: PLC0415

    return base64.b64decode(text)


async def test_cosignature_is_verified_stored_and_served(
    app: Litestar, client: AsyncTestClient[Litestar], db: asyncpg.Connection
) -> None:
    clinic = await make_clinic(client, app, db)
    officer = await make_officer(client, app, clinic)
    await integrate_all(app, db)
    cp = (await client.get("/v1/audit/checkpoint", headers=officer.headers)).json()
    witness = generate_signer("witness.example/w1", COSIGNATURE_V1)
    _, cosigned = witness_checkpoint(
        cp["note"], [log_vkey(app)], witness, timestamp=1_700_000_000, previous=None, proof=[]
    )
    body = {"note": cosigned, "witness_key": str(witness.verifier())}
    stored = await client.post("/v1/audit/cosignatures", json=body, headers=officer.headers)
    assert stored.status_code == 201, stored.text
    again = (await client.get("/v1/audit/checkpoint", headers=officer.headers)).json()
    verified = verify_checkpoint(again["note"], [log_vkey(app)], witness_keys=[witness.verifier()])
    assert verified.cosignatures == {"witness.example/w1": 1_700_000_000}
    assert again["cosignatures"] == [{"witness": str(witness.verifier()), "cosigned_at": 1_700_000_000}]
    other = generate_signer("witness.example/w2", COSIGNATURE_V1)
    forged = {"note": cosigned, "witness_key": str(other.verifier())}
    assert problem(await client.post("/v1/audit/cosignatures", json=forged, headers=officer.headers))[
        "type"
    ].endswith("cosignature-rejected")
    log_type = {"note": cosigned, "witness_key": str(generate_signer("x.example/log").verifier())}
    assert (
        await client.post("/v1/audit/cosignatures", json=log_type, headers=officer.headers)
    ).status_code == 422


async def test_events_search_filters_and_paginates(
    app: Litestar, client: AsyncTestClient[Litestar], db: asyncpg.Connection
) -> None:
    clinic = await make_clinic(client, app, db)
    officer = await make_officer(client, app, clinic)
    org = await db.fetchval("SELECT org_id FROM accounts WHERE id = $1", officer.id)
    await _write(db, [_read_event(org, clinic.clinician.id, clinic.client.id) for _ in range(7)])
    await integrate_all(app, db)
    seen: list[str] = []
    cursor = None
    while True:
        params = {"actor": str(clinic.clinician.id), "type": "note.read", "limit": "3"}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get("/v1/audit/events", params=params, headers=officer.headers)).json()
        seen += [item["event"]["id"] for item in page["items"]]
        assert all(item["index"] is not None for item in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 7
    none = await client.get("/v1/audit/events", params={"outcome": "8"}, headers=officer.headers)
    assert none.json()["items"] == []
    assert problem(await client.get("/v1/audit/events?cursor=bad!", headers=officer.headers))["status"] == 400
    naive = await client.get("/v1/audit/events?since=2024-01-01T00:00:00", headers=officer.headers)
    assert problem(naive)["type"].endswith("invalid-window")
    assert (await client.get("/v1/audit/events?type=Bad Type", headers=officer.headers)).status_code == 422
    reads = await db.fetchval("SELECT count(*) FROM audit_events WHERE event_type = 'audit.search'")
    assert reads == 4, "every search that ran is itself audited"


async def test_only_compliance_officers_of_the_organization_read_the_trail(
    app: Litestar, client: AsyncTestClient[Litestar], db: asyncpg.Connection
) -> None:
    clinic = await make_clinic(client, app, db)
    officer = await make_officer(client, app, clinic)
    other = await make_clinic(client, app, db, "other")
    other_officer = await make_officer(client, app, other)
    await integrate_all(app, db)
    for account in (clinic.admin, clinic.clinician, clinic.client):
        for path in ("/v1/audit/checkpoint", "/v1/audit/events", "/v1/audit/export", "/v1/audit/status"):
            assert (await client.get(path, headers=account.headers)).status_code == 403, path
    index = await db.fetchval(
        "SELECT l.idx FROM audit_log l JOIN audit_events e ON e.seq = l.event_seq "
        "JOIN accounts a ON a.org_id = e.org_id WHERE a.id = $1 LIMIT 1",
        officer.id,
    )
    mine = await client.get(f"/v1/audit/proofs/inclusion?index={index}", headers=officer.headers)
    assert mine.status_code == 200
    theirs = await client.get(f"/v1/audit/proofs/inclusion?index={index}", headers=other_officer.headers)
    assert theirs.status_code == 404
    page = (await client.get("/v1/audit/events?limit=500", headers=other_officer.headers)).json()
    other_org = await db.fetchval("SELECT org_id FROM accounts WHERE id = $1", other_officer.id)
    assert page["items"]
    assert {item["event"]["agent"]["org"] for item in page["items"]} == {str(other_org)}
    assert (await client.get("/v1/me/disclosures", headers=officer.headers)).status_code == 403
    foreign = await client.get(
        f"/v1/audit/breach-scope?account={clinic.clinician.id}", headers=other_officer.headers
    )
    assert foreign.status_code == 404


async def test_client_sees_who_accessed_their_records(
    app: Litestar, client: AsyncTestClient[Litestar], db: asyncpg.Connection
) -> None:
    clinic = await make_clinic(client, app, db)
    org = await db.fetchval("SELECT org_id FROM accounts WHERE id = $1", clinic.client.id)
    consent = uuid.uuid4()
    await _write(
        db,
        [
            _read_event(org, clinic.clinician.id, clinic.client.id, consent_id=consent),
            _read_event(org, clinic.clinician.id, clinic.client.id, purpose_of_use="ETREAT"),
            _read_event(org, clinic.clinician.id, uuid.uuid4()),  # another client's record
        ],
    )
    page = (await client.get("/v1/me/disclosures?limit=1", headers=clinic.client.headers)).json()
    assert len(page["items"]) == 1
    assert page["items"][0]["purpose"] == "ETREAT", "newest first; break-glass is visible"
    rest = (
        await client.get(f"/v1/me/disclosures?cursor={page['next_cursor']}", headers=clinic.client.headers)
    ).json()
    assert [(d["agent_id"], d["agent_name"], d["consent_id"]) for d in rest["items"]] == [
        (str(clinic.clinician.id), "Clinician", str(consent))
    ]
    assert rest["next_cursor"] is None
    own = await db.fetchval(
        "SELECT count(*) FROM audit_events WHERE event_type = 'audit.disclosures' AND subject_id = $1",
        clinic.client.id,
    )
    assert own == 2


async def test_breach_scope_lists_clients_and_records_touched(
    app: Litestar, client: AsyncTestClient[Litestar], db: asyncpg.Connection
) -> None:
    clinic = await make_clinic(client, app, db)
    officer = await make_officer(client, app, clinic)
    org = await db.fetchval("SELECT org_id FROM accounts WHERE id = $1", clinic.client.id)
    second_client = uuid.uuid4()
    await _write(
        db,
        [
            _read_event(org, clinic.clinician.id, clinic.client.id),
            _read_event(org, clinic.clinician.id, clinic.client.id),
            _read_event(org, clinic.clinician.id, second_client),
        ],
    )
    # The app's clock is frozen at the test's start; these events were written after it.
    params = {
        "account": str(clinic.clinician.id),
        "since": "2000-01-01T00:00:00Z",
        "until": "2100-01-01T00:00:00Z",
    }
    report = (await client.get("/v1/audit/breach-scope", params=params, headers=officer.headers)).json()
    assert [c["client_id"] for c in report["clients"]] == [str(clinic.client.id), str(second_client)]
    assert report["clients"][0]["events"] == 2
    assert len([r for r in report["records"] if r["entity_type"] == "note"]) == 3
    assert report["event_types"]["note.read"] == 3
    assert not report["truncated"]
    text = await client.get("/v1/audit/breach-scope/summary", params=params, headers=officer.headers)
    assert text.headers["content-type"].startswith("text/plain")
    assert str(second_client) in text.text
    assert "Clients concerned: 2" in text.text
    session = await db.fetchval(
        "SELECT id FROM sessions WHERE account_id = $1 ORDER BY created_at DESC LIMIT 1", clinic.clinician.id
    )
    by_session = (
        await client.get(f"/v1/audit/breach-scope?session={session}", headers=officer.headers)
    ).json()
    assert by_session["account_id"] == str(clinic.clinician.id)
    assert (await client.get("/v1/audit/breach-scope", headers=officer.headers)).status_code == 422
    unknown = await client.get(f"/v1/audit/breach-scope?session={uuid.uuid4()}", headers=officer.headers)
    assert unknown.status_code == 404


async def test_lifespan_integrator_signs_while_events_arrive(database_url: str) -> None:
    from backend.app import create_app  # noqa: PLC0415

    settings = make_settings(audit_integrator=True, audit_integrate_interval_s=0.02)
    app = create_app(settings, database_url=database_url)
    async with AsyncTestClient(app=app, base_url="http://127.0.0.1") as http:
        conn = await asyncpg.connect(database_url)
        try:
            await _write(conn, [_read_event(uuid.uuid4(), uuid.uuid4(), uuid.uuid4()) for _ in range(5)])

            async def integrated() -> bool:
                count: int = await conn.fetchval("SELECT count(*) FROM audit_log")
                return count == 5

            await wait_for(integrated)
            assert await conn.fetchval("SELECT max(size) FROM audit_checkpoints") == 5
        finally:
            await conn.close()
        assert (await http.get("/health/live")).status_code == 200
    assert msgspec.json.decode(b"1") == 1
    assert runtime_of(app).pool is None


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/v1/audit/events", {"cursor": "eyJ2IjoxLCJzZXEiOjkyMjMzNzIwMzY4NTQ3NzU4MDh9"}),
        ("/v1/audit/events", {"since": "9999-12-31T23:59:59-23:59"}),
        ("/v1/audit/events", {"until": "0001-01-02T00:00:00Z"}),
        ("/v1/audit/checkpoint", {"size": str(2**70)}),
        ("/v1/audit/proofs/consistency", {"old": "1", "new": str(2**70)}),
        (
            "/v1/audit/breach-scope",
            {"account": "00000000-0000-4000-8000-000000000000", "until": "0001-01-02T00:00:00Z"},
        ),
        ("/v1/me/disclosures", {"cursor": "eyJ2IjoxLCJzZXEiOjkyMjMzNzIwMzY4NTQ3NzU4MDh9"}),
    ],
)
async def test_out_of_range_inputs_are_4xx(
    client: AsyncTestClient[Litestar],
    app: Litestar,
    db: asyncpg.Connection,
    path: str,
    params: dict[str, str],
) -> None:
    """Huge numbers, far dates and forged cursors are refused cleanly, never a 500."""
    clinic = await make_clinic(client, app, db)
    officer = await make_officer(client, app, clinic)
    who = clinic.client if path.startswith("/v1/me") else officer
    response = await client.get(path, params=params, headers=who.headers)
    assert 400 <= response.status_code < 500, response.text
    problem(response)

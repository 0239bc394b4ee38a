"""C-11: key transparency through the real app: logged bundles, proofs on look-up, forks caught by gossip."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from audit.checkpoint import Checkpoint, sign_checkpoint, verify_checkpoint
from audit.errors import ForkError, SignatureError
from audit.keylog import KeyChange, KeyLogClient, KeyLogLeaf, LoggedBundle, encode_key_leaf
from audit.merkle import CompactRange
from audit.note import VerifierKey
from backend.key_log import integrate, key_log_signer
from backend.key_log.integrator import catch_up
from crypto.client import generate_identity, rotate_identity
from crypto.public import KeyBundle, bundle_digest, bundle_fingerprint, encode, verify_bundle
from tests.audit_helpers import log_vkey, without_triggers
from tests.helpers import Account, Clinic, make_clinic, problem, runtime_of

LOG_TABLES = ["key_log", "key_log_tree_node", "key_log_checkpoints", "key_log_state"]


def _json(value: Any) -> Any:
    return msgspec.json.decode(encode(value))


@pytest.fixture
async def clinic(client: AsyncTestClient[Litestar], app: Litestar, db: asyncpg.Connection) -> Clinic:
    return await make_clinic(client, app, db)


async def _publish(client: AsyncTestClient[Litestar], account: Account, bundle: KeyBundle) -> None:
    response = await client.put("/v1/me/keys", json=_json(bundle), headers=account.headers)
    assert response.status_code in {200, 201}, response.text


async def _key(client: AsyncTestClient[Litestar]) -> VerifierKey:
    body = (await client.get("/v1/key-log/key")).json()
    assert body["leaf_spec"] == "confide/v1/key-log-leaf"
    return VerifierKey.parse(body["vkey"])


async def _look_up(
    client: AsyncTestClient[Litestar], viewer: Account, key_client: KeyLogClient, account_id: uuid.UUID
) -> tuple[list[KeyBundle], KeyChange | None]:
    """What a front end does: fetch, verify signatures, verify the log, keep the checkpoint."""
    listing = await client.get(f"/v1/accounts/{account_id}/keys", headers=viewer.headers)
    assert listing.status_code == 200, listing.text
    body = listing.json()
    bundles = [msgspec.convert(b["bundle"], KeyBundle, strict=False) for b in body["bundles"]]
    for bundle in bundles:
        verify_bundle(bundle)
    checkpoint = body["checkpoint"]
    proof: list[bytes] = []
    kept = key_client.checkpoint
    if kept is not None and kept.size != checkpoint["size"]:
        old, new = sorted((kept.size, checkpoint["size"]))
        answer = await client.get(
            "/v1/key-log/proofs/consistency", params={"old": old, "new": new}, headers=viewer.headers
        )
        assert answer.status_code == 200, answer.text
        proof = msgspec.convert(answer.json()["proof"], list[bytes], strict=False)
    logged = [
        LoggedBundle(
            bundle.key_version,
            bundle_digest(bundle),
            entry["log"]["index"],
            tuple(msgspec.convert(entry["log"]["proof"], list[bytes], strict=False)),
        )
        for bundle, entry in zip(bundles, body["bundles"], strict=True)
    ]
    change = key_client.verify_bundles(account_id, logged, checkpoint["note"], proof)
    return bundles, change


async def test_look_ups_are_proved_and_a_rotation_is_a_key_change(
    client: AsyncTestClient[Litestar], app: Litestar, clinic: Clinic
) -> None:
    """C-11: each bundle is a leaf; a look-up proves it; a contact's rotation is reported."""
    patient = generate_identity(clinic.client.id)
    await _publish(client, clinic.client, patient.bundle)
    await _publish(client, clinic.clinician, generate_identity(clinic.clinician.id).bundle)
    key = await _key(client)
    doctor_view = KeyLogClient(key)
    bundles, change = await _look_up(client, clinic.clinician, doctor_view, clinic.client.id)
    assert bundles == [patient.bundle]
    assert change is None
    assert doctor_view.checkpoint is not None
    assert doctor_view.checkpoint.size == 2

    rotated = rotate_identity(patient)
    await _publish(client, clinic.client, rotated.bundle)
    await _publish(client, clinic.client, rotated.bundle)  # idempotent: no second leaf
    bundles, change = await _look_up(client, clinic.clinician, doctor_view, clinic.client.id)
    assert bundles == [patient.bundle, rotated.bundle]
    assert change == KeyChange(clinic.client.id, 1, 2, 2)
    assert str(change).startswith(f"key changed for account {clinic.client.id}")
    assert doctor_view.checkpoint.size == 3

    # The key log's checkpoints and the audit log's are never taken for one another.
    note = doctor_view.note
    assert note is not None
    assert key.name == log_vkey(app).name + "/key-log"
    assert key.public_key != log_vkey(app).public_key
    with pytest.raises(SignatureError):
        verify_checkpoint(note, [log_vkey(app)])
    latest = (await client.get("/v1/key-log/checkpoint", headers=clinic.client.headers)).json()
    assert latest["note"] == note
    first = await client.get("/v1/key-log/checkpoint", params={"size": 1}, headers=clinic.admin.headers)
    assert first.status_code == 200
    assert first.json()["size"] == 1


async def _fork(db: asyncpg.Connection, app: Litestar, account_id: uuid.UUID, forged: KeyBundle) -> None:
    """The server, as superuser, swaps one bundle and rewrites the key log around it.

    Same size, re-signed with the log key it holds: to a client that never saw the
    honest history, every proof and signature checks out.
    """
    async with db.transaction():
        await db.execute("SET LOCAL session_replication_role = replica")  # no guard on key_bundles
        await db.execute(
            """
            UPDATE key_bundles SET bundle = $3, encryption_key = $4, signing_key = $5, fingerprint = $6
            WHERE account_id = $1 AND key_version = $2
            """,
            account_id,
            forged.key_version,
            encode(forged),
            forged.encryption_key,
            forged.signing_key,
            bundle_fingerprint(forged),
        )
    leaf = encode_key_leaf(KeyLogLeaf(account_id, forged.key_version, bundle_digest(forged)))
    await without_triggers(
        db, LOG_TABLES, "UPDATE key_log SET leaf = $1 WHERE account_id = $2 AND key_version = $3",
        leaf, account_id, forged.key_version,
    )  # fmt: skip
    hashes = [r["leaf_hash"] for r in await db.fetch("SELECT leaf_hash FROM key_log ORDER BY idx")]
    compact = CompactRange()
    nodes = [node for node in compact.extend(hashes) if node.level > 0]
    signer = key_log_signer(runtime_of(app).settings)
    note = sign_checkpoint(Checkpoint(signer.name, compact.size, compact.root()), signer)
    await without_triggers(db, LOG_TABLES, "DELETE FROM key_log_tree_node")
    for node in nodes:
        await db.execute(
            "INSERT INTO key_log_tree_node (level, idx, hash) VALUES ($1, $2, $3)",
            node.level,
            node.index,
            node.hash,
        )
    await without_triggers(
        db, LOG_TABLES, "UPDATE key_log_checkpoints SET root = $2, note = $3 WHERE size = $1",
        compact.size, compact.root(), note,
    )  # fmt: skip
    await without_triggers(
        db,
        LOG_TABLES,
        "UPDATE key_log_state SET compact = $1, root = $2",
        list(compact.hashes),
        compact.root(),
    )


async def test_a_split_view_of_keys_is_caught_when_clients_compare_heads(
    client: AsyncTestClient[Litestar], app: Litestar, db: asyncpg.Connection, clinic: Clinic
) -> None:
    """C-11: the server shows two clients different keys for one person; gossip finds the fork."""
    patient = generate_identity(clinic.client.id)
    await _publish(client, clinic.client, patient.bundle)
    await _publish(client, clinic.admin, generate_identity(clinic.admin.id).bundle)
    key = await _key(client)
    alice = KeyLogClient(key)  # the clinician's device
    carol = KeyLogClient(key)  # the admin's device
    bundles, _ = await _look_up(client, clinic.clinician, alice, clinic.client.id)
    assert bundles == [patient.bundle]

    # For the admin's eyes only: a key the server made, self-signed and logged.
    forged = generate_identity(clinic.client.id).bundle
    await _fork(db, app, clinic.client.id, forged)
    bundles, _ = await _look_up(client, clinic.admin, carol, clinic.client.id)
    assert bundles == [forged], "alone, the admin's device cannot tell"

    assert alice.note is not None
    assert carol.note is not None
    with pytest.raises(ForkError) as caught:
        alice.gossip(carol.note)
    # The evidence: two checkpoints, both signed by the key log, of one size, two roots.
    heads = [verify_checkpoint(note, [key]).checkpoint for note in caught.value.notes]
    assert heads[0].size == heads[1].size
    assert heads[0].root != heads[1].root
    with pytest.raises(ForkError):
        carol.gossip(alice.note)
    # And the clinician's own device refuses the rewritten history on its next look-up.
    with pytest.raises(ForkError):
        await _look_up(client, clinic.clinician, alice, clinic.client.id)


async def test_bundles_queued_outside_a_publish_are_logged_at_start_up(
    client: AsyncTestClient[Litestar],
    app: Litestar,
    db: asyncpg.Connection,
    clinic: Clinic,
    database_url: str,
) -> None:
    """Bundles from before the key log (queued by migration 0015's trigger) get leaves and a checkpoint."""
    legacy = generate_identity(clinic.clinician.id).bundle
    org = await db.fetchval("SELECT org_id FROM accounts WHERE id = $1", clinic.clinician.id)
    await db.execute(
        """
        INSERT INTO key_bundles (account_id, org_id, key_version, encryption_key, signing_key, bundle,
                                 fingerprint, bundle_created_at, published_at)
        VALUES ($1, $2, 1, $3, $4, $5, $6, $7, now())
        """,
        clinic.clinician.id, org, legacy.encryption_key, legacy.signing_key, encode(legacy),
        bundle_fingerprint(legacy), legacy.created_at,
    )  # fmt: skip
    listing = (
        await client.get(f"/v1/accounts/{clinic.clinician.id}/keys", headers=clinic.client.headers)
    ).json()
    assert listing["bundles"][0]["log"] is None, "not logged yet: a client refuses it"
    runtime = runtime_of(app)
    signer = key_log_signer(runtime.settings)
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=1)
    try:
        assert await catch_up(pool, signer, runtime.clock) == 1
        # Another instance holding the log: start-up skips at once.
        async with db.transaction():
            await db.execute("SELECT 1 FROM key_log_state FOR UPDATE")
            assert await catch_up(pool, signer, runtime.clock) is None
    finally:
        await pool.close()
    view = KeyLogClient(await _key(client))
    bundles, _ = await _look_up(client, clinic.client, view, clinic.clinician.id)
    assert bundles == [legacy]
    assert await db.fetchval("SELECT count(*) FROM key_log_pending") == 0


async def test_the_key_log_is_append_only_and_checks_its_leaves(
    db: asyncpg.Connection, app: Litestar, client: AsyncTestClient[Litestar], clinic: Clinic
) -> None:
    """Defence in depth (the proofs are the guarantee): no rewrite, no second leaf per version."""
    await _publish(client, clinic.client, generate_identity(clinic.client.id).bundle)
    for sql in (
        "UPDATE key_log SET logged_at = now()",
        "DELETE FROM key_log",
        "DELETE FROM key_log_checkpoints",
        "UPDATE key_log_state SET size = 0",
    ):
        with pytest.raises(asyncpg.PostgresError):
            await db.execute(sql)
    other = uuid.uuid4()
    leaf = encode_key_leaf(KeyLogLeaf(clinic.client.id, 1, bytes(32)))
    insert = (
        "INSERT INTO key_log (idx, account_id, key_version, leaf, logged_at) VALUES (9, $1, 1, $2, now())"
    )
    with pytest.raises(asyncpg.UniqueViolationError):
        await db.execute(insert, clinic.client.id, leaf)
    with pytest.raises(asyncpg.CheckViolationError):  # the leaf names another account
        await db.execute(insert, other, leaf)
    async with db.transaction():
        signer = key_log_signer(runtime_of(app).settings)
        assert await integrate(db, signer, runtime_of(app).clock.now()) == 1


async def test_key_log_routes_refuse_bad_sizes(client: AsyncTestClient[Litestar], clinic: Clinic) -> None:
    await _publish(client, clinic.client, generate_identity(clinic.client.id).bundle)
    headers = clinic.clinician.headers
    for params in ({"old": 1, "new": 0}, {"old": 0, "new": 2}):
        answer = await client.get("/v1/key-log/proofs/consistency", params=params, headers=headers)
        assert answer.status_code == 422
        assert problem(answer)["type"].endswith("invalid-key-log-size")
    empty = await client.get("/v1/key-log/proofs/consistency", params={"old": 0, "new": 1}, headers=headers)
    assert empty.json() == {"old": 0, "new": 1, "proof": []}
    missing = await client.get("/v1/key-log/checkpoint", params={"size": 7}, headers=headers)
    assert missing.status_code == 404
    assert (await client.get("/v1/key-log/checkpoint")).status_code == 401

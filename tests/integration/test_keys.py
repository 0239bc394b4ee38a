"""The key directory and key backups through the real app, with real keys."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import asyncpg
import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from crypto.client import create_key_backup, generate_identity, open_key_backup, rotate_identity
from crypto.public import KeyBundle, decode_bundle, encode, limits, verify_bundle_chain
from tests.helpers import Clinic, audit_rows, make_clinic, problem

PASSPHRASE = "correct horse battery staple for backups"


def _json(value: Any) -> Any:
    return msgspec.json.decode(encode(value))


def _backup(identity: Any) -> Any:
    return create_key_backup(
        identity, PASSPHRASE, opslimit=limits.BACKUP_OPSLIMIT_MIN, memlimit=limits.BACKUP_MEMLIMIT_MIN
    )


@pytest.fixture
async def clinic(client: AsyncTestClient[Litestar], app: Litestar, db: asyncpg.Connection) -> Clinic:
    return await make_clinic(client, app, db)


async def test_publish_rotate_and_list(
    client: AsyncTestClient[Litestar], clinic: Clinic, db: asyncpg.Connection
) -> None:
    me = clinic.client
    v1 = generate_identity(me.id)
    first = await client.put("/v1/me/keys", json=_json(v1.bundle), headers=me.headers)
    assert first.status_code == 201, first.text
    assert first.json()["key_version"] == 1
    again = await client.put("/v1/me/keys", json=_json(v1.bundle), headers=me.headers)
    assert again.status_code == 200, "publishing the same bundle is idempotent"

    v2 = rotate_identity(v1)
    rotated = await client.put("/v1/me/keys", json=_json(v2.bundle), headers=me.headers)
    assert rotated.status_code == 201, rotated.text

    # A clinician in the same organization reads the whole chain and verifies it.
    listing = await client.get(f"/v1/accounts/{me.id}/keys", headers=clinic.clinician.headers)
    assert listing.status_code == 200
    bundles = listing.json()["bundles"]
    assert [b["bundle"]["key_version"] for b in bundles] == [1, 2]
    assert [b["current"] for b in bundles] == [False, True]
    chain = [msgspec.convert(b["bundle"], KeyBundle, strict=False) for b in bundles]
    verify_bundle_chain(chain)
    assert chain[1] == v2.bundle
    assert all(len(b["fingerprint"].split()) == 6 for b in bundles)
    types = [r["event_type"] for r in await audit_rows(db) if r["event_type"].startswith("key.")]
    assert types == ["key.publish", "key.rotate", "key.read"]


async def test_revoked_key_is_listed_but_not_current(
    client: AsyncTestClient[Litestar], clinic: Clinic
) -> None:
    me = clinic.client
    v1 = generate_identity(me.id)
    await client.put("/v1/me/keys", json=_json(v1.bundle), headers=me.headers)
    assert (await client.post("/v1/me/keys/1/revoke", headers=me.headers)).status_code == 204
    assert (await client.post("/v1/me/keys/1/revoke", headers=me.headers)).status_code == 204
    assert (await client.post("/v1/me/keys/9/revoke", headers=me.headers)).status_code == 404
    listing = (await client.get(f"/v1/accounts/{me.id}/keys", headers=me.headers)).json()["bundles"]
    assert listing[0]["revoked_at"] is not None
    assert listing[0]["current"] is False


def _resigned(bundle: KeyBundle, **changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = _json(bundle)
    data.update(changes)
    return data


@pytest.mark.parametrize(
    ("case", "status", "slug"),
    [
        ("other account", 422, "invalid-input"),
        ("bad self signature", 422, "bad-signature"),
        ("all-zero encryption key", 422, "invalid-key"),
        ("first version is 2", 422, "invalid-input"),
        ("rotation not signed by previous key", 422, "broken-key-chain"),
        ("skipped version", 422, "broken-key-chain"),
        ("same version, other keys", 409, "conflict"),
        ("unknown field", 400, "validation"),
        ("wrong bundle format version", 422, "invalid-format"),
    ],
)
async def test_bundles_that_break_the_rules_are_refused(
    client: AsyncTestClient[Litestar],
    clinic: Clinic,
    db: asyncpg.Connection,
    case: str,
    status: int,
    slug: str,
) -> None:
    """The server accepts only self-signed bundles of the caller that extend its chain."""
    me = clinic.client
    v1 = generate_identity(me.id)
    if case not in {"other account", "first version is 2", "bad self signature", "all-zero encryption key"}:
        assert (await client.put("/v1/me/keys", json=_json(v1.bundle), headers=me.headers)).status_code == 201
    body: dict[str, Any]
    if case == "other account":
        body = _json(generate_identity(uuid.uuid4()).bundle)
    elif case == "bad self signature":
        sig = bytearray(v1.bundle.self_signature)
        sig[5] ^= 1
        body = _resigned(v1.bundle, self_signature=msgspec.json.decode(msgspec.json.encode(bytes(sig))))
    elif case == "all-zero encryption key":
        body = _resigned(v1.bundle, encryption_key="A" * 43 + "=")
    elif case == "first version is 2":
        body = _json(generate_identity(me.id, key_version=2).bundle)
    elif case == "rotation not signed by previous key":
        body = _json(generate_identity(me.id, key_version=2).bundle)  # a key reset, no chain
    elif case == "skipped version":
        body = _json(rotate_identity(rotate_identity(v1)).bundle)
    elif case == "same version, other keys":
        body = _json(generate_identity(me.id).bundle)
    elif case == "unknown field":
        body = _resigned(v1.bundle, device="phone")
    else:
        body = _resigned(v1.bundle, version=9)
    before = await db.fetchval("SELECT count(*) FROM key_bundles")
    response = await client.put("/v1/me/keys", json=body, headers=me.headers)
    assert response.status_code == status, response.text
    assert problem(response)["type"].endswith(slug)
    assert await db.fetchval("SELECT count(*) FROM key_bundles") == before


async def test_keys_of_other_organizations_do_not_exist(
    client: AsyncTestClient[Litestar], app: Litestar, db: asyncpg.Connection, clinic: Clinic
) -> None:
    other = await make_clinic(client, app, db, slug="elsewhere")
    v1 = generate_identity(other.client.id)
    await client.put("/v1/me/keys", json=_json(v1.bundle), headers=other.client.headers)
    foreign = await client.get(f"/v1/accounts/{other.client.id}/keys", headers=clinic.clinician.headers)
    missing = await client.get(f"/v1/accounts/{uuid.uuid4()}/keys", headers=clinic.clinician.headers)
    assert foreign.status_code == missing.status_code == 404
    assert foreign.json()["detail"] == missing.json()["detail"], "no existence leak"


async def test_database_refuses_rewriting_a_published_bundle(
    client: AsyncTestClient[Litestar], clinic: Clinic, db: asyncpg.Connection
) -> None:
    v1 = generate_identity(clinic.client.id)
    await client.put("/v1/me/keys", json=_json(v1.bundle), headers=clinic.client.headers)
    with pytest.raises(asyncpg.CheckViolationError):
        await db.execute("UPDATE key_bundles SET encryption_key = signing_key")
    with pytest.raises(asyncpg.CheckViolationError):
        await db.execute("INSERT INTO key_bundles SELECT account_id, org_id, 5, encryption_key, signing_key, "
                         "bundle, fingerprint, bundle_created_at, published_at FROM key_bundles")  # fmt: skip


async def test_key_backup_compare_and_swap(
    client: AsyncTestClient[Litestar], clinic: Clinic, db: asyncpg.Connection
) -> None:
    me = clinic.client
    v1 = generate_identity(me.id)
    assert (await client.get("/v1/me/key-backup", headers=me.headers)).status_code == 404
    early = await client.put("/v1/me/key-backup", json=_json(_backup(v1)), headers=me.headers)
    assert early.status_code == 422, "a backup of a key that was never published"
    await client.put("/v1/me/keys", json=_json(v1.bundle), headers=me.headers)

    created = await client.put("/v1/me/key-backup", json=_json(_backup(v1)), headers=me.headers)
    assert created.status_code == 201, created.text
    etag = created.headers["etag"]
    assert etag == '"r1"'

    no_precondition = await client.put("/v1/me/key-backup", json=_json(_backup(v1)), headers=me.headers)
    assert no_precondition.status_code == 428
    replaced = await client.put(
        "/v1/me/key-backup", json=_json(_backup(v1)), headers={**me.headers, "If-Match": etag}
    )
    assert replaced.status_code == 200
    assert replaced.headers["etag"] == '"r2"'
    stale = await client.put(
        "/v1/me/key-backup", json=_json(_backup(v1)), headers={**me.headers, "If-Match": etag}
    )
    assert stale.status_code == 412, "a second device with an old ETag cannot overwrite"
    assert problem(stale)["type"].endswith("precondition-failed")

    fetched = await client.get("/v1/me/key-backup", headers=me.headers)
    assert fetched.headers["etag"] == '"r2"'
    from crypto.public import KeyBackup  # noqa: PLC0415

    restored = open_key_backup(
        msgspec.convert(fetched.json(), KeyBackup, strict=False), PASSPHRASE, bundle=v1.bundle
    )
    assert restored.bundle == v1.bundle
    # Another account can never read it.
    assert (await client.get("/v1/me/key-backup", headers=clinic.clinician.headers)).status_code == 404
    types = [r["event_type"] for r in await audit_rows(db) if r["event_type"].startswith("key_backup")]
    assert types == ["key_backup.put", "key_backup.put", "key_backup.get"]


async def test_weak_backup_parameters_are_refused(client: AsyncTestClient[Litestar], clinic: Clinic) -> None:
    me = clinic.client
    v1 = generate_identity(me.id)
    await client.put("/v1/me/keys", json=_json(v1.bundle), headers=me.headers)
    body = _json(_backup(v1))
    body["opslimit"] = 1
    response = await client.put("/v1/me/key-backup", json=body, headers=me.headers)
    assert response.status_code == 422
    assert problem(response)["type"].endswith(("invalid-backup", "invalid-format"))


async def test_oversized_bundle_is_refused(client: AsyncTestClient[Litestar], clinic: Clinic) -> None:
    body = b'{"version": 1, "pad": "' + b"x" * (limits.MAX_BUNDLE_JSON_BYTES + 10) + b'"}'
    response = await client.put(
        "/v1/me/keys", content=body, headers={**clinic.client.headers, "Content-Type": "application/json"}
    )
    assert response.status_code == 413


def test_bundle_dates_are_utc() -> None:
    identity = generate_identity(uuid.uuid4())
    assert identity.bundle.created_at.tzinfo is not None
    assert identity.bundle.created_at <= dt.datetime.now(dt.UTC)
    assert decode_bundle(encode(identity.bundle)) == identity.bundle

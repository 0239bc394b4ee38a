"""Key directory over HTTP against the real server: no private key or passphrase ever leaves the client."""

from __future__ import annotations

import base64
import datetime as dt
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import msgspec
import pytest

from backend.db.embedded import EmbeddedPostgres
from crypto.client import create_key_backup, generate_identity, open_key_backup, rotate_identity
from crypto.client.keys import IdentityKeys
from crypto.public import KeyBackup, KeyBundle, encode, limits, safety_number, verify_bundle_chain
from tests.conftest import ROOT
from tests.e2e.conftest import RunningServer
from tests.helpers import totp_code

pytestmark = pytest.mark.e2e

PASSPHRASE = "ZQX backup passphrase that stays on the device"


def _secrets(identity: IdentityKeys) -> list[bytes]:
    # Read the private halves the way only a test may: they must never be sent.
    return [identity._encryption_secret, identity._signing_secret]


def _forms(secret: bytes) -> list[bytes]:
    return [
        secret,
        base64.b64encode(secret),
        base64.urlsafe_b64encode(secret),
        base64.b64encode(secret).rstrip(b"="),
        secret.hex().encode(),
    ]


def test_private_keys_never_reach_the_server(
    start_server: Callable[..., RunningServer], database_url: str
) -> None:
    """C-01: every request body of a whole key lifecycle is free of private key bytes and the passphrase."""
    server = start_server()
    sent: list[bytes] = []

    def capture(request: httpx.Request) -> None:
        headers = b"\n".join(name + b": " + value for name, value in request.headers.raw)
        sent.append(request.url.raw_path + b"\n" + headers + b"\n" + request.read())

    created = server.run_cli(
        "admin", "create", "--organization", "keys-e2e", "--email", "admin@keys.example", "--name", "A",
        "--password-stdin", stdin="key e2e admin passphrase\n",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    with httpx.Client(base_url=server.base_url, timeout=10, event_hooks={"request": [capture]}) as http:

        def login(email: str, password: str) -> dict[str, str]:
            r = http.post(
                "/v1/auth/login", json={"organization": "keys-e2e", "email": email, "password": password}
            )
            assert r.status_code == 200, r.text
            return {"Authorization": f"Bearer {r.json()['token']}"}

        def enrol(headers: dict[str, str]) -> None:
            secret = http.post("/v1/auth/mfa/totp", headers=headers).json()["secret"]
            code = totp_code(secret, dt.datetime.now(dt.UTC))
            assert (
                http.post("/v1/auth/mfa/totp/confirm", json={"code": code}, headers=headers).status_code
                == 200
            )

        admin = login("admin@keys.example", "key e2e admin passphrase")
        enrol(admin)
        doc_body = {
            "email": "doc@keys.example",
            "display_name": "D",
            "role": "clinician",
            "password": "doc pass 12345",
        }
        assert http.post("/v1/accounts", json=doc_body, headers=admin).status_code == 201
        doc = login("doc@keys.example", "doc pass 12345")
        enrol(doc)
        code = http.post("/v1/invites", json={}, headers=doc).json()["code"]
        pat_body = {"email": "pat@keys.example", "display_name": "P", "password": "patient passphrase 1"}
        redeemed = http.post(f"/v1/invites/{code}/redeem", json=pat_body)
        patient_id = uuid.UUID(redeemed.json()["id"])
        doc_id = uuid.UUID(http.get("/v1/me", headers=doc).json()["id"])
        pat = login("pat@keys.example", "patient passphrase 1")

        # Each device makes its keys locally and publishes only the public bundle.
        pat_v1 = generate_identity(patient_id)
        doc_v1 = generate_identity(doc_id)
        for headers, identity in ((pat, pat_v1), (doc, doc_v1)):
            r = http.put(
                "/v1/me/keys",
                content=encode(identity.bundle),
                headers={**headers, "Content-Type": "application/json"},
            )
            assert r.status_code == 201, r.text
        backup = create_key_backup(
            pat_v1, PASSPHRASE, opslimit=limits.BACKUP_OPSLIMIT_MIN, memlimit=limits.BACKUP_MEMLIMIT_MIN
        )
        stored = http.put(
            "/v1/me/key-backup", content=encode(backup), headers={**pat, "Content-Type": "application/json"}
        )
        assert stored.status_code == 201, stored.text
        pat_v2 = rotate_identity(pat_v1)
        assert (
            http.put(
                "/v1/me/keys",
                content=encode(pat_v2.bundle),
                headers={**pat, "Content-Type": "application/json"},
            ).status_code
            == 201
        )

        # The clinician fetches the patient's chain, verifies it and compares safety numbers.
        listing = http.get(f"/v1/accounts/{patient_id}/keys", headers=doc).json()["bundles"]
        chain = [msgspec.convert(b["bundle"], KeyBundle, strict=False) for b in listing]
        verify_bundle_chain(chain)
        assert chain[-1] == pat_v2.bundle
        assert safety_number(chain[-1], doc_v1.bundle) == safety_number(doc_v1.bundle, pat_v2.bundle)

        # A new device restores the v1 keys from the backup with the passphrase.
        fetched = http.get("/v1/me/key-backup", headers=pat)
        restored = open_key_backup(
            msgspec.convert(fetched.json(), KeyBackup, strict=False), PASSPHRASE, bundle=chain[0]
        )
        assert restored.bundle == pat_v1.bundle

    assert len(sent) > 15
    wire = b"\n".join(sent)
    for identity in (pat_v1, pat_v2, doc_v1):
        for secret in _secrets(identity):
            for form in _forms(secret):
                assert form not in wire, "a private key was sent to the server"
    assert PASSPHRASE.encode() not in wire
    assert b"ZQX" not in wire

    # Nor is it anywhere in the database, or in the server's log.
    dump = subprocess.run(
        [str(EmbeddedPostgres(ROOT / ".data" / "pg-test").binary("pg_dump")), "--data-only", database_url],
        capture_output=True, check=True, timeout=120,
    ).stdout  # fmt: skip
    assert b"key_bundles" in dump
    log = Path(server.log_path).read_bytes()
    for identity in (pat_v1, pat_v2, doc_v1):
        for secret in _secrets(identity):
            for form in _forms(secret):
                assert form not in dump
                assert form not in log
    assert PASSPHRASE.encode() not in dump

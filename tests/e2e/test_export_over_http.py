"""Issue 7, as a person would do it: download the export from the real server, open it with the CLI."""

from __future__ import annotations

import base64
import datetime as dt
import secrets
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from crypto.client import (
    InnerPayload,
    create_key_backup,
    generate_identity,
    seal_envelope,
    share_envelope,
    sign_consent,
)
from crypto.public import ConsentAction, EnvelopeKind, limits
from tests.e2e.conftest import RunningServer
from tests.helpers import totp_code
from tests.messaging_helpers import as_json

pytestmark = pytest.mark.e2e

MARK = f"EXPORT-E2E-{secrets.token_hex(5)}"
PASSPHRASE = "my export passphrase, long enough"


def _login(http: httpx.Client, email: str, password: str) -> dict[str, str]:
    response = http.post(
        "/v1/auth/login", json={"organization": "export", "email": email, "password": password}
    )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['token']}"}


def _enrol(http: httpx.Client, headers: dict[str, str]) -> None:
    secret = http.post("/v1/auth/mfa/totp", headers=headers).json()["secret"]
    code = totp_code(secret, dt.datetime.now(dt.UTC))
    assert http.post("/v1/auth/mfa/totp/confirm", json={"code": code}, headers=headers).status_code == 200


def _ok(response: httpx.Response, status: int = 201) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def test_download_and_open_an_export(start_server: Callable[..., RunningServer], tmp_path: Path) -> None:
    server = start_server()
    created = server.run_cli(
        "admin", "create", "--organization", "export", "--email", "admin@export.example", "--name", "A",
        "--password-stdin", stdin="export admin passphrase\n",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    with httpx.Client(base_url=server.base_url, timeout=15) as http:
        admin = _login(http, "admin@export.example", "export admin passphrase")
        _enrol(http, admin)
        staff = {
            "email": "doc@export.example",
            "display_name": "Dr Doe",
            "role": "clinician",
            "password": "doc pass 12",
        }
        _ok(http.post("/v1/accounts", json=staff, headers=admin))
        doc = _login(http, "doc@export.example", "doc pass 12")
        _enrol(http, doc)
        code = _ok(http.post("/v1/invites", json={}, headers=doc))["code"]
        body = {"email": "pat@export.example", "display_name": "Pat", "password": "pat passphrase 1"}
        _ok(http.post(f"/v1/invites/{code}/redeem", json=body))
        pat = _login(http, "pat@export.example", "pat passphrase 1")
        me = _ok(http.get("/v1/me", headers=pat), 200)
        pat_id, org_id = uuid.UUID(me["id"]), uuid.UUID(me["organization_id"])
        doc_id = uuid.UUID(_ok(http.get("/v1/me", headers=doc), 200)["id"])
        doc_keys, pat_keys, custodian = (
            generate_identity(doc_id),
            generate_identity(pat_id),
            generate_identity(org_id),
        )
        _ok(http.put("/v1/organization/custodian-key", json=as_json(custodian.bundle), headers=admin))
        _ok(http.put("/v1/me/keys", json=as_json(doc_keys.bundle), headers=doc))
        _ok(http.put("/v1/me/keys", json=as_json(pat_keys.bundle), headers=pat))
        backup = create_key_backup(
            pat_keys, PASSPHRASE, opslimit=limits.BACKUP_OPSLIMIT_MIN, memlimit=limits.BACKUP_MEMLIMIT_MIN
        )
        _ok(http.put("/v1/me/key-backup", json=as_json(backup), headers=pat))
        start = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(minutes=1)
        consent = sign_consent(
            pat_keys,
            action=ConsentAction.GRANT,
            consent_id=uuid.uuid4(),
            organization_id=org_id,
            grantee_type="clinician",
            grantee_id=doc_id,
            scopes=("messaging", "records.read"),
            purpose="TREAT",
            valid_from=start,
            valid_until=start + dt.timedelta(days=30),
        )
        _ok(http.post("/v1/consents", json=as_json(consent), headers=pat))
        conversation = uuid.uuid4()
        _ok(
            http.post(
                "/v1/conversations",
                json={"id": str(conversation), "kind": "direct", "client_id": str(pat_id)},
                headers=doc,
            )
        )
        for n in range(3):
            envelope = seal_envelope(
                doc_keys,
                kind=EnvelopeKind.MESSAGE,
                context_id=conversation,
                item_id=uuid.uuid4(),
                payload=InnerPayload(
                    version=1, content_type="text/plain", body=f"{MARK}-message-{n}".encode()
                ),
                recipients=[doc_keys.bundle, pat_keys.bundle],
            )
            _ok(http.post(f"/v1/conversations/{conversation}/messages", json=as_json(envelope), headers=doc))
        note = seal_envelope(
            doc_keys,
            kind=EnvelopeKind.NOTE,
            context_id=pat_id,
            item_id=uuid.uuid4(),
            payload=InnerPayload(version=1, content_type="text/markdown", body=f"{MARK}-note".encode()),
            recipients=[doc_keys.bundle, custodian.bundle],
        )
        _ok(http.post(f"/v1/clients/{pat_id}/notes", json=as_json(note), headers=doc))
        shared = share_envelope(note, sender=doc_keys, add=[pat_keys.bundle])
        _ok(http.post(f"/v1/notes/{note.item_id}/shares", json=as_json(shared), headers=doc), 200)

        archive = tmp_path / "confide-export.jsonl"
        with http.stream("GET", "/v1/me/export", headers=pat) as response:
            assert response.status_code == 200
            assert response.headers["cache-control"] == "no-store"
            with archive.open("wb") as out:
                for chunk in response.iter_bytes():
                    out.write(chunk)
        server_key = _ok(http.get("/v1/consents/receipt-key"), 200)["public_key"]
        assert http.get("/v1/me/export").status_code == 401

    data = archive.read_bytes()
    assert MARK.encode() not in data, "D-04: the archive at rest holds no plaintext"
    assert base64.b64encode(MARK.encode())[:12] not in data
    passphrase_file = tmp_path / "passphrase"
    passphrase_file.write_text(PASSPHRASE + "\n", encoding="utf-8")
    wrong = tmp_path / "wrong"
    wrong.write_text("not my passphrase at all\n", encoding="utf-8")
    readable = tmp_path / "my-data.md"
    refused = server.run_cli(
        "export", "open", str(archive), "--passphrase-file", str(wrong), "--out", str(readable)
    )
    assert refused.returncode == 1
    assert "wrong passphrase" in refused.stderr
    opened = server.run_cli(
        "export", "open", str(archive), "--passphrase-file", str(passphrase_file), "--out", str(readable),
        "--server-key", server_key,
    )  # fmt: skip
    assert opened.returncode == 0, opened.stderr
    text = readable.read_text(encoding="utf-8")
    for n in range(3):
        assert f"{MARK}-message-{n}" in text
    assert f"{MARK}-note" in text
    assert "your signature valid, server receipt valid" in text
    assert MARK not in server.log_path.read_text(encoding="utf-8", errors="replace")

"""D-03: PostgreSQL's own statement log, fully on, holds no content, password, code or token.

For this test's database only (``ALTER DATABASE ... SET``: the sessions of every other
test in the shared cluster are untouched, and the settings go with the database), the
server logs every statement and its bind parameters (``log_statement = all``,
``log_min_duration_statement = 0``, parameters at full length, also on errors). The real
app then runs the flows that carry secrets, as its application role: passwords (account
creation, invite redemption, logins, a password change), an invite code, TOTP enrolment
and codes, a recovery code, bearer tokens, a key backup, and content sealed with real
keys (messages, a note, an attachment) whose plaintexts are canaries.

The part of the cluster's log written meanwhile is searched for every recorded secret in
raw, base64, hex and UTF-16 forms (:mod:`tests.at_rest`), and for each TOTP code as a
quoted parameter. Passwords are hashed (Argon2id) in the app and tokens and codes are
sent only as digests, so bind parameters are ciphertext, digests, ids and metadata.
"""

from __future__ import annotations

import io
import secrets
import uuid
from pathlib import Path

import asyncpg
import pytest
from litestar.testing import AsyncTestClient

from backend.app import create_app
from backend.clock import FrozenClock
from backend.settings import Settings
from crypto.client import (
    InnerPayload,
    create_key_backup,
    encrypt_attachment,
    generate_identity,
    seal_envelope,
)
from crypto.public import EnvelopeKind, limits
from tests.at_rest import recording, scan
from tests.conftest import PgServer, as_role
from tests.helpers import login, login_with_mfa, make_clinic, runtime_of, totp_code
from tests.messaging_helpers import as_json, consent_to, publish_keys, seal, upload_attachment

LOGGING = {
    "log_statement": "all",
    "log_min_duration_statement": "0",
    "log_parameter_max_length": "-1",
    "log_parameter_max_length_on_error": "-1",
}


async def test_statement_log_holds_no_content_password_code_or_token(
    pg_server: PgServer,
    database_url: str,
    db: asyncpg.Connection,
    settings: Settings,
    clock: FrozenClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """D-03: with every statement and parameter logged, 0 hits for canaries and secrets."""
    if pg_server.cluster is None:
        pytest.skip("reads the embedded cluster's log file (CONFIDE_DATABASE_URL is set)")
    database = await db.fetchval("SELECT current_database()")
    for name, value in LOGGING.items():
        await db.execute(f"ALTER DATABASE \"{database}\" SET {name} = '{value}'")
    log_file: Path = pg_server.cluster.log_file
    offset = log_file.stat().st_size
    marker = f"d03-{secrets.token_hex(8)}"
    codes: list[str] = []

    url = as_role(database_url, pg_server.app_role) if pg_server.app_role else database_url
    app = create_app(settings, clock=clock, database_url=url)
    seeding = await asyncpg.connect(database_url)  # opened after ALTER DATABASE: logged too
    with recording(monkeypatch) as registry:
        try:
            async with AsyncTestClient(app=app, base_url="http://127.0.0.1") as client:
                await seeding.execute(f"SELECT '{marker}'")
                clinic = await make_clinic(client, app, seeding, slug="pglog")
                admin, doc, pat = clinic.admin, clinic.clinician, clinic.client
                for account in (admin, doc):
                    assert account.totp_secret is not None
                    codes.append(totp_code(account.totp_secret, runtime_of(app).clock.now()))
                invite = await client.post("/v1/invites", json={}, headers=doc.headers)
                registry.add(invite.json()["code"], "invite code")
                assert admin.recovery_codes is not None
                assert (await login(client, admin, recovery_code=admin.recovery_codes[0])).status_code == 200
                await login_with_mfa(client, doc, app)  # a TOTP code at login
                codes.append(totp_code(doc.totp_secret or "", runtime_of(app).clock.now()))
                new_password = f"new password {secrets.token_hex(8)}"
                changed = await client.post(
                    "/v1/auth/password",
                    json={"current_password": pat.password, "new_password": new_password},
                    headers=pat.headers,
                )
                assert changed.status_code == 204, changed.text
                pat.password = new_password
                pat.token = (await login(client, pat)).json()["token"]
                wrong = await client.post(
                    "/v1/auth/login",
                    json={
                        "organization": "pglog",
                        "email": pat.email,
                        "password": f"wrong {secrets.token_hex(8)}",
                    },
                )
                assert wrong.status_code == 401

                org_id = uuid.UUID(
                    (await client.get("/v1/me", headers=pat.headers)).json()["organization_id"]
                )
                doc_keys, pat_keys = await publish_keys(client, doc), await publish_keys(client, pat)
                passphrase = f"backup passphrase {secrets.token_hex(8)}"
                registry.add(passphrase, "key backup passphrase")
                backup = create_key_backup(
                    pat_keys,
                    passphrase,
                    opslimit=limits.BACKUP_OPSLIMIT_MIN,
                    memlimit=limits.BACKUP_MEMLIMIT_MIN,
                )
                assert (
                    await client.put("/v1/me/key-backup", json=as_json(backup), headers=pat.headers)
                ).status_code == 201
                custodian = generate_identity(org_id)
                await client.put(
                    "/v1/organization/custodian-key", json=as_json(custodian.bundle), headers=admin.headers
                )
                await consent_to(client, pat, pat_keys, org_id, doc.id, clock)
                conversation = uuid.uuid4()
                body = {"id": str(conversation), "kind": "direct", "client_id": str(pat.id)}
                assert (
                    await client.post("/v1/conversations", json=body, headers=doc.headers)
                ).status_code == 201
                for who, keys in ((doc, doc_keys), (pat, pat_keys)):
                    canary = f"CANARY-{secrets.token_hex(6)}-message"
                    envelope = seal(keys, conversation, canary, [doc_keys.bundle, pat_keys.bundle])
                    sent = await client.post(
                        f"/v1/conversations/{conversation}/messages",
                        json=as_json(envelope),
                        headers=who.headers,
                    )
                    assert sent.status_code == 201, sent.text
                note = seal_envelope(
                    doc_keys,
                    kind=EnvelopeKind.NOTE,
                    context_id=pat.id,
                    item_id=uuid.uuid4(),
                    payload=InnerPayload(
                        version=1,
                        content_type="text/plain",
                        body=b"CANARY-note-" + secrets.token_bytes(8).hex().encode(),
                    ),
                    recipients=[doc_keys.bundle, custodian.bundle, pat_keys.bundle],
                )
                stored = await client.post(
                    f"/v1/clients/{pat.id}/notes", json=as_json(note), headers=doc.headers
                )
                assert stored.status_code == 201, stored.text
                file_canary = f"CANARY-{secrets.token_hex(6)}-file".encode()
                registry.add(file_canary, "attachment plaintext")
                attachment_id, blob = uuid.uuid4(), io.BytesIO()
                encrypt_attachment(
                    io.BytesIO(file_canary * 64), blob, attachment_id=attachment_id, media_type="text/plain"
                )
                uploaded = await upload_attachment(
                    client, doc.headers, conversation, attachment_id, blob.getvalue()
                )
                assert uploaded.status_code == 201, uploaded.text
                for reader in (doc, pat):
                    page = await client.get(
                        f"/v1/conversations/{conversation}/messages", headers=reader.headers
                    )
                    assert page.status_code == 200
                assert (await client.post("/v1/auth/logout", headers=pat.headers)).status_code == 204
        finally:
            await seeding.close()

    with log_file.open("rb") as written:
        written.seek(offset)
        log = written.read()
    assert marker.encode() in log, "the statement log is on for this database"
    assert b"INSERT INTO messages" in log, "the application role's statements are logged"
    assert b"Parameters: $1 = " in log, "bind parameters are logged"
    kinds = set(registry.found.values())
    for kind in (
        "sealed plaintext",
        "private signing key",
        "request password",
        "request new_password",
        "response token",
        "response secret",
    ):
        assert kind in kinds, f"the test recorded no {kind}"
    hits = scan(registry, [("the PostgreSQL log", log)])
    # Shorter than the registry searches for: TOTP codes as a quoted parameter, recovery codes anywhere.
    hits += [f"TOTP code {code} as a parameter" for code in codes if f"'{code}'".encode() in log]
    assert admin.recovery_codes is not None
    hits += [f"recovery code {code[:3]}…" for code in admin.recovery_codes if code.encode() in log]
    assert not hits, "secrets in the PostgreSQL log: " + "; ".join(hits)

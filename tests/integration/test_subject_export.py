"""GET /v1/me/export with real keys: the archive, its seal, isolation, audit, and opening it."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import io
import json
import secrets
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import jsonschema
import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from backend.app import create_app
from backend.audit_trail import AuditContext
from backend.auth.service import authenticate
from backend.clock import FrozenClock
from backend.db.pool import connection, create_pool
from backend.errors import ThrottledError
from backend.runtime import Runtime
from backend.subjects import open_export as start_export
from backend.subjects import repository as export_repo
from crypto.client import (
    InnerPayload,
    create_key_backup,
    decrypt_attachment,
    encrypt_attachment,
    generate_identity,
    rotate_identity,
    seal_envelope,
    share_envelope,
)
from crypto.client.export import open_export, read_archive, unlock_keys
from crypto.client.export_render import render_json
from crypto.client.keys import IdentityKeys
from crypto.errors import ArchiveError, DecryptionError
from crypto.public import EnvelopeKind, limits
from tests.conftest import ROOT
from tests.helpers import Account, Clinic, audit_rows, make_client, make_clinic, runtime_of
from tests.messaging_helpers import as_json, consent_to, publish_keys, seal, upload_attachment

PASSPHRASE = "correct horse battery staple 7"
SCHEMA = json.loads((ROOT / "docs" / "export-schema.json").read_text(encoding="utf-8"))


@dataclass
class Story:
    clinic: Clinic
    org_id: uuid.UUID
    doc: IdentityKeys
    pat: IdentityKeys
    other: Account
    other_keys: IdentityKeys
    custodian: IdentityKeys
    direct: uuid.UUID
    elsewhere: uuid.UUID
    mark: str


def _backup(identity: IdentityKeys) -> Any:
    backup = create_key_backup(
        identity, PASSPHRASE, opslimit=limits.BACKUP_OPSLIMIT_MIN, memlimit=limits.BACKUP_MEMLIMIT_MIN
    )
    return as_json(backup)


async def _conversation(
    client: AsyncTestClient[Litestar], doc: Account, patient: Account, conversation_id: uuid.UUID
) -> None:
    created = await client.post(
        "/v1/conversations",
        json={"id": str(conversation_id), "kind": "direct", "client_id": str(patient.id)},
        headers=doc.headers,
    )
    assert created.status_code == 201, created.text


async def _send(
    client: AsyncTestClient[Litestar], who: Account, conversation: uuid.UUID, envelope: Any
) -> None:
    sent = await client.post(
        f"/v1/conversations/{conversation}/messages", json=as_json(envelope), headers=who.headers
    )
    assert sent.status_code == 201, sent.text


@pytest.fixture
async def story(
    client: AsyncTestClient[Litestar], app: Litestar, db: asyncpg.Connection, clock: FrozenClock
) -> Story:
    """A client and their clinician talk, the clinician shares a note; a third client is elsewhere."""
    clinic = await make_clinic(client, app, db)
    doc, pat = clinic.clinician, clinic.client
    org_id = uuid.UUID((await client.get("/v1/me", headers=pat.headers)).json()["organization_id"])
    custodian = generate_identity(org_id)
    registered = await client.put(
        "/v1/organization/custodian-key", json=as_json(custodian.bundle), headers=clinic.admin.headers
    )
    assert registered.status_code == 201, registered.text
    other = await make_client(client, doc, "other@clinic.example")
    doc_keys, pat_keys = await publish_keys(client, doc), await publish_keys(client, pat)
    other_keys = await publish_keys(client, other)
    await consent_to(client, pat, pat_keys, org_id, doc.id, clock)
    await consent_to(client, other, other_keys, org_id, doc.id, clock)
    stored = await client.put("/v1/me/key-backup", json=_backup(pat_keys), headers=pat.headers)
    assert stored.status_code == 201, stored.text

    mark = f"EXPORT-{secrets.token_hex(6)}"
    direct, elsewhere = uuid.uuid4(), uuid.uuid4()
    await _conversation(client, doc, pat, direct)
    await _conversation(client, doc, other, elsewhere)
    pair = [doc_keys.bundle, pat_keys.bundle]
    attachment_id, blob = uuid.uuid4(), io.BytesIO()
    key = encrypt_attachment(
        io.BytesIO(f"{mark}-lab-results".encode()), blob, attachment_id=attachment_id, media_type="text/plain"
    )
    uploaded = await upload_attachment(client, doc.headers, direct, attachment_id, blob.getvalue())
    assert uploaded.status_code == 201, uploaded.text
    hello = seal_envelope(
        doc_keys,
        kind=EnvelopeKind.MESSAGE,
        context_id=direct,
        item_id=uuid.uuid4(),
        payload=InnerPayload(
            version=1, content_type="text/plain", body=f"{mark}-hello".encode(), attachments=(key,)
        ),
        recipients=pair,
    )
    await _send(client, doc, direct, hello)
    await _send(client, pat, direct, seal(pat_keys, direct, f"{mark}-reply", pair))
    await _send(
        client,
        doc,
        elsewhere,
        seal(doc_keys, elsewhere, "OTHER-private", [doc_keys.bundle, other_keys.bundle]),
    )

    readers = [doc_keys.bundle, custodian.bundle]
    note = seal(doc_keys, pat.id, f"{mark}-note", readers, kind=EnvelopeKind.NOTE)
    written = await client.post(f"/v1/clients/{pat.id}/notes", json=as_json(note), headers=doc.headers)
    assert written.status_code == 201, written.text
    shared = share_envelope(note, sender=doc_keys, add=[pat_keys.bundle])
    assert (
        await client.post(f"/v1/notes/{note.item_id}/shares", json=as_json(shared), headers=doc.headers)
    ).status_code == 200
    private = seal(doc_keys, other.id, "OTHER-note", readers, kind=EnvelopeKind.NOTE)
    assert (
        await client.post(f"/v1/clients/{other.id}/notes", json=as_json(private), headers=doc.headers)
    ).status_code == 201
    # The clinician reads the client's record: a disclosure the client can account for.
    assert (await client.get(f"/v1/clients/{pat.id}/notes", headers=doc.headers)).status_code == 200
    return Story(clinic, org_id, doc_keys, pat_keys, other, other_keys, custodian, direct, elsewhere, mark)


def _lines(body: bytes) -> list[bytes]:
    return body.splitlines(keepends=True)


async def test_export_holds_everything_sealed_and_opens_on_the_device(
    client: AsyncTestClient[Litestar], story: Story, db: asyncpg.Connection
) -> None:
    pat = story.clinic.client
    response = await client.get("/v1/me/export", headers=pat.headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/jsonl")
    assert response.headers["cache-control"] == "no-store"
    assert "attachment" in response.headers["content-disposition"]
    body = response.content

    records = [json.loads(line) for line in _lines(body)]
    validator = jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.FormatChecker())
    for record in records:
        validator.validate(record)
    assert records[0]["type"] == "manifest"
    assert records[-1]["type"] == "trailer"
    by_type: dict[str, list[dict[str, Any]]] = {}
    for record in records[1:-1]:
        by_type.setdefault(record["type"], []).append(record)
    assert records[-1]["counts"] == {name: len(by_type.get(name, [])) for name in records[0]["sections"]}
    (account,) = by_type["account"]
    assert account["email"] == pat.email
    assert account["mfa"]["enabled"] is False
    for secret_column in ("password_hash", "totp_secret_sealed", "token_digest", "code_digest"):
        assert secret_column.encode() not in body
    assert len(by_type["message"]) == 2
    assert len(by_type["note"]) == 1
    assert by_type["note"][0]["access"] == "share"
    assert {r["conversation_id"] for r in by_type["member"]} == {str(story.direct)}
    assert len(by_type["consent_event"]) == 1
    assert by_type["consent_event"][0]["receipt"]["signature"]
    assert {d["agent_id"] for d in by_type["disclosure"]} == {str(story.clinic.clinician.id)}
    assert [p["account_id"] for p in by_type["peer_key"]] == [str(story.clinic.clinician.id)]

    # D-04: the archive at rest holds ciphertext only; another person's data is absent.
    assert story.mark.encode() not in body
    assert base64.b64encode(story.mark.encode())[:12] not in body
    for foreign in (str(story.other.id), str(story.elsewhere), "OTHER"):
        assert foreign.encode() not in body
    for secret in (story.pat._encryption_secret, story.pat._signing_secret[:32]):
        assert base64.b64encode(secret) not in body

    # One audit event, committed, naming the export the manifest names.
    (event,) = await audit_rows(db, "subject.export")
    assert event["entity_id"] == uuid.UUID(records[0]["export_id"])
    assert (event["subject_id"], event["agent_account_id"]) == (pat.id, pat.id)
    assert (event["purpose_of_use"], event["action"], event["entity_type"]) == (
        "PATRQT",
        "R",
        "subject_export",
    )

    # On the device: verify, unlock with the passphrase, open.
    archive = read_archive(_lines(body), server_key=runtime_of_keys(client))
    keys = unlock_keys(archive, PASSPHRASE)
    opened = open_export(archive, keys)
    assert [m.text for m in opened.messages] == [f"{story.mark}-hello", f"{story.mark}-reply"]
    (attachment,) = by_type["attachment"]
    (key,) = opened.messages[0].attachments
    assert attachment["id"] == str(key.attachment_id)
    blob = await client.get(attachment["download"], headers=pat.headers)
    assert b"".join(decrypt_attachment([blob.content], key)) == f"{story.mark}-lab-results".encode()
    assert [n.text for n in opened.notes] == [f"{story.mark}-note"]
    assert opened.summary == {
        "messages_opened": 2,
        "messages_unreadable": 0,
        "notes_opened": 1,
        "notes_unreadable": 0,
    }
    (consent,) = opened.consent_events
    assert (consent.statement_check, consent.receipt_check, consent.receipt_by_archive_key) == (
        "valid",
        "valid",
        True,
    )
    assert [k.chain for k in opened.own_keys] == ["first"]
    assert story.mark.encode() in render_json(opened)


def runtime_of_keys(client: AsyncTestClient[Litestar]) -> bytes:
    return runtime_of(client.app).keys.receipt_public_key


async def test_every_role_exports_only_its_own_data(client: AsyncTestClient[Litestar], story: Story) -> None:
    """Two people share a conversation, a third is not in it: nobody's archive holds another's data."""
    doc, pat, other = story.clinic.clinician, story.clinic.client, story.other
    other_body = (await client.get("/v1/me/export", headers=other.headers)).content
    assert str(pat.id).encode() not in other_body
    assert str(story.direct).encode() not in other_body
    archive = read_archive(_lines(other_body))
    opened = open_export(archive, [story.other_keys])
    assert [m.text for m in opened.messages] == ["OTHER-private"]
    assert opened.notes == ()  # the note about them was never shared with them

    doc_body = (await client.get("/v1/me/export", headers=doc.headers)).content
    doc_archive = read_archive(_lines(doc_body))
    assert {str(m.conversation_id) for m in doc_archive.messages} == {str(story.direct), str(story.elsewhere)}
    assert len(doc_archive.notes) == 2
    assert {n.access for n in doc_archive.notes} == {"author"}
    opened_doc = open_export(doc_archive, [story.doc])
    assert opened_doc.summary["notes_opened"] == 2
    assert doc_archive.consent_events == ()  # consent statements are the clients'
    assert {r["client_id"] for r in doc_archive.records["consent"]} == {str(pat.id), str(other.id)}
    assert "disclosure" not in doc_archive.records

    admin_body = (await client.get("/v1/me/export", headers=story.clinic.admin.headers)).content
    admin_archive = read_archive(_lines(admin_body))
    assert admin_archive.messages == ()
    assert admin_archive.notes == ()
    assert story.mark.encode() not in admin_body


async def test_unauthenticated_is_refused(client: AsyncTestClient[Litestar]) -> None:
    response = await client.get("/v1/me/export")
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")


@asynccontextmanager
async def _runtime_here(app: Litestar, database_url: str) -> AsyncIterator[Runtime]:
    """The app's runtime with a pool on this test's event loop (the test client runs its own)."""
    rt = runtime_of(app)
    pool = await create_pool(rt.settings, database_url)
    try:
        yield dataclasses.replace(rt, pool=pool)
    finally:
        await pool.close()


async def test_one_export_per_account_at_a_time(
    client: AsyncTestClient[Litestar], app: Litestar, story: Story, database_url: str
) -> None:
    pat = story.clinic.client
    assert pat.token is not None
    ctx = AuditContext(source_instance="test")
    async with _runtime_here(app, database_url) as rt:
        async with connection(rt.require_pool(), 5) as conn:
            principal = await authenticate(rt, conn, pat.token)
        first = await start_export(rt, principal, ctx)
        with pytest.raises(ThrottledError):
            await start_export(rt, principal, ctx)
        busy = await client.get("/v1/me/export", headers=pat.headers)
        assert busy.status_code == 429
        assert int(busy.headers["retry-after"]) > 0
        # Someone else may export meanwhile.
        assert (await client.get("/v1/me/export", headers=story.other.headers)).status_code == 200
        await first.aclose()  # the reader went away: the lock goes with the transaction
        again = await start_export(rt, principal, ctx)
        chunks = [chunk async for chunk in again]
        assert chunks[-1].startswith(b'{"type":"trailer"')
        assert (await client.get("/v1/me/export", headers=pat.headers)).status_code == 200


async def test_exports_per_process_are_bounded(app: Litestar, story: Story, database_url: str) -> None:
    """Each export holds a pooled connection: at most half the pool serves exports at once."""
    ctx = AuditContext(source_instance="test")
    async with _runtime_here(app, database_url) as rt:
        running = []
        for account in (story.clinic.client, story.clinic.clinician):
            assert account.token is not None
            async with connection(rt.require_pool(), 5) as conn:
                principal = await authenticate(rt, conn, account.token)
            running.append(await start_export(rt, principal, ctx))
        assert rt.settings.db_pool_max // 2 == 2
        assert story.other.token is not None
        async with connection(rt.require_pool(), 5) as conn:
            third = await authenticate(rt, conn, story.other.token)
        with pytest.raises(ThrottledError):
            await start_export(rt, third, ctx)
        for stream in running:
            await stream.aclose()
        await (await start_export(rt, third, ctx)).aclose()


async def test_a_large_export_streams_in_batches(
    client: AsyncTestClient[Litestar],
    app: Litestar,
    story: Story,
    monkeypatch: pytest.MonkeyPatch,
    database_url: str,
    clock: FrozenClock,
) -> None:
    """The response arrives in many body chunks, a cursor batch each: memory is bounded by a batch."""
    doc, pat = story.clinic.clinician, story.clinic.client
    pair = [story.doc.bundle, story.pat.bundle]
    for n in range(12):
        await _send(client, doc, story.direct, seal(story.doc, story.direct, f"{story.mark}-{n}", pair))
    section = export_repo.SECTION_ORDER["message"]
    monkeypatch.setitem(export_repo.SECTION_ORDER, "message", dataclasses.replace(section, batch=3))
    assert pat.token is not None
    bodies: list[bytes] = []
    requested, finished = asyncio.Event(), asyncio.Event()

    async def receive() -> dict[str, Any]:
        if requested.is_set():  # like a server: the disconnect comes after the response
            await finished.wait()
            return {"type": "http.disconnect"}
        requested.set()
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        if message["type"] == "http.response.body":
            if message.get("body"):
                bodies.append(message["body"])
            if not message.get("more_body", False):
                finished.set()

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/v1/me/export",
        "raw_path": b"/v1/me/export",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1"), (b"authorization", f"Bearer {pat.token}".encode())],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
        "state": {},
    }
    # A second instance of the service on this event loop, over the same database.
    here = create_app(runtime_of(app).settings, clock=clock, database_url=database_url)
    async with here.lifespan():
        await here(scope, receive, send)  # type: ignore[arg-type]
    message_chunks = [b for b in bodies if b.startswith(b'{"type":"message"')]
    assert len(message_chunks) == 5, "14 messages in batches of 3"
    assert all(chunk.count(b"\n") <= 3 for chunk in message_chunks)
    archive = read_archive(_lines(b"".join(bodies)))
    assert len(archive.messages) == 14


async def test_tampering_and_a_wrong_passphrase_fail_cleanly(
    client: AsyncTestClient[Litestar], story: Story
) -> None:
    body = (await client.get("/v1/me/export", headers=story.clinic.client.headers)).content
    lines = _lines(body)
    index = next(i for i, line in enumerate(lines) if line.startswith(b'{"type":"message"'))
    record = json.loads(lines[index])
    record["created_at"] = "2001-01-01T00:00:00Z"
    tampered = [
        *lines[:index],
        json.dumps(record, separators=(",", ":")).encode() + b"\n",
        *lines[index + 1 :],
    ]
    with pytest.raises(ArchiveError):
        read_archive(tampered)
    with pytest.raises(ArchiveError):
        read_archive(lines[:-3] + lines[-1:])  # records dropped
    with pytest.raises(DecryptionError):
        unlock_keys(read_archive(lines), "not the passphrase at all")


async def test_old_key_versions_open_with_an_older_backup(
    client: AsyncTestClient[Litestar], story: Story
) -> None:
    """After a rotation the stored backup holds the new keys; items for the old key need the old backup."""
    doc, pat = story.clinic.clinician, story.clinic.client
    v2 = rotate_identity(story.pat)
    assert (await client.put("/v1/me/keys", json=as_json(v2.bundle), headers=pat.headers)).status_code == 201
    current = (await client.get("/v1/me/key-backup", headers=pat.headers)).headers["etag"]
    replaced = await client.put(
        "/v1/me/key-backup", json=_backup(v2), headers={**pat.headers, "If-Match": current}
    )
    assert replaced.status_code == 200, replaced.text
    await _send(
        client,
        doc,
        story.direct,
        seal(story.doc, story.direct, "after rotation", [story.doc.bundle, v2.bundle]),
    )
    archive = read_archive(_lines((await client.get("/v1/me/export", headers=pat.headers)).content))
    opened = open_export(archive, unlock_keys(archive, PASSPHRASE))
    assert [(m.text, m.reason) for m in opened.messages] == [
        (None, "no_private_key"),
        (None, "no_private_key"),
        ("after rotation", None),
    ]
    assert [(k.key_version, k.chain, k.private_key) for k in opened.own_keys] == [
        (1, "first", False),
        (2, "rotation", True),
    ]
    old = create_key_backup(
        story.pat, PASSPHRASE, opslimit=limits.BACKUP_OPSLIMIT_MIN, memlimit=limits.BACKUP_MEMLIMIT_MIN
    )
    both = open_export(archive, unlock_keys(archive, PASSPHRASE, backups=[old]))
    assert both.summary["messages_opened"] == 3


async def test_cli_opens_the_archive_with_a_passphrase_file(
    client: AsyncTestClient[Litestar], story: Story, tmp_path: Path
) -> None:
    from backend.cli import main  # noqa: PLC0415

    path = tmp_path / "export.jsonl"
    path.write_bytes((await client.get("/v1/me/export", headers=story.clinic.client.headers)).content)
    secret = tmp_path / "passphrase"
    secret.write_text(PASSPHRASE + "\n", encoding="utf-8")
    wrong = tmp_path / "wrong"
    wrong.write_text("this is not it at all\n", encoding="utf-8")
    out = tmp_path / "readable.md"
    assert main(["export", "open", str(path), "--passphrase-file", str(wrong), "--out", str(out)]) == 1
    assert not out.exists()
    assert main(["export", "open", str(path), "--passphrase-file", str(secret), "--out", str(out)]) == 0
    text = out.read_text(encoding="utf-8")
    assert f"{story.mark}-hello" in text
    assert f"{story.mark}-note" in text
    assert out.stat().st_mode & 0o777 == 0o600
    as_json_out = tmp_path / "readable.json"
    assert (
        main(
            [
                "export",
                "open",
                str(path),
                "--passphrase-file",
                str(secret),
                "--format",
                "json",
                "--out",
                str(as_json_out),
            ]
        )
        == 0
    )
    assert msgspec.json.decode(as_json_out.read_bytes())["summary"]["messages_opened"] == 2


async def test_erasure_requests_are_listed_and_an_erased_account_cannot_export(
    client: AsyncTestClient[Litestar], story: Story, db: asyncpg.Connection, clock: FrozenClock
) -> None:
    pat = story.clinic.client
    request_id = uuid.uuid4()
    await db.execute(
        """
        INSERT INTO erasure_requests (id, org_id, client_id, reason, receipt_digest, status, filed_at)
        VALUES ($1, $2, $3, 'Please forget me.', $4, 'pending', $5)
        """,
        request_id,
        story.org_id,
        pat.id,
        secrets.token_bytes(32),
        clock.now(),
    )
    body = (await client.get("/v1/me/export", headers=pat.headers)).content
    archive = read_archive(_lines(body))
    (request,) = archive.records["erasure_request"]
    assert request["id"] == str(request_id)
    assert (request["status"], request["reason"], request["deleted"], request["kept"]) == (
        "pending",
        "Please forget me.",
        {},
        [],
    )
    validator = jsonschema.Draft202012Validator(SCHEMA)
    for line in _lines(body):
        validator.validate(json.loads(line))
    assert (
        "erasure_request"
        not in read_archive(
            _lines((await client.get("/v1/me/export", headers=story.other.headers)).content)
        ).records
    )

    await db.execute("UPDATE accounts SET status = 'erased' WHERE id = $1", pat.id)
    refused = await client.get("/v1/me/export", headers=pat.headers)
    assert refused.status_code == 401, "an erased account has no session any more"

"""Encrypted attachments through the real app: opaque bytes in, the same bytes out, to members only."""

from __future__ import annotations

import hashlib
import io
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import httpx
import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from backend.clock import FrozenClock
from backend.settings import Settings
from crypto.client import InnerPayload, decrypt_attachment, encrypt_attachment, open_envelope, seal_envelope
from crypto.client.keys import IdentityKeys
from crypto.errors import DecryptionError
from crypto.public import Envelope, EnvelopeKind
from tests.conftest import make_settings
from tests.helpers import Account, Clinic, audit_rows, make_clinic, make_staff, problem
from tests.integration.test_push import running
from tests.messaging_helpers import as_json, consent_to, publish_keys

LIMIT = 8 * 1024 * 1024


@pytest.fixture
def settings() -> Settings:
    return make_settings(attachment_max_bytes=LIMIT)


@dataclass
class Chat:
    clinic: Clinic
    doc_keys: IdentityKeys
    pat_keys: IdentityKeys
    conversation_id: uuid.UUID


@pytest.fixture
async def chat(
    client: AsyncTestClient[Litestar], app: Litestar, db: asyncpg.Connection, clock: FrozenClock
) -> Chat:
    clinic = await make_clinic(client, app, db)
    org_id = uuid.UUID((await client.get("/v1/me", headers=clinic.client.headers)).json()["organization_id"])
    doc_keys = await publish_keys(client, clinic.clinician)
    pat_keys = await publish_keys(client, clinic.client)
    await consent_to(client, clinic.client, pat_keys, org_id, clinic.clinician.id, clock)
    conversation_id = uuid.uuid4()
    created = await client.post(
        "/v1/conversations",
        json={"id": str(conversation_id), "kind": "direct", "client_id": str(clinic.client.id)},
        headers=clinic.clinician.headers,
    )
    assert created.status_code == 201, created.text
    return Chat(clinic, doc_keys, pat_keys, conversation_id)


async def _upload(
    client: AsyncTestClient[Litestar],
    account: Account,
    conversation_id: uuid.UUID,
    attachment_id: uuid.UUID,
    body: bytes,
    digest: bytes | None = None,
    content_type: str = "application/octet-stream",
) -> httpx.Response:
    digest = hashlib.blake2b(body, digest_size=32).digest() if digest is None else digest
    return await client.post(
        f"/v1/conversations/{conversation_id}/attachments",
        params={"id": str(attachment_id)},
        content=body,
        headers={**account.headers, "Content-Type": content_type, "X-Content-BLAKE2b": digest.hex()},
    )


async def test_round_trip_with_the_key_inside_an_envelope(
    client: AsyncTestClient[Litestar], chat: Chat, db: asyncpg.Connection
) -> None:
    doc, pat = chat.clinic.clinician, chat.clinic.client
    plaintext = os.urandom(3 * 1024 * 1024 + 12_345)
    attachment_id = uuid.uuid4()
    blob = io.BytesIO()
    key = encrypt_attachment(
        io.BytesIO(plaintext), blob, attachment_id=attachment_id, media_type="application/pdf"
    )
    uploaded = await _upload(
        client, doc, chat.conversation_id, attachment_id, blob.getvalue(), key.ciphertext_hash
    )
    assert uploaded.status_code == 201, uploaded.text
    assert uploaded.json() == {
        "id": str(attachment_id),
        "size": len(blob.getvalue()),
        "digest": key.ciphertext_hash.hex(),
    }
    chunks = await db.fetch(
        "SELECT n, octet_length(data) AS size FROM attachment_chunks WHERE attachment_id = $1 ORDER BY n",
        attachment_id,
    )
    assert [c["n"] for c in chunks] == list(range(13)), "stored in 256 KiB chunks"
    assert max(c["size"] for c in chunks) == 256 * 1024
    assert plaintext[:4096] not in b"".join(
        r["data"] for r in await db.fetch("SELECT data FROM attachment_chunks")
    ), "the server holds ciphertext only"

    # The key travels inside a signed envelope; the patient finds it there.
    payload = InnerPayload(version=1, content_type="text/plain", body=b"scan attached", attachments=(key,))
    envelope = seal_envelope(
        chat.doc_keys,
        kind=EnvelopeKind.MESSAGE,
        context_id=chat.conversation_id,
        item_id=uuid.uuid4(),
        payload=payload,
        recipients=[chat.doc_keys.bundle, chat.pat_keys.bundle],
    )
    sent = await client.post(
        f"/v1/conversations/{chat.conversation_id}/messages", json=as_json(envelope), headers=doc.headers
    )
    assert sent.status_code == 201, sent.text
    page = await client.get(f"/v1/conversations/{chat.conversation_id}/messages", headers=pat.headers)
    received = msgspec.convert(page.json()["items"][0]["envelope"], Envelope, strict=False)
    opened = open_envelope(
        received,
        reader=chat.pat_keys,
        sender_bundle=chat.doc_keys.bundle,
        context_id=chat.conversation_id,
        kinds={EnvelopeKind.MESSAGE},
    )
    (shared_key,) = opened.payload.attachments
    downloaded = await client.get(f"/v1/attachments/{shared_key.attachment_id}", headers=pat.headers)
    assert downloaded.status_code == 200
    assert downloaded.headers["content-type"] == "application/octet-stream"
    assert downloaded.headers["content-length"] == str(len(blob.getvalue()))
    assert downloaded.headers["x-content-blake2b"] == key.ciphertext_hash.hex()
    assert downloaded.headers["cache-control"] == "no-store"
    assert b"".join(decrypt_attachment([downloaded.content], shared_key)) == plaintext
    tampered = bytearray(downloaded.content)
    tampered[100] ^= 1
    with pytest.raises(DecryptionError):
        b"".join(decrypt_attachment([bytes(tampered)], shared_key))

    created = await audit_rows(db, "attachment.create")
    read = await audit_rows(db, "attachment.read")
    assert [(r["agent_account_id"], r["entity_id"]) for r in created] == [(doc.id, attachment_id)]
    assert [(r["agent_account_id"], r["entity_id"]) for r in read] == [(pat.id, attachment_id)]


async def test_retry_with_the_same_id_is_idempotent_and_another_blob_conflicts(
    client: AsyncTestClient[Litestar], chat: Chat, db: asyncpg.Connection
) -> None:
    doc = chat.clinic.clinician
    attachment_id = uuid.uuid4()
    body = os.urandom(300_000)
    first = await _upload(client, doc, chat.conversation_id, attachment_id, body)
    assert first.status_code == 201
    again = await _upload(client, doc, chat.conversation_id, attachment_id, body)
    assert again.status_code == 200
    assert again.json() == first.json()
    other = await _upload(client, doc, chat.conversation_id, attachment_id, os.urandom(10))
    assert other.status_code == 409
    assert problem(other)["type"].endswith("conflict")
    assert await db.fetchval("SELECT count(*) FROM attachment_chunks") == 2
    assert len(await audit_rows(db, "attachment.create")) == 1


async def test_digest_mismatch_is_refused_and_nothing_stored(
    client: AsyncTestClient[Litestar], chat: Chat, db: asyncpg.Connection
) -> None:
    body = os.urandom(70_000)
    wrong = hashlib.blake2b(body + b"x", digest_size=32).digest()
    response = await _upload(client, chat.clinic.clinician, chat.conversation_id, uuid.uuid4(), body, wrong)
    assert response.status_code == 422
    assert problem(response)["type"].endswith("digest-mismatch")
    assert await db.fetchval("SELECT count(*) FROM attachments") == 0


async def test_oversize_is_refused_with_413(
    client: AsyncTestClient[Litestar], chat: Chat, db: asyncpg.Connection
) -> None:
    body = b"\0" * (LIMIT + 1)
    response = await _upload(client, chat.clinic.clinician, chat.conversation_id, uuid.uuid4(), body)
    assert response.status_code == 413
    assert problem(response)["type"].endswith("payload-too-large")
    assert await db.fetchval("SELECT count(*) FROM attachments") == 0


async def test_a_chunked_upload_past_the_limit_without_content_length_gets_413(
    database_url: str, db: asyncpg.Connection, clock: FrozenClock
) -> None:
    """Over a real socket, chunked: refused once the limit is passed (the rest is never stored)."""
    total = 4 * LIMIT
    sent = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal sent
        while sent < total:
            sent += 65_536
            yield b"\1" * 65_536

    async with running(database_url, db, clock, attachment_max_bytes=LIMIT) as s:
        response = await s.http.post(
            f"/v1/conversations/{s.conversation_id}/attachments",
            params={"id": str(uuid.uuid4())},
            content=body(),
            headers={
                **s.clinic.clinician.headers,
                "Content-Type": "application/octet-stream",
                "X-Content-BLAKE2b": "00" * 32,
            },
        )
        assert "content-length" not in {k.lower() for k in response.request.headers}
        assert response.status_code == 413
        assert problem(response)["type"].endswith("payload-too-large")
    assert sent > LIMIT
    assert await db.fetchval("SELECT count(*) FROM attachments") == 0


async def test_non_members_and_other_organizations_get_404(
    client: AsyncTestClient[Litestar], app: Litestar, chat: Chat, db: asyncpg.Connection
) -> None:
    """A-03: no one outside the conversation learns an attachment exists; the attempts are audited.

    The colleague's refusals (same organization, the attachment exists) are recorded, as
    refused; another organization's attempts and unknown ids name nothing to record.
    """
    doc = chat.clinic.clinician
    attachment_id = uuid.uuid4()
    assert (await _upload(client, doc, chat.conversation_id, attachment_id, b"opaque")).status_code == 201
    colleague = await make_staff(client, app, chat.clinic.admin, "clinician", "colleague@clinic.example")
    outsider = (await make_clinic(client, app, db, slug="elsewhere")).clinician
    for stranger in (colleague, outsider):
        download = await client.get(f"/v1/attachments/{attachment_id}", headers=stranger.headers)
        assert download.status_code == 404
        missing = await client.get(f"/v1/attachments/{uuid.uuid4()}", headers=stranger.headers)
        assert problem(download) == {**problem(missing), "request_id": problem(download)["request_id"]}
        upload = await _upload(client, stranger, chat.conversation_id, uuid.uuid4(), b"planted")
        assert upload.status_code == 404
    nowhere = await _upload(client, doc, uuid.uuid4(), uuid.uuid4(), b"into no conversation")
    assert nowhere.status_code == 404
    assert await db.fetchval("SELECT count(*) FROM attachments") == 1
    for event_type in ("attachment.read", "attachment.create"):
        refused = [
            (e["agent_account_id"], e["outcome"], e["outcome_reason"])
            for e in await audit_rows(db, event_type)
        ]
        if event_type == "attachment.create":
            refused = refused[1:]  # the clinician's own upload first
        assert refused == [(colleague.id, 4, "not_found")], event_type


async def test_bad_headers_are_refused(client: AsyncTestClient[Litestar], chat: Chat) -> None:
    doc = chat.clinic.clinician
    json_body = await _upload(
        client, doc, chat.conversation_id, uuid.uuid4(), b"{}", content_type="application/json"
    )
    assert json_body.status_code == 415
    no_digest = await client.post(
        f"/v1/conversations/{chat.conversation_id}/attachments",
        params={"id": str(uuid.uuid4())},
        content=b"x",
        headers={**doc.headers, "Content-Type": "application/octet-stream"},
    )
    assert no_digest.status_code == 400
    assert problem(no_digest)["type"].endswith("validation")
    no_id = await client.post(
        f"/v1/conversations/{chat.conversation_id}/attachments",
        content=b"x",
        headers={**doc.headers, "Content-Type": "application/octet-stream", "X-Content-BLAKE2b": "00" * 32},
    )
    assert no_id.status_code == 400


async def test_an_empty_blob_round_trips(client: AsyncTestClient[Litestar], chat: Chat) -> None:
    attachment_id = uuid.uuid4()
    response = await _upload(client, chat.clinic.clinician, chat.conversation_id, attachment_id, b"")
    assert response.status_code == 201
    assert response.json()["size"] == 0
    downloaded = await client.get(f"/v1/attachments/{attachment_id}", headers=chat.clinic.client.headers)
    assert downloaded.status_code == 200
    assert downloaded.content == b""


async def test_stored_attachments_are_immutable(
    client: AsyncTestClient[Litestar], chat: Chat, db: asyncpg.Connection
) -> None:
    attachment_id = uuid.uuid4()
    assert (
        await _upload(client, chat.clinic.clinician, chat.conversation_id, attachment_id, b"abc")
    ).status_code == 201
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await db.execute("UPDATE attachment_chunks SET data = 'x'")
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await db.execute("UPDATE attachments SET size = 3")


async def test_a_later_member_cannot_fetch_older_attachments(
    client: AsyncTestClient[Litestar], app: Litestar, db: asyncpg.Connection, clock: FrozenClock
) -> None:
    """Like messages, attachments are for those who were members when they were shared."""
    from tests.helpers import make_client  # noqa: PLC0415

    clinic = await make_clinic(client, app, db)
    doc = clinic.clinician
    group = uuid.uuid4()
    assert (
        await client.post(
            "/v1/conversations", json={"id": str(group), "kind": "support_group"}, headers=doc.headers
        )
    ).status_code == 201
    early, late = clinic.client, await make_client(client, doc, "late@clinic.example")
    for person, name in ((early, "Early"),):
        await client.post(
            f"/v1/conversations/{group}/members", json={"account_id": str(person.id)}, headers=doc.headers
        )
        await client.post(f"/v1/conversations/{group}/join", json={"pseudonym": name}, headers=person.headers)
    blob = os.urandom(5000)
    attachment_id = uuid.uuid4()
    assert (await _upload(client, doc, group, attachment_id, blob)).status_code == 201
    clock.advance(60)
    await client.post(
        f"/v1/conversations/{group}/members", json={"account_id": str(late.id)}, headers=doc.headers
    )
    await client.post(f"/v1/conversations/{group}/join", json={"pseudonym": "Late"}, headers=late.headers)
    assert (await client.get(f"/v1/attachments/{attachment_id}", headers=early.headers)).status_code == 200
    assert (await client.get(f"/v1/attachments/{attachment_id}", headers=late.headers)).status_code == 404
    reads = [
        (e["agent_account_id"], e["outcome"], e["outcome_reason"])
        for e in await audit_rows(db, "attachment.read")
    ]
    assert reads == [(early.id, 0, None), (late.id, 4, "not_recipient")], "the refusal is audited"

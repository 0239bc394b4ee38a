"""Issue 5, shown as a front end would use it, against the real server process.

A client and a clinician talk (with an attachment) while the client listens on the push
stream; a support group of three clients and the clinician talks under pseudonyms and
loses a member; the clinician writes, amends and shares a note. Every party decrypts
what it should and fails to decrypt what it should not. Afterwards a ``pg_dump`` of the
database holds none of the plaintext markers and no private key.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import io
import secrets
import subprocess
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import msgspec
import pytest

from backend.db.embedded import EmbeddedPostgres
from crypto.client import (
    InnerPayload,
    decrypt_attachment,
    encrypt_attachment,
    generate_identity,
    open_envelope,
    seal_envelope,
    share_envelope,
    sign_consent,
)
from crypto.client.keys import IdentityKeys
from crypto.errors import CryptoError
from crypto.public import ConsentAction, Envelope, EnvelopeKind, KeyBundle
from tests.conftest import ROOT
from tests.e2e.conftest import RunningServer
from tests.helpers import totp_code
from tests.integration.test_push import SseReader
from tests.messaging_helpers import as_json, upload_attachment

pytestmark = pytest.mark.e2e

MARK = f"STORY-{secrets.token_hex(5)}"
MESSAGE_KINDS = {EnvelopeKind.MESSAGE}
NOTE_KINDS = {EnvelopeKind.NOTE, EnvelopeKind.NOTE_AMENDMENT}


class Person:
    def __init__(self, headers: dict[str, str], account_id: uuid.UUID) -> None:
        self.headers = headers
        self.id = account_id
        self.keys: IdentityKeys = generate_identity(account_id)


def _open(
    envelope_json: Any, reader: IdentityKeys, sender: KeyBundle, context: uuid.UUID, kinds: set[EnvelopeKind]
) -> str:
    envelope = msgspec.convert(envelope_json, Envelope, strict=False)
    opened = open_envelope(envelope, reader=reader, sender_bundle=sender, context_id=context, kinds=kinds)
    return opened.payload.body.decode()


async def test_front_end_story(start_server: Callable[..., RunningServer], database_url: str) -> None:
    server = start_server()
    created = server.run_cli(
        "admin",
        "create",
        "--organization",
        "story",
        "--email",
        "admin@story.example",
        "--name",
        "A",
        "--password-stdin",
        stdin="story admin passphrase\n",
    )
    assert created.returncode == 0, created.stderr
    async with httpx.AsyncClient(base_url=server.base_url, timeout=15) as http:

        async def login(email: str, password: str) -> dict[str, str]:
            r = await http.post(
                "/v1/auth/login", json={"organization": "story", "email": email, "password": password}
            )
            assert r.status_code == 200, r.text
            return {"Authorization": f"Bearer {r.json()['token']}"}

        async def enrol(headers: dict[str, str]) -> None:
            secret = (await http.post("/v1/auth/mfa/totp", headers=headers)).json()["secret"]
            code = totp_code(secret, dt.datetime.now(dt.UTC))
            assert (
                await http.post("/v1/auth/mfa/totp/confirm", json={"code": code}, headers=headers)
            ).status_code == 200

        async def me(headers: dict[str, str]) -> dict[str, Any]:
            body: dict[str, Any] = (await http.get("/v1/me", headers=headers)).json()
            return body

        admin = await login("admin@story.example", "story admin passphrase")
        await enrol(admin)
        org_id = uuid.UUID((await me(admin))["organization_id"])
        custodian = generate_identity(org_id)
        assert (
            await http.put("/v1/organization/custodian-key", json=as_json(custodian.bundle), headers=admin)
        ).status_code == 201
        staff = {
            "email": "doc@story.example",
            "display_name": "Dr Doe",
            "role": "clinician",
            "password": "doctor pass 1",
        }
        assert (await http.post("/v1/accounts", json=staff, headers=admin)).status_code == 201
        doc_headers = await login("doc@story.example", "doctor pass 1")
        await enrol(doc_headers)
        doc = Person(doc_headers, uuid.UUID((await me(doc_headers))["id"]))
        clients: list[Person] = []
        for n in range(3):
            code = (await http.post("/v1/invites", json={}, headers=doc.headers)).json()["code"]
            body = {
                "email": f"client{n}@story.example",
                "display_name": f"Client {n}",
                "password": f"client passphrase {n}",
            }
            assert (await http.post(f"/v1/invites/{code}/redeem", json=body)).status_code == 201
            headers = await login(f"client{n}@story.example", f"client passphrase {n}")
            clients.append(Person(headers, uuid.UUID((await me(headers))["id"])))
        for person in (doc, *clients):
            assert (
                await http.put("/v1/me/keys", json=as_json(person.keys.bundle), headers=person.headers)
            ).status_code == 201
        start = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(minutes=1)
        for person in clients:
            consent = sign_consent(
                person.keys,
                action=ConsentAction.GRANT,
                consent_id=uuid.uuid4(),
                organization_id=org_id,
                grantee_type="clinician",
                grantee_id=doc.id,
                scopes=("messaging", "records.read"),
                purpose="TREAT",
                valid_from=start,
                valid_until=start + dt.timedelta(days=30),
            )
            assert (
                await http.post("/v1/consents", json=as_json(consent), headers=person.headers)
            ).status_code == 201
        alice, bob, carol = clients

        # 1. A direct conversation with an attachment, while Alice listens on the push stream.
        direct = uuid.uuid4()
        body = {"id": str(direct), "kind": "direct", "client_id": str(alice.id)}
        assert (await http.post("/v1/conversations", json=body, headers=doc.headers)).status_code == 201
        pair = [doc.keys.bundle, alice.keys.bundle]
        attachment_id = uuid.uuid4()
        blob = io.BytesIO()
        file_text = f"{MARK}-lab-results".encode() * 100
        key = encrypt_attachment(
            io.BytesIO(file_text), blob, attachment_id=attachment_id, media_type="text/plain"
        )
        uploaded = await upload_attachment(http, doc.headers, direct, attachment_id, blob.getvalue())
        assert uploaded.status_code == 201, uploaded.text
        async with http.stream("GET", "/v1/events", headers=alice.headers) as stream:
            reader = SseReader(stream)
            await reader.comment("stream open")
            envelope = seal_envelope(
                doc.keys,
                kind=EnvelopeKind.MESSAGE,
                context_id=direct,
                item_id=uuid.uuid4(),
                recipients=pair,
                payload=InnerPayload(
                    version=1, content_type="text/plain", body=f"{MARK}-hello".encode(), attachments=(key,)
                ),
            )
            sent = await http.post(
                f"/v1/conversations/{direct}/messages", json=as_json(envelope), headers=doc.headers
            )
            assert sent.status_code == 201, sent.text
            event = await reader.expect(within_s=5)
            assert event["event"] == "message.created"
            assert msgspec.json.decode(event["data"])["message_id"] == str(envelope.item_id)
            assert MARK not in event["data"], "the push stream carries ids, never content"
        page = (await http.get(f"/v1/conversations/{direct}/messages", headers=alice.headers)).json()["items"]
        received = msgspec.convert(page[0]["envelope"], Envelope, strict=False)
        opened = open_envelope(
            received, reader=alice.keys, sender_bundle=doc.keys.bundle, context_id=direct, kinds=MESSAGE_KINDS
        )
        assert opened.payload.body.decode() == f"{MARK}-hello"
        (shared_key,) = opened.payload.attachments
        downloaded = await http.get(f"/v1/attachments/{shared_key.attachment_id}", headers=alice.headers)
        assert b"".join(decrypt_attachment([downloaded.content], shared_key)) == file_text
        assert (await http.get(f"/v1/attachments/{attachment_id}", headers=bob.headers)).status_code == 404
        with pytest.raises(CryptoError):
            _open(page[0]["envelope"], bob.keys, doc.keys.bundle, direct, MESSAGE_KINDS)

        # 2. A support group of three clients and the clinician, under pseudonyms.
        group = uuid.uuid4()
        assert (
            await http.post(
                "/v1/conversations", json={"id": str(group), "kind": "support_group"}, headers=doc.headers
            )
        ).status_code == 201
        for n, person in enumerate(clients):
            added = await http.post(
                f"/v1/conversations/{group}/members", json={"account_id": str(person.id)}, headers=doc.headers
            )
            assert added.status_code == 200, added.text
            joined = await http.post(
                f"/v1/conversations/{group}/join", json={"pseudonym": f"River {n}"}, headers=person.headers
            )
            assert joined.status_code == 200, joined.text
        view = (await http.get(f"/v1/conversations/{group}", headers=bob.headers)).json()
        names = {m["account_id"]: m["name"] for m in view["members"]}
        assert names[str(carol.id)] == "River 2"
        assert "Client 2" not in str(view)
        assert "story.example" not in str(view)
        everyone = [doc.keys.bundle, *(p.keys.bundle for p in clients)]
        hello = seal_envelope(
            bob.keys,
            kind=EnvelopeKind.MESSAGE,
            context_id=group,
            item_id=uuid.uuid4(),
            payload=InnerPayload(version=1, content_type="text/plain", body=f"{MARK}-group".encode()),
            recipients=everyone,
        )
        assert (
            await http.post(f"/v1/conversations/{group}/messages", json=as_json(hello), headers=bob.headers)
        ).status_code == 201
        removed = await http.delete(f"/v1/conversations/{group}/members/{carol.id}", headers=doc.headers)
        assert removed.status_code == 200
        later = seal_envelope(
            doc.keys,
            kind=EnvelopeKind.MESSAGE,
            context_id=group,
            item_id=uuid.uuid4(),
            payload=InnerPayload(version=1, content_type="text/plain", body=f"{MARK}-after".encode()),
            recipients=[doc.keys.bundle, alice.keys.bundle, bob.keys.bundle],
        )
        assert (
            await http.post(f"/v1/conversations/{group}/messages", json=as_json(later), headers=doc.headers)
        ).status_code == 201
        for person in (alice, bob):
            items = (await http.get(f"/v1/conversations/{group}/messages", headers=person.headers)).json()[
                "items"
            ]
            assert (
                _open(items[0]["envelope"], person.keys, bob.keys.bundle, group, MESSAGE_KINDS)
                == f"{MARK}-group"
            )
            assert (
                _open(items[1]["envelope"], person.keys, doc.keys.bundle, group, MESSAGE_KINDS)
                == f"{MARK}-after"
            )
        assert (
            await http.get(f"/v1/conversations/{group}/messages", headers=carol.headers)
        ).status_code == 404
        with pytest.raises(CryptoError):
            _open(as_json(later), carol.keys, doc.keys.bundle, group, MESSAGE_KINDS)

        # 3. The clinician writes, amends and shares a note about Alice.
        readers = [doc.keys.bundle, custodian.bundle]
        note = seal_envelope(
            doc.keys,
            kind=EnvelopeKind.NOTE,
            context_id=alice.id,
            item_id=uuid.uuid4(),
            payload=InnerPayload(version=1, content_type="text/markdown", body=f"{MARK}-note".encode()),
            recipients=readers,
        )
        assert (
            await http.post(f"/v1/clients/{alice.id}/notes", json=as_json(note), headers=doc.headers)
        ).status_code == 201
        amendment = seal_envelope(
            doc.keys,
            kind=EnvelopeKind.NOTE_AMENDMENT,
            context_id=alice.id,
            item_id=uuid.uuid4(),
            references=note.item_id,
            recipients=readers,
            payload=InnerPayload(version=1, content_type="text/markdown", body=f"{MARK}-amended".encode()),
        )
        assert (
            await http.post(
                f"/v1/notes/{note.item_id}/amendments", json=as_json(amendment), headers=doc.headers
            )
        ).status_code == 201
        shared = share_envelope(note, sender=doc.keys, add=[alice.keys.bundle])
        assert (
            await http.post(f"/v1/notes/{note.item_id}/shares", json=as_json(shared), headers=doc.headers)
        ).status_code == 200
        mine = (await http.get(f"/v1/clients/{alice.id}/notes", headers=alice.headers)).json()["items"]
        assert [n["id"] for n in mine] == [str(note.item_id)], (
            "Alice sees the note shared with her, not the amendment"
        )
        assert _open(mine[0]["envelope"], alice.keys, doc.keys.bundle, alice.id, NOTE_KINDS) == f"{MARK}-note"
        theirs = await http.get(f"/v1/clients/{alice.id}/notes", headers=bob.headers)
        assert theirs.status_code == 404, "another client learns nothing about Alice's records"
        with pytest.raises(CryptoError):
            _open(mine[0]["envelope"], bob.keys, doc.keys.bundle, alice.id, NOTE_KINDS)
        practice_copy = _open(as_json(amendment), custodian, doc.keys.bundle, alice.id, NOTE_KINDS)
        assert practice_copy == f"{MARK}-amended", "the practice reads its records with the custodian key"

    # 4. Nothing readable reached the database.
    pg_dump = EmbeddedPostgres(ROOT / ".data" / "pg-test").binary("pg_dump")
    completed = await asyncio.to_thread(
        subprocess.run,
        [str(pg_dump), "--data-only", database_url],
        capture_output=True,
        check=True,
        timeout=120,
    )
    dump: bytes = completed.stdout
    assert b"support_group" in dump, "the dump holds the conversations"
    assert MARK.encode() not in dump
    assert base64.b64encode(MARK.encode())[:12] not in dump
    for person in (doc, *clients):
        for secret in (person.keys._encryption_secret, person.keys._signing_secret[:32]):
            assert secret not in dump
            assert base64.b64encode(secret) not in dump
            assert secret.hex().encode() not in dump

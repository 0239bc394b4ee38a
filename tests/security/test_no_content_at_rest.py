"""The server never holds content: canaries sent through every content path are nowhere.

Markers go into message bodies, an edit, a note and its amendment, an attachment and a
consent flow, encrypted on the "device" with real keys. Then the test searches, in raw,
base64, hex and UTF-16 forms: a ``pg_dump`` of the database, the cluster's data files
and WAL after a CHECKPOINT, the captured log output, and every exported span. It also
looks for every private key involved.
"""

from __future__ import annotations

import asyncio
import base64
import io
import secrets
import subprocess
import uuid
from pathlib import Path

import asyncpg
from litestar import Litestar
from litestar.testing import AsyncTestClient
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from backend.clock import FrozenClock
from backend.db.embedded import EmbeddedPostgres
from backend.telemetry import configure_logging
from crypto.client import InnerPayload, encrypt_attachment, generate_identity, seal_envelope
from crypto.client.keys import IdentityKeys
from crypto.public import EnvelopeKind
from tests.conftest import ROOT, PgServer
from tests.helpers import make_clinic
from tests.messaging_helpers import as_json, consent_to, publish_keys, seal, upload_attachment


def _forms(secret: bytes) -> list[bytes]:
    return [
        secret,
        base64.b64encode(secret),
        base64.urlsafe_b64encode(secret).rstrip(b"="),
        secret.hex().encode(),
        secret.decode("latin-1").encode("utf-16-le"),
    ]


def _private(identity: IdentityKeys) -> list[bytes]:
    return [identity._encryption_secret, identity._signing_secret[:32]]


async def test_no_canary_or_private_key_in_dump_files_logs_or_spans(
    client: AsyncTestClient[Litestar],
    app: Litestar,
    db: asyncpg.Connection,
    database_url: str,
    pg_server: PgServer,
    clock: FrozenClock,
    tmp_path: Path,
) -> None:
    """D-01, D-02, G-01, G-02 over messages, edits, notes, amendments and attachments."""
    log_buffer = io.StringIO()
    configure_logging("debug", "json", stream=log_buffer)
    exporter = InMemorySpanExporter()
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)
    provider.add_span_processor(SimpleSpanProcessor(exporter))

    markers = [
        f"CANARY-{secrets.token_hex(6)}-{what}".encode() for what in ("msg", "edit", "note", "amend", "file")
    ]
    clinic = await make_clinic(client, app, db, slug="canary")
    doc, patient = clinic.clinician, clinic.client
    org_id = uuid.UUID((await client.get("/v1/me", headers=patient.headers)).json()["organization_id"])
    doc_keys = await publish_keys(client, doc)
    pat_keys = await publish_keys(client, patient)
    custodian = generate_identity(org_id)
    await client.put(
        "/v1/organization/custodian-key", json=as_json(custodian.bundle), headers=clinic.admin.headers
    )
    await consent_to(client, patient, pat_keys, org_id, doc.id, clock)
    conversation = uuid.uuid4()
    created = await client.post(
        "/v1/conversations",
        json={"id": str(conversation), "kind": "direct", "client_id": str(patient.id)},
        headers=doc.headers,
    )
    assert created.status_code == 201, created.text
    bundles = [doc_keys.bundle, pat_keys.bundle]
    first = seal(doc_keys, conversation, markers[0].decode(), bundles)
    edit = seal(
        doc_keys,
        conversation,
        markers[1].decode(),
        bundles,
        kind=EnvelopeKind.MESSAGE_EDIT,
        references=first.item_id,
    )
    for envelope in (first, edit):
        sent = await client.post(
            f"/v1/conversations/{conversation}/messages", json=as_json(envelope), headers=doc.headers
        )
        assert sent.status_code == 201, sent.text

    readers = [doc_keys.bundle, custodian.bundle, pat_keys.bundle]
    note = seal_envelope(
        doc_keys,
        kind=EnvelopeKind.NOTE,
        context_id=patient.id,
        item_id=uuid.uuid4(),
        payload=InnerPayload(version=1, content_type="text/plain", body=markers[2]),
        recipients=readers,
    )
    amendment = seal_envelope(
        doc_keys,
        kind=EnvelopeKind.NOTE_AMENDMENT,
        context_id=patient.id,
        item_id=uuid.uuid4(),
        references=note.item_id,
        payload=InnerPayload(version=1, content_type="text/plain", body=markers[3]),
        recipients=readers,
    )
    stored = await client.post(f"/v1/clients/{patient.id}/notes", json=as_json(note), headers=doc.headers)
    assert stored.status_code == 201, stored.text
    amended = await client.post(
        f"/v1/notes/{note.item_id}/amendments", json=as_json(amendment), headers=doc.headers
    )
    assert amended.status_code == 201, amended.text

    attachment_id = uuid.uuid4()
    blob = io.BytesIO()
    key = encrypt_attachment(
        io.BytesIO(markers[4] * 200), blob, attachment_id=attachment_id, media_type="text/plain"
    )
    uploaded = await upload_attachment(client, doc.headers, conversation, attachment_id, blob.getvalue())
    assert uploaded.status_code == 201, uploaded.text
    assert key.ciphertext_hash.hex() == uploaded.json()["digest"]
    for url in (f"/v1/conversations/{conversation}/messages", f"/v1/clients/{patient.id}/notes"):
        assert (await client.get(url, headers=patient.headers)).status_code == 200
    exporter.shutdown()

    secrets_to_find = list(markers)
    for identity in (doc_keys, pat_keys, custodian):
        secrets_to_find.extend(_private(identity))

    dump_path = tmp_path / "dump.sql"
    pg_dump = EmbeddedPostgres(ROOT / ".data" / "pg-test").binary("pg_dump")
    await asyncio.to_thread(
        subprocess.run,
        [str(pg_dump), "--data-only", "-f", str(dump_path), database_url],
        check=True,
        timeout=120,
    )
    dump = dump_path.read_bytes()
    assert b"message_edit" in dump, "the dump holds the stored messages"
    logs = log_buffer.getvalue().encode()
    spans = "\n".join(f"{s.name} {dict(s.attributes or {})}" for s in exporter.get_finished_spans()).encode()
    assert b"/v1/conversations/{conversation_id" in spans
    for secret in secrets_to_find:
        for form in _forms(secret):
            assert form not in dump, f"{secret[:14]!r} is in the database dump"
            assert form not in logs, f"{secret[:14]!r} is in the logs"
            assert form not in spans, f"{secret[:14]!r} is in a span"

    if pg_server.cluster is not None:
        # D-02: after a checkpoint, no data file or WAL segment of the cluster holds a canary.
        await db.execute("CHECKPOINT")
        cluster_dir = pg_server.cluster.pgdata
        for path in cluster_dir.rglob("*"):
            if not path.is_file() or path.stat().st_size > 256 * 1024 * 1024:
                continue
            data = path.read_bytes()
            for marker in markers:
                assert marker not in data, f"a canary is in {path.relative_to(cluster_dir)}"

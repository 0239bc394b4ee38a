"""Build export archives the way the server does, to test the opener without a server."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec
from nacl.signing import SigningKey

from crypto.client import IdentityKeys, InnerPayload, seal_envelope
from crypto.client.envelope import _signed
from crypto.public import Envelope, EnvelopeKind, KeyBundle, bundle_fingerprint, encode
from crypto.public.consent import ConsentStatement
from crypto.public.export import (
    EXPORT_FORMAT,
    EXPORT_VERSION,
    SECTIONS,
    ArchiveTally,
    ConsentEventRecord,
    ConsentReceipt,
    KeyBackupRecord,
    KeyBundleRecord,
    Manifest,
    MessageRecord,
    NoteRecord,
    PeerKeyRecord,
    Trailer,
    export_signed_bytes,
    receipt_signed_bytes,
)
from crypto.public.wire import KeyBackup

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
SERVER = SigningKey(hashlib.sha256(b"test export server key").digest())
SERVER_KEY = bytes(SERVER.verify_key)
_ENCODER = msgspec.json.Encoder()


def line(value: msgspec.Struct | dict[str, Any]) -> bytes:
    return _ENCODER.encode(value) + b"\n"


class ArchiveBuilder:
    """Lines of an archive for ``subject``; :meth:`build` adds the signed trailer."""

    def __init__(
        self,
        subject: uuid.UUID,
        *,
        sections: Sequence[str] = SECTIONS,
        server: SigningKey = SERVER,
        organization: uuid.UUID | None = None,
    ) -> None:
        self.subject = subject
        self.server = server
        self.manifest = Manifest(
            format=EXPORT_FORMAT,
            version=EXPORT_VERSION,
            export_id=uuid.uuid4(),
            generated_at=NOW,
            account_id=subject,
            organization_id=organization or uuid.uuid4(),
            role="client",
            sections=tuple(sections),
            server_key=bytes(server.verify_key),
        )
        self.records: list[tuple[str, bytes]] = []

    def add(self, section: str, value: msgspec.Struct | dict[str, Any]) -> ArchiveBuilder:
        if isinstance(value, dict):
            value = {"type": section, **value}
        self.records.append((section, line(value)))
        return self

    def bundle(self, identity: IdentityKeys | KeyBundle) -> ArchiveBuilder:
        bundle = identity.bundle if isinstance(identity, IdentityKeys) else identity
        return self.add(
            "key_bundle",
            KeyBundleRecord(
                key_version=bundle.key_version,
                fingerprint=bundle_fingerprint(bundle),
                published_at=NOW,
                revoked_at=None,
                bundle=msgspec.Raw(encode(bundle)),
            ),
        )

    def backup(self, backup: KeyBackup) -> ArchiveBuilder:
        return self.add(
            "key_backup",
            KeyBackupRecord(
                revision=1, key_version=backup.key_version, updated_at=NOW, backup=msgspec.Raw(encode(backup))
            ),
        )

    def peer(self, bundle: KeyBundle, raw: bytes | None = None) -> ArchiveBuilder:
        return self.add(
            "peer_key",
            PeerKeyRecord(
                account_id=bundle.account_id,
                key_version=bundle.key_version,
                fingerprint=bundle_fingerprint(bundle),
                revoked_at=None,
                bundle=msgspec.Raw(raw if raw is not None else encode(bundle)),
            ),
        )

    def message(
        self,
        envelope: Envelope,
        *,
        raw: bytes | None = None,
        record_id: uuid.UUID | None = None,
        kind: str | None = None,
    ) -> ArchiveBuilder:
        return self.add(
            "message",
            MessageRecord(
                id=record_id or envelope.item_id,
                conversation_id=envelope.context_id,
                sender_id=envelope.sender.account_id,
                kind=kind or envelope.kind.value,
                references=envelope.references,
                created_at=NOW,
                delivered_at=NOW,
                read_at=None,
                envelope=msgspec.Raw(raw if raw is not None else encode(envelope)),
            ),
        )

    def note(self, envelope: Envelope, access: str = "share") -> ArchiveBuilder:
        return self.add(
            "note",
            NoteRecord(
                id=envelope.item_id,
                client_id=envelope.context_id,
                author_id=envelope.sender.account_id,
                kind=envelope.kind.value,
                amends=envelope.references,
                created_at=NOW,
                access=access,  # type: ignore[arg-type]
                envelope_version=1,
                envelope=msgspec.Raw(encode(envelope)),
            ),
        )

    def consent(
        self,
        statement: ConsentStatement | None,
        *,
        kind: str = "grant",
        event_id: uuid.UUID | None = None,
        raw_statement: bytes | None = None,
        receipt: bytes | None = None,
        receipt_for: tuple[uuid.UUID, uuid.UUID] | None = None,
        signer: SigningKey | None = None,
        consent_id: uuid.UUID | None = None,
    ) -> ArchiveBuilder:
        """A consent event; a receipt signed by ``signer`` (the server) unless ``receipt`` is given."""
        event_id = event_id or uuid.uuid4()
        if consent_id is None:
            consent_id = statement.consent_id if statement is not None else uuid.uuid4()
        statement_json = (
            raw_statement if raw_statement is not None else (encode(statement) if statement else b"null")
        )
        if receipt is None and statement is not None:
            receipt = encode_receipt(
                make_receipt(statement_json, *(receipt_for or (consent_id, event_id)), signer or self.server)
            )
        return self.add(
            "consent_event",
            ConsentEventRecord(
                event_id=event_id,
                consent_id=consent_id,
                kind=kind,  # type: ignore[arg-type]
                recorded_at=NOW,
                statement=msgspec.Raw(statement_json),
                receipt=msgspec.Raw(receipt if receipt is not None else b"null"),
            ),
        )

    def build(self, *, counts: dict[str, int] | None = None, lines: int | None = None) -> list[bytes]:
        tally = ArchiveTally(tuple(dict.fromkeys([*self.manifest.sections, *(s for s, _ in self.records)])))
        head = line(self.manifest)
        tally.add(head, None)
        out = [head]
        for section, data in self.records:
            tally.add(data, section)
            out.append(data)
        digest = tally.digest()
        count = lines if lines is not None else tally.lines
        signed = export_signed_bytes(
            export_id=self.manifest.export_id, account_id=self.subject, lines=count, digest=digest
        )
        trailer = Trailer(
            export_id=self.manifest.export_id,
            lines=count,
            blake2b=digest,
            counts=counts if counts is not None else {s: tally.counts[s] for s in self.manifest.sections},
            signature=self.server.sign(signed).signature,
        )
        return [*out, line(trailer)]


def make_receipt(
    statement_json: bytes, consent_id: uuid.UUID, event_id: uuid.UUID, signer: SigningKey
) -> ConsentReceipt:
    unsigned = ConsentReceipt(
        version=1,
        consent_id=consent_id,
        event_id=event_id,
        event="grant",
        statement_sha256=hashlib.sha256(statement_json).hexdigest(),
        recorded_at=NOW,
        server_key=bytes(signer.verify_key),
        signature=bytes(64),
    )
    signature = signer.sign(receipt_signed_bytes(unsigned)).signature
    return msgspec.structs.replace(unsigned, signature=signature)


def encode_receipt(receipt: ConsentReceipt) -> bytes:
    return _ENCODER.encode(receipt)


def text(body: bytes, content_type: str = "text/plain; charset=utf-8", **extra: Any) -> InnerPayload:
    return InnerPayload(version=1, content_type=content_type, body=body, **extra)


def sealed(
    sender: IdentityKeys,
    context: uuid.UUID,
    body: bytes,
    to: Sequence[KeyBundle],
    *,
    kind: EnvelopeKind = EnvelopeKind.MESSAGE,
    payload: InnerPayload | None = None,
    references: uuid.UUID | None = None,
) -> Envelope:
    return seal_envelope(
        sender,
        kind=kind,
        context_id=context,
        item_id=uuid.uuid4(),
        payload=payload or text(body),
        recipients=to,
        references=references,
    )


def with_garbage_key_for(envelope: Envelope, reader: uuid.UUID, sender: IdentityKeys) -> Envelope:
    """A malicious sender's envelope: validly signed, but the reader's wrapped key opens nothing."""
    recipients = tuple(
        msgspec.structs.replace(r, wrapped_key=bytes(80)) if r.account_id == reader else r
        for r in envelope.recipients
    )
    return _signed(sender, msgspec.structs.replace(envelope, recipients=recipients))

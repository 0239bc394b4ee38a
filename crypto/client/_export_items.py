"""Checking and opening what an archive holds: key chain, peer keys, items, consent.

Private: use :func:`crypto.client.export.open_export`.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Final, Literal

import msgspec

from crypto.client._export_types import (
    Archive,
    Fields,
    OpenedConsentEvent,
    OpenedItem,
    PeerKey,
    UnreadableReason,
)
from crypto.client.envelope import open_envelope
from crypto.client.keys import IdentityKeys
from crypto.client.payload import InnerPayload
from crypto.errors import CryptoError, SignatureError
from crypto.public.consent import ConsentStatement, decode_consent, verify_consent
from crypto.public.export import ConsentEventRecord, ConsentReceipt, KeyBackupRecord, verify_receipt
from crypto.public.verify import verify_bundle, verify_envelope, verify_rotation
from crypto.public.wire import EnvelopeKind, KeyBundle, KeyRef, decode_bundle, decode_envelope

__all__ = [
    "MESSAGE_KINDS",
    "NOTE_KINDS",
    "Opener",
    "backup_fields",
    "chain",
    "consent_event",
    "item",
    "peer_keys",
]

MESSAGE_KINDS: Final = {
    kind.value: kind
    for kind in (
        EnvelopeKind.MESSAGE,
        EnvelopeKind.MESSAGE_EDIT,
        EnvelopeKind.MESSAGE_DELETE,
        EnvelopeKind.ATTACHMENT_KEY,
    )
}
NOTE_KINDS: Final = {kind.value: kind for kind in (EnvelopeKind.NOTE, EnvelopeKind.NOTE_AMENDMENT)}
_NULL: Final = b"null"
_RECEIPT = msgspec.json.Decoder(ConsentReceipt)


def chain(bundle: KeyBundle, previous: KeyBundle | None) -> Literal["first", "rotation", "reset", "broken"]:
    try:
        verify_bundle(bundle)
        if bundle.key_version == 1:
            return "first"
        if bundle.rotation_signature is None:
            return "reset"
        if previous is None:
            return "broken"
        verify_rotation(previous, bundle)
    except CryptoError:
        return "broken"
    return "rotation"


def peer_keys(archive: Archive) -> tuple[dict[KeyRef, KeyBundle], tuple[PeerKey, ...]]:
    trusted: dict[KeyRef, KeyBundle] = {}
    report: list[PeerKey] = []
    for record in archive.peer_keys:
        ref = KeyRef(account_id=record.account_id, key_version=record.key_version)
        try:
            bundle = decode_bundle(bytes(record.bundle))
            verify_bundle(bundle)
            valid = bundle.ref == ref
        except CryptoError:
            valid = False
        if valid:
            trusted[ref] = bundle
        report.append(
            PeerKey(
                account_id=record.account_id,
                key_version=record.key_version,
                fingerprint=record.fingerprint,
                valid=valid,
            )
        )
    return trusted, tuple(report)


class Opener:
    """Opens envelopes addressed to one account with the keys it holds."""

    def __init__(
        self, account_id: uuid.UUID, keys: dict[int, IdentityKeys], signers: dict[KeyRef, KeyBundle]
    ) -> None:
        self.account_id = account_id
        self.keys = keys
        self.signers = signers

    def open(  # noqa: PLR0911 -- one early return per reason an item stays closed
        self,
        raw: bytes,
        *,
        item_id: uuid.UUID,
        context_id: uuid.UUID,
        sender_id: uuid.UUID,
        kind: EnvelopeKind | None,
    ) -> tuple[InnerPayload | None, UnreadableReason | None]:
        """``(payload, None)`` when it opened, else ``(None, reason)``."""
        try:
            envelope = decode_envelope(raw)
        except CryptoError:
            return None, "malformed"
        if (
            kind is None
            or envelope.kind is not kind
            or envelope.item_id != item_id
            or envelope.context_id != context_id
            or envelope.sender.account_id != sender_id
        ):
            return None, "metadata_mismatch"
        sender_bundle = self.signers.get(envelope.sender)
        if sender_bundle is None:
            return None, "unknown_sender_key"
        try:
            verify_envelope(envelope, sender_bundle)
        except CryptoError:
            return None, "signature_invalid"
        mine = [entry.key_version for entry in envelope.recipients if entry.account_id == self.account_id]
        if not mine:
            return None, "not_a_recipient"
        reader = next((self.keys[version] for version in mine if version in self.keys), None)
        if reader is None:
            return None, "no_private_key"
        try:
            opened = open_envelope(
                envelope, reader=reader, sender_bundle=sender_bundle, context_id=context_id, kinds={kind}
            )
        except CryptoError:
            return None, "decryption_failed"
        return opened.payload, None


def item(
    opener: Opener,
    *,
    section: Literal["message", "note"],
    raw: bytes,
    item_id: uuid.UUID,
    context_id: uuid.UUID,
    sender_id: uuid.UUID,
    kind: str,
    kinds: dict[str, EnvelopeKind],
    references: uuid.UUID | None,
    created_at: datetime,
    delivered_at: datetime | None = None,
    read_at: datetime | None = None,
    access: str | None = None,
) -> OpenedItem:
    payload, reason = opener.open(
        raw, item_id=item_id, context_id=context_id, sender_id=sender_id, kind=kinds.get(kind)
    )
    common = OpenedItem(
        section=section,
        id=item_id,
        context_id=context_id,
        sender_id=sender_id,
        kind=kind,
        references=references,
        created_at=created_at,
        status="unreadable",
        reason=reason,
        delivered_at=delivered_at,
        read_at=read_at,
        access=access,
    )
    if payload is None:
        return common
    text: str | None = None
    if payload.content_type.startswith("text/"):
        try:
            text = payload.body.decode("utf-8")
        except UnicodeDecodeError:
            text = None
    return msgspec.structs.replace(
        common,
        status="opened",
        content_type=payload.content_type,
        text=text,
        body=None if text is not None else payload.body,
        attachments=payload.attachments,
    )


def consent_event(
    record: ConsentEventRecord, bundles: dict[int, KeyBundle], account_id: uuid.UUID, archive_key: bytes
) -> OpenedConsentEvent:
    statement_raw = bytes(record.statement)
    statement: ConsentStatement | None = None
    statement_check: Literal["valid", "invalid", "unknown_key", "malformed", "absent"] = "absent"
    if statement_raw != _NULL:
        try:
            statement = decode_consent(statement_raw)
        except CryptoError:
            statement_check = "malformed"
        else:
            bundle = bundles.get(statement.client.key_version)
            if statement.client.account_id != account_id or statement.consent_id != record.consent_id:
                statement_check = "invalid"
            elif bundle is None:
                statement_check = "unknown_key"
            else:
                try:
                    verify_consent(statement, bundle)
                    statement_check = "valid"
                except CryptoError:
                    statement_check = "invalid"
    receipt: ConsentReceipt | None = None
    receipt_check: Literal["valid", "invalid", "malformed", "absent"] = "absent"
    receipt_raw = bytes(record.receipt)
    if receipt_raw != _NULL:
        try:
            receipt = _RECEIPT.decode(receipt_raw)
        except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError):
            receipt_check = "malformed"
        else:
            try:
                if receipt.event_id != record.event_id or receipt.consent_id != record.consent_id:
                    raise SignatureError("the receipt names another event")
                verify_receipt(receipt, statement_raw)
                receipt_check = "valid"
            except CryptoError:
                receipt_check = "invalid"
    return OpenedConsentEvent(
        event_id=record.event_id,
        consent_id=record.consent_id,
        kind=record.kind,
        recorded_at=record.recorded_at,
        statement=statement,
        statement_check=statement_check,
        receipt=receipt,
        receipt_check=receipt_check,
        receipt_by_archive_key=None if receipt is None else receipt.server_key == archive_key,
    )


def backup_fields(backup: KeyBackupRecord) -> Fields:
    # What the readable copy says about the backup; the encrypted blob stays in the archive.
    return {"revision": backup.revision, "key_version": backup.key_version, "updated_at": backup.updated_at}

"""Open a data-subject export on the person's own device (SPEC.md section 15).

Three steps, each usable alone:

1. :func:`read_archive` parses the JSON Lines and checks the trailer (line count,
   BLAKE2b-256 digest, counts per section, the server's signature) before anything in
   the archive is used. No key is needed.
2. :func:`unlock_keys` recovers the person's private keys from the key backup in the
   archive (and any older backups they kept) with their passphrase (Argon2id).
3. :func:`open_export` verifies and decrypts every message and note it can, checks the
   key chain, consent signatures and receipts, and returns an :class:`OpenedExport`.
   What cannot be opened stays in the result, marked ``unreadable`` with a reason code.

The readable copy holds plaintext health data: keep it on the device.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Final, Literal, TypeVar

import msgspec

from crypto.client.backup import open_key_backup
from crypto.client.envelope import open_envelope
from crypto.client.keys import IdentityKeys
from crypto.client.payload import AttachmentKey, InnerPayload
from crypto.errors import ArchiveError, BackupError, CryptoError, KeyChainError, SignatureError
from crypto.public.consent import ConsentStatement, decode_consent, verify_consent
from crypto.public.export import (
    MAX_ARCHIVE_LINE_BYTES,
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
    verify_receipt,
    verify_trailer,
)
from crypto.public.verify import verify_bundle, verify_envelope, verify_rotation
from crypto.public.wire import (
    EnvelopeKind,
    KeyBackup,
    KeyBundle,
    KeyRef,
    decode_bundle,
    decode_envelope,
    decode_key_backup,
)

__all__ = [
    "OPENED_FORMAT",
    "Archive",
    "OpenedConsentEvent",
    "OpenedExport",
    "OpenedItem",
    "OwnKey",
    "PeerKey",
    "UnreadableReason",
    "open_export",
    "read_archive",
    "unlock_keys",
]

OPENED_FORMAT: Final = "confide-export-opened"

#: Why an item stayed closed (documented in SPEC.md section 15).
UnreadableReason = Literal[
    "malformed",
    "metadata_mismatch",
    "unknown_sender_key",
    "signature_invalid",
    "not_a_recipient",
    "no_private_key",
    "decryption_failed",
]

_MESSAGE_KINDS: Final = {
    kind.value: kind
    for kind in (
        EnvelopeKind.MESSAGE,
        EnvelopeKind.MESSAGE_EDIT,
        EnvelopeKind.MESSAGE_DELETE,
        EnvelopeKind.ATTACHMENT_KEY,
    )
}
_NOTE_KINDS: Final = {kind.value: kind for kind in (EnvelopeKind.NOTE, EnvelopeKind.NOTE_AMENDMENT)}
_NULL: Final = b"null"

Fields = dict[str, object]


class Archive(msgspec.Struct, frozen=True, kw_only=True):
    """An archive whose trailer checked out; nothing in it was decrypted yet."""

    manifest: Manifest
    trailer: Trailer
    key_bundles: tuple[KeyBundleRecord, ...]
    key_backup: KeyBackupRecord | None
    peer_keys: tuple[PeerKeyRecord, ...]
    messages: tuple[MessageRecord, ...]
    notes: tuple[NoteRecord, ...]
    consent_events: tuple[ConsentEventRecord, ...]
    records: dict[str, tuple[Fields, ...]]
    """The metadata sections (account, sessions, conversations, ...), as they are."""


class _Head(msgspec.Struct):
    type: str


_T = TypeVar("_T")
_HEAD = msgspec.json.Decoder(_Head)
_MANIFEST = msgspec.json.Decoder(Manifest)
_TRAILER = msgspec.json.Decoder(Trailer)
_FIELDS = msgspec.json.Decoder(Fields)
_KEY_BUNDLE = msgspec.json.Decoder(KeyBundleRecord)
_KEY_BACKUP = msgspec.json.Decoder(KeyBackupRecord)
_PEER_KEY = msgspec.json.Decoder(PeerKeyRecord)
_MESSAGE = msgspec.json.Decoder(MessageRecord)
_NOTE = msgspec.json.Decoder(NoteRecord)
_CONSENT_EVENT = msgspec.json.Decoder(ConsentEventRecord)
_RECEIPT = msgspec.json.Decoder(ConsentReceipt)


def _decode_line(decoder: msgspec.json.Decoder[_T], line: bytes, number: int) -> _T:
    try:
        return decoder.decode(line)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ArchiveError(f"line {number}: malformed record") from exc


class _Reader:
    """Collects records line by line; :meth:`finish` checks the trailer."""

    def __init__(self, first: bytes) -> None:
        self.manifest = _decode_line(_MANIFEST, first, 1)
        self.tally = ArchiveTally(self.manifest.sections)
        self.tally.add(first, None)
        self.trailer: Trailer | None = None
        self.key_bundles: list[KeyBundleRecord] = []
        self.key_backups: list[KeyBackupRecord] = []
        self.peer_keys: list[PeerKeyRecord] = []
        self.messages: list[MessageRecord] = []
        self.notes: list[NoteRecord] = []
        self.consent_events: list[ConsentEventRecord] = []
        self.records: dict[str, list[Fields]] = {}
        self.typed: dict[str, Callable[[bytes, int], None]] = {
            "key_bundle": lambda line, n: self.key_bundles.append(_decode_line(_KEY_BUNDLE, line, n)),
            "key_backup": lambda line, n: self.key_backups.append(_decode_line(_KEY_BACKUP, line, n)),
            "peer_key": lambda line, n: self.peer_keys.append(_decode_line(_PEER_KEY, line, n)),
            "message": lambda line, n: self.messages.append(_decode_line(_MESSAGE, line, n)),
            "note": lambda line, n: self.notes.append(_decode_line(_NOTE, line, n)),
            "consent_event": lambda line, n: self.consent_events.append(
                _decode_line(_CONSENT_EVENT, line, n)
            ),
        }

    def add(self, line: bytes, number: int) -> None:
        if self.trailer is not None:
            raise ArchiveError(f"line {number}: data after the trailer")
        try:
            section = _HEAD.decode(line).type
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise ArchiveError(f"line {number}: not a record") from exc
        if section == "trailer":
            self.trailer = _decode_line(_TRAILER, line, number)
            return
        if section not in self.manifest.sections:
            raise ArchiveError(f"line {number}: a record of a section the manifest does not list")
        sink = self.typed.get(section)
        if sink is not None:
            sink(line, number)
        else:
            fields = _FIELDS.decode(line)
            del fields["type"]
            self.records.setdefault(section, []).append(fields)
        self.tally.add(line, section)

    def finish(self, server_key: bytes | None) -> Archive:
        if self.trailer is None:
            raise ArchiveError("the archive is truncated: it has no trailer")
        if server_key is not None and server_key != self.manifest.server_key:
            raise SignatureError("the archive is signed by another server key")
        verify_trailer(self.manifest, self.trailer, self.tally, self.tally.digest())
        if len(self.key_backups) > 1:
            raise ArchiveError("the archive holds more than one key backup")
        return Archive(
            manifest=self.manifest,
            trailer=self.trailer,
            key_bundles=tuple(self.key_bundles),
            key_backup=self.key_backups[0] if self.key_backups else None,
            peer_keys=tuple(self.peer_keys),
            messages=tuple(self.messages),
            notes=tuple(self.notes),
            consent_events=tuple(self.consent_events),
            records={name: tuple(rows) for name, rows in self.records.items()},
        )


def read_archive(lines: Iterable[bytes], *, server_key: bytes | None = None) -> Archive:
    """Parse an archive and check its trailer before anything in it is used.

    Args:
        lines: The archive's lines exactly as read from a binary file (each ending in a
            newline), e.g. an open file object.
        server_key: The server's Ed25519 public key if the caller has it from a trusted
            source (``GET /v1/consents/receipt-key``); otherwise the manifest's key is used
            and the caller should compare it.

    Raises:
        ArchiveError: malformed, of an unknown format, truncated, or altered (line count,
            digest, per-section counts), or a line over the size limit.
        SignatureError: the trailer's signature fails, or ``server_key`` differs from
            the manifest's.
    """
    reader: _Reader | None = None
    for number, line in enumerate(lines, start=1):
        if len(line) > MAX_ARCHIVE_LINE_BYTES:
            raise ArchiveError(f"line {number} exceeds the size limit")
        if not line.endswith(b"\n"):
            raise ArchiveError(f"line {number} is incomplete: the archive is truncated")
        if reader is None:
            reader = _Reader(line)
        else:
            reader.add(line, number)
    if reader is None:
        raise ArchiveError("the archive is empty")
    return reader.finish(server_key)


def _own_bundles(archive: Archive) -> dict[int, KeyBundle]:
    bundles: dict[int, KeyBundle] = {}
    for record in archive.key_bundles:
        bundle = decode_bundle(bytes(record.bundle))
        if bundle.account_id != archive.manifest.account_id or bundle.key_version != record.key_version:
            raise ArchiveError("a key bundle in the archive belongs to another account or version")
        bundles[bundle.key_version] = bundle
    return bundles


def unlock_keys(
    archive: Archive, passphrase: str, *, backups: Sequence[KeyBackup] = ()
) -> tuple[IdentityKeys, ...]:
    """Recover the person's private keys from their key backups (slow: Argon2id each).

    Uses the backup in the archive, then ``backups`` (older key versions the person
    kept), all under the one passphrase. Each must match the archive's own bundle for
    its key version, so a backup can never install keys the account did not publish.

    Raises:
        BackupError: no backup at all, one of another account, or one whose key version
            has no bundle in the archive; KDF parameters out of range.
        DecryptionError: wrong passphrase or damaged backup (one opaque error).
        FormatError: the archive's backup is malformed.
    """
    sources = list(backups)
    if archive.key_backup is not None:
        sources.insert(0, decode_key_backup(bytes(archive.key_backup.backup)))
    if not sources:
        raise BackupError("no key backup: the archive holds none and none was given")
    bundles = _own_bundles(archive)
    unlocked: dict[int, IdentityKeys] = {}
    for backup in sources:
        if backup.account_id != archive.manifest.account_id:
            raise BackupError("a key backup belongs to another account")
        if backup.key_version in unlocked:
            continue
        bundle = bundles.get(backup.key_version)
        if bundle is None:
            raise BackupError("the archive has no key bundle for a backup's key version")
        unlocked[backup.key_version] = open_key_backup(backup, passphrase, bundle=bundle)
    return tuple(unlocked.values())


class OwnKey(msgspec.Struct, frozen=True, kw_only=True):
    """One of the person's key versions and how it links to the previous one.

    ``chain``: ``first`` (version 1, self-signature valid), ``rotation`` (signed by the
    previous version), ``reset`` (not signed by the previous version: keys were lost),
    ``broken`` (a signature fails, or the previous version is missing).
    """

    key_version: int
    fingerprint: str
    published_at: datetime
    revoked_at: datetime | None
    chain: Literal["first", "rotation", "reset", "broken"]
    private_key: bool


class PeerKey(msgspec.Struct, frozen=True, kw_only=True):
    """Someone else's key that signed an item; ``valid`` is its self-signature check."""

    account_id: uuid.UUID
    key_version: int
    fingerprint: str
    valid: bool


class OpenedItem(msgspec.Struct, frozen=True, kw_only=True):
    """A message or note: its metadata and, when it opened, its verified content.

    ``context_id`` is the conversation (messages) or the client (notes); ``sender_id``
    the sender or author. Text content is in ``text``; anything else in ``body``.
    """

    section: Literal["message", "note"]
    id: uuid.UUID
    context_id: uuid.UUID
    sender_id: uuid.UUID
    kind: str
    references: uuid.UUID | None
    created_at: datetime
    status: Literal["opened", "unreadable"]
    reason: UnreadableReason | None = None
    content_type: str | None = None
    text: str | None = None
    body: bytes | None = None
    attachments: tuple[AttachmentKey, ...] = ()
    delivered_at: datetime | None = None
    read_at: datetime | None = None
    access: str | None = None

    def __repr__(self) -> str:
        return f"OpenedItem(section={self.section!r}, id={self.id!s}, status={self.status!r}, ...)"


class OpenedConsentEvent(msgspec.Struct, frozen=True, kw_only=True):
    """A consent event with its checks.

    ``statement_check``: ``valid`` (signed by the person's key named in it),
    ``invalid``, ``unknown_key`` (no bundle for that key version in the archive),
    ``malformed`` or ``absent`` (an expiry). ``receipt_check``: ``valid`` (signed by its
    server key and naming this exact statement), ``invalid``, ``malformed`` or ``absent``;
    ``receipt_by_archive_key`` tells whether that key is the one that signed the archive.
    """

    event_id: uuid.UUID
    consent_id: uuid.UUID
    kind: str
    recorded_at: datetime
    statement: ConsentStatement | None
    statement_check: Literal["valid", "invalid", "unknown_key", "malformed", "absent"]
    receipt: ConsentReceipt | None
    receipt_check: Literal["valid", "invalid", "malformed", "absent"]
    receipt_by_archive_key: bool | None


class OpenedExport(msgspec.Struct, frozen=True, kw_only=True):
    """The readable copy: everything in the archive, content decrypted where possible."""

    format: str
    version: int
    export_id: uuid.UUID
    generated_at: datetime
    account_id: uuid.UUID
    organization_id: uuid.UUID
    role: str
    server_key: bytes
    own_keys: tuple[OwnKey, ...]
    peer_keys: tuple[PeerKey, ...]
    key_backup: Fields | None
    messages: tuple[OpenedItem, ...]
    notes: tuple[OpenedItem, ...]
    consent_events: tuple[OpenedConsentEvent, ...]
    records: dict[str, tuple[Fields, ...]]
    summary: dict[str, int]


def _chain(bundle: KeyBundle, previous: KeyBundle | None) -> Literal["first", "rotation", "reset", "broken"]:
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


def _peer_keys(archive: Archive) -> tuple[dict[KeyRef, KeyBundle], tuple[PeerKey, ...]]:
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


class _Opener:
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


def _item(
    opener: _Opener,
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


def _consent_event(
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
        except (msgspec.DecodeError, msgspec.ValidationError):
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


def _backup_fields(backup: KeyBackupRecord) -> Fields:
    # What the readable copy says about the backup; the encrypted blob stays in the archive.
    return {"revision": backup.revision, "key_version": backup.key_version, "updated_at": backup.updated_at}


def open_export(archive: Archive, keys: Iterable[IdentityKeys]) -> OpenedExport:
    """Verify and decrypt what ``keys`` can open; mark the rest with a reason.

    Args:
        archive: From :func:`read_archive`.
        keys: The person's keys (any versions), e.g. from :func:`unlock_keys`.

    Raises:
        KeyChainError: a key of another account, or one whose bundle differs from the
            archive's bundle for that version (the archive would have been built around
            a key substitution).
        ArchiveError: an own key bundle in the archive names another account or version.
        FormatError: an own key bundle in the archive is malformed.
    """
    manifest = archive.manifest
    bundles = _own_bundles(archive)
    held: dict[int, IdentityKeys] = {}
    for key in keys:
        if key.ref.account_id != manifest.account_id:
            raise KeyChainError("these keys belong to another account")
        if bundles.get(key.ref.key_version) != key.bundle:
            raise KeyChainError("the archive's key bundle differs from these keys")
        held[key.ref.key_version] = key
    own_keys = tuple(
        OwnKey(
            key_version=record.key_version,
            fingerprint=record.fingerprint,
            published_at=record.published_at,
            revoked_at=record.revoked_at,
            chain=_chain(bundles[record.key_version], bundles.get(record.key_version - 1)),
            private_key=record.key_version in held,
        )
        for record in archive.key_bundles
    )
    signers, peer_keys = _peer_keys(archive)
    for version, bundle in bundles.items():
        signers[KeyRef(account_id=manifest.account_id, key_version=version)] = bundle
    opener = _Opener(manifest.account_id, held, signers)
    messages = tuple(
        _item(
            opener,
            section="message",
            raw=bytes(m.envelope),
            item_id=m.id,
            context_id=m.conversation_id,
            sender_id=m.sender_id,
            kind=m.kind,
            kinds=_MESSAGE_KINDS,
            references=m.references,
            created_at=m.created_at,
            delivered_at=m.delivered_at,
            read_at=m.read_at,
        )
        for m in archive.messages
    )
    notes = tuple(
        _item(
            opener,
            section="note",
            raw=bytes(n.envelope),
            item_id=n.id,
            context_id=n.client_id,
            sender_id=n.author_id,
            kind=n.kind,
            kinds=_NOTE_KINDS,
            references=n.amends,
            created_at=n.created_at,
            access=n.access,
        )
        for n in archive.notes
    )
    backup = archive.key_backup
    return OpenedExport(
        format=OPENED_FORMAT,
        version=1,
        export_id=manifest.export_id,
        generated_at=manifest.generated_at,
        account_id=manifest.account_id,
        organization_id=manifest.organization_id,
        role=manifest.role,
        server_key=manifest.server_key,
        own_keys=own_keys,
        peer_keys=peer_keys,
        key_backup=None if backup is None else _backup_fields(backup),
        messages=messages,
        notes=notes,
        consent_events=tuple(
            _consent_event(event, bundles, manifest.account_id, manifest.server_key)
            for event in archive.consent_events
        ),
        records=dict(archive.records),
        summary={
            "messages_opened": sum(m.status == "opened" for m in messages),
            "messages_unreadable": sum(m.status == "unreadable" for m in messages),
            "notes_opened": sum(n.status == "opened" for n in notes),
            "notes_unreadable": sum(n.status == "unreadable" for n in notes),
        },
    )

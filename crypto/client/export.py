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

from collections.abc import Iterable, Sequence

from crypto.client._export_items import (
    MESSAGE_KINDS,
    NOTE_KINDS,
    Opener,
    backup_fields,
    chain,
    consent_event,
    item,
)
from crypto.client._export_items import (
    peer_keys as check_peer_keys,
)
from crypto.client._export_reader import Reader
from crypto.client._export_types import (
    OPENED_FORMAT,
    Archive,
    Fields,
    OpenedConsentEvent,
    OpenedExport,
    OpenedItem,
    OwnKey,
    PeerKey,
    UnreadableReason,
)
from crypto.client.backup import open_key_backup
from crypto.client.keys import IdentityKeys
from crypto.errors import ArchiveError, BackupError, KeyChainError
from crypto.public.export import MAX_ARCHIVE_LINE_BYTES
from crypto.public.wire import KeyBackup, KeyBundle, KeyRef, decode_bundle, decode_key_backup

__all__ = [
    "OPENED_FORMAT",
    "Archive",
    "Fields",
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
    reader: Reader | None = None
    for number, line in enumerate(lines, start=1):
        if len(line) > MAX_ARCHIVE_LINE_BYTES:
            raise ArchiveError(f"line {number} exceeds the size limit")
        if not line.endswith(b"\n"):
            raise ArchiveError(f"line {number} is incomplete: the archive is truncated")
        if reader is None:
            reader = Reader(line)
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
            chain=chain(bundles[record.key_version], bundles.get(record.key_version - 1)),
            private_key=record.key_version in held,
        )
        for record in archive.key_bundles
    )
    signers, peer_keys = check_peer_keys(archive)
    for version, bundle in bundles.items():
        signers[KeyRef(account_id=manifest.account_id, key_version=version)] = bundle
    opener = Opener(manifest.account_id, held, signers)
    messages = tuple(
        item(
            opener,
            section="message",
            raw=bytes(m.envelope),
            item_id=m.id,
            context_id=m.conversation_id,
            sender_id=m.sender_id,
            kind=m.kind,
            kinds=MESSAGE_KINDS,
            references=m.references,
            created_at=m.created_at,
            delivered_at=m.delivered_at,
            read_at=m.read_at,
        )
        for m in archive.messages
    )
    notes = tuple(
        item(
            opener,
            section="note",
            raw=bytes(n.envelope),
            item_id=n.id,
            context_id=n.client_id,
            sender_id=n.author_id,
            kind=n.kind,
            kinds=NOTE_KINDS,
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
        key_backup=None if backup is None else backup_fields(backup),
        messages=messages,
        notes=notes,
        consent_events=tuple(
            consent_event(event, bundles, manifest.account_id, manifest.server_key)
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

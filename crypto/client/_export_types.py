"""The results of opening an export: what the archive held, what opened, and why not.

Private: import these from :mod:`crypto.client.export`.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Final, Literal

import msgspec

from crypto.client.payload import AttachmentKey
from crypto.public.consent import ConsentStatement
from crypto.public.export import (
    ConsentEventRecord,
    ConsentReceipt,
    KeyBackupRecord,
    KeyBundleRecord,
    Manifest,
    MessageRecord,
    NoteRecord,
    PeerKeyRecord,
    Trailer,
)

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

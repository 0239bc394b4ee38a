"""The data-subject export archive (GDPR Art. 15 and 20): its format and its seal.

An archive is JSON Lines (SPEC.md section 15): a ``manifest`` line, one line per record
(``{"type": "<section>", ...}``), and a ``trailer`` line. The trailer holds the number of
lines before it, their BLAKE2b-256 digest (over the exact bytes, newlines included) and
the records per section, signed by the server (Ed25519, the key named in the manifest)
over :func:`export_signed_bytes`. A reader therefore detects a truncated download, a
dropped, added or altered line, and a counted section that went missing.

Content stays end-to-end encrypted inside the archive: envelopes, key bundles, the key
backup, consent statements and receipts are embedded as the exact JSON the server stored
(``msgspec.Raw``), never re-serialised. This module defines the records that carry them
(shared by the server that writes them and :mod:`crypto.client.export`, which opens
them); the other sections are plain metadata whose shape ``docs/export-schema.json``
describes. Nothing here touches a private key.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Final, Literal

import msgspec

from crypto.errors import ArchiveError, SignatureError
from crypto.public._sodium import Blake2bStream, constant_time_equal, ed25519_verify_strict, sha256
from crypto.public.encoding import CanonicalWriter
from crypto.public.wire import SIGNATURE_BYTES

__all__ = [
    "EXPORT_DOMAIN",
    "EXPORT_FORMAT",
    "EXPORT_VERSION",
    "MAX_ARCHIVE_LINE_BYTES",
    "RECEIPT_DOMAIN",
    "SECTIONS",
    "ArchiveTally",
    "ConsentEventRecord",
    "ConsentReceipt",
    "KeyBackupRecord",
    "KeyBundleRecord",
    "Manifest",
    "MessageRecord",
    "NoteRecord",
    "PeerKeyRecord",
    "Trailer",
    "export_signed_bytes",
    "receipt_signed_bytes",
    "verify_receipt",
    "verify_trailer",
]

EXPORT_FORMAT: Final = "confide-export"
EXPORT_VERSION: Final = 1
EXPORT_DOMAIN: Final = "confide/v1/export"
#: The server's consent receipts (backend/consent/receipts.py), signed by the same key.
RECEIPT_DOMAIN: Final = "confide/v1/consent-receipt"
#: Longest line a reader accepts: an envelope (2 MiB of JSON) plus its record's fields.
MAX_ARCHIVE_LINE_BYTES: Final = 4 * 2**20
DIGEST_BYTES: Final = 32

#: Every section of version 1, in the order an archive holds them.
SECTIONS: Final[tuple[str, ...]] = (
    "account",
    "session",
    "key_bundle",
    "key_backup",
    "care_relationship",
    "invite",
    "conversation",
    "member",
    "peer_key",
    "message",
    "attachment",
    "note",
    "consent",
    "consent_event",
    "emergency_access",
    "disclosure",
    "erasure_request",
)


class _Record(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, tag_field="type"):
    """A line of the archive; ``type`` is its tag."""


class Manifest(_Record, tag="manifest", frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The first line: what the archive is, whose, and which sections follow (in order).

    Attributes:
        format: ``confide-export``.
        version: 1.
        export_id: Names this archive; the audit event of the export names it too.
        generated_at: The database snapshot the archive was read from.
        account_id: The data subject.
        organization_id: Their organization.
        role: Their role.
        sections: The sections that follow, in order (a subset of :data:`SECTIONS`).
        server_key: Ed25519 public key that signs the trailer (and consent receipts).
    """

    format: str
    version: int
    export_id: uuid.UUID
    generated_at: datetime
    account_id: uuid.UUID
    organization_id: uuid.UUID
    role: str
    sections: tuple[str, ...]
    server_key: bytes

    def __post_init__(self) -> None:
        if self.format != EXPORT_FORMAT or self.version != EXPORT_VERSION:
            raise ArchiveError("not a version 1 Confide export")
        if any(section not in SECTIONS for section in self.sections) or len(set(self.sections)) != len(
            self.sections
        ):
            raise ArchiveError("unknown or repeated section in the manifest")
        if len(self.server_key) != 32:
            raise ArchiveError("server key has the wrong length")


class Trailer(_Record, tag="trailer", frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The last line: how many lines came before it, their digest, counts, signature.

    Attributes:
        export_id: The manifest's.
        lines: Lines before this one, the manifest included.
        blake2b: BLAKE2b-256 of those lines' exact bytes, each with its newline.
        counts: Records per section of the manifest (zeros included).
        signature: Ed25519 by the manifest's ``server_key`` over :func:`export_signed_bytes`.
    """

    export_id: uuid.UUID
    lines: int
    blake2b: bytes
    counts: dict[str, int]
    signature: bytes

    def __post_init__(self) -> None:
        if len(self.blake2b) != DIGEST_BYTES or len(self.signature) != SIGNATURE_BYTES or self.lines < 1:
            raise ArchiveError("malformed trailer")


class KeyBundleRecord(_Record, tag="key_bundle", frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One of the subject's own key bundles (every version: the rotation chain)."""

    key_version: int
    fingerprint: str
    published_at: datetime
    revoked_at: datetime | None
    bundle: msgspec.Raw


class KeyBackupRecord(_Record, tag="key_backup", frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The subject's key backup as stored: still encrypted under their passphrase."""

    revision: int
    key_version: int
    updated_at: datetime
    backup: msgspec.Raw


class PeerKeyRecord(_Record, tag="peer_key", frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The public bundle of someone who signed a message or note in the archive.

    As the server's key directory serves it: compare the fingerprint with the person
    (safety number) before trusting what it verifies.
    """

    account_id: uuid.UUID
    key_version: int
    fingerprint: str
    revoked_at: datetime | None
    bundle: msgspec.Raw


class MessageRecord(_Record, tag="message", frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A message the subject sent or received, with its delivery state and envelope.

    The envelope is signed as a whole, so it carries every recipient's wrapped key
    (each opens only with its own recipient's secret key).
    """

    id: uuid.UUID
    conversation_id: uuid.UUID
    sender_id: uuid.UUID
    kind: str
    references: uuid.UUID | None
    created_at: datetime
    delivered_at: datetime | None
    read_at: datetime | None
    envelope: msgspec.Raw


class NoteRecord(_Record, tag="note", frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A session note the subject wrote or that was shared with them (latest envelope)."""

    id: uuid.UUID
    client_id: uuid.UUID
    author_id: uuid.UUID
    kind: str
    amends: uuid.UUID | None
    created_at: datetime
    access: Literal["author", "recipient", "share"]
    envelope_version: int
    envelope: msgspec.Raw


class ConsentEventRecord(_Record, tag="consent_event", frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One event of a consent the subject gave: their signed statement, the server's receipt.

    ``statement`` and ``receipt`` are ``null`` for an expiry (recorded by the server).
    """

    event_id: uuid.UUID
    consent_id: uuid.UUID
    kind: Literal["grant", "revoke", "expire"]
    recorded_at: datetime
    statement: msgspec.Raw
    receipt: msgspec.Raw


class ConsentReceipt(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The server's signed acknowledgement of a consent event (as stored and served)."""

    version: int
    consent_id: uuid.UUID
    event_id: uuid.UUID
    event: Literal["grant", "revoke"]
    statement_sha256: str
    recorded_at: datetime
    server_key: bytes
    signature: bytes


def export_signed_bytes(*, export_id: uuid.UUID, account_id: uuid.UUID, lines: int, digest: bytes) -> bytes:
    """The bytes the server signs in the trailer (SPEC.md section 15)."""
    return (
        CanonicalWriter(EXPORT_DOMAIN)
        .u32(EXPORT_VERSION)
        .uuid(export_id)
        .uuid(account_id)
        .u64(lines)
        .item(digest)
        .getvalue()
    )


class ArchiveTally:
    """Lines, records per section and the running digest of an archive being written or read."""

    __slots__ = ("_hash", "counts", "lines")

    def __init__(self, sections: tuple[str, ...]) -> None:
        self._hash = Blake2bStream()
        self.lines = 0
        self.counts: dict[str, int] = dict.fromkeys(sections, 0)

    def add(self, line: bytes, section: str | None) -> None:
        """Absorb one line (with its newline); ``section`` is ``None`` for the manifest."""
        self._hash.update(line)
        self.lines += 1
        if section is not None:
            self.counts[section] += 1

    def digest(self) -> bytes:
        """The BLAKE2b-256 of every line absorbed (call once, after the last record)."""
        return self._hash.digest()


def verify_trailer(manifest: Manifest, trailer: Trailer, tally: ArchiveTally, digest: bytes) -> None:
    """Check the trailer against what was read, then the server's signature.

    Raises:
        ArchiveError: another export id, line count, digest or per-section count.
        SignatureError: the signature does not verify with the manifest's server key.
    """
    if trailer.export_id != manifest.export_id or trailer.lines != tally.lines:
        raise ArchiveError("the archive is truncated or has lines added")
    if not constant_time_equal(trailer.blake2b, digest):
        raise ArchiveError("the archive was altered: its digest does not match")
    if trailer.counts != tally.counts:
        raise ArchiveError("the record counts do not match the archive")
    message = export_signed_bytes(
        export_id=manifest.export_id, account_id=manifest.account_id, lines=trailer.lines, digest=digest
    )
    ed25519_verify_strict(manifest.server_key, message, trailer.signature)


def receipt_signed_bytes(receipt: ConsentReceipt) -> bytes:
    """The bytes the server signs for a consent receipt (``backend/consent/receipts.py``)."""
    stamp = receipt.recorded_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return (
        CanonicalWriter(RECEIPT_DOMAIN)
        .u32(receipt.version)
        .uuid(receipt.consent_id)
        .uuid(receipt.event_id)
        .item(receipt.event.encode("ascii"))
        .item(bytes.fromhex(receipt.statement_sha256))
        .item(stamp.encode("ascii"))
        .getvalue()
    )


def verify_receipt(receipt: ConsentReceipt, statement_json: bytes) -> None:
    """Check a receipt's signature (by its ``server_key``) and that it names this statement.

    Whether ``server_key`` is the server's key is for the caller to compare.

    Raises:
        SignatureError: the receipt is of an unknown version, names another statement
            (SHA-256 of its exact JSON), or its signature does not verify.
    """
    if receipt.version != 1 or len(receipt.statement_sha256) != 64:
        raise SignatureError("unsupported consent receipt")
    try:
        named = bytes.fromhex(receipt.statement_sha256)
    except ValueError as exc:
        raise SignatureError("unsupported consent receipt") from exc
    if not constant_time_equal(named, sha256(statement_json)):
        raise SignatureError("the receipt names another statement")
    ed25519_verify_strict(receipt.server_key, receipt_signed_bytes(receipt), receipt.signature)

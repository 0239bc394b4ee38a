"""Size limits and protocol constants shared by clients and the server.

All limits are checked when a wire object is built or decoded, before any signature or
decryption work, so an oversized object costs the verifier almost nothing.
"""

from __future__ import annotations

from crypto.errors import FormatError

__all__ = [
    "ATTACHMENT_CHUNK_BYTES",
    "BACKUP_MEMLIMIT_DEFAULT",
    "BACKUP_MEMLIMIT_MAX",
    "BACKUP_MEMLIMIT_MIN",
    "BACKUP_OPSLIMIT_DEFAULT",
    "BACKUP_OPSLIMIT_MAX",
    "BACKUP_OPSLIMIT_MIN",
    "BACKUP_PASSPHRASE_MIN_CHARS",
    "MAX_ATTACHMENT_BYTES",
    "MAX_BACKUP_JSON_BYTES",
    "MAX_BUNDLE_JSON_BYTES",
    "MAX_CONSENT_JSON_BYTES",
    "MAX_CONSENT_SCOPES",
    "MAX_CONSENT_SCOPE_CHARS",
    "MAX_CONTENT_TYPE_CHARS",
    "MAX_ENVELOPE_JSON_BYTES",
    "MAX_KEY_VERSION",
    "MAX_PADDED_PAYLOAD_BYTES",
    "MAX_RECIPIENTS",
    "MIN_PADDED_PAYLOAD_BYTES",
    "padded_size",
    "valid_padded_sizes",
]

#: Key versions are unsigned 32-bit integers starting at 1.
MAX_KEY_VERSION = 2**32 - 1

#: Most recipient entries in one envelope (a care team or support group plus custodian).
MAX_RECIPIENTS = 256

#: Smallest padded inner payload: every short message looks the same.
MIN_PADDED_PAYLOAD_BYTES = 256

#: Largest padded inner payload (1 MiB): long session notes fit, attachments do not.
MAX_PADDED_PAYLOAD_BYTES = 2**20

#: Largest envelope accepted as JSON, checked before parsing.
MAX_ENVELOPE_JSON_BYTES = 2 * 2**20

#: Largest key bundle accepted as JSON.
MAX_BUNDLE_JSON_BYTES = 4096

#: Largest key backup accepted as JSON.
MAX_BACKUP_JSON_BYTES = 4096

#: Largest signed consent statement accepted as JSON.
MAX_CONSENT_JSON_BYTES = 4096

#: Most scopes in one consent statement.
MAX_CONSENT_SCOPES = 16

#: Longest scope name, in ASCII characters.
MAX_CONSENT_SCOPE_CHARS = 64

#: Plaintext bytes per secretstream chunk of an attachment.
ATTACHMENT_CHUNK_BYTES = 64 * 1024

#: Largest attachment plaintext (100 MiB).
MAX_ATTACHMENT_BYTES = 100 * 2**20

#: Longest media type / content type string inside an inner payload.
MAX_CONTENT_TYPE_CHARS = 255

#: Argon2id floors for key backups (libsodium OPSLIMIT_MODERATE, MEMLIMIT_INTERACTIVE).
BACKUP_OPSLIMIT_MIN = 3
BACKUP_MEMLIMIT_MIN = 64 * 2**20

#: Argon2id ceilings, so a malicious server cannot make a client exhaust its memory.
BACKUP_OPSLIMIT_MAX = 16
BACKUP_MEMLIMIT_MAX = 1024 * 2**20

#: Argon2id parameters used when a client creates a backup (libsodium MODERATE).
BACKUP_OPSLIMIT_DEFAULT = 3
BACKUP_MEMLIMIT_DEFAULT = 256 * 2**20

#: Shortest passphrase accepted for a key backup, in Unicode code points after NFKC.
BACKUP_PASSPHRASE_MIN_CHARS = 12


def padded_size(length: int) -> int:
    """Return the bucket an inner payload of ``length`` bytes is padded to.

    The bucket is the smallest power of two that is at least 256 and strictly greater
    than ``length`` (ISO/IEC 7816-4 padding always adds at least one byte).

    Raises:
        FormatError: ``length`` is negative or does not fit the largest bucket.
    """
    if length < 0 or length >= MAX_PADDED_PAYLOAD_BYTES:
        raise FormatError("payload length outside the padding buckets")
    return max(MIN_PADDED_PAYLOAD_BYTES, 1 << length.bit_length())


def valid_padded_sizes() -> frozenset[int]:
    """Return every legal padded payload size (256, 512, ..., 1 MiB)."""
    return _VALID_PADDED_SIZES


_VALID_PADDED_SIZES = frozenset(
    1 << k for k in range(MIN_PADDED_PAYLOAD_BYTES.bit_length() - 1, MAX_PADDED_PAYLOAD_BYTES.bit_length())
)

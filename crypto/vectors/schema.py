"""Typed shape of the vector files (hex for raw bytes, wire objects as exact JSON text)."""

from __future__ import annotations

import msgspec

__all__ = [
    "AttachmentVector",
    "AttachmentVectors",
    "BackupVector",
    "BackupVectors",
    "ConsentVector",
    "ConsentVectors",
    "EnvelopeVector",
    "EnvelopeVectors",
    "FingerprintVector",
    "FingerprintVectors",
    "IdentityVector",
    "KeyVectors",
    "NegativeVector",
    "NegativeVectors",
    "RewrapVector",
    "RewrapVectors",
]


class IdentityVector(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One key version: fixed secrets, derived public keys, signed bytes and bundle JSON."""

    name: str
    account_id: str
    key_version: int
    created_at: str
    previous: str | None
    encryption_secret: str
    signing_seed: str
    encryption_key: str
    signing_key: str
    bundle_signed_bytes: str
    rotation_signed_bytes: str | None
    bundle: str


class KeyVectors(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """keys.json."""

    format: str
    description: str
    identities: tuple[IdentityVector, ...]
    chain: tuple[str, ...]


class EnvelopeVector(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One sealed envelope with every fixed input and intermediate value."""

    name: str
    description: str
    sender: str
    recipients: tuple[str, ...]
    kind: str
    context_id: str
    item_id: str
    references: str | None
    payload: str
    padded_payload: str
    content_key: str
    nonce: str
    ephemeral_secrets: tuple[str, ...]
    associated_data: str
    key_commitment: str
    signed_bytes: str
    envelope: str


class EnvelopeVectors(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """envelopes.json."""

    format: str
    description: str
    envelopes: tuple[EnvelopeVector, ...]


class AttachmentVector(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One encrypted attachment; plaintext byte i is ``i % 251``."""

    name: str
    attachment_id: str
    media_type: str
    size: int
    key: str
    header: str
    ciphertext_hash: str
    ciphertext: str
    attachment_key: str


class AttachmentVectors(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """attachments.json."""

    format: str
    description: str
    chunk_bytes: int
    attachments: tuple[AttachmentVector, ...]


class BackupVector(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One key backup with the derived key and associated data."""

    name: str
    identity: str
    passphrase: str
    normalized_passphrase: str
    salt: str
    nonce: str
    derived_key: str
    associated_data: str
    plaintext: str
    backup: str


class BackupVectors(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """backups.json."""

    format: str
    description: str
    backups: tuple[BackupVector, ...]


class FingerprintVector(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Fingerprints of two identities and their safety number and QR payload."""

    a: str
    b: str
    identity_bytes_a: str
    fingerprint_a: str
    fingerprint_b: str
    safety_number: str
    qr_payload: str


class FingerprintVectors(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """fingerprints.json."""

    format: str
    description: str
    iterations: int
    fingerprints: tuple[FingerprintVector, ...]


class ConsentVector(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One signed consent statement with its signed bytes; ``identity`` signed it."""

    name: str
    description: str
    identity: str
    signed_bytes: str
    statement: str


class ConsentVectors(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """consents.json."""

    format: str
    description: str
    consents: tuple[ConsentVector, ...]


class RewrapVector(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A custodian re-wrap: the content key of envelope vector ``envelope``, sealed to ``reader``.

    ``custodian`` is a recipient of the envelope and made the wrap with ``rewrap_for``
    (context ``context_id``, one of ``kinds``); ``ephemeral_secret`` is the sealed box's
    fixed ephemeral X25519 secret, so ``wrapped_key`` is reproducible byte for byte.
    """

    name: str
    description: str
    envelope: str
    custodian: str
    reader: str
    context_id: str
    kinds: tuple[str, ...]
    content_key: str
    ephemeral_secret: str
    wrapped_key: str


class RewrapVectors(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """rewraps.json."""

    format: str
    description: str
    rewraps: tuple[RewrapVector, ...]


class NegativeVector(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """An input that must be refused, and the error class this library raises.

    ``category`` says how to process ``data``: ``envelope`` (verify against the bundle
    of ``identity``, open as ``reader`` in ``context_id``), ``bundle``, ``rotation``
    (``identity`` is the previous bundle), ``backup`` (open with ``passphrase`` for the
    bundle of ``identity``), ``attachment`` (``data`` is the base64 blob, decrypted
    with ``attachment_key``), ``consent`` (verify the statement against the bundle of
    ``identity``) or ``rewrap`` (``data`` is an envelope sent by ``identity``; open it as
    ``reader`` in ``context_id`` as a note or amendment with the base64 ``wrapped_key``).
    """

    name: str
    category: str
    description: str
    expected_error: str
    data: str
    identity: str | None = None
    reader: str | None = None
    context_id: str | None = None
    passphrase: str | None = None
    attachment_key: str | None = None
    wrapped_key: str | None = None


class NegativeVectors(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """negative.json."""

    format: str
    description: str
    vectors: tuple[NegativeVector, ...]

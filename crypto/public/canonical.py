"""The exact bytes that are signed, and the AEAD associated data (SPEC.md, section 3).

Signatures are never computed over JSON: each function below builds a
domain-separated, length-prefixed encoding (:class:`CanonicalWriter`) field by field.
Each signed message starts with its own domain string, and each envelope kind has its
own, so a signature can never be replayed as another kind of message.
"""

from __future__ import annotations

import uuid

from crypto.public._sodium import sha256
from crypto.public.encoding import CanonicalWriter
from crypto.public.wire import (
    ATTACHMENT_VERSION,
    BACKUP_VERSION,
    BUNDLE_VERSION,
    ENVELOPE_VERSION,
    Envelope,
    EnvelopeKind,
    KeyBundle,
    KeyRef,
    Recipient,
)

__all__ = [
    "ATTACHMENT_DOMAIN",
    "BACKUP_DOMAIN",
    "BUNDLE_DOMAIN",
    "ENVELOPE_AD_DOMAIN",
    "ENVELOPE_DOMAINS",
    "FINGERPRINT_DOMAIN",
    "KEY_COMMITMENT_DOMAIN",
    "KEY_LOG_DOMAIN",
    "ROTATION_DOMAIN",
    "attachment_associated_data",
    "backup_associated_data",
    "bundle_digest",
    "bundle_log_bytes",
    "bundle_signed_bytes",
    "envelope_associated_data",
    "envelope_signed_bytes",
    "key_commitment_input",
    "rotation_signed_bytes",
    "signed_envelope_fields",
]

BUNDLE_DOMAIN = "confide/v1/key-bundle"
ROTATION_DOMAIN = "confide/v1/key-rotation"
ENVELOPE_AD_DOMAIN = "confide/v1/envelope-ad"
KEY_COMMITMENT_DOMAIN = "confide/v1/key-commitment"
BACKUP_DOMAIN = "confide/v1/key-backup"
ATTACHMENT_DOMAIN = "confide/v1/attachment"
FINGERPRINT_DOMAIN = "confide/v1/fingerprint"
KEY_LOG_DOMAIN = "confide/v1/key-log-bundle"
#: One signature domain per envelope kind: "confide/v1/envelope/<kind value>".
ENVELOPE_DOMAINS: dict[EnvelopeKind, str] = {
    kind: f"confide/v1/envelope/{kind.value}" for kind in EnvelopeKind
}


def _bundle_body(writer: CanonicalWriter, bundle: KeyBundle) -> CanonicalWriter:
    return (
        writer.u32(BUNDLE_VERSION)
        .uuid(bundle.account_id)
        .u32(bundle.key_version)
        .item(bundle.encryption_key)
        .item(bundle.signing_key)
        .u64(int(bundle.created_at.timestamp()))
    )


def bundle_signed_bytes(bundle: KeyBundle) -> bytes:
    """Bytes the bundle's own signing key signs (``self_signature``)."""
    return _bundle_body(CanonicalWriter(BUNDLE_DOMAIN), bundle).getvalue()


def bundle_log_bytes(bundle: KeyBundle) -> bytes:
    """The whole bundle, signatures included, as the key-transparency log commits to it.

    ``domain("confide/v1/key-log-bundle") || bundle_body || item(self_signature) ||
    item(rotation_signature or empty)`` (SPEC.md, section 16).
    """
    writer = _bundle_body(CanonicalWriter(KEY_LOG_DOMAIN), bundle).item(bundle.self_signature)
    return writer.item(bundle.rotation_signature or b"").getvalue()


def bundle_digest(bundle: KeyBundle) -> bytes:
    """SHA-256 of :func:`bundle_log_bytes`: the bundle's identity in the key log's leaves."""
    return sha256(bundle_log_bytes(bundle))


def rotation_signed_bytes(
    *, previous_key_version: int, previous_signing_key: bytes, bundle: KeyBundle
) -> bytes:
    """Bytes the previous version's signing key signs (``rotation_signature``)."""
    writer = _bundle_body(CanonicalWriter(ROTATION_DOMAIN), bundle)
    return writer.u32(previous_key_version).item(previous_signing_key).getvalue()


def envelope_associated_data(
    *,
    kind: EnvelopeKind,
    context_id: uuid.UUID,
    item_id: uuid.UUID,
    sender: KeyRef,
    references: uuid.UUID | None,
) -> bytes:
    """Associated data of the inner-payload AEAD: binds the ciphertext to its context."""
    return (
        CanonicalWriter(ENVELOPE_AD_DOMAIN)
        .u32(ENVELOPE_VERSION)
        .u8(kind.code)
        .uuid(context_id)
        .uuid(item_id)
        .uuid(sender.account_id)
        .u32(sender.key_version)
        .optional_uuid(references)
        .getvalue()
    )


def key_commitment_input(content_key: bytes, nonce: bytes) -> bytes:
    """Message whose SHA-512, truncated to 32 bytes, is the envelope's key commitment.

    Only a sender or recipient (who hold the content key) ever computes it.
    """
    return CanonicalWriter(KEY_COMMITMENT_DOMAIN).item(content_key).item(nonce).getvalue()


def signed_envelope_fields(
    *,
    kind: EnvelopeKind,
    context_id: uuid.UUID,
    item_id: uuid.UUID,
    sender: KeyRef,
    references: uuid.UUID | None,
    recipients: tuple[Recipient, ...],
    nonce: bytes,
    key_commitment: bytes,
    ciphertext: bytes,
) -> bytes:
    """Signed bytes from the individual fields (what :func:`envelope_signed_bytes` uses).

    Lets a sender compute the signature before the :class:`Envelope` exists.
    """
    writer = (
        CanonicalWriter(ENVELOPE_DOMAINS[kind])
        .u32(ENVELOPE_VERSION)
        .u8(kind.code)
        .uuid(context_id)
        .uuid(item_id)
        .uuid(sender.account_id)
        .u32(sender.key_version)
        .optional_uuid(references)
        .u32(len(recipients))
    )
    for recipient in recipients:
        writer.uuid(recipient.account_id).u32(recipient.key_version)
        writer.item(recipient.public_key).item(recipient.wrapped_key)
    return writer.item(nonce).item(key_commitment).item(ciphertext).getvalue()


def envelope_signed_bytes(envelope: Envelope) -> bytes:
    """Bytes the sender signs: every field of the envelope except the signature."""
    return signed_envelope_fields(
        kind=envelope.kind,
        context_id=envelope.context_id,
        item_id=envelope.item_id,
        sender=envelope.sender,
        references=envelope.references,
        recipients=envelope.recipients,
        nonce=envelope.nonce,
        key_commitment=envelope.key_commitment,
        ciphertext=envelope.ciphertext,
    )


def backup_associated_data(
    *, account_id: uuid.UUID, key_version: int, opslimit: int, memlimit: int, salt: bytes
) -> bytes:
    """Associated data of a key backup: account, key version and the KDF parameters."""
    return (
        CanonicalWriter(BACKUP_DOMAIN)
        .u32(BACKUP_VERSION)
        .uuid(account_id)
        .u32(key_version)
        .item(b"argon2id13")
        .u64(opslimit)
        .u64(memlimit)
        .item(salt)
        .getvalue()
    )


def attachment_associated_data(attachment_id: uuid.UUID) -> bytes:
    """Associated data of every secretstream chunk of an attachment."""
    return CanonicalWriter(ATTACHMENT_DOMAIN).u32(ATTACHMENT_VERSION).uuid(attachment_id).getvalue()

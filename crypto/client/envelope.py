"""Sealing and opening envelopes: the recipe for messages, notes and attachment keys.

Sealing: pad the JSON payload to its bucket; draw a random 256-bit content key and a
192-bit nonce; encrypt with XChaCha20-Poly1305 under associated data binding version,
kind, context, item, sender and reference; commit to the content key; wrap the content
key in a sealed box for every recipient key (the sender's included); sign the canonical
bytes of everything with the sender's Ed25519 key.

Opening verifies the signature first, then the context the caller expects, then
decrypts. Any failure after the signature check is one opaque :class:`DecryptionError`.

Break-glass (dual approval): the holder of the organization's custodian keys re-wraps
a note's content key for an emergency reader with :func:`rewrap_for`; the reader opens
the note with that wrap through :func:`open_envelope_with_wrap`, which checks the key
commitment so the (unsigned) wrap can only ever yield the author's content key.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable

import msgspec

from crypto.client.keys import IdentityKeys
from crypto.client.payload import InnerPayload, decode_payload, encode_payload
from crypto.errors import ContextError, CryptoError, DecryptionError, KeyChainError, RecipientSetError
from crypto.hazmat.padding import pad, unpad
from crypto.hazmat.primitives import aead_decrypt, aead_encrypt, seal
from crypto.hazmat.rng import Rng, system_rng
from crypto.public._sodium import constant_time_equal, sha512
from crypto.public.canonical import (
    envelope_associated_data,
    envelope_signed_bytes,
    key_commitment_input,
    signed_envelope_fields,
)
from crypto.public.verify import verify_bundle, verify_envelope
from crypto.public.wire import (
    AEAD_NONCE_BYTES,
    ENVELOPE_VERSION,
    KEY_COMMITMENT_BYTES,
    WRAPPED_KEY_BYTES,
    Envelope,
    EnvelopeKind,
    KeyBundle,
    KeyRef,
    Recipient,
)

__all__ = [
    "OpenedEnvelope",
    "open_envelope",
    "open_envelope_with_wrap",
    "rewrap_for",
    "seal_envelope",
    "share_envelope",
]

_CONTENT_KEY_BYTES = 32


class OpenedEnvelope(msgspec.Struct, frozen=True, kw_only=True):
    """The authenticated fields and decrypted payload of an envelope."""

    kind: EnvelopeKind
    context_id: uuid.UUID
    item_id: uuid.UUID
    sender: KeyRef
    references: uuid.UUID | None
    payload: InnerPayload


def _commitment(content_key: bytes, nonce: bytes) -> bytes:
    # Makes the AEAD key-committing: a sender cannot wrap different content keys for
    # different recipients that decrypt the one ciphertext to different plaintexts.
    return sha512(key_commitment_input(content_key, nonce))[:KEY_COMMITMENT_BYTES]


def _wrap(content_key: bytes, bundle: KeyBundle, rng: Rng) -> Recipient:
    ephemeral = None if rng is system_rng else rng(32)
    return Recipient(
        account_id=bundle.account_id,
        key_version=bundle.key_version,
        public_key=bundle.encryption_key,
        wrapped_key=seal(bundle.encryption_key, content_key, ephemeral_secret=ephemeral),
    )


def _trusted_bundles(sender: IdentityKeys, recipients: Iterable[KeyBundle]) -> list[KeyBundle]:
    by_ref: dict[KeyRef, KeyBundle] = {sender.ref: sender.bundle}
    for bundle in recipients:
        verify_bundle(bundle)
        if by_ref.setdefault(bundle.ref, bundle) != bundle:
            raise KeyChainError("two different bundles for one account key version")
    return sorted(by_ref.values(), key=lambda bundle: bundle.ref.sort_key())


def _signed(sender: IdentityKeys, unsigned: Envelope) -> Envelope:
    signature = sender._sign(envelope_signed_bytes(unsigned))
    return msgspec.structs.replace(unsigned, signature=signature)


def _seal_envelope(
    sender: IdentityKeys,
    *,
    kind: EnvelopeKind,
    context_id: uuid.UUID,
    item_id: uuid.UUID,
    payload: InnerPayload,
    recipients: Iterable[KeyBundle],
    references: uuid.UUID | None,
    rng: Rng,
) -> Envelope:
    """Private seam: :func:`seal_envelope` with an injectable RNG (test vectors only)."""
    bundles = _trusted_bundles(sender, recipients)
    padded = pad(encode_payload(payload))
    content_key = rng(_CONTENT_KEY_BYTES)
    nonce = rng(AEAD_NONCE_BYTES)
    associated_data = envelope_associated_data(
        kind=kind, context_id=context_id, item_id=item_id, sender=sender.ref, references=references
    )
    recipients_ = tuple(_wrap(content_key, bundle, rng) for bundle in bundles)
    key_commitment = _commitment(content_key, nonce)
    ciphertext = aead_encrypt(content_key, nonce, padded, associated_data)
    signature = sender._sign(
        signed_envelope_fields(
            kind=kind,
            context_id=context_id,
            item_id=item_id,
            sender=sender.ref,
            references=references,
            recipients=recipients_,
            nonce=nonce,
            key_commitment=key_commitment,
            ciphertext=ciphertext,
        )
    )
    return Envelope(
        version=ENVELOPE_VERSION,
        kind=kind,
        context_id=context_id,
        item_id=item_id,
        sender=sender.ref,
        references=references,
        recipients=recipients_,
        nonce=nonce,
        key_commitment=key_commitment,
        ciphertext=ciphertext,
        signature=signature,
    )


def seal_envelope(
    sender: IdentityKeys,
    *,
    kind: EnvelopeKind,
    context_id: uuid.UUID,
    item_id: uuid.UUID,
    payload: InnerPayload,
    recipients: Iterable[KeyBundle],
    references: uuid.UUID | None = None,
) -> Envelope:
    """Encrypt and sign ``payload`` for ``recipients`` (the sender is always added).

    Recipient bundles must be ones the caller trusts (verified chain or compared
    fingerprint); their self-signatures are checked again here.

    Raises:
        SignatureError: a recipient bundle's self-signature fails.
        KeyChainError: two different bundles claim the same (account, key version).
        FormatError: the payload is too large.
        EnvelopeFormatError: too many recipients, or ``references`` given for a kind
            that takes none (or missing for edit, delete, amendment).
    """
    return _seal_envelope(
        sender,
        kind=kind,
        context_id=context_id,
        item_id=item_id,
        payload=payload,
        recipients=recipients,
        references=references,
        rng=system_rng,
    )


def _check_readable(
    envelope: Envelope, sender_bundle: KeyBundle, context_id: uuid.UUID, kinds: Collection[EnvelopeKind]
) -> None:
    # Steps 2-5 of SPEC 5.7, then the context the caller is reading (SPEC 5.8).
    verify_envelope(envelope, sender_bundle)
    if envelope.context_id != context_id or envelope.kind not in kinds:
        raise ContextError("envelope belongs to another context or kind")


def _unwrap(envelope: Envelope, reader: IdentityKeys, wrapped_key: bytes) -> bytes:
    # Every failure here is the one opaque DecryptionError. The commitment check is what
    # binds the unwrapped key to this (signed) envelope: a sealed box is not
    # authenticated, anyone can make one to a public key.
    if len(wrapped_key) != WRAPPED_KEY_BYTES:
        raise DecryptionError("decryption failed")
    content_key = reader._unseal(wrapped_key)
    if not constant_time_equal(_commitment(content_key, envelope.nonce), envelope.key_commitment):
        raise DecryptionError("decryption failed")
    return content_key


def _content_key(envelope: Envelope, reader: IdentityKeys) -> bytes:
    entry = envelope.recipient(reader.ref)
    if entry is None or entry.public_key != reader.bundle.encryption_key:
        raise RecipientSetError("these keys are not a recipient", missing=[reader.ref])
    return _unwrap(envelope, reader, entry.wrapped_key)


def _decrypt(envelope: Envelope, content_key: bytes) -> OpenedEnvelope:
    # Call only with a content key that passed the commitment check.
    associated_data = envelope_associated_data(
        kind=envelope.kind,
        context_id=envelope.context_id,
        item_id=envelope.item_id,
        sender=envelope.sender,
        references=envelope.references,
    )
    try:
        padded = aead_decrypt(content_key, envelope.nonce, envelope.ciphertext, associated_data)
        payload = decode_payload(unpad(padded))
    except CryptoError as exc:
        raise DecryptionError("decryption failed") from exc
    return OpenedEnvelope(
        kind=envelope.kind,
        context_id=envelope.context_id,
        item_id=envelope.item_id,
        sender=envelope.sender,
        references=envelope.references,
        payload=payload,
    )


def open_envelope(
    envelope: Envelope,
    *,
    reader: IdentityKeys,
    sender_bundle: KeyBundle,
    context_id: uuid.UUID,
    kinds: Collection[EnvelopeKind],
) -> OpenedEnvelope:
    """Verify and decrypt an envelope addressed to ``reader``.

    Args:
        envelope: as decoded from the server.
        reader: the recipient's keys for the key version the envelope names.
        sender_bundle: the sender's bundle for the envelope's sender key version, which
            the caller trusts (verified chain from a compared fingerprint).
        context_id: the conversation or client the caller is reading: an envelope
            signed for another context is refused (replay, re-targeting).
        kinds: the kinds the caller expects here.

    Raises:
        SignatureError: the envelope or bundle signature fails (any tampering).
        RecipientSetError: ``reader`` is not a recipient, or the sender entry is wrong.
        ContextError: authentic, but for another context or of an unexpected kind.
        DecryptionError: anything else, whatever the cause.
    """
    _check_readable(envelope, sender_bundle, context_id, kinds)
    return _decrypt(envelope, _content_key(envelope, reader))


def _rewrap_for(
    envelope: Envelope,
    *,
    custodian: IdentityKeys,
    sender_bundle: KeyBundle,
    context_id: uuid.UUID,
    kinds: Collection[EnvelopeKind],
    reader_bundle: KeyBundle,
    rng: Rng,
) -> bytes:
    """Private seam: :func:`rewrap_for` with an injectable RNG (test vectors only)."""
    _check_readable(envelope, sender_bundle, context_id, kinds)
    verify_bundle(reader_bundle)
    content_key = _content_key(envelope, custodian)
    return _wrap(content_key, reader_bundle, rng).wrapped_key


def rewrap_for(
    envelope: Envelope,
    *,
    custodian: IdentityKeys,
    sender_bundle: KeyBundle,
    context_id: uuid.UUID,
    kinds: Collection[EnvelopeKind],
    reader_bundle: KeyBundle,
) -> bytes:
    """Break-glass: wrap the content key of ``envelope`` for one more reader.

    Run by the second person of a dual approval, who holds the organization's
    custodian keys (a mandatory recipient of notes). The envelope is verified exactly
    as :func:`open_envelope` does (signature, sender key, context, kind) so that the
    server cannot make the custodian release the key of another client's note; the
    custodian's own wrapped key is opened and checked against the key commitment; the
    content key is then sealed (``crypto_box_seal``) to ``reader_bundle``'s
    encryption key. The result is 80 bytes, not signed and not bound to the envelope
    by itself: the reader binds it with :func:`open_envelope_with_wrap`, which checks
    the key commitment. The envelope is not re-issued and no recipient is added.

    Args:
        envelope: the note (or amendment) as decoded from the server.
        custodian: the custodian's keys for the key version the envelope names.
        sender_bundle: the author's bundle, trusted by the custodian.
        context_id: the client whose record the break-glass access was opened for.
        kinds: the kinds the custodian agrees to re-wrap (e.g. note, note amendment).
        reader_bundle: the emergency clinician's bundle. It must be one the custodian
            trusts (verified chain or compared safety number), not merely what the
            server served: a substituted bundle would receive the content key.
            Its self-signature is checked here.

    Raises:
        SignatureError: the envelope or a bundle signature fails.
        ContextError: authentic, but for another context or of an unexpected kind.
        RecipientSetError: ``custodian`` is not a recipient of the envelope.
        InvalidKeyError: the reader's encryption key is unusable.
        DecryptionError: the custodian's wrapped key does not open or does not match
            the key commitment.
    """
    return _rewrap_for(
        envelope,
        custodian=custodian,
        sender_bundle=sender_bundle,
        context_id=context_id,
        kinds=kinds,
        reader_bundle=reader_bundle,
        rng=system_rng,
    )


def open_envelope_with_wrap(
    envelope: Envelope,
    *,
    reader: IdentityKeys,
    wrapped_key: bytes,
    sender_bundle: KeyBundle,
    context_id: uuid.UUID,
    kinds: Collection[EnvelopeKind],
) -> OpenedEnvelope:
    """Verify and decrypt an envelope with a content key re-wrapped by the custodian.

    ``wrapped_key`` comes from :func:`rewrap_for` via the server, which stores it
    beside the envelope. A sealed box is not authenticated: anyone who knows the
    reader's public key (the server included) can make one, around any key. What makes
    the wrap safe to use is the **key commitment**: the envelope is verified exactly as
    :func:`open_envelope` does, so its ``key_commitment`` and ``nonce`` are the ones
    the author signed, and the unwrapped key must match that commitment before any
    decryption. Only the author's content key does (SHA-512 collision resistance), so
    a malicious custodian or server cannot hand the reader a key that decrypts this
    envelope to anything other than what every recipient reads, nor a key of another
    note (which fails the commitment), even with an author colluding to craft a
    ciphertext that opens under two keys (Poly1305 is not key-committing). A wrap
    does not prove who made it (any holder of the content key can), nor that the
    access was approved: that record is the audit trail's.

    Args:
        envelope: as decoded from the server.
        reader: the emergency reader's keys (the key version the wrap was made for).
        wrapped_key: the sealed box of the content key to the reader's encryption key.
        sender_bundle: the author's bundle, trusted by the reader.
        context_id: the client whose record the reader is opening.
        kinds: the kinds the caller expects here.

    Raises:
        SignatureError: the envelope or bundle signature fails (any tampering).
        RecipientSetError: the sender entry of the envelope is wrong.
        ContextError: authentic, but for another context or of an unexpected kind.
        DecryptionError: the wrap does not open with the reader's keys, does not match
            the key commitment, or the payload does not decrypt: one opaque error.
    """
    _check_readable(envelope, sender_bundle, context_id, kinds)
    return _decrypt(envelope, _unwrap(envelope, reader, wrapped_key))


def _share_envelope(
    envelope: Envelope, *, sender: IdentityKeys, add: Iterable[KeyBundle], rng: Rng
) -> Envelope:
    verify_envelope(envelope, sender.bundle)
    content_key = _content_key(envelope, sender)
    present = {recipient.ref: recipient for recipient in envelope.recipients}
    for bundle in add:
        verify_bundle(bundle)
        existing = present.get(bundle.ref)
        if existing is None:
            present[bundle.ref] = _wrap(content_key, bundle, rng)
        elif existing.public_key != bundle.encryption_key:
            raise RecipientSetError("recipient key differs from its bundle", unexpected=[bundle.ref])
    recipients = tuple(sorted(present.values(), key=lambda entry: entry.ref.sort_key()))
    return _signed(sender, msgspec.structs.replace(envelope, recipients=recipients))


def share_envelope(envelope: Envelope, *, sender: IdentityKeys, add: Iterable[KeyBundle]) -> Envelope:
    """Re-issue ``envelope`` with extra recipients (e.g. sharing a note), re-signed.

    Only the original sender can do this. Ciphertext, nonce, commitment and every
    existing wrapped key stay byte-identical; the server can check that with
    :func:`crypto.public.verify_recipient_addition`.

    Raises:
        SignatureError: ``envelope`` was not signed by ``sender`` (or was tampered).
        RecipientSetError: a bundle conflicts with an existing recipient's key.
        DecryptionError: the sender's own wrapped key does not open.
    """
    return _share_envelope(envelope, sender=sender, add=add, rng=system_rng)

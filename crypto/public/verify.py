"""Verification the server (and every client) runs without any secret key.

Every ``verify_*`` function returns ``None`` and raises a :class:`CryptoError` subclass
on failure. :func:`verified_recipients` is the one exception by name: it runs
:func:`verify_envelope` and only then returns the recipient key references.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterable, Sequence

import msgspec

from crypto.errors import EnvelopeFormatError, KeyChainError, RecipientSetError, SignatureError
from crypto.public._sodium import ed25519_verify_strict
from crypto.public.canonical import (
    bundle_signed_bytes,
    envelope_signed_bytes,
    rotation_signed_bytes,
)
from crypto.public.wire import Envelope, KeyBundle, KeyRef

__all__ = [
    "check_recipients",
    "verified_recipients",
    "verify_bundle",
    "verify_bundle_chain",
    "verify_envelope",
    "verify_recipient_addition",
    "verify_rotation",
]


@functools.lru_cache(maxsize=4096)
def _verify_self_signature(bundle: KeyBundle) -> None:
    # Sound to memoize: the key is the whole frozen bundle (every field, signature
    # included) and Ed25519 verification is a pure function of those bytes. Failures
    # raise, and lru_cache never caches an exception.
    ed25519_verify_strict(bundle.signing_key, bundle_signed_bytes(bundle), bundle.self_signature)


def verify_bundle(bundle: KeyBundle) -> None:
    """Verify a key bundle's self-signature (keys were validated when it was built).

    Raises:
        SignatureError: the self-signature does not verify or is malleable.
    """
    _verify_self_signature(bundle)


def verify_rotation(previous: KeyBundle, new: KeyBundle) -> None:
    """Verify that ``new`` is the direct, signed successor of ``previous``.

    Both bundles are verified; then: same account, version exactly one higher, not
    created earlier, and a rotation signature by ``previous``'s signing key over
    ``new`` (chain of custody).

    Raises:
        SignatureError: either self-signature fails.
        KeyChainError: any chain rule fails, including a missing rotation signature
            (a key reset) or one that does not verify.
    """
    verify_bundle(previous)
    verify_bundle(new)
    if new.account_id != previous.account_id:
        raise KeyChainError("bundles belong to different accounts")
    if new.key_version != previous.key_version + 1:
        raise KeyChainError("key version does not follow the previous one")
    if new.created_at < previous.created_at:
        raise KeyChainError("new bundle is older than the previous one")
    if new.rotation_signature is None:
        raise KeyChainError("new bundle is not signed by the previous key (key reset)")
    message = rotation_signed_bytes(
        previous_key_version=previous.key_version,
        previous_signing_key=previous.signing_key,
        bundle=new,
    )
    try:
        ed25519_verify_strict(previous.signing_key, message, new.rotation_signature)
    except SignatureError as exc:
        raise KeyChainError("rotation signature does not verify") from exc


def verify_bundle_chain(bundles: Sequence[KeyBundle]) -> None:
    """Verify a non-empty chain of bundles, oldest first, link by link.

    The first bundle is the caller's trust anchor (the one whose fingerprint was
    compared, or version 1); it need not be version 1.

    Raises:
        KeyChainError: the chain is empty or a link fails.
        SignatureError: a self-signature fails.
    """
    if not bundles:
        raise KeyChainError("empty key chain")
    verify_bundle(bundles[0])
    for previous, new in itertools.pairwise(bundles):
        verify_rotation(previous, new)


def verify_envelope(envelope: Envelope, sender_bundle: KeyBundle) -> None:
    """Verify an envelope's sender and signature against the sender's key bundle.

    Structure and sizes were checked when ``envelope`` was built or decoded. This adds:
    the bundle's self-signature; that the bundle is the key the envelope names as
    sender; the strict Ed25519 signature over the canonical signed bytes (which cover
    every recipient with its public and wrapped key, so no recipient can be added,
    removed or re-keyed); and that the sender's own recipient entry uses the bundle's
    encryption key.

    Raises:
        SignatureError: bundle or envelope signature fails, or the bundle is not the
            envelope's sender key.
        RecipientSetError: the sender's own entry names another encryption key.
    """
    verify_bundle(sender_bundle)
    if sender_bundle.ref != envelope.sender:
        raise SignatureError("envelope was not signed with this key bundle")
    ed25519_verify_strict(sender_bundle.signing_key, envelope_signed_bytes(envelope), envelope.signature)
    own = envelope.recipient(envelope.sender)
    if own is None or own.public_key != sender_bundle.encryption_key:
        raise RecipientSetError("sender entry does not use the sender's key", unexpected=[envelope.sender])


def verified_recipients(envelope: Envelope, sender_bundle: KeyBundle) -> frozenset[KeyRef]:
    """Run :func:`verify_envelope`, then return the recipients' (account, key version).

    The server compares the result with the current keys of everyone allowed to read
    (or calls :func:`check_recipients` with their bundles).
    """
    verify_envelope(envelope, sender_bundle)
    return frozenset(recipient.ref for recipient in envelope.recipients)


def check_recipients(envelope: Envelope, expected: Iterable[KeyBundle]) -> None:
    """Check that the envelope's recipients are exactly the ``expected`` bundles' keys.

    Each recipient must name a bundle of ``expected`` by (account id, key version) and
    carry that bundle's encryption key. Call after :func:`verify_envelope`.

    Raises:
        RecipientSetError: with ``missing`` (expected keys left out) and ``unexpected``
            (recipients not expected, or whose public key differs from the bundle's).
    """
    wanted = {bundle.ref: bundle.encryption_key for bundle in expected}
    present = {recipient.ref: recipient.public_key for recipient in envelope.recipients}
    missing = wanted.keys() - present.keys()
    unexpected = {ref for ref, key in present.items() if wanted.get(ref) != key}
    if missing or unexpected:
        raise RecipientSetError(
            "recipients differ from the expected keys", missing=missing, unexpected=unexpected
        )


def verify_recipient_addition(previous: Envelope, new: Envelope, sender_bundle: KeyBundle) -> None:
    """Verify that ``new`` only adds recipients to ``previous`` (sharing a note).

    Both envelopes must verify against ``sender_bundle``; every field but
    ``recipients`` and ``signature`` must be identical, and every recipient entry of
    ``previous`` must appear unchanged in ``new``.

    Raises:
        SignatureError: either envelope fails :func:`verify_envelope`.
        RecipientSetError: a recipient was removed or its entry changed
            (``missing`` names it), or nothing was added.
        EnvelopeFormatError: any other field differs.
    """
    verify_envelope(previous, sender_bundle)
    verify_envelope(new, sender_bundle)
    if msgspec.structs.replace(new, recipients=previous.recipients, signature=previous.signature) != previous:
        raise EnvelopeFormatError("re-issued envelope changes more than its recipients")
    kept = set(new.recipients)
    removed = [entry.ref for entry in previous.recipients if entry not in kept]
    if removed or len(new.recipients) == len(previous.recipients):
        raise RecipientSetError("re-issued envelope must only add recipients", missing=removed)

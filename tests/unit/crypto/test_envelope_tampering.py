"""Tamper tests: a flipped byte in any region, or a re-targeted envelope, is refused."""

from __future__ import annotations

import uuid

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crypto.client import generate_identity, open_envelope, share_envelope
from crypto.client.envelope import _commitment, _signed
from crypto.errors import (
    ContextError,
    CryptoError,
    DecryptionError,
    EnvelopeFormatError,
    KeyChainError,
    RecipientSetError,
    SignatureError,
)
from crypto.hazmat.primitives import aead_encrypt
from crypto.public import (
    Envelope,
    EnvelopeKind,
    KeyBundle,
    Recipient,
    bundle_signed_bytes,
    check_recipients,
    decode_envelope,
    encode,
    envelope_signed_bytes,
    verified_recipients,
    verify_envelope,
    verify_recipient_addition,
)
from crypto.public._sodium import ED25519_ORDER
from crypto.public.canonical import envelope_associated_data
from tests.unit.crypto.conftest import Cast


def _flip(data: bytes, index: int, bit: int = 0) -> bytes:
    raw = bytearray(data)
    raw[index] ^= 1 << bit
    return bytes(raw)


def _open(cast: Cast, envelope: Envelope, **overrides: object) -> object:
    arguments: dict[str, object] = {
        "reader": cast.bob,
        "sender_bundle": cast.alice.bundle,
        "context_id": cast.conversation,
        "kinds": {EnvelopeKind.MESSAGE},
    }
    arguments.update(overrides)
    return open_envelope(envelope, **arguments)  # type: ignore[arg-type]


def _with_recipient(envelope: Envelope, index: int, **changes: bytes) -> Envelope:
    recipients = list(envelope.recipients)
    recipients[index] = msgspec.structs.replace(recipients[index], **changes)
    return msgspec.structs.replace(envelope, recipients=tuple(recipients))


@pytest.mark.parametrize("field", ["nonce", "ciphertext", "key_commitment", "signature"], ids=str)
@pytest.mark.parametrize("where", [0, -1], ids=["first-byte", "last-byte"])
def test_flipped_byte_in_each_region_breaks_the_signature(cast: Cast, field: str, where: int) -> None:
    """Nonce, ciphertext, AEAD tag (last ciphertext byte), commitment, signature."""
    envelope = cast.seal()
    value: bytes = getattr(envelope, field)
    tampered = msgspec.structs.replace(envelope, **{field: _flip(value, where)})
    with pytest.raises(SignatureError):
        _open(cast, tampered)


@pytest.mark.parametrize("index", [0, 1, 2])
def test_flipped_byte_in_each_wrapped_key_breaks_the_signature(cast: Cast, index: int) -> None:
    envelope = cast.seal()
    entry = envelope.recipients[index]
    with pytest.raises(SignatureError):
        _open(cast, _with_recipient(envelope, index, wrapped_key=_flip(entry.wrapped_key, 40)))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("context_id", uuid.uuid4()),
        ("item_id", uuid.uuid4()),
        ("kind", EnvelopeKind.NOTE),
    ],
)
def test_associated_data_fields_are_signed(cast: Cast, field: str, value: object) -> None:
    """Swapping the context id (replay into another conversation), item id or kind."""
    tampered = msgspec.structs.replace(cast.seal(), **{field: value})
    with pytest.raises(SignatureError):
        verify_envelope(tampered, cast.alice.bundle)


def test_signature_domain_differs_per_kind(cast: Cast) -> None:
    """The same fields signed as a message are not valid as a note (domain separation)."""
    message = cast.seal()
    as_note = msgspec.structs.replace(message, kind=EnvelopeKind.NOTE)
    assert envelope_signed_bytes(as_note)[:40] != envelope_signed_bytes(message)[:40]


def test_version_change_is_refused_at_decode(cast: Cast) -> None:
    """Downgrade or upgrade of the envelope version: refused before any crypto."""
    for version in (0, 2):
        with pytest.raises(EnvelopeFormatError):
            msgspec.structs.replace(cast.seal(), version=version)


def test_wrong_sender_key_version_is_refused(cast: Cast) -> None:
    """Naming an older key version of the sender cannot pass with the current bundle."""
    envelope = cast.seal()
    older = msgspec.structs.replace(cast.alice.ref, key_version=cast.alice.ref.key_version + 1)
    with pytest.raises(RecipientSetError):
        msgspec.structs.replace(envelope, sender=older)
    with pytest.raises(SignatureError):
        verify_envelope(envelope, cast.bob.bundle)


def test_sender_entry_with_another_key_is_refused(cast: Cast) -> None:
    """Even if the sender signs it, its own entry must carry its bundle's key."""
    envelope = cast.seal()
    index = next(i for i, r in enumerate(envelope.recipients) if r.ref == cast.alice.ref)
    resigned = _signed(
        cast.alice,
        _with_recipient(envelope, index, public_key=cast.mallory.bundle.encryption_key),
    )
    with pytest.raises(RecipientSetError) as caught:
        verify_envelope(resigned, cast.alice.bundle)
    assert caught.value.unexpected == {cast.alice.ref}


def test_truncated_ciphertext_is_refused(cast: Cast) -> None:
    envelope = cast.seal()
    with pytest.raises(EnvelopeFormatError):
        msgspec.structs.replace(envelope, ciphertext=envelope.ciphertext[:-1])


def test_recipient_removed_or_added_by_the_server_breaks_the_signature(cast: Cast) -> None:
    """The signed bytes cover the recipient list (Albrecht et al. 2022: add a member)."""
    envelope = cast.seal()
    fewer = tuple(r for r in envelope.recipients if r.ref != cast.bob.ref)
    with pytest.raises(SignatureError):
        verify_envelope(msgspec.structs.replace(envelope, recipients=fewer), cast.alice.bundle)
    intruder = Recipient(
        account_id=cast.mallory.ref.account_id,
        key_version=1,
        public_key=cast.mallory.bundle.encryption_key,
        wrapped_key=envelope.recipients[0].wrapped_key,
    )
    more = tuple(sorted((*envelope.recipients, intruder), key=lambda r: r.ref.sort_key()))
    with pytest.raises(SignatureError):
        verify_envelope(msgspec.structs.replace(envelope, recipients=more), cast.alice.bundle)


def test_swapped_key_binding_breaks_the_signature(cast: Cast) -> None:
    """The server cannot bind bob's (account, version) to another public key."""
    envelope = cast.seal()
    index = next(i for i, r in enumerate(envelope.recipients) if r.ref == cast.bob.ref)
    swapped = _with_recipient(envelope, index, public_key=cast.mallory.bundle.encryption_key)
    with pytest.raises(SignatureError):
        verify_envelope(swapped, cast.alice.bundle)


def test_malleable_signature_is_refused(cast: Cast) -> None:
    """S + L verifies under lax Ed25519 implementations; strict verification refuses it."""
    envelope = cast.seal()
    s = int.from_bytes(envelope.signature[32:], "little") + ED25519_ORDER
    malleated = envelope.signature[:32] + s.to_bytes(32, "little")
    with pytest.raises(SignatureError):
        verify_envelope(msgspec.structs.replace(envelope, signature=malleated), cast.alice.bundle)


def test_replay_into_another_conversation_is_a_context_error(cast: Cast) -> None:
    """An authentic envelope shown in another conversation, or as another kind."""
    envelope = cast.seal()
    with pytest.raises(ContextError):
        _open(cast, envelope, context_id=uuid.uuid4())
    with pytest.raises(ContextError):
        _open(cast, envelope, kinds={EnvelopeKind.NOTE})


def test_reader_who_is_not_a_recipient_is_told_so(cast: Cast) -> None:
    envelope = cast.seal(to=(cast.bob.bundle,))
    with pytest.raises(RecipientSetError) as caught:
        _open(cast, envelope, reader=cast.carol)
    assert caught.value.missing == {cast.carol.ref}


def test_sender_signed_inconsistencies_fail_decryption(cast: Cast) -> None:
    """AD and key commitment catch what a (malicious) sender signs inconsistently."""
    envelope = cast.seal()
    other_item = _signed(cast.alice, msgspec.structs.replace(envelope, item_id=uuid.uuid4()))
    with pytest.raises(DecryptionError):
        _open(cast, other_item)
    bad_commitment = _signed(cast.alice, msgspec.structs.replace(envelope, key_commitment=bytes(32)))
    with pytest.raises(DecryptionError):
        _open(cast, bad_commitment)
    bob = next(i for i, r in enumerate(envelope.recipients) if r.ref == cast.bob.ref)
    carol = next(i for i, r in enumerate(envelope.recipients) if r.ref == cast.carol.ref)
    swapped_wrap = _signed(
        cast.alice,
        _with_recipient(envelope, bob, wrapped_key=envelope.recipients[carol].wrapped_key),
    )
    with pytest.raises(DecryptionError):
        _open(cast, swapped_wrap)


def test_unpadded_plaintext_is_a_decryption_error(cast: Cast) -> None:
    """A sender that skips the padding rule produces something recipients refuse."""
    envelope = cast.seal(to=(cast.bob.bundle,))
    key = cast.bob._unseal(envelope.recipient(cast.bob.ref).wrapped_key)  # type: ignore[union-attr]
    ad = envelope_associated_data(
        kind=envelope.kind,
        context_id=envelope.context_id,
        item_id=envelope.item_id,
        sender=envelope.sender,
        references=None,
    )
    bad = msgspec.structs.replace(
        envelope,
        ciphertext=aead_encrypt(key, envelope.nonce, b"\x01" * 256, ad),
        key_commitment=_commitment(key, envelope.nonce),
    )
    with pytest.raises(DecryptionError):
        _open(cast, _signed(cast.alice, bad))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_single_bit_flip_in_the_wire_json_is_refused(cast: Cast, data: st.DataObject) -> None:
    """C-03: flip one random bit anywhere in the JSON; the result never opens."""
    wire = bytearray(encode(_SHARED.setdefault("envelope", cast.seal())))
    index = data.draw(st.integers(0, len(wire) - 1))
    wire[index] ^= 1 << data.draw(st.integers(0, 7))
    try:
        envelope = decode_envelope(bytes(wire))
        _open(cast, envelope)
    except CryptoError:
        return
    # A flip that decodes to the very same envelope (e.g. base64 padding bits) is benign.
    assert envelope == _SHARED["envelope"]


_SHARED: dict[str, Envelope] = {}


def test_check_recipients_reports_missing_and_unexpected_keys(cast: Cast) -> None:
    """Server-side membership check: names stale or missing keys (for a 409)."""
    envelope = cast.seal()
    check_recipients(envelope, [cast.alice.bundle, cast.bob.bundle, cast.carol.bundle])
    with pytest.raises(RecipientSetError) as caught:
        check_recipients(envelope, [cast.alice.bundle, cast.bob.bundle, cast.mallory.bundle])
    assert caught.value.missing == {cast.mallory.ref}
    assert caught.value.unexpected == {cast.carol.ref}
    impostor = msgspec.structs.replace(cast.carol.bundle, encryption_key=cast.mallory.bundle.encryption_key)
    with pytest.raises(RecipientSetError) as caught:
        check_recipients(envelope, [cast.alice.bundle, cast.bob.bundle, impostor])
    assert caught.value.unexpected == {cast.carol.ref}
    assert not caught.value.missing


def test_verified_recipients_verifies_before_answering(cast: Cast) -> None:
    envelope = cast.seal()
    assert verified_recipients(envelope, cast.alice.bundle) == {
        cast.alice.ref,
        cast.bob.ref,
        cast.carol.ref,
    }
    forged = msgspec.structs.replace(envelope, signature=bytes(64))
    with pytest.raises(SignatureError):
        verified_recipients(forged, cast.alice.bundle)


def test_seal_refuses_conflicting_bundles_for_one_key_version(cast: Cast) -> None:
    """Two different bundles claiming bob's (account, version): refuse to encrypt."""
    twin = generate_identity(cast.bob.ref.account_id)
    with pytest.raises(KeyChainError):
        cast.seal(to=(cast.bob.bundle, twin.bundle))


def test_seal_refuses_a_recipient_bundle_with_a_bad_signature(cast: Cast) -> None:
    """C-09: a member inserted without a valid signature is not encrypted to."""
    forged = msgspec.structs.replace(cast.bob.bundle, self_signature=bytes(64))
    with pytest.raises(SignatureError):
        cast.seal(to=(forged,))


def test_share_refuses_a_changed_key_and_foreign_envelopes(cast: Cast) -> None:
    envelope = cast.seal()
    impostor = msgspec.structs.replace(cast.bob.bundle, encryption_key=cast.mallory.bundle.encryption_key)
    resigned_impostor = _resign_bundle(cast, impostor)
    with pytest.raises(RecipientSetError):
        share_envelope(envelope, sender=cast.alice, add=[resigned_impostor])
    with pytest.raises(SignatureError):
        share_envelope(envelope, sender=cast.bob, add=[cast.mallory.bundle])


def _resign_bundle(cast: Cast, bundle: KeyBundle) -> KeyBundle:
    """Bob re-signs a bundle with mallory's encryption key but his signing key."""
    return msgspec.structs.replace(bundle, self_signature=cast.bob._sign(bundle_signed_bytes(bundle)))


def test_recipient_addition_check_refuses_other_changes(cast: Cast) -> None:
    envelope = cast.seal(to=(cast.bob.bundle,))
    shared = share_envelope(envelope, sender=cast.alice, add=[cast.carol.bundle])
    with pytest.raises(RecipientSetError):
        verify_recipient_addition(envelope, envelope, cast.alice.bundle)
    with pytest.raises(RecipientSetError):
        verify_recipient_addition(shared, envelope, cast.alice.bundle)
    changed = _signed(cast.alice, msgspec.structs.replace(shared, item_id=uuid.uuid4()))
    with pytest.raises(EnvelopeFormatError):
        verify_recipient_addition(envelope, changed, cast.alice.bundle)

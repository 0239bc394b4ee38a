"""Hypothesis round trips: what is sealed opens to exactly the same payload, padded."""

from __future__ import annotations

import uuid

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crypto.client import InnerPayload, open_envelope, seal_envelope, share_envelope
from crypto.public import (
    EnvelopeKind,
    decode_envelope,
    encode,
    limits,
    verified_recipients,
    verify_recipient_addition,
)
from tests.unit.crypto.conftest import Cast, text

FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FAST
@given(body=st.binary(max_size=3000), content_type=st.text(max_size=40))
def test_seal_then_open_returns_the_payload(cast: Cast, body: bytes, content_type: str) -> None:
    payload = InnerPayload(version=1, content_type=content_type, body=body)
    envelope = seal_envelope(
        cast.alice,
        kind=EnvelopeKind.MESSAGE,
        context_id=cast.conversation,
        item_id=uuid.uuid4(),
        payload=payload,
        recipients=[cast.bob.bundle],
    )
    wire = decode_envelope(encode(envelope))
    assert wire == envelope
    for reader in (cast.alice, cast.bob):
        opened = open_envelope(
            wire,
            reader=reader,
            sender_bundle=cast.alice.bundle,
            context_id=cast.conversation,
            kinds={EnvelopeKind.MESSAGE},
        )
        assert opened.payload == payload
        assert opened.sender == cast.alice.ref
    assert len(envelope.ciphertext) - 16 in limits.valid_padded_sizes()


@FAST
@given(kind=st.sampled_from(list(EnvelopeKind)))
def test_every_kind_round_trips_with_its_reference_rule(cast: Cast, kind: EnvelopeKind) -> None:
    references = uuid.uuid4() if kind.requires_reference else None
    envelope = cast.seal(b"x", kind=kind, references=references)
    opened = open_envelope(
        envelope,
        reader=cast.carol,
        sender_bundle=cast.alice.bundle,
        context_id=cast.conversation,
        kinds={kind},
    )
    assert opened.kind is kind
    assert opened.references == references


def test_ciphertext_length_depends_only_on_the_bucket(cast: Cast) -> None:
    """Padding: 1-byte and 100-byte messages are indistinguishable by length."""
    short, longer = cast.seal(b"a"), cast.seal(b"a" * 100)
    assert len(short.ciphertext) == len(longer.ciphertext) == 256 + 16


def test_sender_is_always_a_recipient(cast: Cast) -> None:
    """The sender can read its own sent items without listing itself."""
    envelope = cast.seal(to=(cast.bob.bundle,))
    assert verified_recipients(envelope, cast.alice.bundle) == {cast.alice.ref, cast.bob.ref}


def test_duplicate_identical_recipient_bundles_are_merged(cast: Cast) -> None:
    envelope = cast.seal(to=(cast.bob.bundle, cast.bob.bundle, cast.alice.bundle))
    assert len(envelope.recipients) == 2


def test_share_adds_recipients_and_keeps_everything_else(cast: Cast) -> None:
    """Sharing a note adds wrapped keys, nothing else, and the server can check that."""
    note = cast.seal(b"note", to=(cast.bob.bundle,), kind=EnvelopeKind.NOTE)
    shared = share_envelope(note, sender=cast.alice, add=[cast.carol.bundle, cast.bob.bundle])
    verify_recipient_addition(note, shared, cast.alice.bundle)
    assert set(note.recipients) < set(shared.recipients)
    assert (shared.ciphertext, shared.nonce, shared.key_commitment) == (
        note.ciphertext,
        note.nonce,
        note.key_commitment,
    )
    opened = open_envelope(
        shared,
        reader=cast.carol,
        sender_bundle=cast.alice.bundle,
        context_id=cast.conversation,
        kinds={EnvelopeKind.NOTE},
    )
    assert opened.payload == text(b"note")


def test_opened_envelope_is_a_plain_struct(cast: Cast) -> None:
    opened = open_envelope(
        cast.seal(),
        reader=cast.bob,
        sender_bundle=cast.alice.bundle,
        context_id=cast.conversation,
        kinds={EnvelopeKind.MESSAGE},
    )
    assert msgspec.structs.asdict(opened)["payload"] == text(b"hello")

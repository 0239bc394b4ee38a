"""Break-glass: the custodian re-wraps a note's content key; the reader checks the commitment.

The wrap is an unsigned sealed box that the server stores and can replace, so every test
here is about what the *reader* refuses (and what the custodian refuses to wrap).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crypto.client import (
    IdentityKeys,
    InnerPayload,
    generate_identity,
    open_envelope,
    open_envelope_with_wrap,
    rewrap_for,
    rotate_identity,
    seal_envelope,
)
from crypto.client.envelope import _commitment, _signed
from crypto.client.payload import encode_payload
from crypto.errors import ContextError, DecryptionError, RecipientSetError, SignatureError
from crypto.hazmat.padding import pad
from crypto.hazmat.primitives import aead_encrypt, seal
from crypto.public import Envelope, EnvelopeKind, KeyBundle, decode_envelope, encode
from crypto.public.canonical import envelope_associated_data
from tests.unit.crypto.conftest import text

NOTES = frozenset({EnvelopeKind.NOTE, EnvelopeKind.NOTE_AMENDMENT})
FAST = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@dataclass(frozen=True)
class Practice:
    author: IdentityKeys  # the clinician who wrote the note
    client: IdentityKeys  # whose record it is
    custodian: IdentityKeys  # account id = the organization's id, keys held offline
    emergency: IdentityKeys  # the clinician who opened break-glass access
    mallory: IdentityKeys
    client_id: uuid.UUID

    def note(
        self,
        body: bytes = b"Session 4: progress on sleep hygiene.",
        *,
        kind: EnvelopeKind = EnvelopeKind.NOTE,
        references: uuid.UUID | None = None,
        to: tuple[KeyBundle, ...] | None = None,
    ) -> Envelope:
        return seal_envelope(
            self.author,
            kind=kind,
            context_id=self.client_id,
            item_id=uuid.uuid4(),
            payload=text(body),
            recipients=to if to is not None else (self.client.bundle, self.custodian.bundle),
            references=references,
        )

    def rewrap(self, note: Envelope, *, for_: KeyBundle | None = None) -> bytes:
        return rewrap_for(
            note,
            custodian=self.custodian,
            sender_bundle=self.author.bundle,
            context_id=self.client_id,
            kinds=NOTES,
            reader_bundle=for_ or self.emergency.bundle,
        )

    def open(self, note: Envelope, wrap: bytes, *, reader: IdentityKeys | None = None) -> InnerPayload:
        opened = open_envelope_with_wrap(
            note,
            reader=reader or self.emergency,
            wrapped_key=wrap,
            sender_bundle=self.author.bundle,
            context_id=self.client_id,
            kinds=NOTES,
        )
        return opened.payload


@pytest.fixture(scope="module")
def practice() -> Practice:
    client_id, organization_id = uuid.uuid4(), uuid.uuid4()
    return Practice(
        author=generate_identity(uuid.uuid4()),
        client=generate_identity(client_id),
        custodian=generate_identity(organization_id),  # the organization's own key bundle
        emergency=generate_identity(uuid.uuid4()),
        mallory=generate_identity(uuid.uuid4()),
        client_id=client_id,
    )


def _flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]


# ---- round trips ----


def test_custodian_rewraps_a_note_and_the_emergency_clinician_reads_it(practice: Practice) -> None:
    note = decode_envelope(encode(practice.note()))
    with pytest.raises(RecipientSetError):  # break-glass alone opens nothing
        open_envelope(
            note,
            reader=practice.emergency,
            sender_bundle=practice.author.bundle,
            context_id=practice.client_id,
            kinds=NOTES,
        )
    wrap = practice.rewrap(note)
    assert len(wrap) == 80
    opened = open_envelope_with_wrap(
        note,
        reader=practice.emergency,
        wrapped_key=wrap,
        sender_bundle=practice.author.bundle,
        context_id=practice.client_id,
        kinds=NOTES,
    )
    expected = open_envelope(
        note,
        reader=practice.client,
        sender_bundle=practice.author.bundle,
        context_id=practice.client_id,
        kinds=NOTES,
    )
    assert opened == expected  # the same authenticated fields and payload as any recipient
    assert opened.sender == practice.author.ref


@FAST
@given(body=st.binary(max_size=2000), amend=st.booleans())
def test_rewrap_round_trip_for_notes_and_amendments(practice: Practice, body: bytes, amend: bool) -> None:
    kind = EnvelopeKind.NOTE_AMENDMENT if amend else EnvelopeKind.NOTE
    note = practice.note(body, kind=kind, references=uuid.uuid4() if amend else None)
    wrap = practice.rewrap(note)
    assert practice.open(note, wrap).body == body


def test_each_rewrap_is_a_fresh_sealed_box(practice: Practice) -> None:
    note = practice.note()
    first, second = practice.rewrap(note), practice.rewrap(note)
    assert first != second
    assert practice.open(note, first) == practice.open(note, second)


# ---- what the reader refuses ----


@pytest.mark.parametrize(
    "index",
    [
        pytest.param(0, id="ephemeral-key-first"),
        pytest.param(31, id="ephemeral-key-last"),
        pytest.param(32, id="tag-first"),
        pytest.param(47, id="tag-last"),
        pytest.param(48, id="encrypted-key-first"),
        pytest.param(79, id="encrypted-key-last"),
    ],
)
def test_flipped_byte_of_the_wrap_is_refused(practice: Practice, index: int) -> None:
    """Any bit of the sealed box (ephemeral key, Poly1305 tag, encrypted key) is covered."""
    note = practice.note()
    wrap = practice.rewrap(note)
    with pytest.raises(DecryptionError):
        practice.open(note, _flip(wrap, index))


@pytest.mark.parametrize("wrap", [b"", bytes(47), bytes(79), bytes(81)], ids=len)
def test_wrap_of_the_wrong_length_is_refused(practice: Practice, wrap: bytes) -> None:
    with pytest.raises(DecryptionError):
        practice.open(practice.note(), wrap)


def test_truncated_and_extended_wraps_are_refused(practice: Practice) -> None:
    note = practice.note()
    wrap = practice.rewrap(note)
    for bad in (wrap[:-1], wrap + b"\x00"):
        with pytest.raises(DecryptionError):
            practice.open(note, bad)


def test_wrap_from_another_note_fails_the_key_commitment(practice: Practice) -> None:
    """Attack: the server serves the (genuine) wrap of note B beside note A."""
    note_a, note_b = practice.note(b"A"), practice.note(b"B")
    wrap_b = practice.rewrap(note_b)
    assert practice.open(note_b, wrap_b).body == b"B"
    with pytest.raises(DecryptionError):
        practice.open(note_a, wrap_b)


def test_server_made_wrap_of_a_random_key_is_refused(practice: Practice) -> None:
    """Attack: the server seals a key of its choice to the reader's public key."""
    wrap = seal(practice.emergency.bundle.encryption_key, bytes(range(32)))
    with pytest.raises(DecryptionError):
        practice.open(practice.note(), wrap)


def test_wrap_of_a_key_longer_than_a_content_key_is_refused(practice: Practice) -> None:
    wrap = seal(practice.emergency.bundle.encryption_key, bytes(33))
    with pytest.raises(DecryptionError):
        practice.open(practice.note(), wrap)


def test_key_that_decrypts_but_misses_the_commitment_is_refused(practice: Practice) -> None:
    """Salamander defence: a key is refused on the commitment even when the AEAD accepts it.

    A colluding author signs a note whose commitment names key K2 while the ciphertext
    is under K1, then the custodian hands out K1. The AEAD alone would accept K1; the
    reader must not, or two readers could see two different notes behind one envelope.
    """
    author, k1, k2 = practice.author, bytes([1]) * 32, bytes([2]) * 32
    honest = practice.note(b"real note")
    ad = envelope_associated_data(
        kind=honest.kind,
        context_id=honest.context_id,
        item_id=honest.item_id,
        sender=honest.sender,
        references=honest.references,
    )
    ciphertext = aead_encrypt(k1, honest.nonce, pad(encode_payload(text(b"other note"))), ad)
    forged = _signed(
        author,
        msgspec.structs.replace(honest, ciphertext=ciphertext, key_commitment=_commitment(k2, honest.nonce)),
    )
    wrap = seal(practice.emergency.bundle.encryption_key, k1)
    with pytest.raises(DecryptionError):
        practice.open(forged, wrap)
    # The same wrap against a commitment to K1 opens: the commitment is what refused it.
    committed = _signed(author, msgspec.structs.replace(forged, key_commitment=_commitment(k1, honest.nonce)))
    assert practice.open(committed, wrap).body == b"other note"


def test_wrap_for_one_reader_does_not_open_for_another(practice: Practice) -> None:
    note = practice.note()
    wrap = practice.rewrap(note)
    for other in (practice.mallory, practice.client, practice.custodian):
        with pytest.raises(DecryptionError):
            practice.open(note, wrap, reader=other)


def test_wrap_for_an_old_key_version_does_not_open_with_the_new_one(practice: Practice) -> None:
    note = practice.note()
    wrap = practice.rewrap(note)
    with pytest.raises(DecryptionError):
        practice.open(note, wrap, reader=rotate_identity(practice.emergency))


def test_reader_refuses_a_tampered_note_before_using_the_wrap(practice: Practice) -> None:
    note = practice.note()
    wrap = practice.rewrap(note)
    tampered = msgspec.structs.replace(note, ciphertext=_flip(note.ciphertext, 3))
    with pytest.raises(SignatureError):
        practice.open(tampered, wrap)
    with pytest.raises(SignatureError):  # another author's bundle
        open_envelope_with_wrap(
            note,
            reader=practice.emergency,
            wrapped_key=wrap,
            sender_bundle=practice.mallory.bundle,
            context_id=practice.client_id,
            kinds=NOTES,
        )


@pytest.mark.parametrize("case", ["other client", "unexpected kind"])
def test_reader_refuses_a_note_in_the_wrong_context_or_kind(practice: Practice, case: str) -> None:
    note = practice.note()
    wrap = practice.rewrap(note)
    context, kinds = practice.client_id, NOTES
    if case == "other client":
        context = uuid.uuid4()
    else:
        kinds = frozenset({EnvelopeKind.MESSAGE})
    with pytest.raises(ContextError):
        open_envelope_with_wrap(
            note,
            reader=practice.emergency,
            wrapped_key=wrap,
            sender_bundle=practice.author.bundle,
            context_id=context,
            kinds=kinds,
        )


# ---- what the custodian refuses to wrap ----


def test_custodian_not_a_recipient_cannot_rewrap(practice: Practice) -> None:
    note = practice.note(to=(practice.client.bundle,))
    with pytest.raises(RecipientSetError) as caught:
        practice.rewrap(note)
    assert caught.value.missing == {practice.custodian.ref}


def test_rotated_custodian_key_is_not_the_recipient_of_older_notes(practice: Practice) -> None:
    note = practice.note()
    with pytest.raises(RecipientSetError):
        rewrap_for(
            note,
            custodian=rotate_identity(practice.custodian),
            sender_bundle=practice.author.bundle,
            context_id=practice.client_id,
            kinds=NOTES,
            reader_bundle=practice.emergency.bundle,
        )


@pytest.mark.parametrize("case", ["other client", "unexpected kind"])
def test_custodian_refuses_a_note_of_another_context_or_kind(practice: Practice, case: str) -> None:
    """Attack: the server presents another client's note under this break-glass request."""
    note = practice.note()
    context, kinds = practice.client_id, NOTES
    if case == "other client":
        context = uuid.uuid4()
    else:
        kinds = frozenset({EnvelopeKind.MESSAGE})
    with pytest.raises(ContextError):
        rewrap_for(
            note,
            custodian=practice.custodian,
            sender_bundle=practice.author.bundle,
            context_id=context,
            kinds=kinds,
            reader_bundle=practice.emergency.bundle,
        )


def test_custodian_refuses_a_tampered_note(practice: Practice) -> None:
    note = practice.note()
    tampered = msgspec.structs.replace(note, key_commitment=_flip(note.key_commitment, 0))
    with pytest.raises(SignatureError):
        practice.rewrap(tampered)


def test_custodian_refuses_a_reader_bundle_with_a_bad_self_signature(practice: Practice) -> None:
    """A bundle whose self-signature fails (e.g. a swapped encryption key) gets no key."""
    forged = msgspec.structs.replace(
        practice.emergency.bundle, encryption_key=practice.mallory.bundle.encryption_key
    )
    with pytest.raises(SignatureError):
        practice.rewrap(practice.note(), for_=forged)


def test_custodian_refuses_when_its_wrapped_key_misses_the_commitment(practice: Practice) -> None:
    """An author-signed note whose commitment does not match its content key is not re-wrapped."""
    note = practice.note()
    bad = _signed(practice.author, msgspec.structs.replace(note, key_commitment=bytes(32)))
    with pytest.raises(DecryptionError):
        practice.rewrap(bad)


def test_custodian_refuses_when_its_wrapped_key_does_not_open(practice: Practice) -> None:
    """The author (signed) wrapped garbage for the custodian: one opaque DecryptionError."""
    note = practice.note()
    entries = tuple(
        msgspec.structs.replace(entry, wrapped_key=_flip(entry.wrapped_key, 60))
        if entry.ref == practice.custodian.ref
        else entry
        for entry in note.recipients
    )
    bad = _signed(practice.author, msgspec.structs.replace(note, recipients=entries))
    with pytest.raises(DecryptionError):
        practice.rewrap(bad)

"""C-05: random nonces and content keys never repeat (10^4 draws; 192-bit nonces)."""

from __future__ import annotations

import io
import uuid

from crypto.client import encrypt_attachment, seal_envelope
from crypto.hazmat.rng import system_rng
from crypto.public import EnvelopeKind
from tests.unit.crypto.conftest import Cast, text


def test_ten_thousand_rng_nonces_are_distinct() -> None:
    nonces = {system_rng(24) for _ in range(10_000)}
    assert len(nonces) == 10_000


def test_envelopes_never_reuse_a_nonce_or_wrapped_key(cast: Cast) -> None:
    """Every seal draws a fresh nonce, content key and ephemeral key (500 envelopes)."""
    nonces: set[bytes] = set()
    wrapped: set[bytes] = set()
    commitments: set[bytes] = set()
    for _ in range(500):
        envelope = seal_envelope(
            cast.alice,
            kind=EnvelopeKind.MESSAGE,
            context_id=cast.conversation,
            item_id=uuid.uuid4(),
            payload=text(b"same plaintext"),
            recipients=[cast.bob.bundle],
        )
        nonces.add(envelope.nonce)
        commitments.add(envelope.key_commitment)
        wrapped.update(recipient.wrapped_key[:32] for recipient in envelope.recipients)
    assert len(nonces) == 500
    assert len(commitments) == 500
    assert len(wrapped) == 1000


def test_attachment_headers_and_keys_are_fresh() -> None:
    records = [
        encrypt_attachment([b"x"], io.BytesIO(), attachment_id=uuid.uuid4(), media_type="a/b")
        for _ in range(200)
    ]
    assert len({record.key for record in records}) == 200
    assert len({record.ciphertext_hash for record in records}) == 200

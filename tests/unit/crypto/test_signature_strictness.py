"""Strict Ed25519 (C-13): malleable, non-canonical or mis-sized signatures are refused."""

from __future__ import annotations

import uuid

import pytest

from crypto.client import generate_identity
from crypto.errors import SignatureError
from crypto.hazmat.primitives import ed25519_keypair, ed25519_sign
from crypto.public._sodium import ED25519_ORDER, ed25519_verify_strict

SEED = bytes(range(32))
PUBLIC, SECRET = ed25519_keypair(SEED)
MESSAGE = b"confide strictness"
SIGNATURE = ed25519_sign(SECRET, MESSAGE)


def test_valid_signature_verifies() -> None:
    ed25519_verify_strict(PUBLIC, MESSAGE, SIGNATURE)


def test_s_plus_l_is_refused() -> None:
    """The classic malleability: (R, S + L) satisfies the verification equation."""
    s = int.from_bytes(SIGNATURE[32:], "little")
    with pytest.raises(SignatureError, match="not canonical"):
        ed25519_verify_strict(PUBLIC, MESSAGE, SIGNATURE[:32] + (s + ED25519_ORDER).to_bytes(32, "little"))


def test_s_equal_to_l_is_refused() -> None:
    with pytest.raises(SignatureError):
        ed25519_verify_strict(PUBLIC, MESSAGE, SIGNATURE[:32] + ED25519_ORDER.to_bytes(32, "little"))


def test_small_order_r_is_refused() -> None:
    """R = neutral element with S = 0 verifies for a small-order key in lax libraries."""
    identity = (1).to_bytes(32, "little")
    with pytest.raises(SignatureError):
        ed25519_verify_strict(PUBLIC, MESSAGE, identity + bytes(32))


@pytest.mark.parametrize("size", [0, 63, 65])
def test_wrong_length_is_refused(size: int) -> None:
    with pytest.raises(SignatureError, match="length"):
        ed25519_verify_strict(PUBLIC, MESSAGE, bytes(size))


def test_other_message_or_key_is_refused() -> None:
    with pytest.raises(SignatureError):
        ed25519_verify_strict(PUBLIC, MESSAGE + b"!", SIGNATURE)
    other = generate_identity(uuid.uuid4()).bundle.signing_key
    with pytest.raises(SignatureError):
        ed25519_verify_strict(other, MESSAGE, SIGNATURE)


def test_signing_is_deterministic() -> None:
    assert ed25519_sign(SECRET, MESSAGE) == SIGNATURE

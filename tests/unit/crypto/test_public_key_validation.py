"""Adversarial public keys (C-06): refused on every load, before any primitive sees them."""

from __future__ import annotations

import uuid

import msgspec
import nacl.bindings
import nacl.public
import pytest

from crypto.client import generate_identity
from crypto.errors import InvalidKeyError
from crypto.hazmat.primitives import seal
from crypto.public import validate_ed25519_public_key, validate_x25519_public_key
from crypto.public.keys import X25519_SMALL_ORDER_POINTS

P = 2**255 - 19
SMALL_ORDER = sorted(X25519_SMALL_ORDER_POINTS)
HIGH_BIT = [bytes(point[:31]) + bytes([point[31] | 0x80]) for point in SMALL_ORDER]


@pytest.mark.parametrize("point", SMALL_ORDER + HIGH_BIT, ids=lambda p: p.hex()[:8] + p.hex()[-2:])
def test_small_order_and_zero_x25519_points_are_refused(point: bytes) -> None:
    """All-zero, u=1, the order-8 points, p-1, and their non-canonical encodings."""
    with pytest.raises(InvalidKeyError):
        validate_x25519_public_key(point)


def test_the_blocklist_really_is_small_order() -> None:
    """Every listed point makes libsodium's scalar multiplication fail (all-zero output)."""
    secret = nacl.public.PrivateKey.generate().encode()
    for point in SMALL_ORDER:
        with pytest.raises(nacl.exceptions.RuntimeError):
            nacl.bindings.crypto_scalarmult(secret, point)


def test_pynacl_accepts_a_zero_key_at_construction_but_we_do_not() -> None:
    """Why we validate: PyNaCl's PublicKey() takes the all-zero point without complaint."""
    nacl.public.PublicKey(bytes(32))
    with pytest.raises(InvalidKeyError):
        seal(bytes(32), b"content key")


@pytest.mark.parametrize("key", [b"", bytes(31), bytes(33)], ids=["empty", "31", "33"])
def test_wrong_length_keys_are_refused(key: bytes) -> None:
    with pytest.raises(InvalidKeyError):
        validate_x25519_public_key(key)
    with pytest.raises(InvalidKeyError):
        validate_ed25519_public_key(key)


def test_non_canonical_x25519_encoding_is_refused() -> None:
    with pytest.raises(InvalidKeyError):
        validate_x25519_public_key((P + 5).to_bytes(32, "little"))


ED_SMALL_ORDER = [
    (1).to_bytes(32, "little"),  # neutral element
    (P - 1).to_bytes(32, "little"),  # order 2
    bytes(32),  # order 4
    bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"),  # order 8
]
ED_NON_CANONICAL = [
    (P + 1).to_bytes(32, "little"),  # y = 1 encoded as p + 1
    (P).to_bytes(32, "little"),  # y = 0 encoded as p
    bytes([0xFF] * 31 + [0x7F]),  # y = 2^255 - 1 >= p
]


@pytest.mark.parametrize("key", ED_SMALL_ORDER + ED_NON_CANONICAL, ids=lambda k: k.hex()[:10])
def test_small_order_and_non_canonical_ed25519_keys_are_refused(key: bytes) -> None:
    with pytest.raises(InvalidKeyError):
        validate_ed25519_public_key(key)


def test_bundle_with_bad_keys_cannot_be_built() -> None:
    """Validation runs in __post_init__: constructing or decoding, it is always applied."""
    bundle = generate_identity(uuid.uuid4()).bundle
    with pytest.raises(InvalidKeyError):
        msgspec.structs.replace(bundle, encryption_key=bytes(32))
    with pytest.raises(InvalidKeyError):
        msgspec.structs.replace(bundle, signing_key=ED_SMALL_ORDER[0])


def test_generated_keys_pass_validation() -> None:
    bundle = generate_identity(uuid.uuid4()).bundle
    validate_x25519_public_key(bundle.encryption_key)
    validate_ed25519_public_key(bundle.signing_key)

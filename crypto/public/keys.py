"""Validation of public keys, applied every time a key is loaded.

PyNaCl accepts the all-zero and other small-order X25519 points at construction and
only fails later, inside ``Box`` or ``SealedBox`` (with ``RuntimeError``); it likewise
accepts non-canonical Ed25519 keys. Every wire object of :mod:`crypto.public.wire` runs
these checks in ``__post_init__``, so an invalid key cannot reach a primitive.
"""

from __future__ import annotations

from crypto.errors import InvalidKeyError
from crypto.public._sodium import ed25519_is_valid_point

__all__ = [
    "X25519_SMALL_ORDER_POINTS",
    "validate_ed25519_public_key",
    "validate_x25519_public_key",
]

_P = 2**255 - 19

#: u-coordinates of the points of order 1, 2, 4 and 8 on Curve25519 and its twist, as
#: 32-byte little-endian encodings, plus the non-canonical encodings p and p + 1 of 0
#: and 1. Source: libsodium ``crypto_scalarmult/curve25519/ref10/x25519_ref10.c``
#: (``has_small_order``), after Bernstein, "Curve25519" (2006), section 3 and the
#: "public keys to reject" list on cr.yp.to/ecdh.html.
X25519_SMALL_ORDER_POINTS: frozenset[bytes] = frozenset(
    u.to_bytes(32, "little")
    for u in (
        0,
        1,
        325606250916557431795983626356110631294008115727848805560023387167927233504,
        39382357235489614581723060781553021112529911719440698176882885853963445705823,
        _P - 1,
        _P,
        _P + 1,
    )
)


def validate_x25519_public_key(key: bytes) -> None:
    """Raise :class:`InvalidKeyError` unless ``key`` is a usable X25519 public key.

    Refused: a length other than 32, bit 255 set or u >= p (non-canonical encodings,
    which libsodium would silently reduce), and the small-order points listed in
    :data:`X25519_SMALL_ORDER_POINTS` (the all-zero key among them).
    """
    if len(key) != 32:
        raise InvalidKeyError("X25519 public key must be 32 bytes")
    if int.from_bytes(key, "little") >= _P:
        raise InvalidKeyError("X25519 public key is not canonically encoded")
    if key in X25519_SMALL_ORDER_POINTS:
        raise InvalidKeyError("X25519 public key has small order")


def validate_ed25519_public_key(key: bytes) -> None:
    """Raise :class:`InvalidKeyError` unless ``key`` is a usable Ed25519 public key.

    libsodium's ``crypto_core_ed25519_is_valid_point`` checks that the point is on the
    curve, canonically encoded, in the prime-order subgroup and not of small order.
    """
    if len(key) != 32:
        raise InvalidKeyError("Ed25519 public key must be 32 bytes")
    if not ed25519_is_valid_point(key):
        raise InvalidKeyError("Ed25519 public key is invalid, non-canonical or small order")

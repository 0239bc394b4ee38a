"""Typed wrappers over the few libsodium calls that need no secret key.

PyNaCl is untyped; these helpers give the rest of :mod:`crypto.public` typed, narrow
entry points and translate ``nacl.exceptions`` at this one boundary.
"""

from __future__ import annotations

import nacl.bindings
import nacl.exceptions
from nacl.bindings.crypto_generichash import Blake2State

from crypto.errors import SignatureError

__all__ = [
    "ED25519_ORDER",
    "Blake2bStream",
    "blake2b",
    "constant_time_equal",
    "ed25519_is_valid_point",
    "ed25519_verify_strict",
    "sha256",
    "sha512",
]

#: The order L of the Ed25519 prime-order subgroup (RFC 8032, section 5.1).
ED25519_ORDER = 2**252 + 27742317777372353535851937790883648493


def blake2b(data: bytes, *, size: int = 32, key: bytes = b"") -> bytes:
    """Return the BLAKE2b digest of ``data`` (libsodium ``crypto_generichash``)."""
    digest: bytes = nacl.bindings.crypto_generichash_blake2b_salt_personal(data, digest_size=size, key=key)
    return digest


class Blake2bStream:
    """Incremental BLAKE2b-256 (libsodium ``crypto_generichash`` init/update/final).

    Equal to :func:`blake2b` over the concatenation of everything passed to
    :meth:`update`, without holding it: an export archive is hashed line by line.
    """

    __slots__ = ("_state",)

    def __init__(self) -> None:
        self._state: Blake2State = nacl.bindings.crypto_generichash_blake2b_init(digest_size=32)

    def update(self, data: bytes) -> None:
        """Absorb ``data``."""
        nacl.bindings.crypto_generichash_blake2b_update(self._state, data)

    def digest(self) -> bytes:
        """The 32-byte digest of everything absorbed (call once)."""
        digest: bytes = nacl.bindings.crypto_generichash_blake2b_final(self._state)
        return digest


def sha256(data: bytes) -> bytes:
    """Return the SHA-256 digest of ``data`` (what consent receipts name statements by)."""
    digest: bytes = nacl.bindings.crypto_hash_sha256(data)
    return digest


def sha512(data: bytes) -> bytes:
    """Return the SHA-512 digest of ``data``."""
    digest: bytes = nacl.bindings.crypto_hash_sha512(data)
    return digest


def constant_time_equal(a: bytes, b: bytes) -> bool:
    """Compare two byte strings in time independent of their contents."""
    if len(a) != len(b):
        return False
    equal: bool = nacl.bindings.sodium_memcmp(a, b)
    return equal


def ed25519_is_valid_point(point: bytes) -> bool:
    """Return whether ``point`` is a canonical, prime-order, non-small-order Ed25519 point."""
    if len(point) != 32:
        return False
    valid: bool = nacl.bindings.crypto_core_ed25519_is_valid_point(point)
    return valid


def ed25519_verify_strict(public_key: bytes, message: bytes, signature: bytes) -> None:
    """Verify an Ed25519 signature strictly, raising :class:`SignatureError`.

    Strict means: the signature is 64 bytes, its scalar S is canonical (S < L, so the
    signature is not malleable), and libsodium's verification (which also refuses a
    small-order or non-canonical R and public key) succeeds.
    """
    if len(signature) != 64:
        raise SignatureError("signature has the wrong length")
    if int.from_bytes(signature[32:], "little") >= ED25519_ORDER:
        raise SignatureError("signature scalar is not canonical")
    try:
        nacl.bindings.crypto_sign_open(signature + message, public_key)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError) as exc:
        raise SignatureError("signature does not verify") from exc

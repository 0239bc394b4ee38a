"""WARNING: raw secret-key primitives. Use the recipes in :mod:`crypto.client` instead.

Typed wrappers over the PyNaCl bindings the client recipes need. Each one translates
``nacl.exceptions`` at this boundary: anything that fails while decrypting becomes the
one opaque :class:`DecryptionError`. Nonces are the caller's responsibility here — the
recipes draw them at random (192-bit XChaCha20 nonces, so random is safe).
"""

from __future__ import annotations

import nacl.bindings
import nacl.exceptions

from crypto.errors import DecryptionError
from crypto.public._sodium import blake2b
from crypto.public.keys import validate_x25519_public_key

__all__ = [
    "aead_decrypt",
    "aead_encrypt",
    "argon2id",
    "ed25519_keypair",
    "ed25519_sign",
    "seal",
    "seal_open",
    "x25519_public_key",
]


def aead_encrypt(key: bytes, nonce: bytes, plaintext: bytes, associated_data: bytes) -> bytes:
    """XChaCha20-Poly1305 (IETF) encryption; returns ciphertext || 16-byte tag."""
    ciphertext: bytes = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(
        plaintext, associated_data, nonce, key
    )
    return ciphertext


def aead_decrypt(key: bytes, nonce: bytes, ciphertext: bytes, associated_data: bytes) -> bytes:
    """XChaCha20-Poly1305 (IETF) decryption.

    Raises:
        DecryptionError: the tag does not verify (or any input is malformed).
    """
    try:
        plaintext: bytes = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(
            ciphertext, associated_data, nonce, key
        )
    except nacl.exceptions.CryptoError as exc:
        raise DecryptionError("decryption failed") from exc
    return plaintext


def x25519_public_key(secret_key: bytes) -> bytes:
    """Return the X25519 public key of a 32-byte secret key."""
    public_key: bytes = nacl.bindings.crypto_scalarmult_base(secret_key)
    return public_key


def ed25519_keypair(seed: bytes) -> tuple[bytes, bytes]:
    """Return (32-byte public key, 64-byte libsodium secret key) for a 32-byte seed."""
    public_key, secret_key = nacl.bindings.crypto_sign_seed_keypair(seed)
    pk: bytes = public_key
    sk: bytes = secret_key
    return pk, sk


def ed25519_sign(secret_key: bytes, message: bytes) -> bytes:
    """Return the 64-byte detached Ed25519 signature of ``message``."""
    signed: bytes = nacl.bindings.crypto_sign(message, secret_key)
    return signed[:64]


def seal(public_key: bytes, message: bytes, *, ephemeral_secret: bytes | None = None) -> bytes:
    """Encrypt ``message`` to ``public_key`` with a libsodium sealed box.

    With ``ephemeral_secret=None`` (every real use) this is ``crypto_box_seal``
    (``nacl.public.SealedBox``). Passing an ephemeral secret rebuilds the same
    construction step by step — ``epk = X25519(esk, 9)``, ``nonce = BLAKE2b-192(epk ||
    pk)``, ``epk || crypto_box(message, nonce, pk, esk)`` — so test vectors are
    reproducible; the output opens with ``crypto_box_seal_open``.

    Raises:
        InvalidKeyError: ``public_key`` is not a usable X25519 key.
    """
    validate_x25519_public_key(public_key)
    if ephemeral_secret is None:
        sealed: bytes = nacl.bindings.crypto_box_seal(message, public_key)
        return sealed
    ephemeral_public = x25519_public_key(ephemeral_secret)
    nonce = blake2b(ephemeral_public + public_key, size=24)
    boxed: bytes = nacl.bindings.crypto_box(message, nonce, public_key, ephemeral_secret)
    return ephemeral_public + boxed


def seal_open(public_key: bytes, secret_key: bytes, sealed: bytes) -> bytes:
    """Open a sealed box addressed to (``public_key``, ``secret_key``).

    Raises:
        DecryptionError: the box does not open (or is malformed).
    """
    try:
        message: bytes = nacl.bindings.crypto_box_seal_open(sealed, public_key, secret_key)
    except nacl.exceptions.CryptoError as exc:
        raise DecryptionError("decryption failed") from exc
    return message


def argon2id(passphrase: bytes, salt: bytes, *, opslimit: int, memlimit: int) -> bytes:
    """Derive a 32-byte key with Argon2id v1.3 (``crypto_pwhash``, ALG_ARGON2ID13)."""
    key: bytes = nacl.bindings.crypto_pwhash_alg(
        32, passphrase, salt, opslimit, memlimit, nacl.bindings.crypto_pwhash_ALG_ARGON2ID13
    )
    return key

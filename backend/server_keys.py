"""Keys the server itself holds, derived from the one server key.

None of these touch end-to-end encrypted content: the server holds no key that
opens a message or a note. They protect server-side secrets at rest (TOTP seeds)
and make pseudonymous digests that cannot be reversed by brute force without the
key (client addresses, login identifiers, recovery codes).
"""

from __future__ import annotations

import hashlib
import hmac

from nacl.bindings import (
    crypto_aead_xchacha20poly1305_ietf_decrypt,
    crypto_aead_xchacha20poly1305_ietf_encrypt,
    randombytes,
)
from nacl.exceptions import CryptoError as NaclCryptoError
from nacl.signing import SigningKey

__all__ = ["SealError", "ServerKeys"]

_NONCE_BYTES = 24
_VERSION = b"\x01"


class SealError(Exception):
    """A sealed server secret could not be opened (wrong key, tampered, or wrong owner)."""


def _derive(master: bytes, label: bytes) -> bytes:
    return hashlib.blake2b(b"", key=master, person=label.ljust(16, b"\0")[:16], digest_size=32).digest()


class ServerKeys:
    """Sub-keys of the server key, one per purpose (domain separated)."""

    def __init__(self, master: bytes) -> None:
        if len(master) != 32:
            raise ValueError("the server key must be 32 bytes")
        self._seal_key = _derive(master, b"confide/seal")
        self._digest_key = _derive(master, b"confide/digest")
        self._cursor_key = _derive(master, b"confide/cursor")
        self._receipt_key = SigningKey(_derive(master, b"confide/receipt"))

    @property
    def receipt_public_key(self) -> bytes:
        """The Ed25519 public key that verifies the server's receipts."""
        return bytes(self._receipt_key.verify_key)

    def sign_receipt(self, message: bytes) -> bytes:
        """Ed25519 signature over a receipt's canonical bytes."""
        return bytes(self._receipt_key.sign(message).signature)

    def digest(self, purpose: str, value: str) -> bytes:
        """A keyed, purpose-bound digest (HMAC-SHA-256) of ``value``."""
        message = purpose.encode() + b"\0" + value.encode("utf-8", "surrogatepass")
        return hmac.new(self._digest_key, message, hashlib.sha256).digest()

    def cursor_tag(self, message: bytes) -> bytes:
        """A 16-byte keyed BLAKE2b tag, for pagination cursors.

        Its own key; BLAKE2b because a page tags every item (50 by default) and a keyed
        BLAKE2b costs a third of an HMAC-SHA-256 here.
        """
        return hashlib.blake2b(message, key=self._cursor_key, digest_size=16).digest()

    def seal(self, plaintext: bytes, owner: str) -> bytes:
        """Encrypt a server-held secret, bound to its owner (associated data)."""
        nonce = randombytes(_NONCE_BYTES)
        box = crypto_aead_xchacha20poly1305_ietf_encrypt(
            plaintext, _VERSION + owner.encode(), nonce, self._seal_key
        )
        return _VERSION + nonce + bytes(box)

    def unseal(self, sealed: bytes, owner: str) -> bytes:
        """Open what :meth:`seal` made for the same owner."""
        if len(sealed) < 1 + _NONCE_BYTES + 16 or sealed[:1] != _VERSION:
            raise SealError
        nonce = sealed[1 : 1 + _NONCE_BYTES]
        try:
            return bytes(
                crypto_aead_xchacha20poly1305_ietf_decrypt(
                    sealed[1 + _NONCE_BYTES :], _VERSION + owner.encode(), nonce, self._seal_key
                )
            )
        except NaclCryptoError as exc:
            raise SealError from exc

"""WARNING: raw secretstream state. Use :mod:`crypto.client` attachment functions instead.

Typed wrappers around libsodium ``crypto_secretstream_xchacha20poly1305``. The push
side normally lets libsodium draw the 24-byte header at random (``init_push``); with an
explicit header (test vectors only) the state is set up by ``init_pull`` instead, which
libsodium defines to derive exactly the state ``init_push`` derives from that header.
"""

from __future__ import annotations

import nacl.bindings
import nacl.exceptions

from crypto.errors import DecryptionError

__all__ = ["ABYTES", "HEADER_BYTES", "TAG_FINAL", "TAG_MESSAGE", "StreamPuller", "StreamPusher"]

HEADER_BYTES: int = nacl.bindings.crypto_secretstream_xchacha20poly1305_HEADERBYTES
ABYTES: int = nacl.bindings.crypto_secretstream_xchacha20poly1305_ABYTES
TAG_MESSAGE: int = nacl.bindings.crypto_secretstream_xchacha20poly1305_TAG_MESSAGE
TAG_FINAL: int = nacl.bindings.crypto_secretstream_xchacha20poly1305_TAG_FINAL


class StreamPusher:
    """Encrypting side of a secretstream."""

    __slots__ = ("_state", "header")

    def __init__(self, key: bytes, *, header: bytes | None = None) -> None:
        self._state = nacl.bindings.crypto_secretstream_xchacha20poly1305_state()
        if header is None:
            made: bytes = nacl.bindings.crypto_secretstream_xchacha20poly1305_init_push(self._state, key)
            self.header: bytes = made
        else:
            nacl.bindings.crypto_secretstream_xchacha20poly1305_init_pull(self._state, header, key)
            self.header = header

    def push(self, chunk: bytes, associated_data: bytes, *, final: bool) -> bytes:
        """Encrypt one chunk; ``final`` marks the last one (TAG_FINAL)."""
        ciphertext: bytes = nacl.bindings.crypto_secretstream_xchacha20poly1305_push(
            self._state, chunk, associated_data, TAG_FINAL if final else TAG_MESSAGE
        )
        return ciphertext


class StreamPuller:
    """Decrypting side of a secretstream."""

    __slots__ = ("_state",)

    def __init__(self, key: bytes, header: bytes) -> None:
        self._state = nacl.bindings.crypto_secretstream_xchacha20poly1305_state()
        try:
            nacl.bindings.crypto_secretstream_xchacha20poly1305_init_pull(self._state, header, key)
        except nacl.exceptions.CryptoError as exc:
            raise DecryptionError("decryption failed") from exc

    def pull(self, chunk: bytes, associated_data: bytes) -> tuple[bytes, bool]:
        """Decrypt one chunk; returns (plaintext, whether it carried TAG_FINAL).

        Raises:
            DecryptionError: the chunk does not authenticate.
        """
        try:
            plaintext, tag = nacl.bindings.crypto_secretstream_xchacha20poly1305_pull(
                self._state, chunk, associated_data
            )
        except nacl.exceptions.CryptoError as exc:
            raise DecryptionError("decryption failed") from exc
        data: bytes = plaintext
        return data, tag == TAG_FINAL

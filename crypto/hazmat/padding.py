"""WARNING: payload padding. Use :func:`crypto.client.seal_envelope`, which pads for you.

ISO/IEC 7816-4 padding (one 0x80 byte, then zero bytes) to the bucket given by
:func:`crypto.public.limits.padded_size`: the smallest power of two >= 256 strictly
greater than the payload length, at most 1 MiB. Padding uses libsodium's ``sodium_pad``
with the bucket size as block size. Unpadding is done here, not with ``sodium_unpad``:
it only ever runs on plaintext the AEAD has already authenticated, so there is no
padding oracle to protect, and the C-speed ``rfind`` + compare is ten times faster than
libsodium's constant-time byte loop over a whole bucket.
"""

from __future__ import annotations

import nacl.bindings

from crypto.errors import DecryptionError
from crypto.public.limits import padded_size, valid_padded_sizes

__all__ = ["pad", "unpad"]


def pad(data: bytes) -> bytes:
    """Pad ``data`` to its bucket.

    Raises:
        FormatError: ``data`` is too large for the largest bucket.
    """
    padded: bytes = nacl.bindings.sodium_pad(data, padded_size(len(data)))
    return padded


def unpad(padded: bytes) -> bytes:
    """Remove padding, insisting that the padded length is the canonical bucket.

    Raises:
        DecryptionError: the length is not a bucket, the padding is malformed, or the
            payload was padded to a larger bucket than its length calls for.
    """
    if len(padded) not in valid_padded_sizes():
        raise DecryptionError("decryption failed")
    marker = padded.rfind(b"\x80")
    if marker < 0 or padded[marker + 1 :] != bytes(len(padded) - marker - 1):
        raise DecryptionError("decryption failed")
    if padded_size(marker) != len(padded):
        raise DecryptionError("decryption failed")
    return padded[:marker]

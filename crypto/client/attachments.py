"""Streaming attachment encryption with libsodium secretstream, in constant memory.

Blob layout (SPEC.md, section 6): the 24-byte secretstream header, then the plaintext
cut into 64 KiB chunks, each encrypted as ``push(chunk, ad, tag)``; every chunk but the
last is exactly 64 KiB with TAG_MESSAGE, the last is shorter (possibly empty) with
TAG_FINAL, so truncation and extension are detected. The associated data of every
chunk binds the attachment id. The returned :class:`AttachmentKey` (key, BLAKE2b-256
of the whole blob, size) travels inside an envelope's inner payload.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import BinaryIO

import nacl.bindings

from crypto.client.payload import AttachmentKey
from crypto.errors import DecryptionError, FormatError
from crypto.hazmat.rng import Rng, system_rng
from crypto.hazmat.secretstream import ABYTES, HEADER_BYTES, StreamPuller, StreamPusher
from crypto.public._sodium import constant_time_equal
from crypto.public.canonical import attachment_associated_data
from crypto.public.limits import ATTACHMENT_CHUNK_BYTES, MAX_ATTACHMENT_BYTES
from crypto.public.wire import ATTACHMENT_VERSION

__all__ = ["decrypt_attachment", "encrypt_attachment", "encrypted_attachment_size"]

Source = BinaryIO | Iterable[bytes]


class _Hasher:
    """Incremental BLAKE2b-256 (libsodium generichash state)."""

    __slots__ = ("_state",)

    def __init__(self) -> None:
        self._state = nacl.bindings.crypto_generichash_blake2b_init(digest_size=32)

    def update(self, data: bytes) -> None:
        nacl.bindings.crypto_generichash_blake2b_update(self._state, data)

    def digest(self) -> bytes:
        digest: bytes = nacl.bindings.crypto_generichash_blake2b_final(self._state)
        return digest


class _Reader:
    """Reads exact-size blocks from a file-like object or an iterable of byte strings."""

    __slots__ = ("_buffer", "_chunks", "_read")

    def __init__(self, source: Source) -> None:
        self._buffer = bytearray()
        # A binary file is also an iterable (of lines), so look for ``read`` first.
        self._read: Callable[[int], bytes] | None = getattr(source, "read", None)
        self._chunks: Iterator[bytes] = iter(()) if self._read is not None else iter(source)

    def read(self, size: int) -> bytes:
        """Return ``size`` bytes, fewer only at the end of the source."""
        if self._read is not None:
            return self._read_file(self._read, size)
        while len(self._buffer) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buffer += chunk
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    @staticmethod
    def _read_file(read: Callable[[int], bytes], size: int) -> bytes:
        parts: list[bytes] = []
        remaining = size
        while remaining:
            part = read(remaining)
            if not part:
                break
            parts.append(part)
            remaining -= len(part)
        return b"".join(parts)


def encrypted_attachment_size(size: int) -> int:
    """Length of the encrypted blob of a ``size``-byte attachment (header + chunks)."""
    chunks = size // ATTACHMENT_CHUNK_BYTES + 1
    return HEADER_BYTES + chunks * ABYTES + size


def _encrypt_attachment(
    source: Source, sink: BinaryIO, *, attachment_id: uuid.UUID, media_type: str, rng: Rng
) -> AttachmentKey:
    """Private seam: :func:`encrypt_attachment` with an injectable RNG (vectors only)."""
    key = rng(32)
    pusher = StreamPusher(key, header=None if rng is system_rng else rng(HEADER_BYTES))
    associated_data = attachment_associated_data(attachment_id)
    hasher = _Hasher()
    reader = _Reader(source)

    def emit(data: bytes) -> None:
        hasher.update(data)
        sink.write(data)

    emit(pusher.header)
    size = 0
    while True:
        chunk = reader.read(ATTACHMENT_CHUNK_BYTES)
        size += len(chunk)
        if size > MAX_ATTACHMENT_BYTES:
            raise FormatError("attachment too large")
        final = len(chunk) < ATTACHMENT_CHUNK_BYTES
        emit(pusher.push(chunk, associated_data, final=final))
        if final:
            break
    return AttachmentKey(
        version=ATTACHMENT_VERSION,
        attachment_id=attachment_id,
        key=key,
        ciphertext_hash=hasher.digest(),
        size=size,
        media_type=media_type,
    )


def encrypt_attachment(
    source: Source, sink: BinaryIO, *, attachment_id: uuid.UUID, media_type: str
) -> AttachmentKey:
    """Encrypt ``source`` (binary file or iterable of bytes) into ``sink``, streaming.

    Memory use is one 64 KiB chunk whatever the size. Put the returned key in the
    inner payload of the envelope that shares the attachment.

    Raises:
        FormatError: the attachment exceeds ``MAX_ATTACHMENT_BYTES`` (``sink`` then
            holds a partial blob, to be discarded).
    """
    return _encrypt_attachment(
        source, sink, attachment_id=attachment_id, media_type=media_type, rng=system_rng
    )


def decrypt_attachment(source: Source, key: AttachmentKey) -> Iterator[bytes]:
    """Decrypt an encrypted blob, yielding plaintext chunks as they authenticate.

    Each yielded chunk is authenticated by secretstream under the key from a signed
    envelope. The last chunk is yielded only after the end of the stream (TAG_FINAL,
    no trailing bytes), the length and the BLAKE2b hash of the whole blob have been
    checked. If a :class:`DecryptionError` is raised, discard what was yielded.

    Raises:
        DecryptionError: whatever goes wrong (wrong key, tampering, truncation, extra
            bytes, hash or size mismatch).
    """
    reader = _Reader(source)
    hasher = _Hasher()
    header = reader.read(HEADER_BYTES)
    hasher.update(header)
    if len(header) != HEADER_BYTES:
        raise DecryptionError("decryption failed")
    puller = StreamPuller(key.key, header)
    associated_data = attachment_associated_data(key.attachment_id)
    size = 0
    while True:
        block = reader.read(ATTACHMENT_CHUNK_BYTES + ABYTES)
        hasher.update(block)
        plaintext, final = puller.pull(block, associated_data)
        size += len(plaintext)
        if final != (len(plaintext) < ATTACHMENT_CHUNK_BYTES) or size > key.size:
            raise DecryptionError("decryption failed")
        if final:
            break
        yield plaintext
    trailing = reader.read(1)
    if trailing or size != key.size or not constant_time_equal(hasher.digest(), key.ciphertext_hash):
        raise DecryptionError("decryption failed")
    yield plaintext

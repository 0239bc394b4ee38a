"""The inner payload: what an envelope's ciphertext contains once decrypted.

Only senders and recipients ever see these Structs. Their ``repr`` is redacted because
they hold plaintext and attachment keys. Encoding is msgspec JSON (UTF-8), then padded
(:mod:`crypto.hazmat.padding`), then encrypted.
"""

from __future__ import annotations

import uuid

import msgspec

from crypto.errors import FormatError
from crypto.public.limits import MAX_ATTACHMENT_BYTES, MAX_CONTENT_TYPE_CHARS
from crypto.public.wire import ATTACHMENT_VERSION

__all__ = ["PAYLOAD_VERSION", "AttachmentKey", "InnerPayload"]

PAYLOAD_VERSION = 1


class AttachmentKey(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Everything needed to fetch, check and decrypt one encrypted attachment.

    Attributes:
        version: attachment format version (1).
        attachment_id: id of the encrypted blob; also bound into every chunk.
        key: 32-byte secretstream key.
        ciphertext_hash: BLAKE2b-256 of the whole encrypted blob (header included).
        size: plaintext length in bytes.
        media_type: the plaintext's media type, e.g. ``application/pdf``.
    """

    version: int
    attachment_id: uuid.UUID
    key: bytes
    ciphertext_hash: bytes
    size: int
    media_type: str

    def __post_init__(self) -> None:
        if self.version != ATTACHMENT_VERSION:
            raise FormatError("unsupported attachment version")
        if len(self.key) != 32 or len(self.ciphertext_hash) != 32:
            raise FormatError("attachment key or hash has the wrong length")
        if not 0 <= self.size <= MAX_ATTACHMENT_BYTES:
            raise FormatError("attachment size out of range")
        if len(self.media_type) > MAX_CONTENT_TYPE_CHARS:
            raise FormatError("media type too long")

    def __repr__(self) -> str:
        return f"AttachmentKey(attachment_id={self.attachment_id!s}, size={self.size}, ...)"


class InnerPayload(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Plaintext of an envelope.

    Attributes:
        version: payload format version (1).
        content_type: media type of ``body`` (e.g. ``text/plain; charset=utf-8``).
        body: the content, opaque to this library.
        attachments: keys of attachments that belong to this item.
    """

    version: int
    content_type: str
    body: bytes
    attachments: tuple[AttachmentKey, ...] = ()

    def __post_init__(self) -> None:
        if self.version != PAYLOAD_VERSION:
            raise FormatError("unsupported payload version")
        if len(self.content_type) > MAX_CONTENT_TYPE_CHARS:
            raise FormatError("content type too long")

    def __repr__(self) -> str:
        return (
            f"InnerPayload(content_type={self.content_type!r}, body=<{len(self.body)} bytes>, "
            f"attachments={len(self.attachments)})"
        )


_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(InnerPayload)


def encode_payload(payload: InnerPayload) -> bytes:
    """Encode a payload as JSON (before padding)."""
    return _ENCODER.encode(payload)


def decode_payload(data: bytes) -> InnerPayload:
    """Decode a payload from JSON (after unpadding).

    Raises:
        FormatError: malformed JSON, unknown field or version.
    """
    try:
        return _DECODER.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError) as exc:
        raise FormatError("malformed payload") from exc

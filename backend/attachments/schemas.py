"""Response Structs of the attachment routes."""

from __future__ import annotations

import uuid

import msgspec

__all__ = ["AttachmentCreated"]


class AttachmentCreated(msgspec.Struct, frozen=True, kw_only=True):
    """A stored encrypted attachment."""

    id: uuid.UUID
    size: int
    """Bytes of ciphertext stored."""
    digest: str
    """BLAKE2b-256 of the stored bytes, lowercase hex (the value of ``X-Content-BLAKE2b``)."""

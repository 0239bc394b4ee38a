"""Errors of attachment uploads, under :class:`backend.errors.DomainError`.

::

    DomainError
    ├── PayloadTooLargeError       413  the blob exceeds CONFIDE_ATTACHMENT_MAX_BYTES
    ├── UnsupportedMediaTypeError  415  the body is not application/octet-stream
    └── InvalidInputError          422
        └── DigestMismatchError    422  the bytes received do not hash to the digest sent
"""

from __future__ import annotations

from backend.errors import DomainError, InvalidInputError

__all__ = ["DigestMismatchError", "PayloadTooLargeError", "UnsupportedMediaTypeError"]


class PayloadTooLargeError(DomainError):
    """The upload is larger than the configured limit (refused before it is all read)."""

    status = 413
    slug = "payload-too-large"
    title = "Payload too large"
    default_detail = "The attachment exceeds the size limit."


class UnsupportedMediaTypeError(DomainError):
    """The upload is not sent as ``application/octet-stream``."""

    status = 415
    slug = "unsupported-media-type"
    title = "Unsupported media type"
    default_detail = "Send the encrypted attachment as application/octet-stream."


class DigestMismatchError(InvalidInputError):
    """The BLAKE2b-256 of the bytes received differs from ``X-Content-BLAKE2b``."""

    slug = "digest-mismatch"
    title = "Digest mismatch"
    default_detail = "The attachment's bytes do not match X-Content-BLAKE2b."

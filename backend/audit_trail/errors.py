"""Errors of the audit trail routes (all :class:`backend.errors.DomainError`, fixed texts).

::

    NotFoundError
    └── NoCheckpointError         404  nothing signed yet
    InvalidInputError
    ├── TreeSizeError             422  an index or tree size beyond the log
    ├── InvalidCursorError        422  a pagination cursor that is not ours
    ├── InvalidWindowError        422  a time window that is empty or not timezone-aware
    └── CosignatureRejectedError  422  a cosignature that does not verify or matches no checkpoint
"""

from __future__ import annotations

from backend.errors import InvalidInputError, NotFoundError

__all__ = [
    "CosignatureRejectedError",
    "InvalidCursorError",
    "InvalidWindowError",
    "NoCheckpointError",
    "TreeSizeError",
]


class NoCheckpointError(NotFoundError):
    """The log has no signed checkpoint (of that size)."""

    slug = "no-checkpoint"
    title = "No checkpoint"
    default_detail = "The audit log has no signed checkpoint of that size yet."


class TreeSizeError(InvalidInputError):
    """An index or tree size outside the log."""

    slug = "invalid-tree-size"
    title = "Index or size out of range"
    default_detail = "The leaf index or tree size is outside the audit log."


class InvalidCursorError(InvalidInputError):
    """A cursor not issued by this service."""

    slug = "invalid-cursor"
    title = "Invalid cursor"
    default_detail = "The pagination cursor is not valid."


class InvalidWindowError(InvalidInputError):
    """A time window that cannot be used."""

    slug = "invalid-window"
    title = "Invalid time window"
    default_detail = "Times must carry a timezone and the window must not be empty."


class CosignatureRejectedError(InvalidInputError):
    """The cosignature does not verify, or its checkpoint is not one the log signed."""

    slug = "cosignature-rejected"
    title = "Cosignature rejected"
    default_detail = "The cosignature does not verify against a checkpoint of this log."

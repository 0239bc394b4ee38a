"""Errors of the key log routes (all :class:`backend.errors.DomainError`, fixed texts).

::

    NotFoundError
    └── NoKeyLogCheckpointError   404  nothing of that size signed
    InvalidInputError
    └── KeyLogSizeError           422  a tree size beyond the key log, or sizes out of order
"""

from __future__ import annotations

from backend.errors import InvalidInputError, NotFoundError

__all__ = ["KeyLogSizeError", "NoKeyLogCheckpointError"]


class NoKeyLogCheckpointError(NotFoundError):
    """The key log has no signed checkpoint (of that size)."""

    slug = "no-key-log-checkpoint"
    title = "No key log checkpoint"
    default_detail = "The key log has no signed checkpoint of that size."


class KeyLogSizeError(InvalidInputError):
    """A tree size outside the key log."""

    slug = "invalid-key-log-size"
    title = "Tree size out of range"
    default_detail = "The tree sizes must be in order and within the key log."

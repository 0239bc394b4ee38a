"""Errors raised by the audit package.

Every error is a :class:`VerificationError`, so a caller that only needs to know
"does this verify?" catches one class. Messages are fixed text plus indexes,
sizes and key names: never leaf content, never personal data.

The tree::

    VerificationError            root: something did not verify; .index names the
    │                            first failing leaf index when there is one
    ├── AuditFormatError         malformed, non-canonical, oversized or unknown-version
    │                            input (leaf, note, key, checkpoint, export line)
    ├── SignatureError           no trusted signature, a bad signature from a known key,
    │                            a required key or witness missing
    ├── ProofError               an inclusion or consistency proof does not verify
    └── ExportError              an export's lines do not match its checkpoint: leaf hash,
                                 ordering, a missing index, the count, a truncated tail
"""

from __future__ import annotations

__all__ = [
    "AuditFormatError",
    "ExportError",
    "ProofError",
    "SignatureError",
    "VerificationError",
]


class VerificationError(Exception):
    """Root of every audit error: the input did not verify.

    Attributes:
        index: The first failing leaf index, when the failure concerns one leaf.
    """

    def __init__(self, message: str, *, index: int | None = None) -> None:
        super().__init__(message if index is None else f"{message} (index {index})")
        self.index = index


class AuditFormatError(VerificationError):
    """Input is malformed, non-canonical, too large, or of an unknown version."""


class SignatureError(VerificationError):
    """A signature is missing, from an unknown key when one is required, or invalid."""


class ProofError(VerificationError):
    """An inclusion or consistency proof does not verify."""


class ExportError(VerificationError):
    """An export's lines do not match its checkpoint (hash, order, gap, count, tail)."""

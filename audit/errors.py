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
    │   └── ForkError            two signed checkpoints of one log that no append-only
    │                            log can both have produced (.notes: the evidence)
    ├── KeyConflictError         the key log holds two different bundles for one account
    │                            key version (.account_id, .key_version)
    └── ExportError              an export's lines do not match its checkpoint: leaf hash,
                                 ordering, a missing index, the count, a truncated tail
"""

from __future__ import annotations

import uuid

__all__ = [
    "AuditFormatError",
    "ExportError",
    "ForkError",
    "KeyConflictError",
    "KeyRollbackError",
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


class ForkError(ProofError):
    """Two signed checkpoints that cannot both come from one append-only log.

    Attributes:
        notes: The two signed notes (smaller tree first): the evidence to keep and report.
    """

    def __init__(self, message: str, *, notes: tuple[str, str]) -> None:
        super().__init__(message)
        self.notes = notes


class KeyConflictError(VerificationError):
    """The key log holds two different bundles for one account's key version."""

    def __init__(self, message: str, *, account_id: uuid.UUID, key_version: int) -> None:
        super().__init__(f"{message} (account {account_id}, version {key_version})")
        self.account_id = account_id
        self.key_version = key_version


class KeyRollbackError(VerificationError):
    """A key look-up's newest bundle is older than a version already verified for the account.

    The answer is stale or rolled back: encrypting to its newest key would use a key the
    owner has since replaced.
    """

    def __init__(self, message: str, *, account_id: uuid.UUID, known_version: int, seen_version: int) -> None:
        super().__init__(
            f"{message} (account {account_id}, known version {known_version}, shown {seen_version})"
        )
        self.account_id = account_id
        self.known_version = known_version
        self.seen_version = seen_version


class ExportError(VerificationError):
    """An export's lines do not match its checkpoint (hash, order, gap, count, tail)."""

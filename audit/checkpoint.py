"""Checkpoints: C2SP tlog-checkpoint v1.0.0 (https://c2sp.org/tlog-checkpoint@v1.0.0).

The note text is the origin line, the tree size in decimal (no leading zeros), the
base64 root hash, then optional non-empty extension lines, each ending in a newline::

    confide.example/audit/v1
    20852163
    CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=

It is signed as a C2SP signed note v1.0.0 by the log's Ed25519 key (type 0x01),
whose name must equal the origin. Witnesses add tlog-cosignature v1.0 (0x04) lines.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Final

import msgspec

from audit.errors import AuditFormatError, SignatureError
from audit.merkle import HASH_SIZE
from audit.note import (
    ED25519,
    NoteSigner,
    SignedNote,
    VerifierKey,
    _b64decode,
    format_note,
    verify_note,
)

__all__ = [
    "CHECKPOINT_SPEC",
    "COSIGNATURE_SPEC",
    "SIGNED_NOTE_SPEC",
    "Checkpoint",
    "VerifiedCheckpoint",
    "format_checkpoint",
    "parse_checkpoint",
    "sign_checkpoint",
    "verify_checkpoint",
]

SIGNED_NOTE_SPEC: Final = "c2sp.org/signed-note@v1.0.0"
CHECKPOINT_SPEC: Final = "c2sp.org/tlog-checkpoint@v1.0.0"
COSIGNATURE_SPEC: Final = "c2sp.org/tlog-cosignature@v1.0.0"
_MAX_SIZE: Final = (1 << 63) - 1


class Checkpoint(msgspec.Struct, frozen=True):
    """A tree head: origin, size, root hash, extension lines."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        """Validate every field against the spec."""
        if not self.origin or "\n" in self.origin or not self.origin.isprintable():
            raise AuditFormatError("checkpoint origin must be one non-empty printable line")
        if not 0 <= self.size <= _MAX_SIZE:
            raise AuditFormatError("checkpoint size out of range")
        if len(self.root) != HASH_SIZE:
            raise AuditFormatError("checkpoint root must be 32 bytes")
        for line in self.extensions:
            if not line or "\n" in line or not line.isprintable():
                raise AuditFormatError("checkpoint extension lines must be non-empty")


class VerifiedCheckpoint(msgspec.Struct, frozen=True):
    """A checkpoint whose log signature verified, with its note and verified cosignatures.

    Attributes:
        checkpoint: The tree head.
        note: The whole signed note, as given.
        cosignatures: Witness key name to cosignature timestamp, for each trusted
            witness key whose cosignature verified.
    """

    checkpoint: Checkpoint
    note: str
    cosignatures: dict[str, int]


def format_checkpoint(checkpoint: Checkpoint) -> str:
    """Return the checkpoint's note text (the signed body)."""
    lines = [
        checkpoint.origin,
        str(checkpoint.size),
        base64.b64encode(checkpoint.root).decode(),
        *checkpoint.extensions,
    ]
    return "".join(f"{line}\n" for line in lines)


def parse_checkpoint(text: str) -> Checkpoint:
    """Parse a checkpoint's note text (not the signatures).

    Raises:
        AuditFormatError: Missing final newline, fewer than three lines, an empty line,
            a size with a sign or leading zeros, or a root that is not base64 of 32 bytes.
    """
    if not text.endswith("\n"):
        raise AuditFormatError("checkpoint text must end with a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3 or any(not line for line in lines):
        raise AuditFormatError("checkpoint needs origin, size and root lines, none empty")
    origin, size_text, root_text, *extensions = lines
    if not size_text.isascii() or not size_text.isdigit() or size_text != str(int(size_text)):
        raise AuditFormatError("checkpoint size must be decimal without leading zeros")
    root = _b64decode(root_text)
    return Checkpoint(origin, int(size_text), root, tuple(extensions))


def sign_checkpoint(checkpoint: Checkpoint, signer: NoteSigner) -> str:
    """Sign a checkpoint with the log key, whose name must be the origin.

    Raises:
        AuditFormatError: The key is not a 0x01 key named after the origin.
    """
    if signer.sig_type != ED25519 or signer.name != checkpoint.origin:
        raise AuditFormatError("the log key must be an Ed25519 key named after the origin")
    text = format_checkpoint(checkpoint)
    return format_note(SignedNote(text, (signer.sign(text),)))


def verify_checkpoint(
    note: str | bytes,
    log_keys: Sequence[VerifierKey],
    *,
    origin: str | None = None,
    witness_keys: Sequence[VerifierKey] = (),
    unsafe_allow_unknown: bool = True,
) -> VerifiedCheckpoint:
    """Verify a signed checkpoint and, when asked, its witnesses' cosignatures.

    Args:
        note: The signed checkpoint note.
        log_keys: Trusted log keys (type 0x01). One must have signed, under a name equal
            to the origin.
        origin: The expected origin; by default the signing key's name.
        witness_keys: Witness keys (type 0x04) that must ALL have cosigned.
        unsafe_allow_unknown: Ignore other signatures (the spec's rule). ``False``
            refuses any signature from a key not listed.

    Raises:
        AuditFormatError: The note or checkpoint text is malformed.
        SignatureError: No trusted log signature, a bad signature, a wrong origin, or a
            required witness cosignature missing.
    """
    for key in log_keys:
        if key.sig_type != ED25519:
            raise AuditFormatError("log keys must be Ed25519 keys of type 0x01")
    for key in witness_keys:
        if key.sig_type == ED25519:
            raise AuditFormatError("witness keys must be cosignature keys of type 0x04")
    parsed, verified = verify_note(
        note, [*log_keys, *witness_keys], unsafe_allow_unknown=unsafe_allow_unknown
    )
    checkpoint = parse_checkpoint(parsed.text)
    signed_by = [key.name for key in verified if key.sig_type == ED25519]
    if not signed_by:
        raise SignatureError("checkpoint has no signature from a trusted log key")
    if checkpoint.origin not in signed_by or (origin is not None and checkpoint.origin != origin):
        raise SignatureError("checkpoint origin is not the expected log")
    cosignatures: dict[str, int] = {}
    for key, timestamp in verified.items():
        if timestamp is not None:
            cosignatures[key.name] = timestamp
    missing = [key.name for key in witness_keys if key not in verified]
    if missing:
        raise SignatureError(f"checkpoint lacks a cosignature from witness {missing[0]}")
    text = note if isinstance(note, str) else note.decode()
    return VerifiedCheckpoint(checkpoint, text, cosignatures)

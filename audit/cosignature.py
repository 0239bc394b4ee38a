r"""Witness cosignatures: C2SP tlog-cosignature v1.0 (https://c2sp.org/tlog-cosignature@v1.0.0).

A witness checks that a new checkpoint is signed by the log and consistent with the
last one it accepted, then adds a ``cosignature/v1`` (type 0x04) signature line.
The Ed25519 cosignature signs ``cosignature/v1\ntime <unix>\n`` + the checkpoint
text, and is encoded as ``u64 big-endian timestamp || 64-byte signature``.
"""

from __future__ import annotations

from collections.abc import Sequence

from audit.checkpoint import Checkpoint, VerifiedCheckpoint, verify_checkpoint
from audit.errors import AuditFormatError, ProofError
from audit.note import COSIGNATURE_V1, NoteSigner, VerifierKey, add_signature
from audit.proofs import verify_consistency

__all__ = ["cosign_checkpoint", "verify_cosignatures", "witness_checkpoint"]


def cosign_checkpoint(
    note: str, log_keys: Sequence[VerifierKey], witness: NoteSigner, *, timestamp: int
) -> str:
    """Verify the log's signature on ``note`` and add ``witness``'s cosignature.

    This does not check consistency with earlier checkpoints; a witness should use
    :func:`witness_checkpoint`.

    Raises:
        AuditFormatError: ``witness`` is not a 0x04 cosigner, or the note is malformed.
        SignatureError: The note is not signed by a trusted log key.
    """
    if witness.sig_type != COSIGNATURE_V1:
        raise AuditFormatError("witness keys cosign with signature type 0x04")
    verify_checkpoint(note, log_keys)
    return add_signature(note, witness, timestamp=timestamp)


def witness_checkpoint(
    note: str,
    log_keys: Sequence[VerifierKey],
    witness: NoteSigner,
    *,
    timestamp: int,
    previous: Checkpoint | None,
    proof: Sequence[bytes],
) -> tuple[Checkpoint, str]:
    """Accept a new checkpoint only if consistent with ``previous``, then cosign it.

    Args:
        note: The new signed checkpoint.
        log_keys: The log's trusted keys.
        witness: The witness's cosigning key (type 0x04).
        timestamp: POSIX time of the cosignature (from the caller's clock).
        previous: The last checkpoint this witness accepted for the log, or ``None``
            the first time (trust on first use).
        proof: Consistency proof from ``previous`` to the new checkpoint.

    Returns:
        The accepted checkpoint (to store as the new ``previous``) and the cosigned note.

    Raises:
        VerificationError: Bad signature, different origin, a smaller tree (rollback),
            or an inconsistent tree (fork).
    """
    verified = verify_checkpoint(note, log_keys)
    new = verified.checkpoint
    if previous is not None:
        if previous.origin != new.origin:
            raise ProofError("checkpoint is from a different log")
        verify_consistency(previous.size, new.size, previous.root, new.root, proof)
    return new, cosign_checkpoint(note, log_keys, witness, timestamp=timestamp)


def verify_cosignatures(
    note: str, log_keys: Sequence[VerifierKey], witness_keys: Sequence[VerifierKey]
) -> VerifiedCheckpoint:
    """Verify a checkpoint and require a valid cosignature from every witness key.

    Raises:
        VerificationError: The log signature or any required cosignature fails.
    """
    return verify_checkpoint(note, log_keys, witness_keys=witness_keys)

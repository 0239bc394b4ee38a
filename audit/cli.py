"""Pure functions behind ``confide audit verify``, ``consistency`` and ``keygen``.

Argument parsing lives in the backend's CLI; these take paths and strings, write a
short summary to ``out`` and return the exit code: 0 verified, 1 verification
failed, 2 unusable input (unreadable file, malformed key).
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Final, Protocol

from audit.errors import AuditFormatError, VerificationError
from audit.export import MAX_LINE_BYTES
from audit.note import COSIGNATURE_V1, ED25519, VerifierKey, generate_signer
from audit.verify import verify_checkpoint_consistency, verify_export

__all__ = [
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_USAGE",
    "ExportFile",
    "Writer",
    "consistency_command",
    "keygen_command",
    "read_proof_file",
    "verify_command",
]

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
_MAX_PROOF_LINES: Final = 128


class Writer(Protocol):
    """Where the summary goes (``sys.stdout``, a ``StringIO``)."""

    def write(self, text: str, /) -> int:
        """Write text."""
        ...


class ExportFile:
    """An export file's lines, readable more than once (so failures can be located)."""

    __slots__ = ("path",)

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def __iter__(self) -> Iterator[bytes]:
        """Yield the file's lines, each at most one byte over the line limit."""
        with self.path.open("rb") as handle:
            while line := handle.readline(MAX_LINE_BYTES + 1):
                yield line


def _keys(vkeys: Sequence[str], out: Writer) -> list[VerifierKey] | None:
    try:
        return [VerifierKey.parse(text.strip()) for text in vkeys]
    except AuditFormatError as exc:
        out.write(f"error: bad key: {exc}\n")
        return None


def verify_command(
    path: str | os.PathLike[str],
    log_keys: Sequence[str],
    *,
    out: Writer,
    witness_keys: Sequence[str] = (),
    require_complete: bool = False,
    origin: str | None = None,
) -> int:
    """Verify an export file (``confide audit verify FILE --log-key KEY``)."""
    logs, witnesses = _keys(log_keys, out), _keys(witness_keys, out)
    if logs is None or witnesses is None:
        return EXIT_USAGE
    try:
        summary = verify_export(
            ExportFile(path),
            logs,
            witness_keys=witnesses,
            require_complete=require_complete,
            origin=origin,
        )
    except OSError as exc:
        out.write(f"error: cannot read the export: {exc.strerror}\n")
        return EXIT_USAGE
    except VerificationError as exc:
        out.write(f"FAILED: {exc}\n")
        return EXIT_FAILED
    scope = "complete" if summary.complete else "filtered"
    out.write(
        f"OK: {summary.count} events ({summary.pruned} pruned, {scope}) verified against "
        f"{summary.origin} size {summary.tree_size} root "
        f"{base64.b64encode(summary.root).decode()}; "
        f"{summary.proofs_checked} inclusion proofs checked\n"
    )
    for name, timestamp in sorted(summary.cosignatures.items()):
        out.write(f"cosigned by {name} at {timestamp}\n")
    return EXIT_OK


def read_proof_file(path: str | os.PathLike[str]) -> list[bytes]:
    """Read a consistency proof: one base64 hash per line.

    Raises:
        AuditFormatError: A line is not base64 of 32 bytes, or there are too many.
        OSError: The file cannot be read.
    """
    text = Path(path).read_text(encoding="ascii", errors="strict")
    lines = text.splitlines()
    if len(lines) > _MAX_PROOF_LINES:
        raise AuditFormatError("consistency proof is too long")
    proof: list[bytes] = []
    for line in lines:
        try:
            value = base64.b64decode(line, validate=True)
        except ValueError as exc:
            raise AuditFormatError("consistency proof line is not base64") from exc
        if len(value) != 32:
            raise AuditFormatError("consistency proof hashes are 32 bytes")
        proof.append(value)
    return proof


def consistency_command(
    old_path: str | os.PathLike[str],
    new_path: str | os.PathLike[str],
    proof_path: str | os.PathLike[str],
    log_keys: Sequence[str],
    *,
    out: Writer,
    origin: str | None = None,
) -> int:
    """Check a kept checkpoint against a newer one (``confide audit consistency``)."""
    keys = _keys(log_keys, out)
    if keys is None:
        return EXIT_USAGE
    try:
        old_note = Path(old_path).read_text(encoding="utf-8")
        new_note = Path(new_path).read_text(encoding="utf-8")
        proof = read_proof_file(proof_path)
        old, new = verify_checkpoint_consistency(old_note, new_note, proof, keys, origin=origin)
    except (OSError, UnicodeDecodeError):
        out.write("error: cannot read a checkpoint or proof file\n")
        return EXIT_USAGE
    except VerificationError as exc:
        out.write(f"FAILED: {exc}\n")
        return EXIT_FAILED
    out.write(f"OK: {new.origin} size {new.size} extends size {old.size}\n")
    return EXIT_OK


def keygen_command(
    name: str, secret_path: str | os.PathLike[str], *, out: Writer, witness: bool = False
) -> int:
    """Create an Ed25519 log (or witness) key: secret to ``secret_path``, vkey to ``out``.

    The secret key file is created with mode 0600 and never overwritten.
    """
    try:
        signer = generate_signer(name, COSIGNATURE_V1 if witness else ED25519)
    except AuditFormatError as exc:
        out.write(f"error: {exc}\n")
        return EXIT_USAGE
    try:
        fd = os.open(secret_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        out.write(f"error: cannot create the secret key file: {exc.strerror}\n")
        return EXIT_USAGE
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(f"{signer}\n")
    out.write(f"{signer.verifier()}\n")
    return EXIT_OK

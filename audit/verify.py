"""Offline verification of exports and of checkpoint consistency, with ``audit`` alone.

:func:`verify_export` checks, in one streaming pass, the checkpoint signature (and
required witness cosignatures), each leaf's bytes against its hash, strictly
increasing indexes, and then either

* for an unfiltered export: that every index ``0 .. size-1`` is present and that the
  root recomputed from all leaf hashes (O(n), in chunks of ``2**14``) equals the
  checkpoint root; if it does not and the input can be read again, a second pass over
  the inclusion proofs names the first bad index; or
* for a filtered export: each leaf's inclusion proof against the checkpoint root, and
  that each event matches the declared filters.

:func:`verify_checkpoint_consistency` checks that a newer checkpoint extends a kept
older one (rollback and fork detection).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Iterator, Sequence
from typing import Final

import msgspec

from audit.checkpoint import Checkpoint, verify_checkpoint
from audit.errors import AuditFormatError, ExportError, ProofError, VerificationError
from audit.export import MAX_LINE_BYTES, ExportFilters, ExportHeader, ExportLeaf, ExportTrailer
from audit.leaf import MAX_LEAF_BYTES, AuditEvent, decode_leaf
from audit.merkle import HASH_SIZE, CompactRange, _fold_levels
from audit.note import VerifierKey
from audit.proofs import verify_consistency, verify_inclusion

__all__ = ["ExportSummary", "verify_checkpoint_consistency", "verify_export"]

_CHUNK_LEVEL: Final = 14
_CHUNK: Final = 1 << _CHUNK_LEVEL
_Line = ExportHeader | ExportLeaf | ExportTrailer
_decoder: Final[msgspec.json.Decoder[_Line]] = msgspec.json.Decoder(_Line)


class ExportSummary(msgspec.Struct, frozen=True):
    """What a verified export proved.

    Attributes:
        origin: The log's origin.
        tree_size: Size of the checkpoint the export is bound to.
        root: Its root hash.
        count: Number of leaf lines.
        pruned: How many of them were pruned (hash only).
        complete: Whether every index of the checkpoint was present.
        proofs_checked: Number of inclusion proofs verified.
        filters: The export's declared filters.
        cosignatures: Verified witness cosignatures, key name to timestamp.
    """

    origin: str
    tree_size: int
    root: bytes
    count: int
    pruned: int
    complete: bool
    proofs_checked: int
    filters: ExportFilters
    cosignatures: dict[str, int]


def _decode(line: bytes | str, index: int | None) -> _Line:
    if len(line) > MAX_LINE_BYTES:
        raise AuditFormatError("export line is too long", index=index)
    try:
        return _decoder.decode(line)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        # msgspec reports invalid UTF-8 inside a string as UnicodeDecodeError, not DecodeError.
        raise AuditFormatError("malformed export line", index=index) from exc


def _header(lines: Iterator[bytes | str]) -> ExportHeader:
    first = next(lines, None)
    if first is None:
        raise ExportError("export is empty")
    header = _decode(first, None)
    if not isinstance(header, ExportHeader):
        raise ExportError("export does not start with a header")
    return header


def verify_export(
    lines: Iterable[bytes | str],
    log_keys: Sequence[VerifierKey],
    *,
    require_complete: bool = False,
    witness_keys: Sequence[VerifierKey] = (),
    origin: str | None = None,
    check_all_proofs: bool = False,
) -> ExportSummary:
    """Verify a JSON Lines export; raise naming the first failing index.

    Args:
        lines: The export's lines (bytes or str, newline optional). Pass something that
            can be iterated twice (a list, or an object re-opening a file) to have a root
            mismatch in an unfiltered export traced to its first bad index.
        log_keys: Trusted log keys.
        require_complete: Refuse a filtered export.
        witness_keys: Witnesses whose cosignature on the checkpoint is required.
        origin: Expected log origin (default: the signing key's name).
        check_all_proofs: Also verify every inclusion proof of an unfiltered export.

    Returns:
        A summary of what was verified.

    Raises:
        VerificationError: The first failure found; ``.index`` names the leaf, if any.
    """
    stream = iter(lines)
    header = _header(stream)
    verified = verify_checkpoint(header.checkpoint, log_keys, origin=origin, witness_keys=witness_keys)
    checkpoint = verified.checkpoint
    complete = header.filters.unfiltered
    if require_complete and not complete:
        raise ExportError("export is filtered but a complete export is required")
    if not complete and not header.proofs:
        raise ExportError("a filtered export must carry inclusion proofs")
    check_proofs = header.proofs and (check_all_proofs or not complete)
    walker = _LeafWalker(header, checkpoint, complete, check_proofs)
    try:
        _verify_leaves(stream, walker)
    except _RootMismatchError:
        if header.proofs and not isinstance(lines, Iterator):
            _locate_bad_proof(lines, checkpoint)
        raise ExportError("leaf hashes do not lead to the checkpoint root") from None
    return ExportSummary(
        checkpoint.origin,
        checkpoint.size,
        checkpoint.root,
        walker.count,
        walker.pruned,
        complete,
        walker.checked,
        header.filters,
        verified.cosignatures,
    )


class _LeafWalker:
    """Checks leaf lines one by one and keeps what the end-of-export checks need."""

    def __init__(
        self, header: ExportHeader, checkpoint: Checkpoint, complete: bool, check_proofs: bool
    ) -> None:
        self.size, self.root, self.filters = checkpoint.size, checkpoint.root, header.filters
        self.complete, self.proofs, self.check_proofs = complete, header.proofs, check_proofs
        self.compact = CompactRange()
        self.chunk: list[bytes] = []
        self.previous, self.count, self.pruned, self.checked = -1, 0, 0, 0

    def feed(self, item: ExportLeaf) -> None:
        index = item.i
        if index <= self.previous:
            raise ExportError("leaf index out of order", index=index)
        if self.complete and index != self.previous + 1:
            raise ExportError("leaf missing from a complete export", index=self.previous + 1)
        if index >= self.size:
            raise ExportError("leaf index beyond the checkpoint", index=index)
        value = item.h
        if len(value) != HASH_SIZE:
            raise AuditFormatError("leaf hash must be 32 bytes", index=index)
        if item.leaf is None:
            self._pruned(item, index)
        else:
            self._leaf(item.leaf, item.pruned, value, index)
        if self.proofs:
            self._proof(item.proof, value, index)
        if self.complete:
            self.chunk.append(value)
            if len(self.chunk) == _CHUNK:
                self.compact.append_subtree(_CHUNK_LEVEL, _fold_levels(self.chunk))
                self.chunk = []
        self.previous = index
        self.count += 1

    def _pruned(self, item: ExportLeaf, index: int) -> None:
        if not item.pruned or not self.complete:
            raise ExportError("leaf bytes missing (pruned only in full exports)", index=index)
        self.pruned += 1

    def _leaf(self, leaf: bytes, pruned: bool, value: bytes, index: int) -> None:
        if pruned or len(leaf) > MAX_LEAF_BYTES:
            raise AuditFormatError("leaf marked pruned yet present, or too long", index=index)
        if hashlib.sha256(b"\x00" + leaf).digest() != value:
            raise ExportError("leaf bytes do not match the leaf hash", index=index)
        if not self.complete and not self.filters.matches(_event(leaf, index)):
            raise ExportError("leaf does not match the export filters", index=index)

    def _proof(self, proof: list[bytes] | None, value: bytes, index: int) -> None:
        if proof is None:
            raise AuditFormatError("leaf line lacks its inclusion proof", index=index)
        if self.check_proofs:
            verify_inclusion(value, index, self.size, proof, self.root)
            self.checked += 1

    def finish(self, trailer: ExportTrailer | None) -> None:
        if trailer is None:
            raise ExportError("export is truncated: no trailer", index=self.previous + 1)
        if trailer.count != self.count:
            raise ExportError("trailer count does not match the leaf lines", index=self.count)
        if self.complete:
            if self.count != self.size:
                raise ExportError("leaves missing from the end of the export", index=self.count)
            self.compact.extend(self.chunk)
            if not hmac.compare_digest(self.compact.root(), self.root):
                raise _RootMismatchError


def _verify_leaves(stream: Iterator[bytes | str], walker: _LeafWalker) -> None:
    trailer: ExportTrailer | None = None
    for line in stream:
        item = _decode(line, walker.previous + 1)
        if isinstance(item, ExportLeaf):
            walker.feed(item)
            continue
        if isinstance(item, ExportHeader):
            raise ExportError("second header in export", index=walker.previous + 1)
        trailer = item
        break
    if trailer is not None and next(stream, None) is not None:
        raise ExportError("data after the export trailer")
    walker.finish(trailer)


class _RootMismatchError(Exception):
    """Internal: an unfiltered export's leaves do not lead to the root."""


def _locate_bad_proof(lines: Iterable[bytes | str], checkpoint: Checkpoint) -> None:
    """Second pass: raise naming the first leaf whose inclusion proof fails."""
    stream = iter(lines)
    next(stream)
    for line in stream:
        item = _decode(line, None)
        if isinstance(item, ExportLeaf) and item.proof is not None:
            try:
                verify_inclusion(item.h, item.i, checkpoint.size, item.proof, checkpoint.root)
            except ProofError as exc:
                raise ProofError("inclusion proof does not lead to the root", index=item.i) from exc


def _event(leaf: bytes, index: int) -> AuditEvent:
    try:
        return decode_leaf(leaf)
    except VerificationError as exc:
        raise AuditFormatError("leaf is not a valid audit event", index=index) from exc


def verify_checkpoint_consistency(
    old_note: str,
    new_note: str,
    proof: Sequence[bytes],
    log_keys: Sequence[VerifierKey],
    *,
    origin: str | None = None,
) -> tuple[Checkpoint, Checkpoint]:
    """Check that a newer signed checkpoint extends a kept older one.

    Returns:
        The old and new checkpoints.

    Raises:
        SignatureError: Either checkpoint is not validly signed by a trusted log key.
        ProofError: Different logs, a smaller new tree (rollback), equal sizes with
            different roots, or an invalid consistency proof (fork).
    """
    old = verify_checkpoint(old_note, log_keys, origin=origin).checkpoint
    new = verify_checkpoint(new_note, log_keys, origin=origin).checkpoint
    if old.origin != new.origin:
        raise ProofError("checkpoints are from different logs")
    if new.size < old.size:
        raise ProofError("newer checkpoint is smaller than the kept one (rollback)")
    verify_consistency(old.size, new.size, old.root, new.root, proof)
    return old, new

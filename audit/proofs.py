"""RFC 9162 inclusion and consistency proofs: generation and verification.

Generation follows RFC 9162 §2.1.3.1 (``PATH``) and §2.1.4.1 (``PROOF``/``SUBPROOF``).
Every proof element is the hash of a leaf range ``[lo, hi)``; each such range is one
complete subtree or, on the tree's right edge, a run of complete subtrees of
decreasing size whose hash is their right fold. So a proof needs only stored
complete-subtree hashes, listed by a :class:`ProofPlan`:

* in memory: :func:`inclusion_proof` and :func:`consistency_proof` take leaf hashes;
* from storage: :func:`inclusion_proof_plan` / :func:`consistency_proof_plan` list the
  :class:`~audit.merkle.NodeID` s to fetch (one query), and :meth:`ProofPlan.assemble`
  builds the proof from what was fetched; :func:`inclusion_proof_from_source` and
  :func:`consistency_proof_from_source` do both against a synchronous
  :class:`NodeSource`.

Verification is RFC 9162 §2.1.3.2 and §2.1.4.2 as written, and raises
:class:`~audit.errors.ProofError`.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence
from typing import Protocol

import msgspec

from audit.errors import ProofError
from audit.merkle import EMPTY_ROOT, HASH_SIZE, NodeID, node_hash, root_from_leaf_hashes

__all__ = [
    "MemoryTree",
    "NodeSource",
    "ProofPlan",
    "consistency_proof",
    "consistency_proof_from_source",
    "consistency_proof_plan",
    "inclusion_proof",
    "inclusion_proof_from_source",
    "inclusion_proof_plan",
    "range_node_ids",
    "root_from_inclusion_proof",
    "verify_consistency",
    "verify_inclusion",
]


class NodeSource(Protocol):
    """Where stored complete-subtree hashes come from (a database, a file, memory)."""

    def node_hashes(self, nodes: Sequence[NodeID]) -> Sequence[bytes]:
        """Return the hash of each requested complete subtree, in request order.

        Raises:
            VerificationError: A node is not available (not stored or beyond the tree).
        """
        ...


def _largest_power_of_two_below(n: int) -> int:
    """Return the largest power of two strictly less than ``n`` (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def range_node_ids(lo: int, hi: int) -> list[NodeID]:
    """Split the leaf range ``[lo, hi)`` into maximal aligned complete subtrees, left to right.

    For every range a proof uses, the sizes strictly decrease, so the range's
    Merkle hash is the right fold ``H(n0, H(n1, ... n_last))`` of these nodes.
    """
    if not 0 <= lo < hi:
        raise ProofError("a leaf range must be non-empty")
    nodes: list[NodeID] = []
    while lo < hi:
        fit = (hi - lo).bit_length() - 1
        level = min(fit, (lo & -lo).bit_length() - 1) if lo else fit
        nodes.append(NodeID(level, lo >> level))
        lo += 1 << level
    return nodes


def _inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    if not 0 <= index < size:
        raise ProofError("leaf index out of range for the tree size")
    ranges: list[tuple[int, int]] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = _largest_power_of_two_below(hi - lo)
        if index - lo < k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            lo += k
    ranges.reverse()
    return ranges


def _consistency_ranges(old_size: int, new_size: int) -> list[tuple[int, int]]:
    if not 0 <= old_size <= new_size:
        raise ProofError("a consistency proof needs 0 <= old size <= new size")
    ranges: list[tuple[int, int]] = []
    if old_size in (0, new_size):
        return ranges
    m, lo, hi, whole = old_size, 0, new_size, True
    while m != hi - lo:
        k = _largest_power_of_two_below(hi - lo)
        if m <= k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            m -= k
            lo += k
            whole = False
    if not whole:
        ranges.append((lo, hi))
    ranges.reverse()
    return ranges


class ProofPlan(msgspec.Struct, frozen=True):
    """The complete subtrees a proof needs and how to combine them.

    Attributes:
        ranges: The leaf range behind each proof element, in proof order.
        nodes: Every complete subtree to fetch, without repeats, in first-use order.
    """

    ranges: tuple[tuple[int, int], ...]
    nodes: tuple[NodeID, ...]

    @classmethod
    def for_ranges(cls, ranges: Sequence[tuple[int, int]]) -> ProofPlan:
        """Build the plan for the given proof-element ranges."""
        seen: dict[NodeID, None] = {}
        for lo, hi in ranges:
            for node in range_node_ids(lo, hi):
                seen.setdefault(node, None)
        return cls(tuple(ranges), tuple(seen))

    def assemble(self, hashes: Mapping[NodeID, bytes]) -> list[bytes]:
        """Build the proof from fetched node hashes.

        Raises:
            ProofError: A needed node is missing or is not 32 bytes.
        """
        proof: list[bytes] = []
        for lo, hi in self.ranges:
            parts = []
            for node in range_node_ids(lo, hi):
                value = hashes.get(node)
                if value is None or len(value) != HASH_SIZE:
                    raise ProofError(f"node ({node.level}, {node.index}) is not available")
                parts.append(value)
            value = parts[-1]
            for left in reversed(parts[:-1]):
                value = node_hash(left, value)
            proof.append(value)
        return proof


def inclusion_proof_plan(index: int, size: int) -> ProofPlan:
    """List what an inclusion proof of leaf ``index`` in a tree of ``size`` needs."""
    return ProofPlan.for_ranges(_inclusion_ranges(index, size))


def consistency_proof_plan(old_size: int, new_size: int) -> ProofPlan:
    """List what a consistency proof from ``old_size`` to ``new_size`` needs."""
    return ProofPlan.for_ranges(_consistency_ranges(old_size, new_size))


def _fetch(plan: ProofPlan, source: NodeSource) -> list[bytes]:
    values = source.node_hashes(plan.nodes)
    if len(values) != len(plan.nodes):
        raise ProofError("the node source returned the wrong number of hashes")
    return plan.assemble(dict(zip(plan.nodes, values, strict=True)))


def inclusion_proof_from_source(source: NodeSource, index: int, size: int) -> list[bytes]:
    """Build an inclusion proof from stored node hashes (one batched fetch)."""
    return _fetch(inclusion_proof_plan(index, size), source)


def consistency_proof_from_source(source: NodeSource, old_size: int, new_size: int) -> list[bytes]:
    """Build a consistency proof from stored node hashes (one batched fetch)."""
    return _fetch(consistency_proof_plan(old_size, new_size), source)


def _range_hashes(leaf_hashes: Sequence[bytes], ranges: Sequence[tuple[int, int]]) -> list[bytes]:
    return [root_from_leaf_hashes(leaf_hashes[lo:hi]) for lo, hi in ranges]


def inclusion_proof(leaf_hashes: Sequence[bytes], index: int, size: int | None = None) -> list[bytes]:
    """Return PATH(index, D[size]) from in-memory leaf hashes (size defaults to all)."""
    size = len(leaf_hashes) if size is None else size
    if size > len(leaf_hashes):
        raise ProofError("tree size exceeds the leaves given")
    return _range_hashes(leaf_hashes, _inclusion_ranges(index, size))


def consistency_proof(
    leaf_hashes: Sequence[bytes], old_size: int, new_size: int | None = None
) -> list[bytes]:
    """Return PROOF(old_size, D[new_size]) from in-memory leaf hashes (new size defaults to all)."""
    new_size = len(leaf_hashes) if new_size is None else new_size
    if new_size > len(leaf_hashes):
        raise ProofError("tree size exceeds the leaves given")
    return _range_hashes(leaf_hashes, _consistency_ranges(old_size, new_size))


class MemoryTree:
    """Every complete subtree of an in-memory tree: a :class:`NodeSource` for tests and tools."""

    __slots__ = ("_levels",)

    def __init__(self, leaf_hashes: Sequence[bytes]) -> None:
        levels = [list(leaf_hashes)]
        while len(levels[-1]) > 1:
            below = levels[-1]
            levels.append([node_hash(a, b) for a, b in zip(below[0::2], below[1::2], strict=False)])
        self._levels = levels

    @property
    def size(self) -> int:
        """Number of leaves."""
        return len(self._levels[0])

    def root(self) -> bytes:
        """Root hash of the whole tree."""
        size = self.size
        if size == 0:
            return EMPTY_ROOT
        return self._range_hash(0, size)

    def _range_hash(self, lo: int, hi: int) -> bytes:
        return ProofPlan.for_ranges([(lo, hi)]).assemble(self._lookup(range_node_ids(lo, hi)))[0]

    def _lookup(self, nodes: Sequence[NodeID]) -> dict[NodeID, bytes]:
        return dict(zip(nodes, self.node_hashes(nodes), strict=True))

    def node_hashes(self, nodes: Sequence[NodeID]) -> list[bytes]:
        """Return stored complete-subtree hashes in request order.

        Raises:
            ProofError: A node is not a complete subtree of this tree.
        """
        out: list[bytes] = []
        for node in nodes:
            if node.level >= len(self._levels) or not 0 <= node.index < len(self._levels[node.level]):
                raise ProofError(f"node ({node.level}, {node.index}) is not available")
            out.append(self._levels[node.level][node.index])
        return out

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """Inclusion proof for ``index`` in the tree of ``size`` leaves (default: all)."""
        return inclusion_proof_from_source(self, index, self.size if size is None else size)

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """Consistency proof from ``old_size`` to ``new_size`` (default: all)."""
        return consistency_proof_from_source(self, old_size, self.size if new_size is None else new_size)


def _check_hashes(*values: bytes) -> None:
    for value in values:
        if len(value) != HASH_SIZE:
            raise ProofError("a hash must be 32 bytes")


def root_from_inclusion_proof(leaf_hash_value: bytes, index: int, size: int, proof: Sequence[bytes]) -> bytes:
    """Return the root implied by an inclusion proof (RFC 9162 §2.1.3.2 steps 1-4).

    Raises:
        ProofError: The index is out of range or the proof has the wrong length.
    """
    _check_hashes(leaf_hash_value, *proof)
    if index < 0 or index >= size:
        raise ProofError("leaf index out of range for the tree size")
    fn, sn, r = index, size - 1, leaf_hash_value
    for p in proof:
        if sn == 0:
            raise ProofError("inclusion proof is too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("inclusion proof is too short")
    return r


def verify_inclusion(
    leaf_hash_value: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Verify that ``leaf_hash_value`` is leaf ``index`` of the tree ``(size, root)``.

    Raises:
        ProofError: It is not.
    """
    _check_hashes(root)
    computed = root_from_inclusion_proof(leaf_hash_value, index, size, proof)
    if not hmac.compare_digest(computed, root):
        raise ProofError("inclusion proof does not lead to the root", index=index)


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Verify that tree ``(new_size, new_root)`` extends ``(old_size, old_root)``.

    RFC 9162 §2.1.4.2 for ``0 < old_size < new_size``. Equal sizes need equal roots and
    an empty proof; the empty tree (whose root must be ``SHA-256()``) is a prefix of
    every tree, with an empty proof.

    Raises:
        ProofError: The trees are not consistent or the proof is malformed.
    """
    _check_hashes(old_root, new_root, *proof)
    if old_size < 0 or old_size > new_size:
        raise ProofError("the old tree is larger than the new one")
    if old_size in {0, new_size}:
        expected = EMPTY_ROOT if old_size == 0 else new_root
        if proof or not hmac.compare_digest(old_root, expected):
            raise ProofError("trees of these sizes are not consistent")
        return
    if not proof:
        raise ProofError("consistency proof is empty")
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("consistency proof is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0 or not hmac.compare_digest(fr, old_root) or not hmac.compare_digest(sr, new_root):
        raise ProofError("consistency proof does not verify")

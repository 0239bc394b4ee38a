"""RFC 9162 (RFC 6962) Merkle tree hashing and the compact range used to append.

Hashing is SHA-256 with domain separation: a leaf hash is ``SHA-256(0x00 || leaf)``,
an interior node is ``SHA-256(0x01 || left || right)``, and the empty tree's root is
``SHA-256()`` (RFC 9162 §2.1.1).

Node coordinates: ``NodeID(level, index)`` names the complete subtree whose leaves
are ``[index * 2**level, (index + 1) * 2**level)``; level 0 is the leaf hashes.
Only complete subtrees have coordinates; every hash a proof needs is one of them or
a right fold of some of them (see :mod:`audit.proofs`).

A :class:`CompactRange` is the "frontier" of a tree of size ``n``: the hashes of
the complete subtrees on its right edge, one per set bit of ``n``, largest first.
It is all an integrator needs to append a batch and compute the new root, and each
append reports the complete subtrees it created so they can be stored.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

import msgspec

from audit.errors import AuditFormatError

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "CompactRange",
    "NodeID",
    "TreeNode",
    "leaf_hash",
    "node_hash",
    "root_from_leaf_hashes",
    "subtree_root",
]

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"
_sha256 = hashlib.sha256


class NodeID(msgspec.Struct, frozen=True, array_like=True, order=True):
    """Coordinates of a complete subtree: ``level`` (0 = leaf) and ``index`` in that level."""

    level: int
    index: int

    @property
    def first_leaf(self) -> int:
        """Index of the first leaf this subtree covers."""
        return self.index << self.level

    @property
    def leaf_count(self) -> int:
        """Number of leaves this subtree covers."""
        return 1 << self.level


class TreeNode(msgspec.Struct, frozen=True, array_like=True):
    """A complete subtree's coordinates and hash, as an integrator stores it."""

    level: int
    index: int
    hash: bytes

    @property
    def id(self) -> NodeID:
        """The node's coordinates."""
        return NodeID(self.level, self.index)


def leaf_hash(leaf: bytes) -> bytes:
    """Return the RFC 9162 leaf hash ``SHA-256(0x00 || leaf)``."""
    return _sha256(_LEAF_PREFIX + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Return the RFC 9162 interior node hash ``SHA-256(0x01 || left || right)``."""
    return _sha256(_NODE_PREFIX + left + right).digest()


def _check_hash(value: bytes) -> None:
    if len(value) != HASH_SIZE:
        raise AuditFormatError("a hash must be 32 bytes")


def root_from_leaf_hashes(leaf_hashes: Sequence[bytes]) -> bytes:
    """Return MTH, the root of the tree whose leaf hashes are given, in O(n).

    Level by level, promoting a lone right node unchanged, which gives the same
    tree as RFC 9162's split at the largest power of two below ``n``.
    """
    if not leaf_hashes:
        return EMPTY_ROOT
    level = list(leaf_hashes)
    for value in level:
        _check_hash(value)
    return _fold_levels(level)


def _fold_levels(level: list[bytes]) -> bytes:
    sha = _sha256
    prefix = _NODE_PREFIX
    while len(level) > 1:
        odd = level[-1] if len(level) & 1 else None
        level = [sha(prefix + a + b).digest() for a, b in zip(level[0::2], level[1::2], strict=False)]
        if odd is not None:
            level.append(odd)
    return level[0]


def subtree_root(leaf_hashes: Sequence[bytes]) -> bytes:
    """Return the hash of a complete subtree given its ``2**k`` leaf hashes (k >= 0).

    Raises:
        AuditFormatError: The count is not a power of two.
    """
    count = len(leaf_hashes)
    if count == 0 or count & (count - 1):
        raise AuditFormatError("a complete subtree has a power-of-two number of leaves")
    return root_from_leaf_hashes(leaf_hashes)


class CompactRange:
    """The right edge of a tree of ``size`` leaves: enough to append and to get the root.

    ``hashes[i]`` is the complete subtree for the i-th set bit of ``size``, from the
    most significant (leftmost, largest) to the least. Store ``size`` and ``hashes``
    with the tree state; rebuild with :meth:`from_state`.
    """

    __slots__ = ("_hashes", "_size")

    def __init__(self) -> None:
        self._size = 0
        self._hashes: list[bytes] = []

    @classmethod
    def from_state(cls, size: int, hashes: Sequence[bytes]) -> CompactRange:
        """Rebuild a compact range from a stored size and right-edge hashes.

        Raises:
            AuditFormatError: The size is negative, a hash is not 32 bytes, or the
                number of hashes is not the number of set bits of ``size``.
        """
        if size < 0 or len(hashes) != size.bit_count():
            raise AuditFormatError("a compact range has one hash per set bit of its size")
        for value in hashes:
            _check_hash(value)
        compact = cls()
        compact._size = size
        compact._hashes = list(hashes)
        return compact

    @property
    def size(self) -> int:
        """Number of leaves appended so far."""
        return self._size

    @property
    def hashes(self) -> tuple[bytes, ...]:
        """Right-edge complete subtree hashes, largest first."""
        return tuple(self._hashes)

    def node_ids(self) -> list[NodeID]:
        """Coordinates of :attr:`hashes`, in the same order."""
        ids: list[NodeID] = []
        start = 0
        for level in range(self._size.bit_length() - 1, -1, -1):
            if self._size >> level & 1:
                ids.append(NodeID(level, start >> level))
                start += 1 << level
        return ids

    def copy(self) -> CompactRange:
        """Return an independent copy."""
        return CompactRange.from_state(self._size, self._hashes)

    def append(self, leaf_hash_value: bytes) -> list[TreeNode]:
        """Append one leaf hash; return the complete subtrees it creates, leaf first."""
        _check_hash(leaf_hash_value)
        created: list[TreeNode] = []
        self._push(0, leaf_hash_value, created)
        return created

    def extend(self, leaf_hashes: Iterable[bytes]) -> list[TreeNode]:
        """Append leaf hashes in order; return every complete subtree created."""
        created: list[TreeNode] = []
        for value in leaf_hashes:
            _check_hash(value)
            self._push(0, value, created)
        return created

    def append_subtree(self, level: int, subtree_hash: bytes) -> None:
        """Append a whole complete subtree of ``2**level`` leaves at once.

        The tree size must be a multiple of ``2**level``; intermediate nodes inside the
        subtree are not reported (the caller computed them).

        Raises:
            AuditFormatError: The subtree would not be aligned.
        """
        _check_hash(subtree_hash)
        if level < 0 or self._size & ((1 << level) - 1):
            raise AuditFormatError("an appended subtree must be aligned to its size")
        self._push(level, subtree_hash, None)

    def _push(self, level: int, value: bytes, created: list[TreeNode] | None) -> None:
        added = 1 << level
        index = self._size >> level
        if created is not None:
            created.append(TreeNode(level, index, value))
        hashes = self._hashes
        while index & 1:
            value = _sha256(_NODE_PREFIX + hashes.pop() + value).digest()
            index >>= 1
            level += 1
            if created is not None:
                created.append(TreeNode(level, index, value))
        hashes.append(value)
        self._size += added

    def root(self) -> bytes:
        """Return the root hash of the tree of :attr:`size` leaves."""
        if not self._hashes:
            return EMPTY_ROOT
        value = self._hashes[-1]
        for left in reversed(self._hashes[:-1]):
            value = _sha256(_NODE_PREFIX + left + value).digest()
        return value

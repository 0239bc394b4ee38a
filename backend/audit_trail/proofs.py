"""Inclusion and consistency proofs from the stored tree (``audit_log`` + ``audit_tree_node``).

Single proofs use :mod:`audit.proofs` plans: list the complete subtrees needed, fetch
them in one query, assemble. Exports need a proof per leaf, so :class:`BlockProofs`
works per aligned block of ``2**BLOCK_LEVEL`` leaves: a leaf's proof inside a
complete block is its ``BLOCK_LEVEL`` siblings within the block (computed from the
block's stored leaf hashes) followed by the block's own path to the root, which is
the same for every leaf of the block (fetched once). Leaves of the last, incomplete
block get plan-based proofs, their nodes fetched in one query per chunk.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import asyncpg

from audit.errors import ProofError
from audit.merkle import NodeID, node_hash
from audit.proofs import ProofPlan, consistency_proof_plan, inclusion_proof_plan
from backend.audit_trail import repository as repo

__all__ = ["BLOCK_LEVEL", "BlockProofs", "consistency_proof", "inclusion_proof"]

BLOCK_LEVEL: Final = 10
_BLOCK: Final = 1 << BLOCK_LEVEL


async def _assemble(conn: asyncpg.Connection, plan: ProofPlan) -> list[bytes]:
    return plan.assemble(await repo.fetch_nodes(conn, plan.nodes))


async def inclusion_proof(conn: asyncpg.Connection, index: int, size: int) -> list[bytes]:
    """RFC 9162 inclusion proof of leaf ``index`` in the stored tree of ``size`` leaves.

    Raises:
        ProofError: Out of range, or a node is not stored.
    """
    return await _assemble(conn, inclusion_proof_plan(index, size))


async def consistency_proof(conn: asyncpg.Connection, old_size: int, new_size: int) -> list[bytes]:
    """RFC 9162 consistency proof between two stored tree sizes.

    Raises:
        ProofError: Sizes out of order, or a node is not stored.
    """
    return await _assemble(conn, consistency_proof_plan(old_size, new_size))


def _levels(leaf_hashes: list[bytes]) -> list[list[bytes]]:
    levels = [leaf_hashes]
    for _ in range(BLOCK_LEVEL - 1):
        below = levels[-1]
        levels.append([node_hash(a, b) for a, b in zip(below[0::2], below[1::2], strict=True)])
    return levels


class BlockProofs:
    """Inclusion proofs for many leaves of one tree size, loaded chunk by chunk in index order.

    Call :meth:`load` (async, database) with the next chunk's indexes, then
    :meth:`proof` (pure CPU, may run in a thread) for each of them. Memory holds the
    blocks of one chunk only.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._full_blocks = size >> BLOCK_LEVEL
        self._blocks: dict[int, tuple[list[list[bytes]], list[bytes]]] = {}
        self._tail: dict[NodeID, bytes] = {}
        self._tail_plans: dict[int, ProofPlan] = {}

    async def load(self, conn: asyncpg.Connection, indexes: Sequence[int]) -> None:
        """Fetch what the proofs of ``indexes`` (ascending, all below the size) need.

        Raises:
            ProofError: A needed node or leaf is not stored.
        """
        wanted = sorted(
            {index >> BLOCK_LEVEL for index in indexes if index >> BLOCK_LEVEL < self._full_blocks}
        )
        self._blocks = {b: v for b, v in self._blocks.items() if b in wanted}
        for block in wanted:
            if block not in self._blocks:
                self._blocks[block] = await self._load_block(conn, block)
        tail = [index for index in indexes if index >> BLOCK_LEVEL >= self._full_blocks]
        self._tail_plans = {index: inclusion_proof_plan(index, self.size) for index in tail}
        needed = {node for plan in self._tail_plans.values() for node in plan.nodes}
        self._tail = await repo.fetch_nodes(conn, sorted(needed)) if needed else {}

    async def _load_block(
        self, conn: asyncpg.Connection, block: int
    ) -> tuple[list[list[bytes]], list[bytes]]:
        lo = block << BLOCK_LEVEL
        rows = await conn.fetch(
            "SELECT leaf_hash FROM audit_log WHERE idx >= $1 AND idx < $2 ORDER BY idx", lo, lo + _BLOCK
        )
        if len(rows) != _BLOCK:
            raise ProofError("a leaf of a complete block is not stored", index=lo)
        upper_plan = ProofPlan.for_ranges(inclusion_proof_plan(lo, self.size).ranges[BLOCK_LEVEL:])
        upper = await _assemble(conn, upper_plan)
        return _levels([row["leaf_hash"] for row in rows]), upper

    def proof(self, index: int) -> list[bytes]:
        """The inclusion proof of ``index`` (loaded by the last :meth:`load`)."""
        plan = self._tail_plans.get(index)
        if plan is not None:
            return plan.assemble(self._tail)
        levels, upper = self._blocks[index >> BLOCK_LEVEL]
        position = index & (_BLOCK - 1)
        return [levels[level][(position >> level) ^ 1] for level in range(BLOCK_LEVEL)] + upper

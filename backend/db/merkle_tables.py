"""SQL the two verifiable logs share: tree nodes, signed checkpoints and the state row.

The audit log (migration 0003) and the key log (migration 0015) store a Merkle tree the
same way, in tables of the same shape under their own names: leaves (``idx``,
``leaf_hash``, ...), complete subtrees (``level``, ``idx``, ``hash``), signed checkpoints
(``size``, ``root``, ``note``, ``created_at``) and one state row (``size``,
``compact``, ``root``, ``updated_at``). Each log's repository binds a
:class:`MerkleTables` to its tables; what differs (the leaves, the queue) stays there.

Returns Structs and bytes; raises nothing of its own.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg
import msgspec

from audit.merkle import NodeID, TreeNode

__all__ = ["CheckpointRow", "MerkleTables", "TreeState"]


class TreeState(msgspec.Struct, frozen=True):
    """The integrator's state row: size, compact range (largest subtree first), root."""

    size: int
    compact: list[bytes]
    root: bytes


class CheckpointRow(msgspec.Struct, frozen=True):
    """A stored signed checkpoint."""

    size: int
    root: bytes
    note: str
    created_at: dt.datetime


def _checkpoint(row: asyncpg.Record | None) -> CheckpointRow | None:
    return None if row is None else CheckpointRow(row["size"], row["root"], row["note"], row["created_at"])


@dataclass(frozen=True)
class MerkleTables:
    """One log's tables (fixed names from the code, never from input)."""

    leaves: str
    nodes: str
    checkpoints: str
    state: str

    async def insert_nodes(self, conn: asyncpg.Connection, nodes: Sequence[TreeNode]) -> None:
        """Store complete subtrees of level >= 1 (written once; a duplicate is an error)."""
        if not nodes:
            return
        await conn.execute(
            f"""
            INSERT INTO {self.nodes} (level, idx, hash)
            SELECT * FROM unnest($1::smallint[], $2::bigint[], $3::bytea[])
            """,  # noqa: S608 -- fixed table name
            [n.level for n in nodes],
            [n.index for n in nodes],
            [n.hash for n in nodes],
        )

    async def fetch_nodes(self, conn: asyncpg.Connection, nodes: Sequence[NodeID]) -> dict[NodeID, bytes]:
        """Stored hashes of the given complete subtrees (level 0 from the leaves); absent ones left out."""
        leaves = [n.index for n in nodes if n.level == 0]
        inner = [n for n in nodes if n.level > 0]
        rows = await conn.fetch(
            f"""
            SELECT 0 AS level, idx, leaf_hash AS hash FROM {self.leaves} WHERE idx = ANY($1::bigint[])
            UNION ALL
            SELECT t.level, t.idx, t.hash
            FROM {self.nodes} t
            JOIN unnest($2::smallint[], $3::bigint[]) AS n(level, idx) USING (level, idx)
            """,  # noqa: S608 -- fixed table names
            leaves,
            [n.level for n in inner],
            [n.index for n in inner],
        )
        return {NodeID(r["level"], r["idx"]): r["hash"] for r in rows}

    async def insert_checkpoint(
        self, conn: asyncpg.Connection, size: int, root: bytes, note: str, at: dt.datetime
    ) -> None:
        """Store a signed checkpoint."""
        await conn.execute(
            f"INSERT INTO {self.checkpoints} (size, root, note, created_at) VALUES ($1, $2, $3, $4)",  # noqa: S608 -- fixed table name
            size,
            root,
            note,
            at,
        )

    async def update_state(
        self, conn: asyncpg.Connection, size: int, compact: Sequence[bytes], root: bytes, at: dt.datetime
    ) -> None:
        """Move the state row forward (the caller holds its lock)."""
        await conn.execute(
            f"UPDATE {self.state} SET size = $1, compact = $2, root = $3, updated_at = $4 WHERE id = 1",  # noqa: S608 -- fixed table name
            size,
            list(compact),
            root,
            at,
        )

    async def latest_checkpoint(self, conn: asyncpg.Connection) -> CheckpointRow | None:
        """The newest signed checkpoint."""
        return _checkpoint(
            await conn.fetchrow(
                f"SELECT size, root, note, created_at FROM {self.checkpoints} ORDER BY size DESC LIMIT 1"  # noqa: S608 -- fixed table name
            )
        )

    async def checkpoint(self, conn: asyncpg.Connection, size: int) -> CheckpointRow | None:
        """The signed checkpoint of tree size ``size``."""
        return _checkpoint(
            await conn.fetchrow(
                f"SELECT size, root, note, created_at FROM {self.checkpoints} WHERE size = $1",  # noqa: S608 -- fixed table name
                size,
            )
        )

"""SQL for the key log: the queue of bundles, leaves, tree nodes, checkpoints, state.

Returns Structs and bytes; raises nothing of its own. Row shapes shared with the audit
log (tree state, checkpoint) are the audit trail's Structs.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence

import asyncpg
import msgspec

from audit.merkle import NodeID, TreeNode
from backend.audit_trail.repository import CheckpointRow, TreeState

__all__ = [
    "LoggedVersion",
    "PendingBundle",
    "account_leaves",
    "checkpoint",
    "fetch_nodes",
    "insert_checkpoint",
    "insert_leaves",
    "insert_nodes",
    "latest_checkpoint",
    "lock_state",
    "take_pending",
    "tree_size",
    "update_state",
]


class PendingBundle(msgspec.Struct, frozen=True):
    """A bundle waiting for its leaf: queue position, account, version, stored bytes."""

    seq: int
    account_id: uuid.UUID
    key_version: int
    bundle: bytes


class LoggedVersion(msgspec.Struct, frozen=True):
    """Where one of an account's key versions sits in the log."""

    key_version: int
    index: int


async def lock_state(conn: asyncpg.Connection, *, wait: bool) -> TreeState | None:
    """Lock the state row (waiting for it, or ``None`` at once when another holds it)."""
    sql = "SELECT size, compact, root FROM key_log_state WHERE id = 1 FOR UPDATE"
    row = await conn.fetchrow(sql if wait else sql + " SKIP LOCKED")
    return None if row is None else TreeState(row["size"], list(row["compact"]), row["root"])


async def tree_size(conn: asyncpg.Connection) -> int:
    """The number of leaves in the log."""
    size: int = await conn.fetchval("SELECT size FROM key_log_state WHERE id = 1")
    return size


async def take_pending(conn: asyncpg.Connection) -> list[PendingBundle]:
    """Dequeue every queued bundle, in queue order (the caller holds the state lock)."""
    rows = await conn.fetch("DELETE FROM key_log_pending RETURNING seq, account_id, key_version, bundle")
    pending = [PendingBundle(r["seq"], r["account_id"], r["key_version"], r["bundle"]) for r in rows]
    return sorted(pending, key=lambda p: p.seq)


async def insert_leaves(
    conn: asyncpg.Connection,
    first_index: int,
    pending: Sequence[PendingBundle],
    leaves: Sequence[bytes],
    at: dt.datetime,
) -> list[bytes]:
    """Append leaves ``first_index, first_index + 1, ...``; return the leaf hashes the database derived."""
    rows = await conn.fetch(
        """
        INSERT INTO key_log (idx, account_id, key_version, leaf, logged_at)
        SELECT $1::bigint + n.ord - 1, n.account_id, n.key_version, n.leaf, $5
        FROM unnest($2::uuid[], $3::integer[], $4::bytea[])
             WITH ORDINALITY AS n(account_id, key_version, leaf, ord)
        RETURNING idx, leaf_hash
        """,
        first_index,
        [p.account_id for p in pending],
        [p.key_version for p in pending],
        list(leaves),
        at,
    )
    return [r["leaf_hash"] for r in sorted(rows, key=lambda r: r["idx"])]


async def insert_nodes(conn: asyncpg.Connection, nodes: Sequence[TreeNode]) -> None:
    """Store complete subtrees of level >= 1 (written once)."""
    if nodes:
        await conn.execute(
            """
            INSERT INTO key_log_tree_node (level, idx, hash)
            SELECT * FROM unnest($1::smallint[], $2::bigint[], $3::bytea[])
            """,
            [n.level for n in nodes],
            [n.index for n in nodes],
            [n.hash for n in nodes],
        )


async def fetch_nodes(conn: asyncpg.Connection, nodes: Sequence[NodeID]) -> dict[NodeID, bytes]:
    """Stored hashes of the given complete subtrees (level 0 from the leaves); absent ones left out."""
    leaves = [n.index for n in nodes if n.level == 0]
    inner = [n for n in nodes if n.level > 0]
    rows = await conn.fetch(
        """
        SELECT 0 AS level, idx, leaf_hash AS hash FROM key_log WHERE idx = ANY($1::bigint[])
        UNION ALL
        SELECT t.level, t.idx, t.hash
        FROM key_log_tree_node t
        JOIN unnest($2::smallint[], $3::bigint[]) AS n(level, idx) USING (level, idx)
        """,
        leaves,
        [n.level for n in inner],
        [n.index for n in inner],
    )
    return {NodeID(r["level"], r["idx"]): r["hash"] for r in rows}


async def insert_checkpoint(
    conn: asyncpg.Connection, size: int, root: bytes, note: str, at: dt.datetime
) -> None:
    """Store a signed checkpoint."""
    await conn.execute(
        "INSERT INTO key_log_checkpoints (size, root, note, created_at) VALUES ($1, $2, $3, $4)",
        size,
        root,
        note,
        at,
    )


async def update_state(
    conn: asyncpg.Connection, size: int, compact: Sequence[bytes], root: bytes, at: dt.datetime
) -> None:
    """Move the state row forward (the caller holds its lock)."""
    await conn.execute(
        "UPDATE key_log_state SET size = $1, compact = $2, root = $3, updated_at = $4 WHERE id = 1",
        size,
        list(compact),
        root,
        at,
    )


def _checkpoint(row: asyncpg.Record | None) -> CheckpointRow | None:
    return None if row is None else CheckpointRow(row["size"], row["root"], row["note"], row["created_at"])


async def latest_checkpoint(conn: asyncpg.Connection) -> CheckpointRow | None:
    """The newest signed checkpoint."""
    return _checkpoint(
        await conn.fetchrow(
            "SELECT size, root, note, created_at FROM key_log_checkpoints ORDER BY size DESC LIMIT 1"
        )
    )


async def checkpoint(conn: asyncpg.Connection, size: int) -> CheckpointRow | None:
    """The signed checkpoint of tree size ``size``."""
    return _checkpoint(
        await conn.fetchrow(
            "SELECT size, root, note, created_at FROM key_log_checkpoints WHERE size = $1", size
        )
    )


async def account_leaves(conn: asyncpg.Connection, account_id: uuid.UUID) -> list[LoggedVersion]:
    """The leaf index of each of an account's logged key versions, oldest first."""
    rows = await conn.fetch(
        "SELECT key_version, idx FROM key_log WHERE account_id = $1 ORDER BY key_version", account_id
    )
    return [LoggedVersion(r["key_version"], r["idx"]) for r in rows]

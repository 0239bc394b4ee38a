"""SQL for the key log: the queue of bundles, leaves, tree nodes, checkpoints, state.

Returns Structs and bytes; raises nothing of its own. Tree nodes, checkpoints and the
state row are stored as the audit log's are (:mod:`backend.db.merkle_tables`).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence

import asyncpg
import msgspec

from backend.db.merkle_tables import MerkleTables, TreeState

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

_TABLES = MerkleTables(leaves="key_log", nodes="key_log_tree_node", checkpoints="key_log_checkpoints",
                       state="key_log_state")  # fmt: skip
insert_nodes = _TABLES.insert_nodes
fetch_nodes = _TABLES.fetch_nodes
insert_checkpoint = _TABLES.insert_checkpoint
update_state = _TABLES.update_state
latest_checkpoint = _TABLES.latest_checkpoint
checkpoint = _TABLES.checkpoint


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


async def account_leaves(conn: asyncpg.Connection, account_id: uuid.UUID) -> list[LoggedVersion]:
    """The leaf index of each of an account's logged key versions, oldest first."""
    rows = await conn.fetch(
        "SELECT key_version, idx FROM key_log WHERE account_id = $1 ORDER BY key_version", account_id
    )
    return [LoggedVersion(r["key_version"], r["idx"]) for r in rows]

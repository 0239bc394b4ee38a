"""SQL for the verifiable log: pending queue, leaves, tree nodes, checkpoints, cosignatures.

Returns Structs and bytes; raises nothing of its own. Event searches live in
:mod:`backend.audit_trail.event_queries`.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence

import asyncpg
import msgspec

from backend.db.merkle_tables import CheckpointRow, MerkleTables, TreeState

__all__ = [
    "CheckpointRow",
    "CosignatureRow",
    "LeafRow",
    "LogLeafRow",
    "PendingRow",
    "PendingStatus",
    "PruneBatch",
    "TreeState",
    "checkpoint",
    "cosignatures",
    "fetch_nodes",
    "insert_checkpoint",
    "insert_cosignature",
    "insert_log",
    "insert_nodes",
    "latest_checkpoint",
    "leaf_at",
    "lock_tree_state",
    "log_leaves",
    "pending_status",
    "prune_batch",
    "take_pending",
    "tree_state",
    "update_tree_state",
]

_TABLES = MerkleTables(
    leaves="audit_log", nodes="audit_tree_node", checkpoints="audit_checkpoints", state="audit_tree_state"
)
#: Complete subtrees, signed checkpoints and the state row (shared with the key log).
insert_nodes = _TABLES.insert_nodes
fetch_nodes = _TABLES.fetch_nodes
insert_checkpoint = _TABLES.insert_checkpoint
update_tree_state = _TABLES.update_state
latest_checkpoint = _TABLES.latest_checkpoint
checkpoint = _TABLES.checkpoint


class PendingRow(msgspec.Struct, frozen=True):
    """A queued event: its sequence number, leaf hash and recorded time."""

    seq: int
    leaf_hash: bytes
    recorded_at: dt.datetime


class LogLeafRow(msgspec.Struct, frozen=True):
    """A stored leaf, as re-read before signing: the log's hash and the event's bytes."""

    leaf_hash: bytes
    leaf: bytes


class CosignatureRow(msgspec.Struct, frozen=True):
    """A witness's cosignature line on a checkpoint."""

    witness_key: str
    signature_line: str
    cosigned_at: int


class PendingStatus(msgspec.Struct, frozen=True):
    """How far the log is behind the events written."""

    pending: int
    oldest_recorded_at: dt.datetime | None


async def lock_tree_state(conn: asyncpg.Connection) -> TreeState | None:
    """Lock the state row, or ``None`` if another integrator holds it (it leads)."""
    row = await conn.fetchrow(
        "SELECT size, compact, root FROM audit_tree_state WHERE id = 1 FOR UPDATE SKIP LOCKED"
    )
    return None if row is None else TreeState(row["size"], list(row["compact"]), row["root"])


async def tree_state(conn: asyncpg.Connection) -> TreeState:
    """Read the state row without locking it."""
    row = await conn.fetchrow("SELECT size, compact, root FROM audit_tree_state WHERE id = 1")
    if row is None:  # pragma: no cover -- the migration inserts the row and a trigger keeps it
        raise RuntimeError("audit_tree_state has no row")
    return TreeState(row["size"], list(row["compact"]), row["root"])


async def take_pending(conn: asyncpg.Connection, limit: int) -> list[PendingRow]:
    """Dequeue up to ``limit`` committed events, oldest sequence first (the caller holds the lock)."""
    rows = await conn.fetch(
        """
        WITH taken AS (
            DELETE FROM audit_pending
            WHERE event_seq IN (SELECT event_seq FROM audit_pending ORDER BY event_seq LIMIT $1)
            RETURNING event_seq
        )
        SELECT e.seq, e.leaf_hash, e.recorded_at
        FROM taken JOIN audit_events e ON e.seq = taken.event_seq
        ORDER BY e.seq
        """,
        limit,
    )
    return [PendingRow(r["seq"], r["leaf_hash"], r["recorded_at"]) for r in rows]


async def insert_log(
    conn: asyncpg.Connection, first_index: int, seqs: Sequence[int], leaf_hashes: Sequence[bytes]
) -> None:
    """Append leaves ``first_index, first_index + 1, ...`` (dense by construction)."""
    await conn.execute(
        """
        INSERT INTO audit_log (idx, event_seq, leaf_hash)
        SELECT $1::bigint + n.ord - 1, n.seq, n.hash
        FROM unnest($2::bigint[], $3::bytea[]) WITH ORDINALITY AS n(seq, hash, ord)
        """,
        first_index,
        list(seqs),
        list(leaf_hashes),
    )


async def log_leaves(conn: asyncpg.Connection, lo: int, hi: int) -> list[LogLeafRow]:
    """Stored leaf hashes and leaf bytes of indexes ``[lo, hi)``, in index order."""
    rows = await conn.fetch(
        """
        SELECT l.leaf_hash, e.leaf
        FROM audit_log l JOIN audit_events e ON e.seq = l.event_seq
        WHERE l.idx >= $1 AND l.idx < $2
        ORDER BY l.idx
        """,
        lo,
        hi,
    )
    return [LogLeafRow(r["leaf_hash"], r["leaf"]) for r in rows]


async def cosignatures(conn: asyncpg.Connection, size: int) -> list[CosignatureRow]:
    """Stored cosignatures of one checkpoint, oldest first."""
    rows = await conn.fetch(
        """
        SELECT witness_key, signature_line, cosigned_at FROM audit_cosignatures
        WHERE checkpoint_size = $1 ORDER BY received_at, witness_key
        """,
        size,
    )
    return [CosignatureRow(r["witness_key"], r["signature_line"], r["cosigned_at"]) for r in rows]


async def insert_cosignature(
    conn: asyncpg.Connection, size: int, cosignature: CosignatureRow, at: dt.datetime
) -> bool:
    """Store a cosignature; ``False`` if this witness key already cosigned this checkpoint."""
    status: str = await conn.execute(
        """
        INSERT INTO audit_cosignatures
            (checkpoint_size, witness_key, signature_line, cosigned_at, received_at)
        VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING
        """,
        size,
        cosignature.witness_key,
        cosignature.signature_line,
        cosignature.cosigned_at,
        at,
    )
    return status.endswith(" 1")


class LeafRow(msgspec.Struct, frozen=True):
    """A leaf of the log with its event's organization."""

    org_id: uuid.UUID | None
    leaf: bytes | None
    leaf_hash: bytes


class PruneBatch(msgspec.Struct, frozen=True, kw_only=True):
    """One pruning batch: the organization of each pruned event, and the last sequence seen."""

    orgs: list[uuid.UUID | None]
    last_seq: int


# Integrated events with their leaf bytes, past their cutoff and not covered by a legal
# hold (the client named as subject or agent, or a held conversation as entity). $1: the
# keyset position, $2: a global bound, $3/$4: optional per-organization cutoffs (an event
# whose organization has none is never pruned), $5: the batch size.
_PRUNABLE = """
    SELECT e.seq, e.org_id FROM audit_events e
    JOIN audit_log l ON l.event_seq = e.seq
    CROSS JOIN (SELECT ARRAY(SELECT account_id FROM held_accounts) AS accounts,
                       ARRAY(SELECT conversation_id FROM held_conversations) AS conversations) held
    WHERE e.seq > $1 AND e.leaf IS NOT NULL AND e.recorded_at < $2
      AND ($3::uuid[] IS NULL OR e.recorded_at < ($4::timestamptz[])[array_position($3::uuid[], e.org_id)])
      AND NOT coalesce(e.subject_id = ANY (held.accounts), false)
      AND NOT coalesce(e.agent_account_id = ANY (held.accounts), false)
      AND NOT coalesce(e.entity_id = ANY (held.conversations), false)
    ORDER BY e.seq LIMIT $5
"""


async def prune_batch(
    conn: asyncpg.Connection,
    *,
    now: dt.datetime,
    limit: int,
    after_seq: int = 0,
    before: dt.datetime | None = None,
    org_cutoffs: tuple[Sequence[uuid.UUID | None], Sequence[dt.datetime]] | None = None,
    dry_run: bool = False,
) -> PruneBatch:
    """Remove the leaf bytes of up to ``limit`` prunable events after ``after_seq``.

    Prunable: integrated, recorded before ``before`` and before its organization's cutoff
    in ``org_cutoffs`` when given, and not covered by a legal hold. Their hashes stay in
    ``audit_log``. With ``dry_run`` nothing changes and the batch says what would.
    """
    orgs, cuts = (list(org_cutoffs[0]), list(org_cutoffs[1])) if org_cutoffs is not None else (None, None)
    args = (after_seq, before if before is not None else now, orgs, cuts, limit)
    if dry_run:
        rows = await conn.fetch(_PRUNABLE, *args)
    else:
        rows = await conn.fetch(
            f"""
            WITH due AS ({_PRUNABLE} FOR UPDATE OF e SKIP LOCKED)
            UPDATE audit_events e SET leaf = NULL, pruned_at = $6
            FROM due WHERE e.seq = due.seq
            RETURNING e.seq, e.org_id
            """,  # noqa: S608 -- a fixed subquery
            *args,
            now,
        )
    seqs = [int(r["seq"]) for r in rows]
    return PruneBatch(orgs=[r["org_id"] for r in rows], last_seq=max(seqs, default=after_seq))


async def prune_before(
    conn: asyncpg.Connection, before: dt.datetime, now: dt.datetime, limit: int
) -> list[uuid.UUID | None]:
    """Remove the leaf bytes of up to ``limit`` integrated events recorded before ``before``.

    Their hashes stay in ``audit_log``; events a legal hold covers are kept. Returns the
    organizations of the pruned events.
    """
    return (await prune_batch(conn, now=now, limit=limit, before=before)).orgs


async def leaf_at(conn: asyncpg.Connection, index: int) -> LeafRow | None:
    """Leaf ``index``: its event's organization, exact bytes and the log's leaf hash."""
    row = await conn.fetchrow(
        """
        SELECT e.org_id, e.leaf, l.leaf_hash
        FROM audit_log l JOIN audit_events e ON e.seq = l.event_seq WHERE l.idx = $1
        """,
        index,
    )
    return None if row is None else LeafRow(row["org_id"], row["leaf"], row["leaf_hash"])


async def pending_status(conn: asyncpg.Connection) -> PendingStatus:
    """Queued events and the recorded time of the oldest one."""
    row = await conn.fetchrow(
        """
        SELECT (SELECT count(*) FROM audit_pending) AS pending,
               (SELECT min(e.recorded_at) FROM audit_pending p JOIN audit_events e ON e.seq = p.event_seq)
               AS oldest
        """
    )
    if row is None:  # pragma: no cover -- a query without FROM returns one row
        return PendingStatus(0, None)
    return PendingStatus(row["pending"], row["oldest"])

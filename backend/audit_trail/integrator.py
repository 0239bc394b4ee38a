"""The integrator: moves pending events into the Merkle log and signs a checkpoint.

One batch is one transaction. It locks the single ``audit_tree_state`` row
(``FOR UPDATE SKIP LOCKED``: whoever holds it leads; the others skip this round, and
any instance takes over as soon as a leader's transaction ends or its connection
dies), dequeues up to ``batch`` committed events, gives them the indexes
``size, size + 1, ...``, stores every complete subtree the append creates, then
**re-reads what it stored** — each leaf's bytes re-hashed against the stored leaf
hash, the new root recomputed from the stored right-edge nodes and from the old
compact range plus the re-read hashes — and only then signs and stores the
checkpoint and moves the state forward. Any mismatch rolls the whole batch back.

:class:`Integrator` runs batches in a loop (back to back while events arrive, else
every ``interval_s``) in the app's lifespan or ``confide audit integrate``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hmac
import time
from collections.abc import Sequence

import asyncpg
import msgspec
import structlog

from audit.checkpoint import Checkpoint, sign_checkpoint
from audit.merkle import CompactRange, TreeNode, leaf_hash, node_hash
from audit.note import NoteSigner
from backend.audit_trail import repository as repo
from backend.clock import Clock
from backend.db.pool import connection
from backend.errors import UnavailableError

__all__ = ["BatchResult", "Integrator", "IntegratorStatus", "LogIntegrityError", "integrate_batch"]

_log = structlog.get_logger("confide.audit")
_ACQUIRE_TIMEOUT_S = 10.0


class LogIntegrityError(RuntimeError):
    """What the integrator stored does not re-hash to what it computed: nothing is signed."""


class BatchResult(msgspec.Struct, frozen=True, kw_only=True):
    """What one batch did.

    Attributes:
        leader: Whether this caller held the tree-state lock.
        integrated: Events appended.
        size: Tree size after the batch (``-1`` when not the leader).
        lag_s: Age of the oldest event of the batch when it was signed.
    """

    leader: bool
    integrated: int = 0
    size: int = -1
    lag_s: float | None = None


def _append(state: repo.TreeState, hashes: Sequence[bytes]) -> tuple[CompactRange, list[TreeNode]]:
    compact = CompactRange.from_state(state.size, state.compact)
    created = [node for node in compact.extend(hashes) if node.level > 0]
    return compact, created


def _recheck(
    state: repo.TreeState,
    hashes: Sequence[bytes],
    stored: Sequence[repo.LogLeafRow],
    right_edge: Sequence[bytes | None],
    root: bytes,
) -> None:
    """Re-hash the stored batch and the stored right edge; raise unless both give ``root``."""
    if len(stored) != len(hashes):
        raise LogIntegrityError("the log does not hold the batch just written")
    for row, expected in zip(stored, hashes, strict=True):
        if row.leaf_hash != expected or leaf_hash(row.leaf) != expected:
            raise LogIntegrityError("a stored leaf does not re-hash to its leaf hash")
    again = CompactRange.from_state(state.size, state.compact)
    again.extend(row.leaf_hash for row in stored)
    if not hmac.compare_digest(again.root(), root):
        raise LogIntegrityError("the stored leaves do not give the computed root")
    if any(value is None for value in right_edge):
        raise LogIntegrityError("a right-edge node was not stored")
    edge = [value for value in right_edge if value is not None]
    folded = edge[-1]
    for left in reversed(edge[:-1]):
        folded = node_hash(left, folded)
    if not hmac.compare_digest(folded, root):
        raise LogIntegrityError("the stored nodes do not give the computed root")


async def integrate_batch(
    conn: asyncpg.Connection, signer: NoteSigner, clock: Clock, *, batch: int
) -> BatchResult:
    """Integrate up to ``batch`` pending events in one transaction; see the module docstring.

    The first call on an empty log signs the empty tree's checkpoint.

    Raises:
        LogIntegrityError: The re-read did not match (the transaction is rolled back).
    """
    async with conn.transaction():
        state = await repo.lock_tree_state(conn)
        if state is None:
            return BatchResult(leader=False)
        pending = await repo.take_pending(conn, batch)
        if not pending:
            if state.size == 0 and await repo.checkpoint(conn, 0) is None:
                await _sign(conn, signer, clock.now(), 0, state.root)
            return BatchResult(leader=True, size=state.size)
        hashes = [row.leaf_hash for row in pending]
        compact, created = await asyncio.to_thread(_append, state, hashes)
        root = compact.root()
        await repo.insert_log(conn, state.size, [row.seq for row in pending], hashes)
        await repo.insert_nodes(conn, created)
        stored = await repo.log_leaves(conn, state.size, compact.size)
        edge_ids = compact.node_ids()
        found = await repo.fetch_nodes(conn, edge_ids)
        await asyncio.to_thread(_recheck, state, hashes, stored, [found.get(n) for n in edge_ids], root)
        now = clock.now()
        await _sign(conn, signer, now, compact.size, root)
        await repo.update_tree_state(conn, compact.size, compact.hashes, root, now)
    oldest = min(row.recorded_at for row in pending)
    lag = max(0.0, (now - oldest).total_seconds())
    return BatchResult(leader=True, integrated=len(pending), size=compact.size, lag_s=lag)


async def _sign(
    conn: asyncpg.Connection, signer: NoteSigner, now: dt.datetime, size: int, root: bytes
) -> None:
    note = sign_checkpoint(Checkpoint(signer.name, size, root), signer)
    await repo.insert_checkpoint(conn, size, root, note, now)


class IntegratorStatus(msgspec.Struct, kw_only=True):
    """What this process's integrator last did (for logs and the status endpoint)."""

    running: bool = False
    leader: bool = False
    batches: int = 0
    integrated: int = 0
    size: int = -1
    last_lag_s: float | None = None
    errors: int = 0


class Integrator:
    """Runs :func:`integrate_batch` in a loop until stopped."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        signer: NoteSigner,
        clock: Clock,
        *,
        batch: int,
        interval_s: float,
    ) -> None:
        self._pool = pool
        self._signer = signer
        self._clock = clock
        self._batch = batch
        self._interval_s = interval_s
        self._task: asyncio.Task[None] | None = None
        self.status = IntegratorStatus()

    async def run_once(self) -> BatchResult:
        """One batch on a pooled connection."""
        async with connection(self._pool, _ACQUIRE_TIMEOUT_S) as conn:
            result = await integrate_batch(conn, self._signer, self._clock, batch=self._batch)
        self.status.leader = result.leader
        if result.leader:
            self.status.batches += 1
            self.status.integrated += result.integrated
            self.status.size = result.size
        if result.integrated:
            self.status.last_lag_s = result.lag_s
            _log.info(
                "audit_integrated",
                count=result.integrated,
                tree_size=result.size,
                lag_ms=round((result.lag_s or 0.0) * 1000, 1),
            )
        return result

    async def run(self, *, until_idle: bool = False) -> None:
        """Integrate back to back while batches are full, else wait ``interval_s``; forever.

        With ``until_idle``, return once a batch finds nothing to do.
        """
        self.status.running = True
        try:
            while True:
                started = time.monotonic()
                try:
                    result = await self.run_once()
                except (
                    asyncpg.PostgresError,
                    asyncpg.InterfaceError,
                    OSError,
                    UnavailableError,
                    LogIntegrityError,
                ) as exc:
                    self.status.errors += 1
                    _log.error("audit_integration_failed", error_type=type(exc).__name__)
                    result = BatchResult(leader=False)
                except Exception as exc:  # noqa: BLE001 -- a dead loop would stop the log silently
                    self.status.errors += 1
                    _log.error("audit_integration_crashed", error_type=type(exc).__name__)
                    result = BatchResult(leader=False)
                if result.leader and result.integrated >= self._batch:
                    continue
                if until_idle and result.leader and result.integrated == 0:
                    return
                await asyncio.sleep(max(0.0, self._interval_s - (time.monotonic() - started)))
        finally:
            self.status.running = False

    def start(self) -> None:
        """Run the loop as a background task."""
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name="audit-integrator")

    async def stop(self) -> None:
        """Cancel the loop; an open batch rolls back (its events stay queued)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

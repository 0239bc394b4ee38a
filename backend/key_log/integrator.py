"""Appends queued bundles to the key log and signs its checkpoint.

Runs inside the caller's transaction: the publish of a bundle (which its trigger
queued), so the bundle is in a signed checkpoint when the publish commits, and once at
start-up for bundles queued by the migration. It locks the single ``key_log_state`` row
(publishes of any organization serialize here, briefly; a key publish is rare), gives
the queued bundles the indexes ``size, size + 1, ...``, checks the leaf hashes the
database derived from the stored bytes against its own, stores every complete subtree,
and signs the new checkpoint.
"""

from __future__ import annotations

import datetime as dt
import hmac

import asyncpg
import structlog

from audit.checkpoint import Checkpoint, sign_checkpoint
from audit.keylog import KeyLogLeaf, encode_key_leaf
from audit.merkle import CompactRange, leaf_hash
from audit.note import NoteSigner
from backend.audit_trail.integrator import LogIntegrityError
from backend.clock import Clock
from backend.db.pool import connection
from backend.errors import UnavailableError
from backend.key_log import repository as repo
from crypto.errors import CryptoError
from crypto.public import bundle_digest, decode_bundle

__all__ = ["catch_up", "integrate"]

_log = structlog.get_logger("confide.key_log")
_ACQUIRE_TIMEOUT_S = 10.0


def _leaf(pending: repo.PendingBundle) -> bytes:
    try:
        bundle = decode_bundle(pending.bundle)
    except CryptoError as exc:
        # Every bundle was checked when it was published; one that no longer decodes (a
        # stricter check since) is an integrity problem for an operator, not a crash.
        raise LogIntegrityError("a queued bundle no longer decodes") from exc
    if (bundle.account_id, bundle.key_version) != (pending.account_id, pending.key_version):
        raise LogIntegrityError("a queued bundle does not name its own account and version")
    return encode_key_leaf(KeyLogLeaf(pending.account_id, pending.key_version, bundle_digest(bundle)))


async def integrate(
    conn: asyncpg.Connection, signer: NoteSigner, now: dt.datetime, *, wait: bool = True
) -> int | None:
    """Log every queued bundle and sign the new checkpoint, in the caller's transaction.

    Signs the empty tree's checkpoint the first time. With ``wait=False`` it returns
    ``None`` at once when another transaction holds the log.

    Returns:
        The tree size afterwards, or ``None`` when it did not get the lock.

    Raises:
        LogIntegrityError: A queued bundle is inconsistent, or the database derived
            another leaf hash (the transaction must roll back).
    """
    state = await repo.lock_state(conn, wait=wait)
    if state is None:
        return None
    pending = await repo.take_pending(conn)
    if not pending:
        if await repo.latest_checkpoint(conn) is None:
            await _sign(conn, signer, now, state.size, state.root)
        return state.size
    leaves = [_leaf(p) for p in pending]
    hashes = [leaf_hash(leaf) for leaf in leaves]
    compact = CompactRange.from_state(state.size, state.compact)
    created = [node for node in compact.extend(hashes) if node.level > 0]
    stored = await repo.insert_leaves(conn, state.size, pending, leaves, now)
    if len(stored) != len(hashes) or not all(map(hmac.compare_digest, stored, hashes)):
        raise LogIntegrityError("the stored key-log leaves do not hash as computed")
    await repo.insert_nodes(conn, created)
    root = compact.root()
    await _sign(conn, signer, now, compact.size, root)
    await repo.update_state(conn, compact.size, compact.hashes, root, now)
    return compact.size


async def _sign(
    conn: asyncpg.Connection, signer: NoteSigner, now: dt.datetime, size: int, root: bytes
) -> None:
    note = sign_checkpoint(Checkpoint(signer.name, size, root), signer)
    await repo.insert_checkpoint(conn, size, root, note, now)


async def catch_up(pool: asyncpg.Pool, signer: NoteSigner, clock: Clock) -> int | None:
    """At start-up: log what the migration queued and sign the first checkpoint.

    Skips at once when another instance holds the log (it is doing the same). A
    failure is logged, not raised: a bundle outside the log only gets no proof, which
    clients refuse, and the next publish integrates the queue again.
    """
    try:
        async with connection(pool, _ACQUIRE_TIMEOUT_S) as conn, conn.transaction():
            return await integrate(conn, signer, clock.now(), wait=False)
    except (
        asyncpg.PostgresError,
        asyncpg.InterfaceError,
        OSError,
        UnavailableError,
        LogIntegrityError,
    ) as exc:
        _log.error("key_log_catch_up_failed", error_type=type(exc).__name__)
        return None

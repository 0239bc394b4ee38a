"""Key log rules: who may read checkpoints and proofs, and the proofs a key look-up carries.

Everyone signed in may read the key log's checkpoints and consistency proofs (hashes
only, the same log for every organization, so that clients anywhere compare one
history); the key is public. Reads are not audited: they carry no personal data, and a
client polling the log must not grow the audit trail.
"""

from __future__ import annotations

import uuid

import asyncpg

from audit.checkpoint import CHECKPOINT_SPEC
from audit.keylog import KEY_LEAF_DOMAIN
from audit.proofs import ProofPlan, consistency_proof_plan, inclusion_proof_plan
from backend.auth.principal import Principal
from backend.db.merkle_tables import CheckpointRow
from backend.key_log import repository as repo
from backend.key_log.errors import KeyLogSizeError, NoKeyLogCheckpointError
from backend.key_log.schemas import (
    BundleInclusion,
    KeyLogCheckpointView,
    KeyLogConsistencyView,
    KeyLogKeyView,
)
from backend.key_log.signer import key_log_signer
from backend.policy import Action as PolicyAction
from backend.policy import Resource, require
from backend.runtime import Runtime

__all__ = ["get_checkpoint", "get_consistency_proof", "log_key", "look_up_proofs"]


def log_key(rt: Runtime) -> KeyLogKeyView:
    """The key log's public key (public: clients pin it)."""
    signer = key_log_signer(rt.settings)
    return KeyLogKeyView(
        origin=signer.name,
        vkey=str(signer.verifier()),
        checkpoint_spec=CHECKPOINT_SPEC,
        leaf_spec=KEY_LEAF_DOMAIN,
    )


def _view(row: CheckpointRow) -> KeyLogCheckpointView:
    return KeyLogCheckpointView(size=row.size, root=row.root, note=row.note, created_at=row.created_at)


def _require_reader(principal: Principal) -> None:
    require(principal.actor, PolicyAction.READ_PUBLIC_KEYS, Resource(org_id=principal.org_id))


async def _assemble(conn: asyncpg.Connection, plan: ProofPlan) -> list[bytes]:
    return plan.assemble(await repo.fetch_nodes(conn, plan.nodes))


async def get_checkpoint(
    conn: asyncpg.Connection, principal: Principal, size: int | None = None
) -> KeyLogCheckpointView:
    """The newest signed checkpoint of the key log, or the one of ``size``."""
    _require_reader(principal)
    row = await (repo.latest_checkpoint(conn) if size is None else repo.checkpoint(conn, size))
    if row is None:
        raise NoKeyLogCheckpointError
    return _view(row)


async def get_consistency_proof(
    conn: asyncpg.Connection, principal: Principal, old: int, new: int
) -> KeyLogConsistencyView:
    """Proof that the key log of size ``new`` extends the one of size ``old``."""
    _require_reader(principal)
    if not 0 <= old <= new <= await repo.tree_size(conn):
        raise KeyLogSizeError
    proof = await _assemble(conn, consistency_proof_plan(old, new))
    return KeyLogConsistencyView(old=old, new=new, proof=proof)


async def look_up_proofs(
    conn: asyncpg.Connection, account_id: uuid.UUID
) -> tuple[KeyLogCheckpointView | None, dict[int, BundleInclusion]]:
    """The newest checkpoint and, per logged key version of the account, its inclusion proof.

    The leaves are read before the checkpoint, so every leaf found is inside it (both
    are committed together). A version not yet logged gets no proof (clients refuse it).
    """
    logged = await repo.account_leaves(conn, account_id)
    row = await repo.latest_checkpoint(conn)
    if row is None:
        return None, {}
    proofs: dict[int, BundleInclusion] = {}
    plans = {
        v.key_version: (v.index, inclusion_proof_plan(v.index, row.size))
        for v in logged
        if v.index < row.size
    }
    nodes = await repo.fetch_nodes(conn, sorted({node for _, plan in plans.values() for node in plan.nodes}))
    for version, (index, plan) in plans.items():
        proofs[version] = BundleInclusion(index=index, proof=plan.assemble(nodes))
    return _view(row), proofs

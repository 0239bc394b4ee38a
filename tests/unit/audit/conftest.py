"""Shared builders for the audit tests: deterministic keys, events and exports."""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence

import pytest

from audit.checkpoint import Checkpoint, sign_checkpoint
from audit.export import ExportFilters, ExportRecord, records_from_tree, write_jsonl
from audit.leaf import AuditAgent, AuditEntity, AuditEvent, encode_leaf
from audit.merkle import leaf_hash
from audit.note import COSIGNATURE_V1, NoteSigner
from audit.proofs import MemoryTree

ORIGIN = "confide.example/audit/v1"
LOG_SEED = bytes(range(32))
OTHER_SEED = bytes(range(1, 33))
WITNESS_SEED = bytes(range(2, 34))
TYPES = ("login", "message.read", "note.update", "consent.create")


def uid(rnd: random.Random) -> uuid.UUID:
    return uuid.UUID(int=rnd.getrandbits(128), version=4)


def make_event(rnd: random.Random, n: int = 0, **changes: object) -> AuditEvent:
    fields: dict[str, object] = {
        "id": uid(rnd),
        "recorded": f"2025-03-{1 + n % 28:02d}T10:00:{n % 60:02d}.{n % 1_000_000:06d}Z",
        "action": "CRUDE"[n % 5],
        "type": TYPES[n % len(TYPES)],
        "subtype": "password" if n % 3 == 0 else None,
        "outcome": (0, 4, 8, 12)[n % 4],
        "agent": AuditAgent(
            account=uid(rnd) if n % 7 else None,
            role="clinician",
            org=uid(rnd) if n % 2 else None,
            network=f"{n:064x}" if n % 2 else None,
        ),
        "source": "api-1",
        "entity": AuditEntity(type="Message", id=str(uid(rnd))) if n % 2 else None,
        "subject": uid(rnd) if n % 3 else None,
        "purpose": "TREAT" if n % 2 else None,
        "request": f"req-{n}" if n % 2 else None,
        "consent": uid(rnd) if n % 4 == 1 else None,
    }
    fields.update(changes)
    return AuditEvent(**fields)  # type: ignore[arg-type]


def make_leaves(count: int, seed: int = 0) -> list[bytes]:
    rnd = random.Random(seed)
    return [encode_leaf(make_event(rnd, n)) for n in range(count)]


@pytest.fixture
def log_signer() -> NoteSigner:
    return NoteSigner(ORIGIN, LOG_SEED)


@pytest.fixture
def other_signer() -> NoteSigner:
    return NoteSigner(ORIGIN, OTHER_SEED)


@pytest.fixture
def witness_signer() -> NoteSigner:
    return NoteSigner("witness.example/w1", WITNESS_SEED, COSIGNATURE_V1)


class Log:
    """A small in-memory log with a signed checkpoint."""

    def __init__(self, leaves: Sequence[bytes], signer: NoteSigner) -> None:
        self.leaves: list[bytes | None] = list(leaves)
        self.hashes = [leaf_hash(leaf) for leaf in leaves]
        self.tree = MemoryTree(self.hashes)
        self.signer = signer
        self.note = sign_checkpoint(Checkpoint(signer.name, len(leaves), self.tree.root()), signer)

    def prune(self, *indexes: int) -> None:
        for index in indexes:
            self.leaves[index] = None

    def export(
        self,
        *,
        indexes: Sequence[int] | None = None,
        filters: ExportFilters | None = None,
        proofs: bool = True,
    ) -> list[bytes]:
        records = records_from_tree(
            self.tree, self.leaves, size=len(self.leaves), indexes=indexes, proofs=proofs
        )
        return list(
            write_jsonl(records, checkpoint_note=self.note, filters=filters or ExportFilters(), proofs=proofs)
        )

    def records(self) -> list[ExportRecord]:
        return list(records_from_tree(self.tree, self.leaves, size=len(self.leaves), proofs=False))


@pytest.fixture
def small_log(log_signer: NoteSigner) -> Log:
    return Log(make_leaves(13), log_signer)

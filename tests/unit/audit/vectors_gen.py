"""Generator of ``audit/vectors/*``: our own known-answer vectors.

Run ``.venv/bin/python -m tests.unit.audit.vectors_gen`` to rewrite them;
``test_vectors.py`` fails if the committed files differ from what this produces, so
any change to hashing, encodings, notes or the export format shows up as a diff.

Everything is deterministic: Ed25519 signatures are (RFC 8032), keys come from fixed
seeds, events from a seeded RNG. The RFC 6962 test-tree part is anchored to the
published roots checked in ``test_merkle.py``; the signed-note part to the Go and
C2SP examples checked in ``test_note.py``.
"""

from __future__ import annotations

import base64
import random
from pathlib import Path

import msgspec

from audit.checkpoint import Checkpoint, format_checkpoint, sign_checkpoint
from audit.cosignature import cosign_checkpoint
from audit.export import records_from_tree, write_jsonl
from audit.leaf import encode_leaf
from audit.merkle import leaf_hash, root_from_leaf_hashes
from audit.note import COSIGNATURE_V1, NoteSigner
from audit.proofs import MemoryTree, consistency_proof, inclusion_proof
from tests.unit.audit.conftest import LOG_SEED, ORIGIN, WITNESS_SEED, make_event
from tests.unit.audit.test_merkle import LEAF_INPUTS

VECTORS_DIR = Path(__file__).resolve().parents[3] / "audit" / "vectors"
_B64 = base64.b64encode


def _json(value: object) -> str:
    return msgspec.json.format(msgspec.json.encode(value), indent=2).decode() + "\n"


def _merkle() -> dict[str, object]:
    hashes = [leaf_hash(leaf) for leaf in LEAF_INPUTS]
    return {
        "description": "RFC 9162 SHA-256 tree over the RFC 6962 test leaves (hex)",
        "leaves": [leaf.hex() for leaf in LEAF_INPUTS],
        "leaf_hashes": [h.hex() for h in hashes],
        "roots": [root_from_leaf_hashes(hashes[:n]).hex() for n in range(len(hashes) + 1)],
        "inclusion": [
            {"index": i, "size": n, "proof": [p.hex() for p in inclusion_proof(hashes, i, n)]}
            for n in range(1, len(hashes) + 1)
            for i in range(n)
        ],
        "consistency": [
            {"old": m, "new": n, "proof": [p.hex() for p in consistency_proof(hashes, m, n)]}
            for n in range(1, len(hashes) + 1)
            for m in range(1, n + 1)
        ],
    }


def _leaves() -> list[bytes]:
    rnd = random.Random(2024)
    return [encode_leaf(make_event(rnd, n)) for n in range(6)]


def _leaf_vectors() -> dict[str, object]:
    return {
        "description": "canonical audit leaves v1: exact bytes (UTF-8 JSON) and leaf hashes",
        "leaves": [{"leaf": leaf.decode(), "leaf_hash": leaf_hash(leaf).hex()} for leaf in _leaves()],
    }


def _notes() -> dict[str, object]:
    log = NoteSigner(ORIGIN, LOG_SEED)
    witness = NoteSigner("witness.example/w1", WITNESS_SEED, COSIGNATURE_V1)
    hashes = [leaf_hash(leaf) for leaf in _leaves()]
    checkpoint = Checkpoint(ORIGIN, len(hashes), root_from_leaf_hashes(hashes))
    note = sign_checkpoint(checkpoint, log)
    return {
        "description": "C2SP signed-note v1.0.0 checkpoint and tlog-cosignature v1.0",
        "log_skey": str(log),
        "log_vkey": str(log.verifier()),
        "witness_skey": str(witness),
        "witness_vkey": str(witness.verifier()),
        "checkpoint_text": format_checkpoint(checkpoint),
        "signed_checkpoint": note,
        "cosignature_time": 1_700_000_000,
        "cosigned_checkpoint": cosign_checkpoint(note, [log.verifier()], witness, timestamp=1_700_000_000),
    }


def _export() -> str:
    log = NoteSigner(ORIGIN, LOG_SEED)
    leaves: list[bytes | None] = list(_leaves())
    hashes = [leaf_hash(leaf) for leaf in _leaves()]
    tree = MemoryTree(hashes)
    note = sign_checkpoint(Checkpoint(ORIGIN, len(hashes), tree.root()), log)
    leaves[2] = None  # pruned for retention
    records = records_from_tree(tree, leaves, size=len(hashes))
    return b"".join(write_jsonl(records, checkpoint_note=note)).decode()


def build() -> dict[str, str]:
    """Return every vector file's name and content."""
    return {
        "merkle.json": _json(_merkle()),
        "leaves.json": _json(_leaf_vectors()),
        "notes.json": _json(_notes()),
        "export-small.jsonl": _export(),
    }


def main() -> None:
    """Rewrite the vector files."""
    VECTORS_DIR.mkdir(exist_ok=True)
    for name, content in build().items():
        (VECTORS_DIR / name).write_text(content, encoding="utf-8")


if __name__ == "__main__":
    main()

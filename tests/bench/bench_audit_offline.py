"""Offline audit verification speed versus raw SHA-256 on the same machine.

Builds a complete 1,000,000-event export (temp file, no per-line proofs: the verifier
recomputes the root) and a filtered export with inclusion proofs, verifies both with
``audit.verify_export`` reading the file, and hashes the same leaf bytes with hashlib
alone. ``run()`` returns the figures; ``python tests/bench/bench_audit_offline.py``
prints them. ``CONFIDE_BENCH_AUDIT_EVENTS`` changes the event count.
"""

from __future__ import annotations

import hashlib
import os
import random
import tempfile
import time
import uuid
from pathlib import Path

from audit.checkpoint import Checkpoint, sign_checkpoint
from audit.cli import ExportFile
from audit.export import ExportFilters, ExportRecord, write_jsonl
from audit.leaf import AuditAgent, AuditEntity, AuditEvent, encode_leaf
from audit.merkle import leaf_hash, root_from_leaf_hashes
from audit.note import NoteSigner
from audit.proofs import MemoryTree
from audit.verify import verify_export

ORIGIN = "bench.confide.example/audit/v1"


def _leaves(count: int) -> list[bytes]:
    rnd = random.Random(1)
    template = AuditEvent(
        id=uuid.UUID(int=0),
        recorded="2025-01-02T03:04:05.000006Z",
        action="R",
        type="message.read",
        subtype=None,
        outcome=0,
        agent=AuditAgent(
            account=uuid.UUID(int=rnd.getrandbits(128)),
            role="clinician",
            org=uuid.UUID(int=rnd.getrandbits(128)),
            network="ab" * 32,
        ),
        source="api-1",
        entity=AuditEntity(type="Message", id=str(uuid.UUID(int=rnd.getrandbits(128)))),
        subject=uuid.UUID(int=rnd.getrandbits(128)),
        purpose="TREAT",
        request="req-1",
        consent=None,
    )
    raw = encode_leaf(template)
    marker = str(template.id).encode()
    return [raw.replace(marker, str(uuid.UUID(int=i + 1)).encode()) for i in range(count)]


def run(events: int | None = None) -> dict[str, float]:
    """Build and verify the exports; return timings and rates."""
    count = events or int(os.environ.get("CONFIDE_BENCH_AUDIT_EVENTS", "1000000"))
    signer = NoteSigner(ORIGIN, bytes(range(32)))
    leaves = _leaves(count)
    hashes = [leaf_hash(leaf) for leaf in leaves]
    note = sign_checkpoint(Checkpoint(ORIGIN, count, root_from_leaf_hashes(hashes)), signer)
    keys = [signer.verifier()]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "export.jsonl"
        records = (ExportRecord(i, hashes[i], leaves[i]) for i in range(count))
        with path.open("wb") as handle:
            handle.writelines(write_jsonl(records, checkpoint_note=note, proofs=False))
        size_mb = path.stat().st_size / 1e6
        start = time.perf_counter()
        summary = verify_export(ExportFile(path), keys)
        verify_s = time.perf_counter() - start
        assert summary.count == count

        start = time.perf_counter()
        sha = hashlib.sha256
        for leaf in leaves:
            sha(leaf).digest()
        raw_s = time.perf_counter() - start

        sample = min(count, 10_000)
        tree = MemoryTree(hashes)
        step = max(1, count // sample)
        picked = range(0, count, step)
        filtered = [ExportRecord(i, hashes[i], leaves[i], tree.inclusion_proof(i)) for i in picked]
        fpath = Path(tmp) / "filtered.jsonl"
        with fpath.open("wb") as handle:
            handle.writelines(
                write_jsonl(
                    filtered,
                    checkpoint_note=note,
                    filters=ExportFilters(types=("message.read",)),
                )
            )
        start = time.perf_counter()
        fsummary = verify_export(ExportFile(fpath), keys)
        filtered_s = time.perf_counter() - start
    return {
        "events": float(count),
        "export_mb": round(size_mb, 1),
        "verify_complete_s": round(verify_s, 3),
        "verify_events_per_s": round(count / verify_s),
        "raw_sha256_s": round(raw_s, 3),
        "raw_sha256_per_s": round(count / raw_s),
        "ratio_verify_to_raw_sha256": round(verify_s / raw_s, 2),
        "filtered_events": float(fsummary.count),
        "filtered_verify_s": round(filtered_s, 3),
        "filtered_events_per_s": round(fsummary.count / filtered_s),
    }


if __name__ == "__main__":
    for name, value in run().items():
        print(f"{name}: {value}")

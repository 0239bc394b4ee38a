"""The committed vectors in ``audit/vectors`` are what our code produces and verifies."""

from __future__ import annotations

import msgspec

from audit.leaf import decode_leaf
from audit.merkle import leaf_hash
from audit.note import VerifierKey
from audit.proofs import verify_consistency, verify_inclusion
from audit.verify import verify_export
from tests.unit.audit import vectors_gen
from tests.unit.audit.test_merkle import ROOTS


def _load(name: str) -> dict[str, object]:
    return msgspec.json.decode((vectors_gen.VECTORS_DIR / name).read_bytes(), type=dict[str, object])


def test_committed_vectors_match_the_generator() -> None:
    for name, content in vectors_gen.build().items():
        assert (vectors_gen.VECTORS_DIR / name).read_text(encoding="utf-8") == content, name


def test_merkle_vectors_agree_with_the_published_roots() -> None:
    data = _load("merkle.json")
    assert data["roots"] == ROOTS
    roots = [bytes.fromhex(r) for r in ROOTS]
    hashes = data["leaf_hashes"]
    assert isinstance(hashes, list)
    for case in msgspec.convert(data["inclusion"], list[dict[str, object]]):
        proof = [bytes.fromhex(p) for p in msgspec.convert(case["proof"], list[str])]
        index, size = msgspec.convert(case["index"], int), msgspec.convert(case["size"], int)
        verify_inclusion(bytes.fromhex(hashes[index]), index, size, proof, roots[size])
    for case in msgspec.convert(data["consistency"], list[dict[str, object]]):
        proof = [bytes.fromhex(p) for p in msgspec.convert(case["proof"], list[str])]
        old, new = msgspec.convert(case["old"], int), msgspec.convert(case["new"], int)
        verify_consistency(old, new, roots[old], roots[new], proof)


def test_leaf_and_export_vectors_verify() -> None:
    for case in msgspec.convert(_load("leaves.json")["leaves"], list[dict[str, str]]):
        raw = case["leaf"].encode()
        decode_leaf(raw)
        assert leaf_hash(raw).hex() == case["leaf_hash"]
    notes = msgspec.convert(_load("notes.json"), dict[str, object])
    key = VerifierKey.parse(msgspec.convert(notes["log_vkey"], str))
    lines = (vectors_gen.VECTORS_DIR / "export-small.jsonl").read_bytes().splitlines()
    summary = verify_export(lines, [key], check_all_proofs=True)
    assert (summary.count, summary.pruned) == (6, 1)

"""RFC 9162 inclusion and consistency proofs.

Known proofs for the RFC 6962 test tree are copied from transparency-dev/merkle
``proof/verify_test.go`` (commit 02194e9afb6c1d95b5381350007963aa70fff472); that file
numbers leaves from 1, so its ``{leaf: 6, size: 8}`` is index 5 here.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from audit.errors import ProofError
from audit.merkle import EMPTY_ROOT, NodeID, leaf_hash, root_from_leaf_hashes
from audit.proofs import (
    MemoryTree,
    ProofPlan,
    consistency_proof,
    consistency_proof_from_source,
    consistency_proof_plan,
    inclusion_proof,
    inclusion_proof_from_source,
    inclusion_proof_plan,
    range_node_ids,
    root_from_inclusion_proof,
    verify_consistency,
    verify_inclusion,
)
from tests.unit.audit.test_merkle import LEAF_HASHES, ROOTS

H = bytes.fromhex
INCLUSION = [
    (
        0,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        1,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (0, 1, []),
]
CONSISTENCY = [
    (1, 1, []),
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        7,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
]
TREE = MemoryTree(LEAF_HASHES)


def _flip(value: bytes, position: int) -> bytes:
    return value[:position] + bytes([value[position] ^ 0x01]) + value[position + 1 :]


@pytest.mark.parametrize(("index", "size", "expected"), INCLUSION)
def test_known_inclusion_proofs(index: int, size: int, expected: list[str]) -> None:
    assert [p.hex() for p in inclusion_proof(LEAF_HASHES, index, size)] == expected
    assert [p.hex() for p in TREE.inclusion_proof(index, size)] == expected
    verify_inclusion(LEAF_HASHES[index], index, size, [H(p) for p in expected], H(ROOTS[size]))


@pytest.mark.parametrize(("old", "new", "expected"), CONSISTENCY)
def test_known_consistency_proofs(old: int, new: int, expected: list[str]) -> None:
    assert [p.hex() for p in consistency_proof(LEAF_HASHES, old, new)] == expected
    assert [p.hex() for p in TREE.consistency_proof(old, new)] == expected
    verify_consistency(old, new, H(ROOTS[old]), H(ROOTS[new]), [H(p) for p in expected])


def test_inclusion_rejects_corrupted_probes() -> None:
    """Adversarial variants from transparency-dev's corruptInclusionProof all fail."""
    index, size, proof_hex = INCLUSION[1]
    proof = [H(p) for p in proof_hex]
    root, leaf = H(ROOTS[size]), LEAF_HASHES[index]
    probes: list[tuple[int, int, bytes, bytes, list[bytes]]] = [
        (index - 1, size, root, leaf, proof),
        (index + 1, size, root, leaf, proof),
        (index ^ 2, size, root, leaf, proof),
        (index, size * 2, root, leaf, proof),
        (index, size // 2, root, leaf, proof),
        (index, size, root, LEAF_HASHES[0], proof),
        (index, size, EMPTY_ROOT, leaf, proof),
        (index, size, root, leaf, [*proof, root]),
        (index, size, root, leaf, [root, *proof]),
        (index, size, root, leaf, proof[:-1]),
        (index, size, root, leaf, [proof[0], EMPTY_ROOT, *proof[1:]]),
        (index, size, root, leaf, [*proof, b""]),
    ]
    probes += [
        (index, size, root, leaf, [*proof[:i], _flip(proof[i], 0), *proof[i + 1 :]])
        for i in range(len(proof))
    ]
    for probe_index, probe_size, probe_root, probe_leaf, probe_proof in probes:
        with pytest.raises(ProofError):
            verify_inclusion(probe_leaf, probe_index, probe_size, probe_proof, probe_root)


@pytest.mark.parametrize(("index", "size"), [(0, 0), (1, 1), (-1, 4), (4, 4)])
def test_inclusion_index_must_be_inside_the_tree(index: int, size: int) -> None:
    with pytest.raises(ProofError):
        root_from_inclusion_proof(LEAF_HASHES[0], index, size, [])
    with pytest.raises(ProofError):
        inclusion_proof_plan(index, size)


def test_consistency_rejects_corrupted_probes() -> None:
    old, new, proof_hex = CONSISTENCY[2]
    proof = [H(p) for p in proof_hex]
    r1, r2 = H(ROOTS[old]), H(ROOTS[new])
    probes: list[tuple[int, int, bytes, bytes, list[bytes]]] = [
        (old - 1, new, r1, r2, proof),
        (old + 1, new, r1, r2, proof),
        (old ^ 2, new, r1, r2, proof),
        (old, new * 2, r1, r2, proof),
        (old, new // 2, r1, r2, proof),
        (old, new, r2, r2, proof),
        (old, new, r1, r1, proof),
        (old, new, r2, r1, proof),
        (old, new, r1, r2, []),
        (old, new, r1, r2, [*proof, r1]),
        (old, new, r1, r2, [r1, *proof]),
        (old, new, r1, r2, [proof[0], *proof]),
        (old, new, r1, r2, proof[:-1]),
    ]
    probes += [
        (old, new, r1, r2, [*proof[:i], _flip(proof[i], 0), *proof[i + 1 :]]) for i in range(len(proof))
    ]
    for s1, s2, p1, p2, probe_proof in probes:
        with pytest.raises(ProofError):
            verify_consistency(s1, s2, p1, p2, probe_proof)


def test_consistency_edge_cases() -> None:
    verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    verify_consistency(0, 5, EMPTY_ROOT, H(ROOTS[5]), [])
    verify_consistency(3, 3, H(ROOTS[3]), H(ROOTS[3]), [])
    bad = [
        (0, 5, H(ROOTS[1]), H(ROOTS[5]), []),  # the empty tree's root is fixed
        (0, 5, EMPTY_ROOT, H(ROOTS[5]), [EMPTY_ROOT]),
        (3, 3, H(ROOTS[3]), H(ROOTS[4]), []),  # same size, different roots: a fork
        (3, 3, H(ROOTS[3]), H(ROOTS[3]), [EMPTY_ROOT]),
        (4, 3, H(ROOTS[4]), H(ROOTS[3]), [EMPTY_ROOT]),  # rollback
        (-1, 3, EMPTY_ROOT, H(ROOTS[3]), []),
        (3, 5, b"short", H(ROOTS[5]), [EMPTY_ROOT]),
    ]
    for old, new, r1, r2, proof in bad:
        with pytest.raises(ProofError):
            verify_consistency(old, new, r1, r2, proof)
    with pytest.raises(ProofError):
        consistency_proof_plan(5, 3)
    assert consistency_proof_plan(0, 5).nodes == ()


def test_in_memory_generation_refuses_sizes_beyond_the_leaves() -> None:
    with pytest.raises(ProofError):
        inclusion_proof(LEAF_HASHES, 0, 9)
    with pytest.raises(ProofError):
        consistency_proof(LEAF_HASHES, 1, 9)


def test_plan_lists_exactly_the_stored_nodes_needed() -> None:
    plan = inclusion_proof_plan(5, 7)
    assert plan.ranges == ((4, 5), (6, 7), (0, 4))
    assert plan.nodes == (NodeID(0, 4), NodeID(0, 6), NodeID(2, 0))
    # Right-edge ranges are folds of complete subtrees.
    plan = inclusion_proof_plan(0, 7)
    assert plan.ranges == ((1, 2), (2, 4), (4, 7))
    assert plan.nodes == (NodeID(0, 1), NodeID(1, 1), NodeID(1, 2), NodeID(0, 6))
    assert range_node_ids(4, 7) == [NodeID(1, 2), NodeID(0, 6)]
    assert range_node_ids(0, 8) == [NodeID(3, 0)]
    with pytest.raises(ProofError):
        range_node_ids(3, 3)


def test_plan_assembly_refuses_missing_or_bad_nodes() -> None:
    plan = inclusion_proof_plan(0, 8)
    with pytest.raises(ProofError):
        plan.assemble({})
    with pytest.raises(ProofError):
        plan.assemble(dict.fromkeys(plan.nodes, b"short"))


class _ShortSource:
    def node_hashes(self, nodes: Sequence[NodeID]) -> Sequence[bytes]:
        return list(TREE.node_hashes(nodes))[:-1]


def test_source_must_answer_every_node() -> None:
    with pytest.raises(ProofError):
        inclusion_proof_from_source(_ShortSource(), 3, 8)


def test_memory_tree_refuses_nodes_it_does_not_have() -> None:
    assert TREE.size == 8
    assert TREE.root().hex() == ROOTS[8]
    assert MemoryTree([]).root() == EMPTY_ROOT
    for node in (NodeID(4, 0), NodeID(0, 8), NodeID(0, -1), NodeID(2, 2)):
        with pytest.raises(ProofError):
            TREE.node_hashes([node])
    with pytest.raises(ProofError):
        TREE.inclusion_proof(0, 9)


@st.composite
def _tree_and_probe(draw: st.DrawFn) -> tuple[list[bytes], int, int, int]:
    size = draw(st.integers(min_value=1, max_value=300))
    leaves = [leaf_hash(i.to_bytes(4, "big")) for i in range(size)]
    old = draw(st.integers(min_value=0, max_value=size))
    index = draw(st.integers(min_value=0, max_value=size - 1))
    position = draw(st.integers(min_value=0, max_value=31))
    return leaves, old, index, position


@given(_tree_and_probe())
def test_every_proof_verifies_and_any_single_byte_change_fails(
    probe: tuple[list[bytes], int, int, int],
) -> None:
    leaves, old, index, position = probe
    size = len(leaves)
    tree = MemoryTree(leaves)
    root = root_from_leaf_hashes(leaves)
    assert tree.root() == root

    proof = inclusion_proof_from_source(tree, index, size)
    assert proof == inclusion_proof(leaves, index)
    verify_inclusion(leaves[index], index, size, proof, root)
    with pytest.raises(ProofError):
        verify_inclusion(_flip(leaves[index], position), index, size, proof, root)
    with pytest.raises(ProofError):
        verify_inclusion(leaves[index], index, size, proof, _flip(root, position))
    for i in range(len(proof)):
        tampered = [*proof[:i], _flip(proof[i], position), *proof[i + 1 :]]
        with pytest.raises(ProofError):
            verify_inclusion(leaves[index], index, size, tampered, root)

    old_root = root_from_leaf_hashes(leaves[:old])
    cproof = consistency_proof_from_source(tree, old, size)
    assert cproof == consistency_proof(leaves, old)
    verify_consistency(old, size, old_root, root, cproof)
    if 0 < old < size:
        with pytest.raises(ProofError):
            verify_consistency(old, size, _flip(old_root, position), root, cproof)
        with pytest.raises(ProofError):
            verify_consistency(old, size, old_root, _flip(root, position), cproof)
        for i in range(len(cproof)):
            tampered = [*cproof[:i], _flip(cproof[i], position), *cproof[i + 1 :]]
            with pytest.raises(ProofError):
                verify_consistency(old, size, old_root, root, tampered)


def test_proof_plan_is_a_value() -> None:
    plan = ProofPlan.for_ranges([(0, 2)])
    assert plan == ProofPlan(((0, 2),), (NodeID(1, 0),))

"""RFC 9162 hashing, MTH and the compact range.

Known answers: the 8-leaf RFC 6962 test tree used by certificate-transparency-go,
Trillian and transparency-dev/merkle; leaf inputs, every complete-subtree hash and
the roots of every prefix size are copied from transparency-dev/merkle
``testonly/constants.go`` (commit 582a6ad190b6848f1d26f8bf08ddef29955d9db1).
"""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from audit.errors import AuditFormatError
from audit.merkle import (
    EMPTY_ROOT,
    CompactRange,
    NodeID,
    TreeNode,
    leaf_hash,
    node_hash,
    root_from_leaf_hashes,
    subtree_root,
)

LEAF_INPUTS = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
NODE_HASHES = [
    [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
        "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
        "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
        "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
    ],
    [
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
    ],
    [
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ],
    ["5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"],
]
ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
LEAF_HASHES = [leaf_hash(leaf) for leaf in LEAF_INPUTS]


def _reference_mth(hashes: list[bytes]) -> bytes:
    """RFC 9162 §2.1.1 MTH written recursively, as in the RFC."""
    if not hashes:
        return hashlib.sha256(b"").digest()
    if len(hashes) == 1:
        return hashes[0]
    k = 1 << ((len(hashes) - 1).bit_length() - 1)
    return node_hash(_reference_mth(hashes[:k]), _reference_mth(hashes[k:]))


def test_empty_root_is_sha256_of_nothing() -> None:
    assert EMPTY_ROOT.hex() == ROOTS[0]
    assert root_from_leaf_hashes([]) == EMPTY_ROOT
    assert CompactRange().root() == EMPTY_ROOT


def test_known_leaf_and_node_hashes() -> None:
    assert [h.hex() for h in LEAF_HASHES] == NODE_HASHES[0]
    for level in range(1, 4):
        below = [bytes.fromhex(h) for h in NODE_HASHES[level - 1]]
        got = [node_hash(a, b).hex() for a, b in zip(below[0::2], below[1::2], strict=True)]
        assert got == NODE_HASHES[level]


@pytest.mark.parametrize("size", range(9))
def test_known_roots_for_every_prefix(size: int) -> None:
    assert root_from_leaf_hashes(LEAF_HASHES[:size]).hex() == ROOTS[size]
    compact = CompactRange()
    compact.extend(LEAF_HASHES[:size])
    assert compact.root().hex() == ROOTS[size]


def test_compact_range_reports_every_created_node() -> None:
    compact = CompactRange()
    created: list[TreeNode] = []
    for value in LEAF_HASHES:
        created += compact.append(value)
    by_level: dict[int, list[str]] = {}
    for node in sorted(created, key=lambda n: (n.level, n.index)):
        by_level.setdefault(node.level, []).append(node.hash.hex())
        assert node.id == NodeID(node.level, node.index)
    assert [by_level[level] for level in range(4)] == NODE_HASHES


def test_compact_range_state_round_trip() -> None:
    compact = CompactRange()
    compact.extend(LEAF_HASHES[:7])
    assert compact.size == 7
    assert compact.node_ids() == [NodeID(2, 0), NodeID(1, 2), NodeID(0, 6)]
    assert [n.first_leaf for n in compact.node_ids()] == [0, 4, 6]
    assert [n.leaf_count for n in compact.node_ids()] == [4, 2, 1]
    assert [h.hex() for h in compact.hashes] == [
        NODE_HASHES[2][0],
        NODE_HASHES[1][2],
        NODE_HASHES[0][6],
    ]
    restored = CompactRange.from_state(compact.size, compact.hashes)
    copy = restored.copy()
    created = copy.extend(LEAF_HASHES[7:])
    assert [n.level for n in created] == [0, 1, 2, 3]
    assert copy.root().hex() == ROOTS[8]
    assert restored.size == 7  # the copy is independent


@pytest.mark.parametrize(
    ("size", "hashes"),
    [(-1, []), (3, [EMPTY_ROOT]), (1, [b"short"]), (0, [EMPTY_ROOT])],
)
def test_compact_range_rejects_bad_state(size: int, hashes: list[bytes]) -> None:
    with pytest.raises(AuditFormatError):
        CompactRange.from_state(size, hashes)


def test_append_subtree_equals_leaf_by_leaf() -> None:
    compact = CompactRange()
    compact.append_subtree(2, subtree_root(LEAF_HASHES[:4]))
    compact.append_subtree(1, subtree_root(LEAF_HASHES[4:6]))
    compact.append(LEAF_HASHES[6])
    assert compact.root().hex() == ROOTS[7]


def test_append_subtree_must_be_aligned() -> None:
    compact = CompactRange()
    compact.append(LEAF_HASHES[0])
    with pytest.raises(AuditFormatError):
        compact.append_subtree(1, EMPTY_ROOT)
    with pytest.raises(AuditFormatError):
        compact.append_subtree(-1, EMPTY_ROOT)


@pytest.mark.parametrize("count", [0, 3, 6])
def test_subtree_root_needs_a_power_of_two(count: int) -> None:
    with pytest.raises(AuditFormatError):
        subtree_root(LEAF_HASHES[:count])


def test_hashes_must_be_32_bytes() -> None:
    with pytest.raises(AuditFormatError):
        root_from_leaf_hashes([b"x" * 31])
    with pytest.raises(AuditFormatError):
        CompactRange().append(b"x")
    with pytest.raises(AuditFormatError):
        CompactRange().extend([b"x"])


@given(st.lists(st.binary(max_size=8), max_size=70))
def test_all_root_computations_agree_with_the_rfc(leaves: list[bytes]) -> None:
    hashes = [leaf_hash(leaf) for leaf in leaves]
    compact = CompactRange()
    compact.extend(hashes)
    assert root_from_leaf_hashes(hashes) == compact.root() == _reference_mth(hashes)


def test_node_ids_follow_the_set_bits_of_the_size() -> None:
    compact = CompactRange()
    compact.extend(LEAF_HASHES[:5])
    assert compact.node_ids() == [NodeID(2, 0), NodeID(0, 4)]


def test_appending_subtrees_merges_them() -> None:
    compact = CompactRange()
    compact.append_subtree(2, subtree_root(LEAF_HASHES[:4]))
    compact.append_subtree(2, subtree_root(LEAF_HASHES[4:8]))
    assert compact.hashes == (bytes.fromhex(ROOTS[8]),)

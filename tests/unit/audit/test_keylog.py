"""Key transparency (C-11), client side: leaves, inclusion, kept checkpoints, gossip, key changes."""

from __future__ import annotations

import hashlib
import struct
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from audit.checkpoint import Checkpoint, sign_checkpoint
from audit.errors import (
    AuditFormatError,
    ForkError,
    KeyConflictError,
    KeyRollbackError,
    ProofError,
    SignatureError,
)
from audit.keylog import (
    KEY_LEAF_SIZE,
    KeyChange,
    KeyLogClient,
    KeyLogLeaf,
    KeyLogState,
    KnownKey,
    LoggedBundle,
    compare_checkpoints,
    decode_key_leaf,
    encode_key_leaf,
)
from audit.merkle import leaf_hash
from audit.note import NoteSigner
from audit.proofs import MemoryTree

ORIGIN = "confide.example/audit/v1/key-log"
SIGNER = NoteSigner(ORIGIN, bytes(range(3, 35)))
KEY = SIGNER.verifier()
BOB = uuid.UUID("00000000-0000-4000-8000-00000000b0b0")
CAROL = uuid.UUID("00000000-0000-4000-8000-0000000ca201")


def digest(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


class Log:
    """An honest key log in memory: leaves, tree, signed checkpoints."""

    def __init__(self, signer: NoteSigner = SIGNER) -> None:
        self.signer = signer
        self.leaves: list[KeyLogLeaf] = []

    def add(self, account: uuid.UUID, version: int, label: str) -> int:
        self.leaves.append(KeyLogLeaf(account, version, digest(label)))
        return len(self.leaves) - 1

    @property
    def tree(self) -> MemoryTree:
        return MemoryTree([leaf_hash(encode_key_leaf(leaf)) for leaf in self.leaves])

    def note(self, size: int | None = None) -> str:
        size = len(self.leaves) if size is None else size
        root = MemoryTree([leaf_hash(encode_key_leaf(leaf)) for leaf in self.leaves[:size]]).root()
        return sign_checkpoint(Checkpoint(self.signer.name, size, root), self.signer)

    def bundle(self, index: int, size: int | None = None) -> LoggedBundle:
        leaf = self.leaves[index]
        proof = tuple(self.tree.inclusion_proof(index, size))
        return LoggedBundle(leaf.key_version, leaf.bundle_digest, index, proof)

    def consistency(self, old: int, new: int | None = None) -> list[bytes]:
        return self.tree.consistency_proof(old, new)


def test_leaf_layout_is_the_documented_fixed_encoding() -> None:
    """Known answer: the 99 bytes are built here by hand from the spec, not by the code under test."""
    leaf = KeyLogLeaf(BOB, 7, bytes(range(32)))
    domain = b"confide/v1/key-log-leaf"
    expected = (
        struct.pack(">I", len(domain)) + domain
        + struct.pack(">I", 4) + struct.pack(">I", 1)
        + struct.pack(">I", 16) + BOB.bytes
        + struct.pack(">I", 4) + struct.pack(">I", 7)
        + struct.pack(">I", 32) + bytes(range(32))
    )  # fmt: skip
    assert encode_key_leaf(leaf) == expected
    assert len(expected) == KEY_LEAF_SIZE == 99
    assert decode_key_leaf(expected) == leaf


@given(
    account=st.uuids(),
    version=st.integers(min_value=1, max_value=2**32 - 1),
    value=st.binary(min_size=32, max_size=32),
)
def test_leaf_round_trip(account: uuid.UUID, version: int, value: bytes) -> None:
    leaf = KeyLogLeaf(account, version, value)
    assert decode_key_leaf(encode_key_leaf(leaf)) == leaf


@pytest.mark.parametrize(
    ("version", "value"), [(0, bytes(32)), (2**32, bytes(32)), (1, bytes(31)), (1, bytes(33))]
)
def test_leaf_fields_are_checked(version: int, value: bytes) -> None:
    with pytest.raises(AuditFormatError):
        KeyLogLeaf(BOB, version, value)


def test_malformed_leaves_are_refused() -> None:
    raw = encode_key_leaf(KeyLogLeaf(BOB, 1, bytes(32)))
    with pytest.raises(AuditFormatError, match="version 1"):
        decode_key_leaf(raw + b"\x00")  # too long
    with pytest.raises(AuditFormatError, match="version 1"):
        decode_key_leaf(raw.replace(b"key-log-leaf", b"key-log-lea_"))  # another domain
    with pytest.raises(AuditFormatError, match="version 1"):
        decode_key_leaf(raw[:34] + b"\x02" + raw[35:])  # leaf version 2
    for at in (35, 55, 63):  # each item's length prefix
        bad = raw[:at] + b"\x00\x00\x00\x05" + raw[at + 4 :]
        with pytest.raises(AuditFormatError, match="wrong length"):
            decode_key_leaf(bad)
    zero_version = raw[:59] + bytes(4) + raw[63:]
    with pytest.raises(AuditFormatError, match="key version"):
        decode_key_leaf(zero_version)


def test_a_verified_look_up_is_kept_and_a_rotation_is_reported() -> None:
    """C-11: a newer leaf for a known account is a key change the user is told about."""
    log = Log()
    log.add(CAROL, 1, "carol-1")
    log.add(BOB, 1, "bob-1")
    client = KeyLogClient(KEY)
    assert client.state() == KeyLogState()
    assert client.note is None
    assert client.verify_bundles(BOB, [log.bundle(1)], log.note()) is None
    assert client.checkpoint is not None
    assert client.checkpoint.size == 2
    # The same look-up again changes nothing.
    assert client.verify_bundles(BOB, [log.bundle(1)], log.note()) is None

    log.add(CAROL, 2, "carol-2")
    log.add(BOB, 2, "bob-2")
    change = client.verify_bundles(BOB, [log.bundle(1), log.bundle(3)], log.note(), log.consistency(2))
    assert change == KeyChange(BOB, 1, 2, 3)
    assert str(change) == f"key changed for account {BOB}: version 1 -> 2"
    assert client.checkpoint is not None
    assert client.checkpoint.size == 4
    # An older look-up (a stale or rolled-back answer) is refused: its newest key was replaced.
    with pytest.raises(KeyRollbackError) as rolled_back:
        client.verify_bundles(BOB, [log.bundle(1, 2)], log.note(2), log.consistency(2, 4))
    assert (rolled_back.value.known_version, rolled_back.value.seen_version) == (2, 1)
    assert rolled_back.value.account_id == BOB
    assert client.state().known[BOB] == KnownKey(2, digest("bob-2"), 3)
    assert client.checkpoint.size == 4, "the newest checkpoint stays kept"


def test_state_survives_a_restart() -> None:
    log = Log()
    log.add(BOB, 1, "bob-1")
    client = KeyLogClient(KEY)
    client.verify_bundles(BOB, [log.bundle(0)], log.note())
    saved = client.state()
    log.add(BOB, 2, "bob-2")
    again = KeyLogClient(KEY, saved)
    assert again.note == saved.checkpoint
    assert again.verify_bundles(BOB, [log.bundle(0), log.bundle(1)], log.note(), log.consistency(1)) == (
        KeyChange(BOB, 1, 2, 1)
    )
    assert KeyLogClient(KEY, KeyLogState()).checkpoint is None


def test_a_saved_checkpoint_from_another_key_is_refused() -> None:
    other = NoteSigner(ORIGIN, bytes(range(5, 37)))
    note = sign_checkpoint(Checkpoint(ORIGIN, 0, MemoryTree([]).root()), other)
    with pytest.raises(SignatureError):
        KeyLogClient(KEY, KeyLogState(checkpoint=note))


def test_a_bundle_not_in_the_log_is_refused() -> None:
    log = Log()
    log.add(BOB, 1, "bob-1")
    log.add(CAROL, 1, "carol-1")
    client = KeyLogClient(KEY)
    forged = LoggedBundle(1, digest("server's own key"), 0, log.bundle(0).proof)
    with pytest.raises(ProofError, match="root"):
        client.verify_bundles(BOB, [forged], log.note())
    # Carol's leaf presented as Bob's: the account is part of the leaf.
    with pytest.raises(ProofError):
        client.verify_bundles(BOB, [log.bundle(1)], log.note())
    assert client.checkpoint is None, "nothing is kept from a failed look-up"


def test_look_up_shapes_are_checked() -> None:
    log = Log()
    log.add(BOB, 1, "bob-1")
    log.add(BOB, 2, "bob-2")
    client = KeyLogClient(KEY)
    with pytest.raises(ProofError, match="at least one"):
        client.verify_bundles(BOB, [], log.note())
    with pytest.raises(ProofError, match="increasing"):
        client.verify_bundles(BOB, [log.bundle(1), log.bundle(0)], log.note())


def test_a_checkpoint_from_another_log_or_key_is_refused() -> None:
    log = Log(NoteSigner("confide.example/audit/v1", bytes(range(3, 35))))
    log.add(BOB, 1, "bob-1")
    client = KeyLogClient(KEY)
    with pytest.raises(SignatureError):
        client.verify_bundles(BOB, [log.bundle(0)], log.note())


def test_two_bundles_for_one_version_are_a_conflict() -> None:
    """C-11: the log (or a forked view of it) showing another bundle for a known version."""
    honest, forked = Log(), Log()
    honest.add(BOB, 1, "bob-1")
    forked.add(BOB, 1, "bob-1")
    forked.add(BOB, 1, "the server's key for bob")
    client = KeyLogClient(KEY)
    client.verify_bundles(BOB, [honest.bundle(0)], honest.note())
    with pytest.raises(KeyConflictError) as caught:
        client.verify_bundles(BOB, [forked.bundle(1)], forked.note(), forked.consistency(1))
    assert caught.value.account_id == BOB
    assert caught.value.key_version == 1


def test_another_bundle_for_the_known_version_among_older_ones_is_a_conflict() -> None:
    """The known version is checked wherever it appears in a look-up, not only as the newest."""
    log = Log()
    log.add(BOB, 1, "bob-1")
    client = KeyLogClient(KEY)
    client.verify_bundles(BOB, [log.bundle(0)], log.note())
    # One consistent history, with a second leaf for version 1 shown beside a version 2.
    log.add(BOB, 1, "the server's key for bob")
    log.add(BOB, 2, "bob-2")
    with pytest.raises(KeyConflictError):
        client.verify_bundles(BOB, [log.bundle(1), log.bundle(2)], log.note(), log.consistency(1))


def test_a_rollback_or_fork_against_the_kept_checkpoint_is_detected() -> None:
    log = Log()
    for n in range(5):
        log.add(BOB if n % 2 else CAROL, 1 + n // 2, f"k{n}")
    client = KeyLogClient(KEY)
    client.accept_checkpoint(log.note(3))
    # Newer and consistent: kept. Older and consistent: accepted, the newer stays kept.
    assert client.accept_checkpoint(log.note(5), log.consistency(3, 5)).size == 5
    assert client.accept_checkpoint(log.note(3), log.consistency(3, 5)).size == 5
    # A view that rewrote leaf 1: same size, other root; or bigger without a valid proof.
    fork = Log()
    fork.leaves = [*log.leaves[:1], KeyLogLeaf(BOB, 1, digest("forged")), *log.leaves[2:]]
    with pytest.raises(ForkError, match="one size") as same:
        client.accept_checkpoint(fork.note(5))
    assert same.value.notes == (log.note(5), fork.note(5))
    fork.add(BOB, 4, "k5")
    with pytest.raises(ForkError, match="extends"):
        client.accept_checkpoint(fork.note(6), fork.consistency(5, 6))
    with pytest.raises(ForkError, match="extends"):
        client.accept_checkpoint(fork.note(2), log.consistency(2, 5))


def test_gossip_between_two_clients_finds_a_split_view() -> None:
    """C-11: two clients shown different key sets compare signed heads and find the fork."""
    honest = Log()
    honest.add(CAROL, 1, "carol-1")
    honest.add(BOB, 1, "bob-1")
    split = Log()
    split.leaves = [honest.leaves[0], KeyLogLeaf(BOB, 1, digest("the server's key for bob"))]
    alice, dave = KeyLogClient(KEY), KeyLogClient(KEY)
    alice.verify_bundles(BOB, [honest.bundle(1)], honest.note())
    dave.verify_bundles(BOB, [split.bundle(1)], split.note())
    assert alice.note is not None
    assert dave.note is not None
    with pytest.raises(ForkError) as caught:
        alice.gossip(dave.note)
    assert set(caught.value.notes) == {alice.note, dave.note}
    with pytest.raises(ForkError):
        compare_checkpoints(alice.note, dave.note, [], KEY)
    # Honest clients agree, whichever holds the newer head.
    honest.add(BOB, 2, "bob-2")
    erin = KeyLogClient(KEY)
    erin.accept_checkpoint(honest.note())
    assert alice.gossip(honest.note(), honest.consistency(2)).size == 3
    small, big = compare_checkpoints(erin.note or "", honest.note(2), honest.consistency(2, 3), KEY)
    assert (small.size, big.size) == (2, 3)


def test_gossip_needs_a_checkpoint_and_the_pinned_log() -> None:
    client = KeyLogClient(KEY)
    log = Log()
    with pytest.raises(ProofError, match="no checkpoint"):
        client.gossip(log.note())
    other = NoteSigner("confide.example/audit/v1", bytes(range(3, 35)))
    audit_note = sign_checkpoint(Checkpoint(other.name, 0, MemoryTree([]).root()), other)
    # An audit-log checkpoint (same key bytes even) is never taken for a key-log one.
    with pytest.raises(SignatureError):
        compare_checkpoints(log.note(), audit_note, [], KEY)

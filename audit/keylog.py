"""Key transparency: the key log's leaves, and what a client checks about them.

Every published key bundle is a leaf of a second RFC 9162 log (the *key log*), beside
the audit log and built with the same :mod:`audit.merkle`, :mod:`audit.proofs` and
:mod:`audit.checkpoint` code. A leaf binds an account, a key version and the bundle's
digest (``crypto.public.bundle_digest``, computed by the client from the bundle it
received; this package never sees the bundle)::

    leaf = item("confide/v1/key-log-leaf") || u32(1) || uuid(account_id)
           || u32(key_version) || item(bundle_digest)

with ``item(x) = u32be(len(x)) || x`` as in ``crypto/SPEC.md`` section 3: 99 bytes,
fixed layout. The log's checkpoints have their own origin and key, so a key-log
checkpoint can never be taken for an audit-log one (the verifier pins the origin).

:class:`KeyLogClient` is a front end's view of the log: it verifies each looked-up
bundle's inclusion proof and checkpoint signature, keeps the newest checkpoint it has
seen and checks every other one against it with a consistency proof, reports a key
change (:class:`KeyChange`) when a newer version of a known account's bundle appears,
and compares checkpoints with another client (:meth:`KeyLogClient.gossip`). A fork —
two signed checkpoints no append-only log can both have produced — raises
:class:`~audit.errors.ForkError` carrying both notes as evidence; two different bundles
logged for one account key version raise :class:`~audit.errors.KeyConflictError`.
"""

from __future__ import annotations

import hmac
import itertools
import struct
import uuid
from collections.abc import Sequence
from typing import Final

import msgspec

from audit.checkpoint import Checkpoint, verify_checkpoint
from audit.errors import AuditFormatError, ForkError, KeyConflictError, KeyRollbackError, ProofError
from audit.merkle import HASH_SIZE, leaf_hash
from audit.note import VerifierKey
from audit.proofs import verify_consistency, verify_inclusion

__all__ = [
    "KEY_LEAF_DOMAIN",
    "KEY_LEAF_SIZE",
    "KEY_LEAF_VERSION",
    "KeyChange",
    "KeyLogClient",
    "KeyLogLeaf",
    "KeyLogState",
    "KnownKey",
    "LoggedBundle",
    "compare_checkpoints",
    "decode_key_leaf",
    "encode_key_leaf",
]

KEY_LEAF_DOMAIN: Final = "confide/v1/key-log-leaf"
KEY_LEAF_VERSION: Final = 1
_MAX_KEY_VERSION: Final = (1 << 32) - 1


def _item(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


_PREFIX: Final = _item(KEY_LEAF_DOMAIN.encode("ascii")) + _item(struct.pack(">I", KEY_LEAF_VERSION))
KEY_LEAF_SIZE: Final = len(_PREFIX) + (4 + 16) + (4 + 4) + (4 + HASH_SIZE)


class KeyLogLeaf(msgspec.Struct, frozen=True):
    """What one leaf of the key log says: this account's key version is this bundle."""

    account_id: uuid.UUID
    key_version: int
    bundle_digest: bytes

    def __post_init__(self) -> None:
        """Check the version range and the digest length."""
        if not 1 <= self.key_version <= _MAX_KEY_VERSION:
            raise AuditFormatError("key version must be 1 .. 2**32 - 1")
        if len(self.bundle_digest) != HASH_SIZE:
            raise AuditFormatError("a bundle digest is 32 bytes")


def encode_key_leaf(leaf: KeyLogLeaf) -> bytes:
    """Return the leaf's exact bytes (see the module docstring)."""
    return (
        _PREFIX
        + _item(leaf.account_id.bytes)
        + _item(struct.pack(">I", leaf.key_version))
        + _item(leaf.bundle_digest)
    )


def decode_key_leaf(raw: bytes) -> KeyLogLeaf:
    """Decode a key-log leaf, failing closed on anything but the exact layout.

    Raises:
        AuditFormatError: Wrong length, domain, version or item lengths, or a key
            version out of range.
    """
    if len(raw) != KEY_LEAF_SIZE or not raw.startswith(_PREFIX):
        raise AuditFormatError("not a version 1 key-log leaf")
    at = len(_PREFIX)
    fields: list[bytes] = []
    for size in (16, 4, HASH_SIZE):
        if raw[at : at + 4] != struct.pack(">I", size):
            raise AuditFormatError("key-log leaf item has the wrong length")
        fields.append(raw[at + 4 : at + 4 + size])
        at += 4 + size
    account, version, digest = fields
    return KeyLogLeaf(uuid.UUID(bytes=account), struct.unpack(">I", version)[0], digest)


class LoggedBundle(msgspec.Struct, frozen=True):
    """A looked-up bundle as the client checks it against the log.

    Attributes:
        key_version: The bundle's key version.
        bundle_digest: ``crypto.public.bundle_digest`` of the bundle, computed by the client.
        index: Its leaf index, as the server says.
        proof: Its inclusion proof in the checkpoint's tree, as the server says.
    """

    key_version: int
    bundle_digest: bytes
    index: int
    proof: tuple[bytes, ...]


class KeyChange(msgspec.Struct, frozen=True):
    """A contact's key changed: a newer version of their bundle is in the log."""

    account_id: uuid.UUID
    previous_version: int
    key_version: int
    index: int

    def __str__(self) -> str:
        """The notification text."""
        return (
            f"key changed for account {self.account_id}: "
            f"version {self.previous_version} -> {self.key_version}"
        )


class KnownKey(msgspec.Struct, frozen=True):
    """The newest logged bundle a client has verified for one account."""

    key_version: int
    bundle_digest: bytes
    index: int


class KeyLogState(msgspec.Struct, frozen=True):
    """What a client keeps between sessions: the newest checkpoint seen and known keys."""

    checkpoint: str | None = None
    known: dict[uuid.UUID, KnownKey] = {}


def _consistent(
    older: Checkpoint, newer: Checkpoint, proof: Sequence[bytes], older_note: str, newer_note: str
) -> None:
    """Raise :class:`ForkError` unless ``newer`` extends ``older`` (sizes ordered by the caller).

    Both were verified under the one pinned key log key, whose name is their origin.
    """
    try:
        verify_consistency(older.size, newer.size, older.root, newer.root, proof)
    except ProofError as exc:
        if older.size == newer.size:
            message = "two signed checkpoints of one size have different roots"
        else:
            message = "the log cannot show that the newer checkpoint extends the older one"
        raise ForkError(message, notes=(older_note, newer_note)) from exc


def compare_checkpoints(
    note_a: str, note_b: str, proof: Sequence[bytes], log_key: VerifierKey
) -> tuple[Checkpoint, Checkpoint]:
    """Gossip: check that two clients' signed checkpoints belong to one append-only log.

    Args:
        note_a: One client's signed checkpoint.
        note_b: The other's.
        proof: A consistency proof from the smaller tree to the larger (from the log);
            empty when the sizes are equal.
        log_key: The key log's verifier key (its name is the origin).

    Returns:
        The two checkpoints, smaller first.

    Raises:
        SignatureError: A checkpoint is not signed by the key log.
        ForkError: Equal sizes with different roots, or no valid consistency proof: the
            log showed the two clients different histories (``notes`` holds both).
    """
    a = verify_checkpoint(note_a, [log_key], origin=log_key.name).checkpoint
    b = verify_checkpoint(note_b, [log_key], origin=log_key.name).checkpoint
    if b.size < a.size:
        a, b, note_a, note_b = b, a, note_b, note_a
    _consistent(a, b, proof, note_a, note_b)
    return a, b


class KeyLogClient:
    """One client's view of the key log (see the module docstring)."""

    __slots__ = ("_head", "_key", "_known")

    def __init__(self, log_key: VerifierKey, state: KeyLogState | None = None) -> None:
        """Trust ``log_key`` (pinned by the front end) and resume from a saved ``state``.

        Raises:
            VerificationError: The saved checkpoint does not verify under ``log_key``.
        """
        self._key = log_key
        self._head: tuple[Checkpoint, str] | None = None
        self._known: dict[uuid.UUID, KnownKey] = {}
        if state is not None:
            if state.checkpoint is not None:
                self._head = (self._verify(state.checkpoint), state.checkpoint)
            self._known = dict(state.known)

    @property
    def checkpoint(self) -> Checkpoint | None:
        """The newest checkpoint seen (``None`` before the first)."""
        return None if self._head is None else self._head[0]

    @property
    def note(self) -> str | None:
        """The newest checkpoint seen, as the signed note to keep and gossip."""
        return None if self._head is None else self._head[1]

    def state(self) -> KeyLogState:
        """What to save, to resume with :class:`KeyLogClient` ``(log_key, state)``."""
        return KeyLogState(self.note, dict(self._known))

    def _verify(self, note: str) -> Checkpoint:
        return verify_checkpoint(note, [self._key], origin=self._key.name).checkpoint

    def accept_checkpoint(self, note: str, proof: Sequence[bytes] = ()) -> Checkpoint:
        """Verify a checkpoint against the newest one seen; keep it if it is newer.

        Args:
            note: The signed checkpoint the server just presented.
            proof: Consistency proof between it and :attr:`checkpoint` (smaller tree to
                larger); not needed the first time or when the sizes are equal.

        Returns:
            The newest checkpoint now kept.

        Raises:
            SignatureError: Not signed by the key log.
            ForkError: It is not consistent with the checkpoint kept (a fork or a rollback).
        """
        new = self._verify(note)
        if self._head is not None:
            old, old_note = self._head
            if new.size < old.size:
                _consistent(new, old, proof, note, old_note)
                return old
            _consistent(old, new, proof, old_note, note)
        self._head = (new, note)
        return new

    def verify_bundles(
        self,
        account_id: uuid.UUID,
        bundles: Sequence[LoggedBundle],
        note: str,
        consistency_proof: Sequence[bytes] = (),
    ) -> KeyChange | None:
        """Verify a key look-up: every bundle is in the log under the signed checkpoint.

        Args:
            account_id: The account looked up.
            bundles: Its bundles, oldest first, each with its leaf index and proof.
            note: The signed checkpoint the proofs lead to.
            consistency_proof: Between ``note`` and :attr:`checkpoint` (see
                :meth:`accept_checkpoint`).

        Returns:
            The key change to tell the user about, when the newest bundle is a newer
            version than the one known for this account; ``None`` otherwise.

        Raises:
            ProofError: No bundle, versions not increasing, or an inclusion proof fails.
            ForkError: The checkpoint is not consistent with the one kept.
            KeyConflictError: A different bundle was already verified for the known version.
            KeyRollbackError: The newest bundle is older than the version already verified
                for the account (a stale or rolled-back answer: do not encrypt to it).
        """
        if not bundles:
            raise ProofError("a key look-up must return at least one logged bundle")
        versions = [bundle.key_version for bundle in bundles]
        if any(b <= a for a, b in itertools.pairwise(versions)):
            raise ProofError("logged bundles must be in increasing key version order")
        checkpoint = self._verify(note)
        for bundle in bundles:
            leaf = encode_key_leaf(KeyLogLeaf(account_id, bundle.key_version, bundle.bundle_digest))
            verify_inclusion(leaf_hash(leaf), bundle.index, checkpoint.size, bundle.proof, checkpoint.root)
        self.accept_checkpoint(note, consistency_proof)
        known = self._known.get(account_id)
        if known is not None:
            for bundle in bundles:
                # Whichever place the known version has in this answer, it is the same bundle.
                if bundle.key_version == known.key_version and not hmac.compare_digest(
                    known.bundle_digest, bundle.bundle_digest
                ):
                    raise KeyConflictError(
                        "the key log holds two different bundles for one key version",
                        account_id=account_id,
                        key_version=known.key_version,
                    )
        newest = bundles[-1]
        return self._remember(
            account_id, known, KnownKey(newest.key_version, newest.bundle_digest, newest.index)
        )

    def _remember(self, account_id: uuid.UUID, known: KnownKey | None, seen: KnownKey) -> KeyChange | None:
        if known is not None and known.key_version > seen.key_version:
            raise KeyRollbackError(
                "the look-up's newest key is older than one already verified",
                account_id=account_id,
                known_version=known.key_version,
                seen_version=seen.key_version,
            )
        if known is not None and known.key_version == seen.key_version:
            return None
        self._known[account_id] = seen
        if known is None:
            return None
        return KeyChange(account_id, known.key_version, seen.key_version, seen.index)

    def gossip(self, peer_note: str, proof: Sequence[bytes] = ()) -> Checkpoint:
        """Compare the newest checkpoint kept with another client's; keep the newer.

        Args:
            peer_note: The other client's signed checkpoint.
            proof: Consistency proof between the two (smaller tree to larger).

        Returns:
            The newest checkpoint now kept.

        Raises:
            ProofError: This client has no checkpoint yet.
            ForkError: The two clients were shown different histories.
        """
        if self._head is None:
            raise ProofError("no checkpoint to compare yet")
        return self.accept_checkpoint(peer_note, proof)

"""Response bodies of the key log (hashes and proofs are base64 in JSON)."""

from __future__ import annotations

import datetime as dt

import msgspec

__all__ = ["BundleInclusion", "KeyLogCheckpointView", "KeyLogConsistencyView", "KeyLogKeyView"]


class KeyLogKeyView(msgspec.Struct, frozen=True, kw_only=True):
    """The key log's public key: pin it, and verify key look-ups' checkpoints with ``vkey``.

    Attributes:
        origin: Checkpoint origin line, equal to the key name (never the audit log's).
        vkey: C2SP signed-note verifier key ``<name>+<key id>+<base64(0x01 || key)>``.
        checkpoint_spec: The checkpoint format.
        leaf_spec: The leaf format (``audit.keylog``, crypto/SPEC.md section 16).
    """

    origin: str
    vkey: str
    checkpoint_spec: str
    leaf_spec: str


class KeyLogCheckpointView(msgspec.Struct, frozen=True, kw_only=True):
    """A signed checkpoint of the key log: keep ``note``, and compare it with other clients'."""

    size: int
    root: bytes
    note: str
    created_at: dt.datetime


class KeyLogConsistencyView(msgspec.Struct, frozen=True, kw_only=True):
    """Proof that the key log of size ``new`` extends the key log of size ``old``."""

    old: int
    new: int
    proof: list[bytes]


class BundleInclusion(msgspec.Struct, frozen=True, kw_only=True):
    """A bundle's leaf index and its inclusion proof in the listing's checkpoint."""

    index: int
    proof: list[bytes]

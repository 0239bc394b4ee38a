"""Response bodies of the key directory (request bodies are crypto.public Structs)."""

from __future__ import annotations

import datetime as dt
import uuid

import msgspec

from backend.key_log.schemas import BundleInclusion, KeyLogCheckpointView
from crypto.public import KeyBundle

__all__ = ["BackupStored", "KeyListing", "PublishedBundle", "PublishedKey"]


class PublishedKey(msgspec.Struct, frozen=True, kw_only=True):
    """A bundle accepted into the directory."""

    account_id: uuid.UUID
    key_version: int
    fingerprint: str
    published_at: dt.datetime


class PublishedBundle(msgspec.Struct, frozen=True, kw_only=True):
    """One version of an account's keys, as clients verify it.

    Attributes:
        log: Its leaf in the key log and the inclusion proof in the listing's
            ``checkpoint`` (verify with ``audit.keylog``); ``None`` while not yet logged,
            which a client must refuse.
    """

    bundle: KeyBundle
    fingerprint: str
    published_at: dt.datetime
    revoked_at: dt.datetime | None
    current: bool
    log: BundleInclusion | None = None


class KeyListing(msgspec.Struct, frozen=True, kw_only=True):
    """Every version of an account's keys, oldest first (verify the chain client-side).

    Attributes:
        checkpoint: The key log's signed checkpoint the bundles' inclusion proofs lead
            to (key transparency: keep it, check it against the last one kept, gossip it).
    """

    account_id: uuid.UUID
    bundles: list[PublishedBundle]
    checkpoint: KeyLogCheckpointView | None = None


class BackupStored(msgspec.Struct, frozen=True, kw_only=True):
    """The stored backup's revision (also sent as the ``ETag``)."""

    revision: int
    key_version: int
    updated_at: dt.datetime

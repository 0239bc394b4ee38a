"""Response bodies of the key directory (request bodies are crypto.public Structs)."""

from __future__ import annotations

import datetime as dt
import uuid

import msgspec

from crypto.public import KeyBundle

__all__ = ["BackupStored", "KeyListing", "PublishedBundle", "PublishedKey"]


class PublishedKey(msgspec.Struct, frozen=True, kw_only=True):
    """A bundle accepted into the directory."""

    account_id: uuid.UUID
    key_version: int
    fingerprint: str
    published_at: dt.datetime


class PublishedBundle(msgspec.Struct, frozen=True, kw_only=True):
    """One version of an account's keys, as clients verify it."""

    bundle: KeyBundle
    fingerprint: str
    published_at: dt.datetime
    revoked_at: dt.datetime | None
    current: bool


class KeyListing(msgspec.Struct, frozen=True, kw_only=True):
    """Every version of an account's keys, oldest first (verify the chain client-side)."""

    account_id: uuid.UUID
    bundles: list[PublishedBundle]


class BackupStored(msgspec.Struct, frozen=True, kw_only=True):
    """The stored backup's revision (also sent as the ``ETag``)."""

    revision: int
    key_version: int
    updated_at: dt.datetime

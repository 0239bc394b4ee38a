"""Bodies of the notes and custodian-key routes."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Literal

import msgspec

from crypto.public import Envelope, KeyBundle

__all__ = [
    "CustodianKeyView",
    "KeyWrap",
    "KeyWrapsRequest",
    "NoteList",
    "NoteStored",
    "NoteView",
]


class NoteStored(msgspec.Struct, frozen=True, kw_only=True):
    """A note (or amendment, or share) accepted."""

    id: uuid.UUID
    client_id: uuid.UUID
    kind: Literal["note", "note_amendment"]
    envelope_version: int
    created_at: dt.datetime


class NoteView(msgspec.Struct, frozen=True, kw_only=True):
    """A note as its reader gets it: metadata, the current envelope, and a re-wrapped key if any."""

    id: uuid.UUID
    client_id: uuid.UUID
    author_id: uuid.UUID
    kind: Literal["note", "note_amendment"]
    amends: uuid.UUID | None
    amended_by: list[uuid.UUID]
    created_at: dt.datetime
    cursor: str
    envelope_version: int
    envelope: Envelope
    emergency_wrapped_key: bytes | None = None
    """Break-glass only: the content key sealed to the caller by the custodian."""


class NoteList(msgspec.Struct, frozen=True, kw_only=True):
    """A page of a client's notes the caller may read, oldest first."""

    items: list[NoteView]
    next_cursor: str | None


class CustodianKeyView(msgspec.Struct, frozen=True, kw_only=True):
    """The organization's current custodian key (every note is sealed to it too)."""

    bundle: KeyBundle
    fingerprint: str
    published_at: dt.datetime


class KeyWrap(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A note's content key, sealed by the custodian to the emergency clinician's current key."""

    note_id: uuid.UUID
    wrapped_key: Annotated[bytes, msgspec.Meta(min_length=80, max_length=80)]


class KeyWrapsRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Only re-wraps: the approver (holding the custodian key) hands over what break-glass needs."""

    key_version: Annotated[int, msgspec.Meta(ge=1)]
    """The emergency clinician's key version the wraps are sealed to."""
    wraps: Annotated[list[KeyWrap], msgspec.Meta(min_length=1, max_length=500)]

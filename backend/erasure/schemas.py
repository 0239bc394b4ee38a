"""Request and response bodies for erasure requests (GDPR Art. 17)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Literal

import msgspec

__all__ = [
    "ErasureDecision",
    "ErasureFiled",
    "ErasureList",
    "ErasureRequestBody",
    "ErasureView",
    "KeptItem",
]

_TEXT = r"^[^\x00-\x08\x0b-\x1f\x7f]+$"
Status = Literal["pending", "rejected", "approved", "held", "completed"]


class ErasureRequestBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A client asks for their data to be erased; a reason is optional."""

    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=1000, pattern=_TEXT)] | None = None


class ErasureDecision(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A compliance officer approves or rejects a request, saying why."""

    decision: Literal["approve", "reject"]
    reason: Annotated[str, msgspec.Meta(min_length=10, max_length=1000, pattern=_TEXT)]


class KeptItem(msgspec.Struct, frozen=True, kw_only=True):
    """Something kept after an erasure, how much of it, and the legal reason (Art. 17(3))."""

    category: str
    count: int
    basis: str


class ErasureView(msgspec.Struct, frozen=True, kw_only=True):
    """An erasure request and, once carried out, its outcome."""

    id: uuid.UUID
    client_id: uuid.UUID
    status: Status
    """``approved``: decided, being carried out; ``held``: a legal hold stops it for now."""
    filed_at: dt.datetime
    reason: str | None
    decided_at: dt.datetime | None
    decided_by: uuid.UUID | None
    decision_reason: str | None
    started_at: dt.datetime | None
    completed_at: dt.datetime | None
    deleted: dict[str, int]
    """Rows deleted, per kind."""
    kept: list[KeptItem]
    """What was kept and why (GDPR Art. 17(3)); filled in when the erasure completes."""


class ErasureFiled(msgspec.Struct, frozen=True, kw_only=True):
    """The filed request, and the receipt token that shows its outcome after the account is gone."""

    request: ErasureView
    receipt_token: str
    """Shown once. Send it as the ``Erasure-Receipt`` header of ``GET /v1/erasure-requests/{id}/outcome``."""


class ErasureList(msgspec.Struct, frozen=True, kw_only=True):
    """Erasure requests, newest first."""

    items: list[ErasureView]
    next_cursor: str | None

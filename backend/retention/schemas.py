"""Request and response bodies for retention policies, runs and legal holds."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Literal

import msgspec

__all__ = [
    "CATEGORIES",
    "Category",
    "CategoryCounts",
    "HoldCreate",
    "HoldList",
    "HoldRelease",
    "HoldView",
    "PolicyList",
    "PolicyUpdate",
    "PolicyView",
    "Reason",
    "RunList",
    "RunView",
]

Category = Literal[
    "messages",
    "attachments",
    "notes",
    "sessions",
    "invites",
    "key_backups",
    "consent_events",
    "audit_events",
]
#: Every data category with a retention policy, in the order the job handles them.
CATEGORIES: tuple[Category, ...] = (
    "messages",
    "attachments",
    "notes",
    "consent_events",
    "sessions",
    "invites",
    "key_backups",
    "audit_events",
)

Reason = Annotated[str, msgspec.Meta(min_length=10, max_length=1000, pattern=r"^[^\x00-\x08\x0b-\x1f\x7f]+$")]
LegalBasis = Annotated[
    str, msgspec.Meta(min_length=10, max_length=2000, pattern=r"^[^\x00-\x08\x0b-\x1f\x7f]+$")
]


class PolicyView(msgspec.Struct, frozen=True, kw_only=True):
    """The retention policy in force for one category of the caller's organization."""

    category: Category
    period_days: int
    counts_from: Literal["created", "last_activity", "account_closed"]
    """The event the period counts from (fixed per category)."""
    action: Literal["delete", "prune_to_hash"]
    legal_basis: str
    floor_days: int
    """The shortest period this deployment accepts for the category."""
    is_default: bool
    """True while the organization uses the shipped default."""
    updated_at: dt.datetime
    updated_by: uuid.UUID | None


class PolicyList(msgspec.Struct, frozen=True, kw_only=True):
    """Every category's policy."""

    items: list[PolicyView]


class PolicyUpdate(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """An admin sets a category's period and the legal basis it rests on."""

    period_days: Annotated[int, msgspec.Meta(ge=1, le=36_500)]
    legal_basis: LegalBasis


class CategoryCounts(msgspec.Struct, frozen=True, kw_only=True):
    """What one run found and did in one category.

    ``candidates`` were past their period; ``held`` of those are kept by a legal hold;
    ``deleted`` were deleted (in a dry run: would be); ``skipped`` were kept for another
    reason (a newer edit or amendment in the same thread, a row locked by live traffic,
    an audit event not yet in the log) and are looked at again by the next run.
    """

    candidates: int = 0
    held: int = 0
    deleted: int = 0
    skipped: int = 0


class RunView(msgspec.Struct, frozen=True, kw_only=True):
    """One retention run, with the counts of the caller's organization."""

    id: uuid.UUID
    started_at: dt.datetime
    as_of: dt.datetime
    finished_at: dt.datetime | None
    dry_run: bool
    status: Literal["running", "completed", "failed", "abandoned"]
    trigger: Literal["cli", "scheduler"]
    counts: dict[str, CategoryCounts]


class RunList(msgspec.Struct, frozen=True, kw_only=True):
    """Runs, newest first."""

    items: list[RunView]
    next_cursor: str | None


class HoldCreate(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Place a legal hold on a client (everything about them) or on one conversation."""

    scope: Literal["client", "conversation"]
    reason: Reason
    client_id: uuid.UUID | None = None
    conversation_id: uuid.UUID | None = None


class HoldRelease(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Release a hold, saying why."""

    reason: Reason


class HoldView(msgspec.Struct, frozen=True, kw_only=True):
    """A legal hold."""

    id: uuid.UUID
    scope: Literal["client", "conversation"]
    client_id: uuid.UUID | None
    conversation_id: uuid.UUID | None
    reason: str
    placed_by: uuid.UUID
    placed_at: dt.datetime
    active: bool
    released_by: uuid.UUID | None
    released_at: dt.datetime | None
    release_reason: str | None


class HoldList(msgspec.Struct, frozen=True, kw_only=True):
    """Holds of the organization, newest first."""

    items: list[HoldView]
    next_cursor: str | None

"""Request and response bodies for accounts and invites."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Literal

import msgspec

from backend.auth.schemas import Email, Password

__all__ = [
    "AccountView",
    "CreateStaffRequest",
    "InviteCreated",
    "InviteRequest",
    "RedeemInviteRequest",
    "RoleChangeRequest",
    "StatusChangeRequest",
]

DisplayName = Annotated[
    str,
    msgspec.Meta(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f\u202a-\u202e\u2066-\u2069]+$"),
]
StaffRole = Literal["clinician", "compliance_officer", "admin"]


class AccountView(msgspec.Struct, frozen=True, kw_only=True):
    """An account as its owner (or an admin creating it) sees it."""

    id: uuid.UUID
    organization_id: uuid.UUID
    email: str
    display_name: str
    role: Literal["client", "clinician", "compliance_officer", "admin"]
    status: Literal["active", "disabled"]
    mfa_enabled: bool
    created_at: dt.datetime


class CreateStaffRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """An admin creates a staff account with an initial password."""

    email: Email
    display_name: DisplayName
    role: StaffRole
    password: Password


class InviteRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A clinician invites a client; the code expires after ``ttl_s`` (default from settings)."""

    ttl_s: Annotated[int, msgspec.Meta(ge=300, le=2_592_000)] | None = None


class InviteCreated(msgspec.Struct, frozen=True, kw_only=True):
    """The single-use code, shown once; the server keeps only its digest."""

    id: uuid.UUID
    code: str
    expires_at: dt.datetime


class RedeemInviteRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A client creates their account with an invite code."""

    email: Email
    display_name: DisplayName
    password: Password


class RoleChangeRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """An admin gives a staff member another staff role (clients keep theirs)."""

    role: StaffRole


class StatusChangeRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """An admin disables an account, or re-enables it."""

    status: Literal["active", "disabled"]

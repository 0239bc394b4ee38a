"""The authenticated caller of a request."""

from __future__ import annotations

import datetime as dt
import uuid

import msgspec

from backend.policy import Actor

__all__ = ["Principal"]


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    """A live session and its account, loaded by one query per request."""

    session_id: uuid.UUID
    account_id: uuid.UUID
    org_id: uuid.UUID
    role: str
    mfa_satisfied: bool
    absolute_expires_at: dt.datetime
    email: str
    display_name: str
    mfa_enabled: bool
    account_created_at: dt.datetime

    @property
    def actor(self) -> Actor:
        """The caller as the policy sees it."""
        return Actor(account_id=self.account_id, org_id=self.org_id, role=self.role)  # type: ignore[arg-type]

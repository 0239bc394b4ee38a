"""Request and response bodies for consent and break-glass routes."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Literal

import msgspec

from backend.consent.receipts import ConsentReceipt
from crypto.public import ConsentStatement

__all__ = [
    "ConsentEventView",
    "ConsentGranted",
    "ConsentHistory",
    "ConsentList",
    "ConsentView",
    "EmergencyAccessList",
    "EmergencyAccessRequest",
    "EmergencyAccessView",
    "ReceiptKey",
]


class ConsentView(msgspec.Struct, frozen=True, kw_only=True):
    """A consent's current state."""

    consent_id: uuid.UUID
    client_id: uuid.UUID
    grantee_type: Literal["clinician", "organization"]
    grantee_id: uuid.UUID
    scopes: list[str]
    purpose: str
    valid_from: dt.datetime
    valid_until: dt.datetime | None
    status: Literal["active", "revoked", "expired"]
    granted_at: dt.datetime
    ended_at: dt.datetime | None


class ConsentGranted(msgspec.Struct, frozen=True, kw_only=True):
    """The stored consent and the server's signed receipt for the event."""

    consent: ConsentView
    receipt: ConsentReceipt


class ConsentList(msgspec.Struct, frozen=True, kw_only=True):
    """Consents visible to the caller, newest first."""

    items: list[ConsentView]


class ConsentEventView(msgspec.Struct, frozen=True, kw_only=True):
    """One event of a consent's history, with the client's statement and the receipt."""

    kind: Literal["grant", "revoke", "expire"]
    recorded_at: dt.datetime
    statement: ConsentStatement | None
    receipt: ConsentReceipt | None


class ConsentHistory(msgspec.Struct, frozen=True, kw_only=True):
    """Every event of a consent, oldest first."""

    consent: ConsentView
    events: list[ConsentEventView]


class ReceiptKey(msgspec.Struct, frozen=True, kw_only=True):
    """The server's Ed25519 public key for consent receipts."""

    algorithm: Literal["Ed25519"]
    public_key: bytes


Reason = Annotated[str, msgspec.Meta(min_length=10, max_length=1000, pattern=r"^[^\x00-\x08\x0b-\x1f\x7f]+$")]


class EmergencyAccessRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Open break-glass access to one client, with a written reason."""

    client_id: uuid.UUID
    reason: Reason
    duration_s: Annotated[int, msgspec.Meta(ge=60, le=14_400)] = 3_600


class EmergencyAccessView(msgspec.Struct, frozen=True, kw_only=True):
    """A break-glass opening."""

    id: uuid.UUID
    client_id: uuid.UUID
    clinician_id: uuid.UUID
    reason: str
    opened_at: dt.datetime
    expires_at: dt.datetime
    status: Literal["pending_approval", "approved", "expired", "closed"]
    approved_by: uuid.UUID | None


class EmergencyAccessList(msgspec.Struct, frozen=True, kw_only=True):
    """Break-glass openings visible to the caller, newest first."""

    items: list[EmergencyAccessView]

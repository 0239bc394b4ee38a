"""Lines of the data-subject export that carry no key material (metadata sections).

The sections with envelopes, key bundles, the key backup and consent statements are
defined in :mod:`crypto.public.export`, shared with the client-side opener. Every record
here is tagged by ``type`` (its section) and holds what the server keeps about the
subject, never a password hash, TOTP seed, token digest or recovery-code digest.
``docs/export-schema.json`` describes every line.
"""

from __future__ import annotations

import datetime as dt
import uuid

import msgspec

__all__ = [
    "AccountRecord",
    "AttachmentRecord",
    "CareRelationshipRecord",
    "ConsentRecord",
    "ConversationRecord",
    "DisclosureRecord",
    "EmergencyAccessRecord",
    "ErasureRequestRecord",
    "InviteRecord",
    "MemberRecord",
    "MfaState",
    "OrganizationRef",
    "SessionRecord",
]


class _Line(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """One line of the archive."""


class OrganizationRef(msgspec.Struct, frozen=True, kw_only=True):
    """The subject's organization."""

    id: uuid.UUID
    slug: str
    name: str


class MfaState(msgspec.Struct, frozen=True, kw_only=True):
    """Whether a second factor is enrolled (never the seed or the codes)."""

    enabled: bool
    enabled_at: dt.datetime | None
    recovery_codes_remaining: int


class AccountRecord(_Line, frozen=True, kw_only=True, tag="account"):
    """The subject's profile."""

    id: uuid.UUID
    organization: OrganizationRef
    email: str
    display_name: str
    role: str
    status: str
    created_at: dt.datetime
    created_by: uuid.UUID | None
    password_changed_at: dt.datetime
    mfa: MfaState


class SessionRecord(_Line, frozen=True, kw_only=True, tag="session"):
    """A login session (its token is stored only as a digest and is not exported)."""

    id: uuid.UUID
    created_at: dt.datetime
    last_seen_at: dt.datetime
    idle_expires_at: dt.datetime
    absolute_expires_at: dt.datetime
    mfa_satisfied: bool
    revoked_at: dt.datetime | None
    revoked_reason: str | None


class CareRelationshipRecord(_Line, frozen=True, kw_only=True, tag="care_relationship"):
    """Who treats whom; a client's export names the clinician."""

    client_id: uuid.UUID
    clinician_id: uuid.UUID
    created_at: dt.datetime
    source: str
    clinician_name: str | None


class InviteRecord(_Line, frozen=True, kw_only=True, tag="invite"):
    """An invitation the subject issued or redeemed (the code is stored only as a digest)."""

    id: uuid.UUID
    created_by: uuid.UUID
    created_at: dt.datetime
    expires_at: dt.datetime
    redeemed_at: dt.datetime | None
    redeemed_by: uuid.UUID | None


class ConversationRecord(_Line, frozen=True, kw_only=True, tag="conversation"):
    """A conversation the subject is or was a member of, with their membership."""

    id: uuid.UUID
    kind: str
    client_id: uuid.UUID | None
    created_by: uuid.UUID
    created_at: dt.datetime
    membership: str
    pseudonym: str | None
    added_by: uuid.UUID
    added_at: dt.datetime
    joined_at: dt.datetime | None
    removed_at: dt.datetime | None


class MemberRecord(_Line, frozen=True, kw_only=True, tag="member"):
    """A member of a conversation the subject is active in, as they see them.

    In a support group other clients appear under their pseudonym only.
    """

    conversation_id: uuid.UUID
    account_id: uuid.UUID
    role: str
    name: str
    status: str


class AttachmentRecord(_Line, frozen=True, kw_only=True, tag="attachment"):
    """An encrypted attachment the subject may fetch; the blob stays on the server.

    ``download`` is the route that streams it (for current members of its conversation);
    its key is in the message that shared it.
    """

    id: uuid.UUID
    conversation_id: uuid.UUID
    uploader_id: uuid.UUID
    size: int
    blake2b: bytes
    chunk_count: int
    created_at: dt.datetime
    download: str


class ConsentRecord(_Line, frozen=True, kw_only=True, tag="consent"):
    """A consent the subject gave, or one that names them as grantee (current state)."""

    consent_id: uuid.UUID
    client_id: uuid.UUID
    grantee_type: str
    grantee_id: uuid.UUID
    scopes: list[str]
    purpose: str
    valid_from: dt.datetime
    valid_until: dt.datetime | None
    status: str
    granted_at: dt.datetime
    ended_at: dt.datetime | None


class EmergencyAccessRecord(_Line, frozen=True, kw_only=True, tag="emergency_access"):
    """A break-glass opening about the subject, or opened by them."""

    id: uuid.UUID
    client_id: uuid.UUID
    clinician_id: uuid.UUID
    reason: str
    opened_at: dt.datetime
    expires_at: dt.datetime
    approved_by: uuid.UUID | None
    approved_at: dt.datetime | None
    closed_at: dt.datetime | None


class DisclosureRecord(_Line, frozen=True, kw_only=True, tag="disclosure"):
    """Someone else's access to or change of the subject's records (accounting of disclosures)."""

    at: dt.datetime
    agent_id: uuid.UUID | None
    agent_role: str | None
    agent_name: str | None
    action: str
    event_type: str
    outcome: int
    purpose: str | None
    consent_id: uuid.UUID | None
    entity_type: str | None
    entity_id: uuid.UUID | None


class ErasureRequestRecord(_Line, frozen=True, kw_only=True, tag="erasure_request"):
    """An erasure request (GDPR Art. 17) the subject filed, its decision and outcome.

    ``deleted`` counts rows deleted per category; ``kept`` lists what was kept and why
    (Art. 17(3)), as the erasure job recorded them.
    """

    id: uuid.UUID
    status: str
    reason: str | None
    filed_at: dt.datetime
    decided_by: uuid.UUID | None
    decided_at: dt.datetime | None
    decision_reason: str | None
    started_at: dt.datetime | None
    completed_at: dt.datetime | None
    deleted: msgspec.Raw
    kept: msgspec.Raw

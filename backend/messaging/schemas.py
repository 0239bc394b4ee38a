"""Request and response bodies for conversations and messages."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Literal

import msgspec

from crypto.public import Envelope

__all__ = [
    "ConversationCreate",
    "ConversationList",
    "ConversationView",
    "JoinRequest",
    "MemberAdd",
    "MemberView",
    "MessagePage",
    "MessageSent",
    "MessageView",
    "ReadMark",
]

Pseudonym = Annotated[
    str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f\x7f\u202a-\u202e\u2066-\u2069]+$")
]


class ConversationCreate(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Start a conversation: with one client, a care team about one client, or a support group."""

    id: uuid.UUID
    """Chosen by the client (it goes into every envelope's associated data)."""
    kind: Literal["direct", "care_team", "support_group"]
    client_id: uuid.UUID | None = None
    clinicians: Annotated[list[uuid.UUID], msgspec.Meta(max_length=50)] = []
    """Other clinicians to add (care teams and support groups)."""


class MemberAdd(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Add a clinician, or invite a client into a support group."""

    account_id: uuid.UUID


class JoinRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A client accepts a support-group invitation under a pseudonym."""

    pseudonym: Pseudonym


class MemberView(msgspec.Struct, frozen=True, kw_only=True):
    """A member as the caller may see them (other clients in a group: pseudonym only)."""

    account_id: uuid.UUID
    role: Literal["client", "clinician"]
    name: str
    status: Literal["invited", "active", "removed"]


class ConversationView(msgspec.Struct, frozen=True, kw_only=True):
    """A conversation with its members."""

    id: uuid.UUID
    kind: Literal["direct", "care_team", "support_group"]
    client_id: uuid.UUID | None
    created_at: dt.datetime
    members: list[MemberView]


class ConversationList(msgspec.Struct, frozen=True, kw_only=True):
    """The caller's conversations."""

    items: list[ConversationView]


class MessageSent(msgspec.Struct, frozen=True, kw_only=True):
    """The stored message's id and position."""

    id: uuid.UUID
    conversation_id: uuid.UUID
    cursor: str
    created_at: dt.datetime


class MessageView(msgspec.Struct, frozen=True, kw_only=True):
    """One message: metadata in clear, content only inside the envelope."""

    id: uuid.UUID
    sender_id: uuid.UUID
    kind: Literal["message", "message_edit", "message_delete", "attachment_key"]
    references: uuid.UUID | None
    created_at: dt.datetime
    cursor: str
    envelope: Envelope


class MessagePage(msgspec.Struct, frozen=True, kw_only=True):
    """A page of messages in send order, with cursors to continue either way."""

    items: list[MessageView]
    next_cursor: str | None
    prev_cursor: str | None


class ReadMark(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Everything up to and including this message has been read."""

    up_to: uuid.UUID

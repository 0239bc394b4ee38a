"""HTTP routes: conversations, membership and messages."""

from __future__ import annotations

import uuid
from typing import Annotated

from litestar import Controller, Response, delete, get, post
from litestar.params import JSONBody, PathParameter, QueryParameter

from backend.http.deps import AuditCtxDep, DbDep, PrincipalDep, RuntimeDep
from backend.messaging import service
from backend.messaging.schemas import (
    ConversationCreate,
    ConversationList,
    ConversationView,
    JoinRequest,
    MemberAdd,
    MessagePage,
    MessageSent,
    ReadMark,
)
from crypto.public import Envelope, limits

__all__ = ["ConversationsController"]

ConversationId = Annotated[uuid.UUID, PathParameter(description="The conversation.")]
Cursor = Annotated[
    str | None, QueryParameter(max_length=64, description="An opaque cursor from a previous page.")
]


class ConversationsController(Controller):
    """``/v1/conversations``."""

    path = "/v1/conversations"
    tags = ("messaging",)

    @post("/", operation_id="createConversation")
    async def create(
        self,
        data: JSONBody[ConversationCreate],
        runtime: RuntimeDep,
        db: DbDep,
        principal: PrincipalDep,
        audit_ctx: AuditCtxDep,
    ) -> ConversationView:
        """Start a conversation: one client with one clinician, a care team, or a support group."""
        return await service.create_conversation(runtime, db, principal, data, audit_ctx)

    @get("/", operation_id="listConversations")
    async def list_conversations(
        self, runtime: RuntimeDep, db: DbDep, principal: PrincipalDep, audit_ctx: AuditCtxDep
    ) -> ConversationList:
        """The caller's conversations and support-group invitations."""
        return await service.list_conversations(runtime, db, principal, audit_ctx)

    @get("/{conversation_id:uuid}", operation_id="getConversation")
    async def get_conversation(
        self,
        conversation_id: ConversationId,
        runtime: RuntimeDep,
        db: DbDep,
        principal: PrincipalDep,
        audit_ctx: AuditCtxDep,
    ) -> ConversationView:
        """A conversation with its members (other clients in a group appear under a pseudonym)."""
        return await service.get_conversation(runtime, db, principal, conversation_id, audit_ctx)

    @post("/{conversation_id:uuid}/members", operation_id="addConversationMember", status_code=200)
    async def add_member(
        self,
        conversation_id: ConversationId,
        data: JSONBody[MemberAdd],
        runtime: RuntimeDep,
        db: DbDep,
        principal: PrincipalDep,
        audit_ctx: AuditCtxDep,
    ) -> ConversationView:
        """Add a clinician, or invite a client into a support group (they join themselves)."""
        return await service.add_member(runtime, db, principal, conversation_id, data.account_id, audit_ctx)

    @delete(
        "/{conversation_id:uuid}/members/{account_id:uuid}",
        operation_id="removeConversationMember",
        status_code=200,
    )
    async def remove_member(
        self,
        conversation_id: ConversationId,
        account_id: Annotated[uuid.UUID, PathParameter(description="The member to remove.")],
        runtime: RuntimeDep,
        db: DbDep,
        principal: PrincipalDep,
        audit_ctx: AuditCtxDep,
    ) -> ConversationView:
        """Remove a member (or leave); they are no longer a recipient of new messages."""
        return await service.remove_member(runtime, db, principal, conversation_id, account_id, audit_ctx)

    @post("/{conversation_id:uuid}/join", operation_id="joinConversation", status_code=200)
    async def join(
        self,
        conversation_id: ConversationId,
        data: JSONBody[JoinRequest],
        runtime: RuntimeDep,
        db: DbDep,
        principal: PrincipalDep,
        audit_ctx: AuditCtxDep,
    ) -> ConversationView:
        """A client accepts a support-group invitation under a pseudonym."""
        return await service.join(runtime, db, principal, conversation_id, data.pseudonym, audit_ctx)

    @post(
        "/{conversation_id:uuid}/messages",
        operation_id="sendMessage",
        request_max_body_size=limits.MAX_ENVELOPE_JSON_BYTES,
        description=(
            "Send an envelope (crypto/SPEC.md). The server checks the signature, that the sender "
            "key is current, and that the recipients are exactly the current keys of the current "
            "members (409 recipients-mismatch naming missing and unexpected keys otherwise). "
            "Sending the same id with the same bytes again returns the first answer."
        ),
    )
    async def send(
        self,
        conversation_id: ConversationId,
        data: JSONBody[Envelope],
        runtime: RuntimeDep,
        db: DbDep,
        principal: PrincipalDep,
        audit_ctx: AuditCtxDep,
    ) -> Response[MessageSent]:
        """Send a message (or an edit, a deletion, an attachment key)."""
        sent, created = await service.send_message(runtime, db, principal, conversation_id, data, audit_ctx)
        return Response(sent, status_code=201 if created else 200)

    @get("/{conversation_id:uuid}/messages", operation_id="listMessages")
    async def list_messages(
        self,
        conversation_id: ConversationId,
        runtime: RuntimeDep,
        db: DbDep,
        principal: PrincipalDep,
        audit_ctx: AuditCtxDep,
        after: Cursor = None,
        before: Cursor = None,
        limit: Annotated[int, QueryParameter(ge=1, le=100)] = 50,
    ) -> MessagePage:
        """Messages in send order after (or before) a cursor; fetching records delivery."""
        return await service.list_messages(
            runtime, db, principal, conversation_id, after=after, before=before, limit=limit, ctx=audit_ctx
        )

    @post("/{conversation_id:uuid}/read", operation_id="markConversationRead", status_code=204)
    async def mark_read(
        self,
        conversation_id: ConversationId,
        data: JSONBody[ReadMark],
        runtime: RuntimeDep,
        db: DbDep,
        principal: PrincipalDep,
        audit_ctx: AuditCtxDep,
    ) -> None:
        """Mark messages read up to and including ``up_to``."""
        await service.mark_read(runtime, db, principal, conversation_id, data.up_to, audit_ctx)

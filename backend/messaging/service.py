"""Conversation and message rules.

The server verifies what it can without keys before it stores a message: the
envelope's signature against the sender's *current* key, that it belongs to this
conversation, and that its recipients are exactly the current keys of the current
members (409 naming the missing and unexpected keys otherwise). A removed member is
no longer a valid recipient; an edit or deletion is a new signed envelope that
references the original, which is never rewritten. A repeated send with the same id
and the same bytes returns the first answer (idempotent); other bytes under the same
id are a conflict.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import uuid
from typing import NamedTuple, cast

import asyncpg
import msgspec

from backend.audit_trail import Action, AuditContext, AuditEvent, record
from backend.audit_trail.refusals import Refusals, audit_refusals
from backend.audit_trail.writer import event_parameters
from backend.auth.principal import Principal
from backend.consent import repository as consent_repo
from backend.consent.service import load_client_facts
from backend.db.tenancy import tenant_transaction
from backend.errors import ConflictError, InvalidInputError, NotFoundError
from backend.http.cursors import decode_cursor, encode_cursor
from backend.messaging import repository as repo
from backend.messaging.schemas import (
    ConversationCreate,
    ConversationList,
    ConversationView,
    MemberView,
    MessagePage,
    MessageSent,
    MessageView,
)
from backend.policy import Action as PolicyAction
from backend.policy import Actor, Decision, Facts, Resource, decide, require
from backend.realtime.outbox import outbox_parameters, publish
from backend.runtime import Runtime
from crypto.public import (
    Envelope,
    EnvelopeKind,
    KeyBundle,
    check_recipients,
    decode_bundle,
    encode,
    limits,
    verify_envelope,
)

__all__ = [
    "Attempt",
    "add_member",
    "authorize",
    "create_conversation",
    "get_conversation",
    "join",
    "list_conversations",
    "list_messages",
    "mark_read",
    "remove_member",
    "send_message",
]

MESSAGE_KINDS = {
    EnvelopeKind.MESSAGE: "message",
    EnvelopeKind.MESSAGE_EDIT: "message_edit",
    EnvelopeKind.MESSAGE_DELETE: "message_delete",
    EnvelopeKind.ATTACHMENT_KEY: "attachment_key",
}
MAX_PAGE = 100


class Attempt(NamedTuple):
    """The event a call would record, to record as refused if the policy refuses it."""

    refusals: Refusals
    event_type: str
    action: Action
    entity: tuple[str, uuid.UUID] | None = None


async def _authorized(
    rt: Runtime,
    conn: asyncpg.Connection,
    principal: Principal,
    conversation_id: uuid.UUID,
    action: PolicyAction,
    attempt: Attempt,
    *,
    message_id: uuid.UUID | None = None,
    bundles: bool = False,
) -> tuple[repo.ConversationContext, Decision]:
    """Load a conversation with what deciding on it needs, and ask the policy.

    One round trip; 404 for non-members. A refusal of an existing conversation is noted
    in ``attempt.refusals`` (:mod:`backend.audit_trail.refusals` writes it); an unknown id
    names nothing to record.
    """
    context = await repo.load_context(conn, conversation_id, principal.account_id, message_id=message_id,
                                      bundles=bundles)  # fmt: skip
    if context is None:
        raise NotFoundError
    conversation = context.conversation
    mine = next((m for m in context.members if m.account_id == principal.account_id), None)
    facts: Facts | None = None
    if conversation.client_id is not None and principal.role == "clinician":
        facts = Facts(
            now=rt.clock.now(),
            treats=principal.account_id in context.treating,
            consents=tuple(context.consents),
            emergencies=tuple(context.emergencies),
        )
    resource = Resource(
        org_id=conversation.org_id,
        client_id=conversation.client_id,
        membership=mine.status if mine else "none",  # type: ignore[arg-type]
    )
    refused = _event(principal, attempt.event_type, attempt.action, conversation, None, attempt.entity)
    return context, attempt.refusals.require(principal.actor, action, resource, facts, attempt=refused)


async def authorize(
    rt: Runtime,
    conn: asyncpg.Connection,
    principal: Principal,
    conversation_id: uuid.UUID,
    action: PolicyAction,
    attempt: Attempt,
) -> tuple[repo.ConversationRow, list[repo.MemberRow], Decision]:
    """Load a conversation and its members and ask the policy (404 for non-members).

    A refusal is noted in ``attempt.refusals`` to be audited.
    """
    context, decision = await _authorized(rt, conn, principal, conversation_id, action, attempt)
    return context.conversation, context.members, decision


def _member_view(viewer: Principal, conversation: repo.ConversationRow, member: repo.MemberRow) -> MemberView:
    name = member.display_name
    if (
        conversation.kind == "support_group"
        and member.role == "client"
        and viewer.account_id != member.account_id
    ):
        # Other clients in a group see a pseudonym, never a name or email.
        name = member.pseudonym or "Invited member"
    return MemberView(
        account_id=member.account_id,
        role=member.role,  # type: ignore[arg-type]
        name=name,
        status=member.status,  # type: ignore[arg-type]
    )


def _view(
    viewer: Principal, conversation: repo.ConversationRow, members: list[repo.MemberRow]
) -> ConversationView:
    return ConversationView(
        id=conversation.id,
        kind=conversation.kind,  # type: ignore[arg-type]
        client_id=conversation.client_id,
        created_at=conversation.created_at,
        members=[_member_view(viewer, conversation, m) for m in members if m.status != "removed"],
    )


def _event(principal: Principal, event_type: str, action: Action, conversation: repo.ConversationRow,
           decision: Decision | None, entity: tuple[str, uuid.UUID] | None = None, *,
           subject: uuid.UUID | None = None) -> AuditEvent:  # fmt: skip
    """An event about the conversation; ``subject`` names a support-group client it concerns.

    A direct conversation or care team is about its one client; a support group has none, so
    a member change names the client added or removed (their accounting of disclosures
    shows who put them in a group, or took them out).
    """
    entity_type, entity_id = entity or ("conversation", conversation.id)
    return AuditEvent(
        action=action,
        event_type=event_type,
        org_id=conversation.org_id,
        agent_account_id=principal.account_id,
        agent_role=principal.role,  # type: ignore[arg-type]
        entity_type=entity_type,
        entity_id=entity_id,
        subject_id=conversation.client_id or subject,
        purpose_of_use="TREAT",
        consent_id=decision.consent_id if decision else None,
    )


async def _check_clinician_may_message(
    rt: Runtime, conn: asyncpg.Connection, clinician_id: uuid.UUID, org_id: uuid.UUID, client_id: uuid.UUID
) -> None:
    facts = await load_client_facts(conn, clinician_id, client_id, rt.clock.now())
    actor = Actor(account_id=clinician_id, org_id=org_id, role="clinician")
    decision = decide(actor, PolicyAction.MESSAGE_CLIENT, Resource(org_id=org_id, client_id=client_id), facts)
    if not decision.allowed:
        raise InvalidInputError("The client has not consented to messaging with every clinician named.")


_NOT_A_MEMBER = "Every member must be an active account of this organization."


async def _account(conn: asyncpg.Connection, account_id: uuid.UUID, org_id: uuid.UUID) -> str:
    found = await consent_repo.account_role(conn, account_id)
    if found is None or found[0] != org_id or found[2] != "active":
        raise InvalidInputError(_NOT_A_MEMBER)
    return found[1]


def _readers(rt: Runtime, context: repo.ConversationContext) -> list[uuid.UUID]:
    """Who may receive new messages now.

    Active members; in a client's conversation, only the clinicians the client's consent
    (``messaging``) still allows: a clinician whose consent was revoked stays listed as a
    member but is no longer a recipient, nor told about new messages.
    """
    conversation = context.conversation
    active = [m for m in context.members if m.status == "active"]
    if conversation.client_id is None:
        return [m.account_id for m in active]
    now = rt.clock.now()
    consents = tuple(context.consents)
    resource = Resource(org_id=conversation.org_id, client_id=conversation.client_id)
    readers: list[uuid.UUID] = []
    for member in active:
        if member.role == "clinician":
            actor = Actor(account_id=member.account_id, org_id=conversation.org_id, role="clinician")
            facts = Facts(now=now, treats=member.account_id in context.treating, consents=consents)
            if not decide(actor, PolicyAction.MESSAGE_CLIENT, resource, facts).allowed:
                continue
        readers.append(member.account_id)
    return readers


async def _announce_members(
    conn: asyncpg.Connection, conversation_id: uuid.UUID, members: list[repo.MemberRow], now: dt.datetime
) -> None:
    """Tell every current member that membership changed (ids only)."""
    await publish(
        conn,
        [m.account_id for m in members if m.status != "removed"],
        "conversation.members_changed",
        {"conversation_id": str(conversation_id)},
        now,
    )


async def create_conversation(
    rt: Runtime, conn: asyncpg.Connection, principal: Principal, req: ConversationCreate, ctx: AuditContext
) -> ConversationView:
    """A clinician starts a conversation (consent scope ``messaging`` for its client)."""
    if (req.kind == "support_group") != (req.client_id is None):
        raise InvalidInputError("A support group has no client; the other kinds have exactly one.")
    if req.kind == "direct" and req.clinicians:
        raise InvalidInputError("A direct conversation is one client with one clinician.")
    now = rt.clock.now()
    # Staff who never start conversations are refused before the client is looked up, and a
    # clinician outside the client's circle gets the answer of a client_id that names nobody
    # neither learns whether the client exists. The refusal is audited.
    require(principal.actor, PolicyAction.CREATE_CONVERSATION, Resource(org_id=principal.org_id))
    async with audit_refusals(conn, ctx, now) as refusals, tenant_transaction(conn, principal.org_id):
        facts = None
        if req.client_id is not None:
            if await _account(conn, req.client_id, principal.org_id) != "client":
                raise InvalidInputError("client_id must name a client.")
            facts = await load_client_facts(conn, principal.account_id, req.client_id, now)
        resource = Resource(org_id=principal.org_id, client_id=req.client_id)
        if not (
            decision := decide(principal.actor, PolicyAction.CREATE_CONVERSATION, resource, facts)
        ).allowed:
            attempt = AuditEvent(
                action=Action.CREATE,
                event_type="conversation.create",
                org_id=principal.org_id,
                agent_account_id=principal.account_id,
                agent_role=principal.role,  # type: ignore[arg-type]
                entity_type="conversation",
                entity_id=req.id,
                subject_id=req.client_id,
            )
            if decision.reason == "not_found":
                raise refusals.refuse(attempt, decision.reason, InvalidInputError(_NOT_A_MEMBER))
            refusals.note(attempt, decision.reason)
        decision = require(principal.actor, PolicyAction.CREATE_CONVERSATION, resource, facts)
        others = [c for c in dict.fromkeys(req.clinicians) if c != principal.account_id]
        for clinician in others:
            if await _account(conn, clinician, principal.org_id) != "clinician":
                raise InvalidInputError("clinicians must name clinicians.")
            if req.client_id is not None:
                await _check_clinician_may_message(rt, conn, clinician, principal.org_id, req.client_id)
        row = repo.ConversationRow(
            id=req.id,
            org_id=principal.org_id,
            kind=req.kind,
            client_id=req.client_id,
            created_by=principal.account_id,
            created_at=now,
        )
        if not await repo.insert_conversation(conn, row):
            raise ConflictError("A conversation with this id exists.")
        members = [principal.account_id, *others] + ([req.client_id] if req.client_id else [])
        for account_id in members:
            await repo.add_member(
                conn, conversation_id=row.id, org_id=row.org_id, account_id=account_id, status="active",
                added_by=principal.account_id, now=now,
            )  # fmt: skip
        await record(conn, _event(principal, "conversation.create", Action.CREATE, row, decision), ctx, now)
        await publish(conn, members, "conversation.created", {"conversation_id": str(row.id)}, now)
        stored = await repo.list_members(conn, row.id)
    return _view(principal, row, stored)


async def get_conversation(
    rt: Runtime, conn: asyncpg.Connection, principal: Principal, conversation_id: uuid.UUID, ctx: AuditContext
) -> ConversationView:
    """A conversation and its members, as the caller may see them."""
    now = rt.clock.now()
    async with audit_refusals(conn, ctx, now) as refusals, tenant_transaction(conn, principal.org_id):
        conversation, members, decision = await authorize(
            rt, conn, principal, conversation_id, PolicyAction.READ_CONVERSATION,
            Attempt(refusals, "conversation.read", Action.READ),
        )  # fmt: skip
        await record(
            conn, _event(principal, "conversation.read", Action.READ, conversation, decision), ctx, now
        )
    return _view(principal, conversation, members)


async def list_conversations(
    rt: Runtime, conn: asyncpg.Connection, principal: Principal, ctx: AuditContext
) -> ConversationList:
    """The caller's conversations (invitations to support groups included)."""
    now = rt.clock.now()
    async with tenant_transaction(conn, principal.org_id):
        rows = await repo.list_conversations(conn, principal.account_id, 200)
        views = [_view(principal, row, await repo.list_members(conn, row.id)) for row in rows]
        await record(
            conn,
            AuditEvent(
                action=Action.READ,
                event_type="conversation.list",
                org_id=principal.org_id,
                agent_account_id=principal.account_id,
                agent_role=principal.role,  # type: ignore[arg-type]
                entity_type="conversation",
                subject_id=principal.account_id if principal.role == "client" else None,
            ),
            ctx,
            now,
        )
    return ConversationList(items=views)


async def add_member(
    rt: Runtime,
    conn: asyncpg.Connection,
    principal: Principal,
    conversation_id: uuid.UUID,
    account_id: uuid.UUID,
    ctx: AuditContext,
) -> ConversationView:
    """A clinician member adds a clinician, or invites a client into a support group."""
    now = rt.clock.now()
    async with audit_refusals(conn, ctx, now) as refusals, tenant_transaction(conn, principal.org_id):
        conversation, _, decision = await authorize(
            rt, conn, principal, conversation_id, PolicyAction.MANAGE_MEMBERS,
            Attempt(refusals, "conversation.member_add", Action.UPDATE, ("account", account_id)),
        )  # fmt: skip
        role = await _account(conn, account_id, conversation.org_id)
        if role == "client":
            if conversation.kind != "support_group":
                raise InvalidInputError("Only support groups take more clients.")
            status = "invited"  # the client joins by their own consent
        elif role == "clinician":
            if conversation.client_id is not None:
                await _check_clinician_may_message(
                    rt, conn, account_id, conversation.org_id, conversation.client_id
                )
            if conversation.kind == "direct":
                raise InvalidInputError("A direct conversation is one client with one clinician.")
            status = "active"
        else:
            raise InvalidInputError("Only clients and clinicians take part in conversations.")
        present = {
            m.account_id for m in await repo.list_members(conn, conversation.id) if m.status != "removed"
        }
        if account_id not in present and len(present) >= limits.MAX_RECIPIENTS:
            # Every message is sealed to each member: an envelope names at most this many
            # recipients (the database holds the same limit, migration 0017).
            raise InvalidInputError(f"A conversation holds at most {limits.MAX_RECIPIENTS} members.")
        await repo.add_member(
            conn, conversation_id=conversation.id, org_id=conversation.org_id, account_id=account_id,
            status=status, added_by=principal.account_id, now=now,
        )  # fmt: skip
        await record(
            conn,
            _event(principal, "conversation.member_add", Action.UPDATE, conversation, decision,
                   ("account", account_id), subject=account_id if role == "client" else None),
            ctx,
            now,
        )  # fmt: skip
        members = await repo.list_members(conn, conversation.id)
        await _announce_members(conn, conversation.id, members, now)
    return _view(principal, conversation, members)


async def remove_member(
    rt: Runtime,
    conn: asyncpg.Connection,
    principal: Principal,
    conversation_id: uuid.UUID,
    account_id: uuid.UUID,
    ctx: AuditContext,
) -> ConversationView:
    """Remove a member (a clinician member removes anyone; anyone may leave)."""
    now = rt.clock.now()
    async with audit_refusals(conn, ctx, now) as refusals, tenant_transaction(conn, principal.org_id):
        action = (
            PolicyAction.READ_CONVERSATION
            if account_id == principal.account_id
            else PolicyAction.MANAGE_MEMBERS
        )
        conversation, members, decision = await authorize(
            rt, conn, principal, conversation_id, action,
            Attempt(refusals, "conversation.member_remove", Action.UPDATE, ("account", account_id)),
        )  # fmt: skip
        if conversation.client_id == account_id:
            raise InvalidInputError("The client a conversation is about cannot be removed from it.")
        if not await repo.set_member_status(conn, conversation.id, account_id, "removed", now):
            raise NotFoundError
        removed_client = any(m.account_id == account_id and m.role == "client" for m in members)
        await record(
            conn,
            _event(principal, "conversation.member_remove", Action.UPDATE, conversation, decision,
                   ("account", account_id), subject=account_id if removed_client else None),
            ctx,
            now,
        )  # fmt: skip
        await _announce_members(conn, conversation.id, members, now)
        members = await repo.list_members(conn, conversation.id)
    return _view(principal, conversation, members)


async def join(
    rt: Runtime, conn: asyncpg.Connection, principal: Principal, conversation_id: uuid.UUID, pseudonym: str,
    ctx: AuditContext,
) -> ConversationView:  # fmt: skip
    """A client accepts a support-group invitation under a pseudonym (their own consent)."""
    now = rt.clock.now()
    async with audit_refusals(conn, ctx, now) as refusals, tenant_transaction(conn, principal.org_id):
        conversation, _, decision = await authorize(
            rt, conn, principal, conversation_id, PolicyAction.JOIN_CONVERSATION,
            Attempt(refusals, "conversation.join", Action.UPDATE),
        )  # fmt: skip
        await repo.set_member_status(conn, conversation.id, principal.account_id, "active", now, pseudonym)
        await record(
            conn,
            AuditEvent(
                action=Action.UPDATE,
                event_type="conversation.join",
                org_id=conversation.org_id,
                agent_account_id=principal.account_id,
                agent_role="client",
                entity_type="conversation",
                entity_id=conversation.id,
                subject_id=principal.account_id,
                consent_id=decision.consent_id,
            ),
            ctx,
            now,
        )
        members = await repo.list_members(conn, conversation.id)
        await _announce_members(conn, conversation.id, members, now)
    return _view(principal, conversation, members)


async def send_message(
    rt: Runtime,
    conn: asyncpg.Connection,
    principal: Principal,
    conversation_id: uuid.UUID,
    envelope: Envelope,
    ctx: AuditContext,
) -> tuple[MessageSent, bool]:
    """Verify and store an envelope; ``(result, created)``."""
    kind = MESSAGE_KINDS.get(envelope.kind)
    if kind is None or envelope.context_id != conversation_id:
        raise InvalidInputError("The envelope is not a message of this conversation.")
    if envelope.sender.account_id != principal.account_id:
        raise InvalidInputError("The envelope's sender is not the caller.")
    body = encode(envelope)
    digest = hashlib.sha256(body).digest()
    now = rt.clock.now()
    async with audit_refusals(conn, ctx, now) as refusals, tenant_transaction(conn, principal.org_id):
        context, decision = await _authorized(
            rt, conn, principal, conversation_id, PolicyAction.SEND_MESSAGE,
            Attempt(refusals, "message.create", Action.CREATE, ("message", envelope.item_id)),
            message_id=envelope.item_id, bundles=True,
        )  # fmt: skip
        conversation = context.conversation
        if context.existing is not None:
            stored = context.existing
            if stored.envelope_sha256 != digest or stored.conversation_id != conversation_id:
                raise ConflictError("A different message was already sent with this id.")
            return _sent(rt, envelope.item_id, context.existing), False
        active = _readers(rt, context)
        bundles = {account: _bundle(raw) for account, raw in context.bundles.items() if account in active}
        sender_bundle = bundles.get(principal.account_id)
        if sender_bundle is None or sender_bundle.key_version != envelope.sender.key_version:
            raise InvalidInputError("Messages must be signed with the sender's current key.")
        verify_envelope(envelope, sender_bundle)
        # Everyone who may read must be a recipient, with their current key, and no one else.
        check_recipients(envelope, bundles.values())
        missing_keys = [a for a in active if a not in bundles]
        if missing_keys:
            raise ConflictError("Some members have not published a key yet.")
        if envelope.references is not None:
            original = await repo.get_message(conn, envelope.references)
            if (
                original is None
                or original.conversation_id != conversation_id
                or original.sender_id != principal.account_id
                or original.kind != "message"
            ):
                raise InvalidInputError(
                    "Edits and deletions reference an earlier message of the same sender."
                )
        message = repo.NewMessage(
            id=envelope.item_id,
            conversation_id=conversation_id,
            org_id=conversation.org_id,
            sender_id=principal.account_id,
            sender_key_version=envelope.sender.key_version,
            kind=kind,
            references_id=envelope.references,
            envelope=body,
            envelope_sha256=digest,
            created_at=now,
        )
        _, event = event_parameters(
            _event(principal, "message.create", Action.CREATE, conversation, decision,
                   ("message", envelope.item_id)),
            ctx,
            now,
        )  # fmt: skip
        push = outbox_parameters(
            active,
            "message.created",
            {"conversation_id": str(conversation_id), "message_id": str(envelope.item_id), "kind": kind},
            now,
        )
        try:
            # The message, its recipients, its audit event and its push events: one statement.
            seq = await repo.store_message(conn, message, active, event, push)
        except asyncpg.UniqueViolationError as exc:  # a concurrent send of the same id
            raise ConflictError("The message is being stored; retry.") from exc
    return (
        MessageSent(
            id=envelope.item_id,
            conversation_id=conversation_id,
            cursor=encode_cursor(rt.keys, f"conversation:{conversation_id}", seq),
            created_at=now,
        ),
        True,
    )


@functools.lru_cache(maxsize=4096)
def _bundle(raw: bytes) -> KeyBundle:
    """A stored bundle, decoded and checked once per process.

    Bundle rows are immutable and the cache key is their exact bytes.
    """
    return decode_bundle(raw)


def _sent(rt: Runtime, message_id: uuid.UUID, row: repo.StoredMessage) -> MessageSent:
    return MessageSent(
        id=message_id,
        conversation_id=row.conversation_id,
        cursor=encode_cursor(rt.keys, f"conversation:{row.conversation_id}", row.seq),
        created_at=row.created_at,
    )


async def list_messages(
    rt: Runtime,
    conn: asyncpg.Connection,
    principal: Principal,
    conversation_id: uuid.UUID,
    *,
    after: str | None,
    before: str | None,
    limit: int,
    ctx: AuditContext,
) -> MessagePage:
    """A page of messages the caller is a recipient of (delivery is recorded)."""
    if after is not None and before is not None:
        raise InvalidInputError("Give after or before, not both.")
    scope = f"conversation:{conversation_id}"
    after_seq = decode_cursor(rt.keys, scope, after) if after else None
    before_seq = decode_cursor(rt.keys, scope, before) if before else None
    limit = max(1, min(limit, MAX_PAGE))
    now = rt.clock.now()
    async with audit_refusals(conn, ctx, now) as refusals, tenant_transaction(conn, principal.org_id):
        conversation, _, decision = await authorize(
            rt, conn, principal, conversation_id, PolicyAction.READ_CONVERSATION,
            Attempt(refusals, "message.read", Action.READ),
        )  # fmt: skip
        read = _event(principal, "message.read", Action.READ, conversation, decision)
        _, event = event_parameters(read, ctx, now)
        rows = await repo.read_page(
            conn, conversation_id=conversation_id, account_id=principal.account_id,
            after=after_seq, before=before_seq, limit=limit, now=now, event=event,
        )  # fmt: skip
    # Rows straight to views. Stored envelopes were verified on the way in: their bytes pass
    # through as they are (no decode and re-encode per message; the schema still documents
    # an Envelope).
    items = [
        MessageView(
            id=r["id"],
            sender_id=r["sender_id"],
            kind=r["kind"],
            references=r["references_id"],
            created_at=r["created_at"],
            cursor=encode_cursor(rt.keys, scope, r["seq"]),
            envelope=cast(Envelope, msgspec.Raw(r["envelope"])),
        )
        for r in rows
    ]
    return MessagePage(
        items=items,
        next_cursor=items[-1].cursor if len(items) == limit or (items and before_seq is not None) else None,
        prev_cursor=items[0].cursor if items else None,
    )


async def mark_read(
    rt: Runtime,
    conn: asyncpg.Connection,
    principal: Principal,
    conversation_id: uuid.UUID,
    up_to: uuid.UUID,
    ctx: AuditContext,
) -> int:
    """Mark messages read up to one of them; returns how many changed."""
    now = rt.clock.now()
    async with audit_refusals(conn, ctx, now) as refusals, tenant_transaction(conn, principal.org_id):
        context, decision = await _authorized(
            rt, conn, principal, conversation_id, PolicyAction.READ_CONVERSATION,
            Attempt(refusals, "message.mark_read", Action.UPDATE), message_id=up_to,
        )  # fmt: skip
        conversation, message = context.conversation, context.existing
        if message is None or message.conversation_id != conversation_id:
            raise NotFoundError
        changed = await repo.mark_read(conn, principal.account_id, conversation_id, message.seq, now)
        if changed:
            await record(
                conn, _event(principal, "message.mark_read", Action.UPDATE, conversation, decision), ctx, now
            )
            await publish(
                conn,
                _readers(rt, context),
                "message.read",
                {"conversation_id": str(conversation_id), "reader_id": str(principal.account_id),
                 "up_to": str(up_to)},
                now,
            )  # fmt: skip
    return changed

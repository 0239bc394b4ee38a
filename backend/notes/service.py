"""Session-note rules.

A clinician who treats the client (or whom the client's consent allows) writes a note
as an envelope sealed to the author, the organization's custodian key (mandatory
once one is registered, so records survive a clinician's departure), and whoever the
client's consent allows (the client, consented clinicians). Amendments are new notes
that reference the one they amend; a record is amended, never edited in place.
Sharing re-issues the envelope with added wrapped keys and nothing else
(``crypto.public.verify_recipient_addition``). In an emergency, the custodian's
holder re-wraps content keys for the break-glass clinician; the server stores the
wraps, and the reader's client checks them against the envelope's key commitment.

Existence does not leak: whoever is outside the client's circle (see
:mod:`backend.policy.decide`) gets, on a client's notes, the 404 of a client that does
not exist, and whoever cannot read a note gets, on that note, the 404 of a note that
does not exist; a 403 is for those who know the object (the client on their own
record, a clinician who treats the client, a reader of the note who is not its
author). Every refused attempt on an existing object is audited
(:mod:`backend.audit_trail.refusals`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from typing import cast

import asyncpg
import msgspec

from backend.audit_trail import Action, AuditContext, AuditEvent, record
from backend.audit_trail.refusals import Refusals, audit_refusals
from backend.auth.principal import Principal
from backend.consent import repository as consent_repo
from backend.consent.service import load_client_facts
from backend.db.tenancy import tenant_transaction
from backend.errors import ConflictError, ForbiddenError, InvalidInputError, NotFoundError
from backend.http.cursors import decode_cursor, encode_cursor
from backend.keys import repository as keys_repo
from backend.notes import repository as repo
from backend.notes.schemas import CustodianKeyView, KeyWrapsRequest, NoteList, NoteStored, NoteView
from backend.policy import Action as PolicyAction
from backend.policy import Actor, Decision, Resource, decide, require
from backend.realtime.outbox import publish
from backend.runtime import Runtime
from crypto.errors import RecipientSetError
from crypto.public import (
    Envelope,
    EnvelopeKind,
    KeyBundle,
    KeyRef,
    bundle_fingerprint,
    decode_bundle,
    decode_envelope,
    encode,
    verify_bundle,
    verify_envelope,
    verify_recipient_addition,
    verify_rotation,
)

__all__ = [
    "add_key_wraps",
    "amend_note",
    "create_note",
    "get_custodian_key",
    "get_note",
    "list_notes",
    "publish_custodian_key",
    "share_note",
]

MAX_PAGE = 100


def _event(
    principal: Principal,
    event_type: str,
    action: Action,
    *,
    org_id: uuid.UUID,
    client_id: uuid.UUID,
    entity: tuple[str, uuid.UUID],
    decision: Decision | None = None,
) -> AuditEvent:
    emergency = decision is not None and decision.emergency_access_id is not None
    return AuditEvent(
        action=action,
        event_type=event_type,
        org_id=org_id,
        agent_account_id=principal.account_id,
        agent_role=principal.role,  # type: ignore[arg-type]
        entity_type=entity[0],
        entity_id=entity[1],
        subject_id=client_id,
        purpose_of_use="ETREAT" if emergency else "TREAT",
        consent_id=decision.consent_id if decision else None,
    )


# -- custodian key ---------------------------------------------------------------


async def publish_custodian_key(
    rt: Runtime, conn: asyncpg.Connection, principal: Principal, bundle: KeyBundle, ctx: AuditContext
) -> tuple[CustodianKeyView, bool]:
    """An admin registers (or rotates, chain of custody checked) the organization's custodian key."""
    require(principal.actor, PolicyAction.MANAGE_CUSTODIAN_KEY, Resource(org_id=principal.org_id))
    if bundle.account_id != principal.org_id:
        raise InvalidInputError("A custodian key bundle names the organization's id as its account.")
    verify_bundle(bundle)
    canonical = encode(bundle)
    now = rt.clock.now()
    async with tenant_transaction(conn, principal.org_id):
        await keys_repo.lock_account_keys(conn, principal.org_id)
        existing = await repo.custodian_keys(conn, principal.org_id)
        for row in existing:
            if row.key_version == bundle.key_version:
                if row.bundle != canonical:
                    raise ConflictError("This custodian key version is already registered with other keys.")
                return CustodianKeyView(
                    bundle=bundle, fingerprint=row.fingerprint, published_at=row.published_at
                ), False
        if existing:
            verify_rotation(decode_bundle(existing[-1].bundle), bundle)
        elif bundle.key_version != 1:
            raise InvalidInputError("The first custodian key must be version 1.")
        fingerprint = bundle_fingerprint(bundle)
        await repo.insert_custodian_key(
            conn,
            org_id=principal.org_id,
            key_version=bundle.key_version,
            encryption_key=bundle.encryption_key,
            signing_key=bundle.signing_key,
            bundle=canonical,
            fingerprint=fingerprint,
            published_by=principal.account_id,
            now=now,
        )
        await record(
            conn,
            AuditEvent(
                action=Action.CREATE,
                event_type="custodian_key.publish",
                org_id=principal.org_id,
                agent_account_id=principal.account_id,
                agent_role="admin",
                entity_type="organization",
                entity_id=principal.org_id,
            ),
            ctx,
            now,
        )
    return CustodianKeyView(bundle=bundle, fingerprint=fingerprint, published_at=now), True


async def _custodian(conn: asyncpg.Connection, org_id: uuid.UUID) -> KeyBundle | None:
    rows = await repo.custodian_keys(conn, org_id)
    return decode_bundle(rows[-1].bundle) if rows else None


async def get_custodian_key(rt: Runtime, conn: asyncpg.Connection, principal: Principal) -> CustodianKeyView:
    """The organization's current custodian key (members encrypt notes to it)."""
    del rt
    require(principal.actor, PolicyAction.READ_PUBLIC_KEYS, Resource(org_id=principal.org_id))
    async with tenant_transaction(conn, principal.org_id, readonly=True):
        rows = await repo.custodian_keys(conn, principal.org_id)
    if not rows:
        raise NotFoundError("No custodian key is registered.")
    return CustodianKeyView(
        bundle=decode_bundle(rows[-1].bundle),
        fingerprint=rows[-1].fingerprint,
        published_at=rows[-1].published_at,
    )


# -- notes -------------------------------------------------------------------------


async def _client_org(conn: asyncpg.Connection, client_id: uuid.UUID) -> uuid.UUID:
    target = await consent_repo.account_role(conn, client_id)
    if target is None or target[1] != "client":
        raise NotFoundError
    return target[0]


async def _author_bundle(conn: asyncpg.Connection, principal: Principal, envelope: Envelope) -> KeyBundle:
    if envelope.sender.account_id != principal.account_id:
        raise InvalidInputError("The envelope's sender is not the caller.")
    current = await keys_repo.current_bundles(conn, [principal.account_id])
    raw = current.get(principal.account_id)
    bundle = decode_bundle(raw) if raw is not None else None
    if bundle is None or bundle.key_version != envelope.sender.key_version:
        raise InvalidInputError("Notes must be signed with the author's current key.")
    return bundle


async def _readers_for(
    rt: Runtime,
    conn: asyncpg.Connection,
    envelope: Envelope,
    *,
    org_id: uuid.UUID,
    client_id: uuid.UUID,
    author: KeyBundle,
    skip: frozenset[KeyRef] = frozenset(),
) -> dict[uuid.UUID, str]:
    """Check a note's recipients and name who may fetch it.

    Required: the author and, once registered, the custodian. Allowed besides: the
    client, and clinicians whom the client's consent lets read records. Every
    recipient must use that account's current key.
    """
    custodian = await _custodian(conn, org_id)
    others = [r for r in envelope.recipients if r.ref not in skip and r.ref != author.ref]
    accounts = [r.account_id for r in others if r.account_id != org_id]
    current = {a: decode_bundle(b) for a, b in (await keys_repo.current_bundles(conn, accounts)).items()}
    readers: dict[uuid.UUID, str] = {author.account_id: "author"}
    unexpected: list[KeyRef] = []
    custodian_present = False
    for recipient in others:
        if custodian is not None and recipient.account_id == org_id:
            if recipient.ref == custodian.ref and recipient.public_key == custodian.encryption_key:
                custodian_present = True
                continue
            unexpected.append(recipient.ref)
            continue
        bundle = current.get(recipient.account_id)
        if bundle is None or bundle.ref != recipient.ref or bundle.encryption_key != recipient.public_key:
            unexpected.append(recipient.ref)
            continue
        if recipient.account_id != client_id and not await _consented_reader(
            rt, conn, recipient.account_id, org_id, client_id
        ):
            unexpected.append(recipient.ref)
            continue
        readers[recipient.account_id] = "recipient"
    missing = [custodian.ref] if custodian is not None and not custodian_present and not skip else []
    if missing or unexpected:
        raise RecipientSetError("note recipients break the rules", missing=missing, unexpected=unexpected)
    return readers


async def _consented_reader(
    rt: Runtime, conn: asyncpg.Connection, account_id: uuid.UUID, org_id: uuid.UUID, client_id: uuid.UUID
) -> bool:
    role = await consent_repo.account_role(conn, account_id)
    if role is None or role[0] != org_id or role[1] != "clinician":
        return False
    facts = await load_client_facts(conn, account_id, client_id, rt.clock.now())
    actor = Actor(account_id=account_id, org_id=org_id, role="clinician")
    decision = decide(
        actor, PolicyAction.READ_CLIENT_RECORD, Resource(org_id=org_id, client_id=client_id), facts
    )
    return decision.allowed and decision.reason == "consent"


async def _store(
    rt: Runtime,
    conn: asyncpg.Connection,
    principal: Principal,
    envelope: Envelope,
    *,
    org_id: uuid.UUID,
    client_id: uuid.UUID,
    amends: uuid.UUID | None,
    decision: Decision,
    ctx: AuditContext,
) -> tuple[NoteStored, bool]:
    author = await _author_bundle(conn, principal, envelope)
    verify_envelope(envelope, author)
    body = encode(envelope)
    digest = hashlib.sha256(body).digest()
    now = rt.clock.now()
    kind = "note_amendment" if amends else "note"
    existing = await repo.get_note(conn, envelope.item_id, principal.account_id, now)
    if existing is not None:
        if existing.envelope_version != 1 or existing.envelope_sha256 != digest:
            raise ConflictError("A different note was already stored with this id.")
        stored = NoteStored(
            id=existing.id,
            client_id=existing.client_id,
            kind=kind,  # type: ignore[arg-type]
            envelope_version=1,
            created_at=existing.created_at,
        )
        return stored, False
    readers = await _readers_for(rt, conn, envelope, org_id=org_id, client_id=client_id, author=author)
    await repo.insert_note(
        conn,
        note_id=envelope.item_id,
        org_id=org_id,
        client_id=client_id,
        author_id=principal.account_id,
        author_key_version=author.key_version,
        kind=kind,
        amends_id=amends,
        now=now,
    )
    await repo.insert_envelope(conn, envelope.item_id, 1, body, digest, now)
    await repo.add_readers(conn, envelope.item_id, readers, now)
    event_type = "note.amend" if amends else "note.create"
    await record(
        conn,
        _event(
            principal,
            event_type,
            Action.CREATE,
            org_id=org_id,
            client_id=client_id,
            entity=("note", envelope.item_id),
            decision=decision,
        ),
        ctx,
        now,
    )
    await publish(
        conn, readers, "note.created", {"note_id": str(envelope.item_id), "client_id": str(client_id)}, now
    )
    return NoteStored(
        id=envelope.item_id,
        client_id=client_id,
        kind=kind,  # type: ignore[arg-type]
        envelope_version=1,
        created_at=now,
    ), True


async def create_note(
    rt: Runtime,
    conn: asyncpg.Connection,
    principal: Principal,
    client_id: uuid.UUID,
    envelope: Envelope,
    ctx: AuditContext,
) -> tuple[NoteStored, bool]:
    """Write a note about a client."""
    if envelope.kind is not EnvelopeKind.NOTE or envelope.context_id != client_id:
        raise InvalidInputError("The envelope is not a note about this client.")
    now = rt.clock.now()
    async with audit_refusals(conn, ctx, now) as refusals, tenant_transaction(conn, principal.org_id):
        org_id = await _client_org(conn, client_id)
        facts = await load_client_facts(conn, principal.account_id, client_id, now)
        decision = refusals.require(
            principal.actor,
            PolicyAction.WRITE_NOTE,
            Resource(org_id=org_id, client_id=client_id),
            facts,
            attempt=_event(
                principal,
                "note.create",
                Action.CREATE,
                org_id=org_id,
                client_id=client_id,
                entity=("note", envelope.item_id),
            ),
        )
        return await _store(
            rt,
            conn,
            principal,
            envelope,
            org_id=org_id,
            client_id=client_id,
            amends=None,
            decision=decision,
            ctx=ctx,
        )


async def amend_note(
    rt: Runtime,
    conn: asyncpg.Connection,
    principal: Principal,
    note_id: uuid.UUID,
    envelope: Envelope,
    ctx: AuditContext,
) -> tuple[NoteStored, bool]:
    """The author amends a note: a new, linked note; the original is never rewritten."""
    now = rt.clock.now()
    async with audit_refusals(conn, ctx, now) as refusals, tenant_transaction(conn, principal.org_id):
        original, attempt = await _note_to_change(
            conn, principal, note_id, now, refusals, event_type="note.amend", action=Action.CREATE
        )
        if original.author_id != principal.account_id or original.kind != "note":
            raise refusals.refuse(attempt, "not_author", _not_author())
        if (
            envelope.kind is not EnvelopeKind.NOTE_AMENDMENT
            or envelope.context_id != original.client_id
            or envelope.references != note_id
        ):
            raise InvalidInputError("The envelope is not an amendment of this note.")
        facts = await load_client_facts(conn, principal.account_id, original.client_id, now)
        decision = refusals.require(
            principal.actor,
            PolicyAction.WRITE_NOTE,
            Resource(org_id=original.org_id, client_id=original.client_id),
            facts,
            attempt=attempt,
        )
        return await _store(
            rt,
            conn,
            principal,
            envelope,
            org_id=original.org_id,
            client_id=original.client_id,
            amends=note_id,
            decision=decision,
            ctx=ctx,
        )


def _not_author() -> ForbiddenError:
    return ForbiddenError("Only the author amends or shares a note.")


async def _note_to_change(
    conn: asyncpg.Connection,
    principal: Principal,
    note_id: uuid.UUID,
    now: dt.datetime,
    refusals: Refusals,
    *,
    event_type: str,
    action: Action,
) -> tuple[repo.NoteRow, AuditEvent]:
    """The note an amendment or a share is about, and the attempt's event; 404 unless a reader."""
    note = await repo.get_note(conn, note_id, principal.account_id, now)
    if note is None or note.org_id != principal.org_id:
        raise NotFoundError
    attempt = _event(
        principal, event_type, action, org_id=note.org_id, client_id=note.client_id, entity=("note", note_id)
    )
    await _require_reader(conn, principal, note, refusals, attempt)
    return note, attempt


async def _require_reader(
    conn: asyncpg.Connection,
    principal: Principal,
    note: repo.NoteRow,
    refusals: Refusals,
    attempt: AuditEvent,
) -> None:
    """404 (audited) unless the caller can see the note: a reader, or holding a live break-glass wrap.

    Clients get a 404 for any note they did not write (they write none): a note shared
    with them is theirs to read, never to amend or re-share.
    """
    if principal.role == "client":
        raise refusals.refuse(attempt, "not_author", NotFoundError())
    if note.wrapped_key is None and principal.account_id not in await repo.readers(conn, note.id):
        raise refusals.refuse(attempt, "not_reader", NotFoundError())


async def share_note(
    rt: Runtime,
    conn: asyncpg.Connection,
    principal: Principal,
    note_id: uuid.UUID,
    envelope: Envelope,
    ctx: AuditContext,
) -> NoteStored:
    """The author re-issues a note's envelope with added recipients, and nothing else changed."""
    now = rt.clock.now()
    async with audit_refusals(conn, ctx, now) as refusals, tenant_transaction(conn, principal.org_id):
        note, attempt = await _note_to_change(
            conn, principal, note_id, now, refusals, event_type="note.share", action=Action.UPDATE
        )
        facts = await load_client_facts(conn, principal.account_id, note.client_id, now)
        decision = refusals.require(
            principal.actor,
            PolicyAction.SHARE_NOTE,
            Resource(org_id=note.org_id, client_id=note.client_id, owner_id=note.author_id),
            facts,
            attempt=attempt,
        )
        previous = decode_envelope(note.envelope)
        author_bundles = await keys_repo.list_bundles(conn, principal.account_id)
        signing = next((b for b in author_bundles if b.key_version == previous.sender.key_version), None)
        if signing is None:  # pragma: no cover -- the note was verified against this version when stored
            raise NotFoundError
        author = decode_bundle(signing.bundle)
        verify_recipient_addition(previous, envelope, author)
        added = await _readers_for(
            rt,
            conn,
            envelope,
            org_id=note.org_id,
            client_id=note.client_id,
            author=author,
            skip=frozenset(r.ref for r in previous.recipients),
        )
        body = encode(envelope)
        version = note.envelope_version + 1
        await repo.insert_envelope(conn, note_id, version, body, hashlib.sha256(body).digest(), now)
        new_readers = {a: "share" for a in added if a != principal.account_id}
        await repo.add_readers(conn, note_id, new_readers, now)
        await record(
            conn,
            _event(
                principal,
                "note.share",
                Action.UPDATE,
                org_id=note.org_id,
                client_id=note.client_id,
                entity=("note", note_id),
                decision=decision,
            ),
            ctx,
            now,
        )
        await publish(
            conn, new_readers, "note.shared", {"note_id": str(note_id), "client_id": str(note.client_id)}, now
        )
    return NoteStored(
        id=note_id,
        client_id=note.client_id,
        kind=note.kind,  # type: ignore[arg-type]
        envelope_version=version,
        created_at=note.created_at,
    )


async def _read_access(
    rt: Runtime,
    conn: asyncpg.Connection,
    principal: Principal,
    client_id: uuid.UUID,
    refusals: Refusals,
    attempt: AuditEvent,
) -> tuple[uuid.UUID, Decision, bool]:
    """``(org, decision, author_only)``: what the caller may read of this client's notes."""
    org_id = await _client_org(conn, client_id)
    facts = await load_client_facts(conn, principal.account_id, client_id, rt.clock.now())
    decision = decide(
        principal.actor, PolicyAction.READ_CLIENT_RECORD, Resource(org_id=org_id, client_id=client_id), facts
    )
    if decision.allowed:
        return org_id, decision, False
    # Authorship keeps a clinician in the client's circle for the notes they wrote, also
    # outside it otherwise (a consent that let them write has since been revoked).
    if principal.role != "clinician" or not await repo.has_authored(conn, client_id, principal.account_id):
        refusals.require(
            principal.actor,
            PolicyAction.READ_CLIENT_RECORD,
            Resource(org_id=org_id, client_id=client_id),
            facts,
            attempt=attempt,
        )
    # Without consent, an author still reads the notes they wrote (treatment records).
    return org_id, Decision(allowed=True, reason="author"), True


def _view(rt: Runtime, row: repo.NoteRow) -> NoteView:
    return NoteView(
        id=row.id,
        client_id=row.client_id,
        author_id=row.author_id,
        kind=row.kind,  # type: ignore[arg-type]
        amends=row.amends_id,
        amended_by=list(row.amended_by),
        created_at=row.created_at,
        cursor=encode_cursor(rt.keys, f"notes:{row.client_id}", row.seq),
        envelope_version=row.envelope_version,
        envelope=cast(Envelope, msgspec.Raw(row.envelope)),  # verified on the way in; bytes as stored
        emergency_wrapped_key=row.wrapped_key,
    )


async def list_notes(
    rt: Runtime,
    conn: asyncpg.Connection,
    principal: Principal,
    client_id: uuid.UUID,
    *,
    after: str | None,
    limit: int,
    ctx: AuditContext,
) -> NoteList:
    """A client's notes the caller may read, oldest first (keyset pagination)."""
    position = decode_cursor(rt.keys, f"notes:{client_id}", after) if after else 0
    limit = max(1, min(limit, MAX_PAGE))
    now = rt.clock.now()
    attempt = _event(
        principal,
        "note.list",
        Action.READ,
        org_id=principal.org_id,
        client_id=client_id,
        entity=("client", client_id),
    )
    async with audit_refusals(conn, ctx, now) as refusals, tenant_transaction(conn, principal.org_id):
        org_id, decision, author_only = await _read_access(rt, conn, principal, client_id, refusals, attempt)
        rows = await repo.list_notes(
            conn,
            client_id=client_id,
            viewer=principal.account_id,
            now=now,
            after=position,
            limit=limit,
            emergency=decision.emergency_access_id is not None,
        )
        if author_only:
            rows = [r for r in rows if r.author_id == principal.account_id]
        await record(
            conn,
            _event(
                principal,
                "note.list",
                Action.READ,
                org_id=org_id,
                client_id=client_id,
                entity=("client", client_id),
                decision=decision,
            ),
            ctx,
            now,
        )
    items = [_view(rt, r) for r in rows]
    return NoteList(items=items, next_cursor=items[-1].cursor if len(items) == limit else None)


async def get_note(
    rt: Runtime, conn: asyncpg.Connection, principal: Principal, note_id: uuid.UUID, ctx: AuditContext
) -> NoteView:
    """One note, if the caller may read it."""
    now = rt.clock.now()
    async with audit_refusals(conn, ctx, now) as refusals, tenant_transaction(conn, principal.org_id):
        row = await repo.get_note(conn, note_id, principal.account_id, now)
        if row is None or row.org_id != principal.org_id:
            raise NotFoundError
        attempt = _event(
            principal,
            "note.read",
            Action.READ,
            org_id=row.org_id,
            client_id=row.client_id,
            entity=("note", note_id),
        )
        readers = await repo.readers(conn, note_id)
        if principal.account_id not in readers and row.wrapped_key is None:
            raise refusals.refuse(attempt, "not_reader", NotFoundError())
        org_id, decision, author_only = await _read_access(
            rt, conn, principal, row.client_id, refusals, attempt
        )
        visible = principal.account_id in readers or (
            decision.emergency_access_id is not None and row.wrapped_key is not None
        )
        if not visible or (author_only and row.author_id != principal.account_id):
            raise refusals.refuse(attempt, "not_reader", NotFoundError())
        await record(
            conn,
            _event(
                principal,
                "note.read",
                Action.READ,
                org_id=org_id,
                client_id=row.client_id,
                entity=("note", note_id),
                decision=decision,
            ),
            ctx,
            now,
        )
    return _view(rt, row)


async def add_key_wraps(
    rt: Runtime,
    conn: asyncpg.Connection,
    principal: Principal,
    access_id: uuid.UUID,
    req: KeyWrapsRequest,
    ctx: AuditContext,
) -> int:
    """The custodian's holder (never the requester) approves break-glass and hands over re-wrapped keys."""
    now = rt.clock.now()
    async with tenant_transaction(conn, principal.org_id):
        access = await consent_repo.get_emergency(conn, access_id)
        if access is None:
            raise NotFoundError
        require(
            principal.actor,
            PolicyAction.APPROVE_EMERGENCY_ACCESS,
            Resource(org_id=access.org_id, owner_id=access.clinician_id, client_id=access.client_id),
        )
        if access.closed_at is not None or access.expires_at <= now:
            raise ConflictError("This emergency access has ended.")
        current = await keys_repo.current_bundles(conn, [access.clinician_id])
        raw = current.get(access.clinician_id)
        if raw is None or decode_bundle(raw).key_version != req.key_version:
            raise InvalidInputError("Wraps must be sealed to the clinician's current key.")
        note_ids = [w.note_id for w in req.wraps]
        owners = await repo.note_clients(conn, note_ids)
        if len(owners) != len(set(note_ids)) or any(c != access.client_id for c in owners.values()):
            raise InvalidInputError("Every wrap must be for a note about the emergency's client.")
        if access.approved_by is None:
            await consent_repo.approve_emergency(conn, access_id, principal.account_id, now)
        await repo.insert_wraps(
            conn,
            emergency_access_id=access_id,
            account_id=access.clinician_id,
            key_version=req.key_version,
            wraps=[(w.note_id, w.wrapped_key) for w in req.wraps],
            now=now,
        )
        await record(
            conn,
            AuditEvent(
                action=Action.EXECUTE,
                event_type="emergency.rewrap",
                org_id=access.org_id,
                agent_account_id=principal.account_id,
                agent_role=principal.role,  # type: ignore[arg-type]
                entity_type="emergency_access",
                entity_id=access_id,
                subject_id=access.client_id,
                purpose_of_use="ETREAT",
            ),
            ctx,
            now,
        )
        await publish(
            conn,
            [access.clinician_id],
            "emergency.keys_ready",
            {"emergency_access_id": str(access_id), "client_id": str(access.client_id)},
            now,
        )
    return len(req.wraps)

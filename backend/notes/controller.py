"""HTTP routes: session notes, the custodian key, break-glass key wraps."""

from __future__ import annotations

import uuid
from typing import Annotated

from litestar import Controller, Response, get, post, put
from litestar.params import JSONBody, PathParameter, QueryParameter

from backend.http.deps import AuditCtxDep, DbDep, PrincipalDep, RuntimeDep
from backend.notes import service
from backend.notes.schemas import CustodianKeyView, KeyWrapsRequest, NoteList, NoteStored, NoteView
from crypto.public import Envelope, KeyBundle, limits

__all__ = ["NotesController"]

ClientId = Annotated[uuid.UUID, PathParameter(description="The client the notes are about.")]
NoteId = Annotated[uuid.UUID, PathParameter(description="The note.")]


class NotesController(Controller):
    """``/v1/clients/{id}/notes``, ``/v1/notes/{id}``, ``/v1/organization/custodian-key``."""

    path = "/v1"
    tags = ("notes",)

    @post(
        "/clients/{client_id:uuid}/notes",
        operation_id="createNote",
        request_max_body_size=limits.MAX_ENVELOPE_JSON_BYTES,
        description=(
            "A clinician who treats the client (or whom consent allows) writes a note: an envelope "
            "of kind note sealed to the author, the custodian key (once registered) and whoever the "
            "client's consent allows. 409 recipients-mismatch names missing or unexpected keys."
        ),
    )
    async def create(
        self,
        client_id: ClientId,
        data: JSONBody[Envelope],
        runtime: RuntimeDep,
        db: DbDep,
        principal: PrincipalDep,
        audit_ctx: AuditCtxDep,
    ) -> Response[NoteStored]:
        """Write a note about a client."""
        stored, created = await service.create_note(runtime, db, principal, client_id, data, audit_ctx)
        return Response(stored, status_code=201 if created else 200)

    @get("/clients/{client_id:uuid}/notes", operation_id="listNotes")
    async def list_notes(
        self,
        client_id: ClientId,
        runtime: RuntimeDep,
        db: DbDep,
        principal: PrincipalDep,
        audit_ctx: AuditCtxDep,
        after: Annotated[str | None, QueryParameter(max_length=64)] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=100)] = 50,
    ) -> NoteList:
        """A client's notes the caller may read, oldest first."""
        return await service.list_notes(
            runtime, db, principal, client_id, after=after, limit=limit, ctx=audit_ctx
        )

    @get("/notes/{note_id:uuid}", operation_id="getNote")
    async def get_note(
        self, note_id: NoteId, runtime: RuntimeDep, db: DbDep, principal: PrincipalDep, audit_ctx: AuditCtxDep
    ) -> NoteView:
        """One note with its current envelope and the ids of its amendments."""
        return await service.get_note(runtime, db, principal, note_id, audit_ctx)

    @post(
        "/notes/{note_id:uuid}/amendments",
        operation_id="amendNote",
        request_max_body_size=limits.MAX_ENVELOPE_JSON_BYTES,
    )
    async def amend(
        self,
        note_id: NoteId,
        data: JSONBody[Envelope],
        runtime: RuntimeDep,
        db: DbDep,
        principal: PrincipalDep,
        audit_ctx: AuditCtxDep,
    ) -> Response[NoteStored]:
        """The author amends a note (a new linked version; the original is kept as it was)."""
        stored, created = await service.amend_note(runtime, db, principal, note_id, data, audit_ctx)
        return Response(stored, status_code=201 if created else 200)

    @post(
        "/notes/{note_id:uuid}/shares",
        operation_id="shareNote",
        status_code=200,
        request_max_body_size=limits.MAX_ENVELOPE_JSON_BYTES,
    )
    async def share(
        self,
        note_id: NoteId,
        data: JSONBody[Envelope],
        runtime: RuntimeDep,
        db: DbDep,
        principal: PrincipalDep,
        audit_ctx: AuditCtxDep,
    ) -> NoteStored:
        """The author re-issues the envelope with added recipients (nothing else may change)."""
        return await service.share_note(runtime, db, principal, note_id, data, audit_ctx)

    @put(
        "/organization/custodian-key",
        operation_id="publishCustodianKey",
        request_max_body_size=limits.MAX_BUNDLE_JSON_BYTES,
    )
    async def publish_custodian(
        self,
        data: JSONBody[KeyBundle],
        runtime: RuntimeDep,
        db: DbDep,
        principal: PrincipalDep,
        audit_ctx: AuditCtxDep,
    ) -> Response[CustodianKeyView]:
        """An admin registers or rotates the custodian key (held offline by the practice)."""
        view, created = await service.publish_custodian_key(runtime, db, principal, data, audit_ctx)
        return Response(view, status_code=201 if created else 200)

    @get("/organization/custodian-key", operation_id="getCustodianKey")
    async def get_custodian(
        self, runtime: RuntimeDep, db: DbDep, principal: PrincipalDep
    ) -> CustodianKeyView:
        """The current custodian key; every note is sealed to it too."""
        return await service.get_custodian_key(runtime, db, principal)

    @post(
        "/emergency-access/{access_id:uuid}/key-wraps", operation_id="addEmergencyKeyWraps", status_code=200
    )
    async def key_wraps(
        self,
        access_id: Annotated[uuid.UUID, PathParameter(description="The emergency access.")],
        data: JSONBody[KeyWrapsRequest],
        runtime: RuntimeDep,
        db: DbDep,
        principal: PrincipalDep,
        audit_ctx: AuditCtxDep,
    ) -> dict[str, int]:
        """Approve break-glass with the custodian's re-wraps of the needed notes' content keys."""
        count = await service.add_key_wraps(runtime, db, principal, access_id, data, audit_ctx)
        return {"wraps": count}

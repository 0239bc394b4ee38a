"""HTTP routes: a client's record."""

from __future__ import annotations

import uuid
from typing import Annotated

from litestar import Controller, get
from litestar.params import PathParameter

from backend.clients import service
from backend.clients.service import ClientRecord
from backend.http.deps import AuditCtxDep, DbDep, PrincipalDep, RuntimeDep

__all__ = ["ClientsController"]


class ClientsController(Controller):
    """``/v1/clients/{id}``."""

    path = "/v1/clients"
    tags = ("clients",)

    @get("/{client_id:uuid}", operation_id="getClient")
    async def get_client(
        self,
        client_id: Annotated[uuid.UUID, PathParameter(description="The client.")],
        runtime: RuntimeDep,
        db: DbDep,
        principal: PrincipalDep,
        audit_ctx: AuditCtxDep,
    ) -> ClientRecord:
        """A client's record, if their consent (scope records.read) or break-glass allows."""
        return await service.read_client(runtime, db, principal, client_id, audit_ctx)

"""HTTP routes of the key directory and key backups."""

from __future__ import annotations

import uuid
from typing import Annotated

from litestar import Controller, Response, get, post, put
from litestar.datastructures import ResponseHeader
from litestar.params import HeaderParameter, JSONBody, PathParameter
from litestar.status_codes import HTTP_204_NO_CONTENT

from backend.http.deps import AuditCtxDep, DbDep, PrincipalDep, RuntimeDep
from backend.keys import service
from backend.keys.schemas import BackupStored, KeyListing, PublishedKey
from crypto.public import KeyBackup, KeyBundle, limits

__all__ = ["KeysController"]

_ETAG = [
    ResponseHeader(
        name="ETag", description="Revision of the stored backup, for If-Match.", documentation_only=True
    )
]


class KeysController(Controller):
    """``/v1/me/keys``, ``/v1/accounts/{id}/keys``, ``/v1/me/key-backup``."""

    path = "/v1"
    tags = ("keys",)

    @put(
        "/me/keys",
        operation_id="publishKeyBundle",
        request_max_body_size=limits.MAX_BUNDLE_JSON_BYTES,
        description=(
            "Publish the caller's key bundle: version 1 self-signed, or the next version also "
            "signed by the previous signing key (rotation). Re-sending a published bundle is "
            "idempotent (200); anything the chain does not allow is 422."
        ),
    )
    async def publish(
        self,
        data: JSONBody[KeyBundle],
        runtime: RuntimeDep,
        db: DbDep,
        principal: PrincipalDep,
        audit_ctx: AuditCtxDep,
    ) -> Response[PublishedKey]:
        """Publish or rotate the caller's public keys."""
        published, created = await service.publish_bundle(runtime, db, principal, data, audit_ctx)
        return Response(published, status_code=201 if created else 200)

    @post(
        "/me/keys/{key_version:int}/revoke", operation_id="revokeKeyBundle", status_code=HTTP_204_NO_CONTENT
    )
    async def revoke(
        self,
        # The protocol allows versions up to 2**32 - 1; the database stores them as integer.
        key_version: Annotated[int, PathParameter(ge=1, le=min(limits.MAX_KEY_VERSION, 2**31 - 1))],
        runtime: RuntimeDep,
        db: DbDep,
        principal: PrincipalDep,
        audit_ctx: AuditCtxDep,
    ) -> None:
        """Mark one of the caller's key versions revoked (still listed, for old data)."""
        await service.revoke_bundle(runtime, db, principal, key_version, audit_ctx)

    @get("/accounts/{account_id:uuid}/keys", operation_id="listAccountKeys")
    async def list_keys(
        self,
        account_id: Annotated[uuid.UUID, PathParameter(description="The account whose keys to list.")],
        runtime: RuntimeDep,
        db: DbDep,
        principal: PrincipalDep,
        audit_ctx: AuditCtxDep,
    ) -> KeyListing:
        """Current and past key bundles of an account in the caller's organization."""
        return await service.list_keys(runtime, db, principal, account_id, audit_ctx)

    @put(
        "/me/key-backup",
        operation_id="putKeyBackup",
        request_max_body_size=limits.MAX_BACKUP_JSON_BYTES,
        response_headers=_ETAG,
        description=(
            "Store the caller's passphrase-encrypted key backup (opaque to the server). The "
            "first upload needs no precondition; a replacement needs If-Match with the current "
            "ETag (428 without it, 412 when it is stale)."
        ),
    )
    async def put_backup(
        self,
        data: JSONBody[KeyBackup],
        runtime: RuntimeDep,
        db: DbDep,
        principal: PrincipalDep,
        audit_ctx: AuditCtxDep,
        if_match: Annotated[str | None, HeaderParameter(name="If-Match", max_length=64)] = None,
    ) -> Response[BackupStored]:
        """Create or replace the caller's key backup (compare-and-swap)."""
        stored, created = await service.put_backup(
            runtime, db, principal, data, ctx=audit_ctx, if_match=if_match
        )
        return Response(
            stored,
            status_code=201 if created else 200,
            headers={"ETag": service.backup_etag(stored.revision)},
        )

    @get("/me/key-backup", operation_id="getKeyBackup", response_headers=_ETAG)
    async def get_backup(
        self, runtime: RuntimeDep, db: DbDep, principal: PrincipalDep, audit_ctx: AuditCtxDep
    ) -> Response[KeyBackup]:
        """The caller's key backup, with its ETag."""
        backup, revision = await service.get_backup(runtime, db, principal, audit_ctx)
        return Response(backup, headers={"ETag": service.backup_etag(revision)})

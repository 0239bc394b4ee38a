"""HTTP routes: upload and download of encrypted attachments (bytes in, bytes out)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.params import HeaderParameter, PathParameter, QueryParameter
from litestar.response import Stream

from backend.attachments import service
from backend.attachments.errors import UnsupportedMediaTypeError
from backend.attachments.schemas import AttachmentCreated
from backend.http.deps import AuditCtxDep, PrincipalDep, RuntimeDep

__all__ = ["DIGEST_HEADER", "AttachmentsController"]

DIGEST_HEADER = "X-Content-BLAKE2b"
"""BLAKE2b-256 of the encrypted blob, 64 hex digits (``AttachmentKey.ciphertext_hash``)."""


class AttachmentsController(Controller):
    """``/v1/conversations/{id}/attachments`` and ``/v1/attachments/{id}``."""

    path = "/v1"
    tags = ("attachments",)

    @post(
        "/conversations/{conversation_id:uuid}/attachments",
        operation_id="uploadAttachment",
        request_max_body_size=None,  # the service enforces CONFIDE_ATTACHMENT_MAX_BYTES
        opt={"deadline_s": 900},  # a slow link may need minutes to send the largest attachment
        description=(
            "Upload an encrypted attachment (crypto/SPEC.md section 6) as the raw "
            "`application/octet-stream` body, streamed. `X-Content-BLAKE2b` carries the "
            "BLAKE2b-256 of the whole blob in hex (the `ciphertext_hash` of the attachment key); "
            "the server checks it against the bytes received (422 `digest-mismatch`). Bodies "
            "over `CONFIDE_ATTACHMENT_MAX_BYTES` get 413, with or without Content-Length. The id "
            "is the client's (`id`, the attachment id bound into the encryption): repeating an "
            "upload with the same id and digest returns the first answer (200); another blob "
            "under that id is 409."
        ),
    )
    async def upload(
        self,
        request: Request[Any, Any, Any],
        conversation_id: Annotated[uuid.UUID, PathParameter(description="The conversation.")],
        attachment_id: Annotated[
            uuid.UUID, QueryParameter(name="id", description="The attachment id chosen by the client.")
        ],
        digest: Annotated[
            str,
            HeaderParameter(
                name=DIGEST_HEADER,
                pattern=r"^[0-9a-fA-F]{64}$",
                description="BLAKE2b-256 of the body, hex.",
            ),
        ],
        runtime: RuntimeDep,
        principal: PrincipalDep,
        audit_ctx: AuditCtxDep,
    ) -> Response[AttachmentCreated]:
        """Store an encrypted attachment for a conversation."""
        media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if media_type != "application/octet-stream":
            raise UnsupportedMediaTypeError
        created, is_new = await service.upload(
            runtime,
            principal,
            conversation_id,
            attachment_id=attachment_id,
            digest=bytes.fromhex(digest),
            content_length=request.content_length,
            body=request.stream(),
            ctx=audit_ctx,
        )
        return Response(created, status_code=201 if is_new else 200)

    @get(
        "/attachments/{attachment_id:uuid}",
        operation_id="downloadAttachment",
        media_type="application/octet-stream",
        description=(
            "The encrypted blob, streamed, for members of its conversation (404 for anyone "
            "else). `X-Content-BLAKE2b` gives the digest checked at upload; clients check the "
            "`ciphertext_hash` from the signed envelope instead of trusting it."
        ),
    )
    async def download(
        self,
        attachment_id: Annotated[uuid.UUID, PathParameter(description="The attachment.")],
        runtime: RuntimeDep,
        principal: PrincipalDep,
        audit_ctx: AuditCtxDep,
    ) -> Stream:
        """Download an encrypted attachment."""
        row = await service.open_download(runtime, principal, attachment_id, audit_ctx)
        return Stream(
            service.download_chunks(runtime, row),
            media_type="application/octet-stream",
            headers={"Content-Length": str(row.size), DIGEST_HEADER: row.blake2b.hex()},
        )

"""HTTP route of the data-subject export: ``GET /v1/me/export``."""

from __future__ import annotations

from litestar import Controller, get
from litestar.datastructures import ResponseHeader
from litestar.response import Stream

from backend.http.deps import AuditCtxDep, PrincipalDep, RuntimeDep
from backend.subjects import service

__all__ = ["SubjectsController"]

_DESCRIPTION = (
    "Everything held about the caller (GDPR Art. 15 access, Art. 20 portability), streamed as "
    'JSON Lines: a `manifest` line, one line per record (`{"type": "<section>", ...}`) and a '
    "`trailer` with the line count, a BLAKE2b-256 digest of the lines and the counts per section, "
    "signed with the server's receipt key. Messages, notes, key backup and consent statements "
    "stay end-to-end encrypted; `confide export open ARCHIVE` (or `crypto.client.export`) makes "
    "a readable copy on the person's device. Format: docs/API.md and docs/export-schema.json. One "
    "export per account at a time (429 with Retry-After otherwise); every export is audited."
)


class SubjectsController(Controller):
    """``/v1/me/export``."""

    path = "/v1/me"
    tags = ("data subject rights",)

    @get(
        "/export",
        operation_id="exportMyData",
        media_type=service.MEDIA_TYPE,
        description=_DESCRIPTION,
        response_headers=[
            ResponseHeader(name="Cache-Control", description="Always no-store.", documentation_only=True),
            ResponseHeader(
                name="Content-Disposition", description="attachment; filename=...", documentation_only=True
            ),
        ],
    )
    async def export(self, runtime: RuntimeDep, principal: PrincipalDep, audit_ctx: AuditCtxDep) -> Stream:
        """Download an archive of everything held about you."""
        stream = await service.open_export(runtime, principal, audit_ctx)
        return Stream(
            stream,
            media_type=service.MEDIA_TYPE,
            headers={
                "Cache-Control": "no-store",
                "Content-Disposition": 'attachment; filename="confide-export.jsonl"',
            },
        )

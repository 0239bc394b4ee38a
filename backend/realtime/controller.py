"""``GET /v1/events``: the caller's push stream (Server-Sent Events)."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, get
from litestar.params import HeaderParameter, QueryParameter
from litestar.response import Stream

from backend.http.deps import AuditCtxDep, PrincipalDep, RuntimeDep
from backend.realtime import service

__all__ = ["EventsController"]

_MAX_ID = 2**63 - 1


class EventsController(Controller):
    """``/v1/events``."""

    path = "/v1/events"
    tags = ("realtime",)

    @get(
        "/",
        operation_id="streamEvents",
        media_type="text/event-stream",
        description=(
            "Server-Sent Events for the signed-in account: each event has `id` (the outbox id), "
            "`event` (its kind, e.g. `message.created`) and `data` (JSON of ids and codes only; "
            "fetch the envelope separately). Resume with the `Last-Event-ID` header (or `after`) "
            "to receive exactly the events after that id; without either the stream starts with "
            "new events. A comment line is sent every `CONFIDE_EVENTS_KEEPALIVE_S` seconds. When "
            "the session is revoked or expires the stream sends `session.ended` and closes; an "
            "open stream does not count as activity for the idle timeout."
        ),
    )
    async def stream(
        self,
        runtime: RuntimeDep,
        principal: PrincipalDep,
        audit_ctx: AuditCtxDep,
        last_event_id: Annotated[
            str | None,
            HeaderParameter(
                name="Last-Event-ID",
                pattern=r"^[0-9]{1,18}$",
                description="The id of the last event received; the stream resumes after it.",
            ),
        ] = None,
        after: Annotated[
            int | None,
            QueryParameter(ge=0, le=_MAX_ID, description="Resume after this id (Last-Event-ID wins)."),
        ] = None,
    ) -> Stream:
        """Subscribe to the caller's push events."""
        start_after = int(last_event_id) if last_event_id is not None else after
        start = await service.subscribe(runtime, principal, audit_ctx, start_after)
        return Stream(
            service.event_stream(runtime, runtime.require_hub(), principal, start),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

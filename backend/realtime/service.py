"""The push stream of one signed-in account: the outbox, in order, while the session lives.

Opening a stream is audited (``events.subscribe``). The stream then delivers each
outbox row of the account as a Server-Sent Event (``id`` = outbox id, ``event`` =
kind, ``data`` = the ids-only payload), reading pages from the outbox whenever the
hub wakes it, every ``Hub.poll_s`` seconds regardless, and writes a keep-alive
comment every ``events_keepalive_s``. Every read re-checks the session in the same
statement, so no event is served once the session is revoked or expired; the stream
then sends ``session.ended`` and closes. Resuming after ``Last-Event-ID`` replays
exactly the events after it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import structlog

from backend.audit_trail import Action, AuditContext, AuditEvent, record
from backend.auth.principal import Principal
from backend.db.pool import connection, transaction
from backend.errors import UnavailableError
from backend.policy import Action as PolicyAction
from backend.policy import Resource, require
from backend.realtime import repository as repo
from backend.realtime.hub import Hub, Subscription
from backend.runtime import Runtime

__all__ = ["PAGE_SIZE", "RETRY_MS", "event_stream", "subscribe"]

PAGE_SIZE = 100
"""Outbox rows read per query: a stream holds at most one page in memory."""
PAGES_PER_TURN = 10
"""Pages sent before the stream yields to its wait (then continues at once)."""
RETRY_MS = 3_000
"""Reconnection delay suggested to EventSource clients."""

_log = structlog.get_logger("confide.realtime")

OPENING = f": stream open\nretry: {RETRY_MS}\n\n".encode()
KEEPALIVE = b": keep-alive\n\n"
SESSION_ENDED = b"event: session.ended\ndata: {}\n\n"


async def subscribe(rt: Runtime, principal: Principal, ctx: AuditContext, after: int | None) -> int:
    """Authorize and audit a subscription; returns the outbox id the stream starts after.

    Without ``after`` the stream starts at the account's newest event (new events only).
    """
    decision = require(
        principal.actor,
        PolicyAction.READ_SELF,
        Resource(org_id=principal.org_id, owner_id=principal.account_id),
    )
    now = rt.clock.now()
    async with transaction(
        rt.require_pool(), rt.settings.db_acquire_timeout_s, org_id=principal.org_id
    ) as conn:
        start = after if after is not None else await repo.tail_id(conn, principal.account_id)
        await record(
            conn,
            AuditEvent(
                action=Action.READ,
                event_type="events.subscribe",
                org_id=principal.org_id,
                agent_account_id=principal.account_id,
                agent_role=principal.role,  # type: ignore[arg-type]
                entity_type="account",
                entity_id=principal.account_id,
                subject_id=principal.account_id if principal.role == "client" else None,
                consent_id=decision.consent_id,
            ),
            ctx,
            now,
        )
    return start


def encode_event(event: repo.EventRow) -> bytes:
    """One outbox row as an SSE event (kinds and JSON payloads hold no line breaks)."""
    return f"id: {event.id}\nevent: {event.kind}\ndata: {event.payload}\n\n".encode()


_in_flight: set[asyncio.Future[repo.Page]] = set()


def _settled(task: asyncio.Future[repo.Page]) -> None:
    """Drop a finished read; consume the error of one whose stream is gone."""
    _in_flight.discard(task)
    if not task.cancelled() and task.exception() is not None:
        _log.debug("events_read_abandoned")


async def _read_page(rt: Runtime, principal: Principal, after: int) -> repo.Page:
    async with connection(rt.require_pool(), rt.settings.db_acquire_timeout_s) as conn:
        return await repo.read_page(
            conn,
            session_id=principal.session_id,
            account_id=principal.account_id,
            org_id=principal.org_id,
            after=after,
            limit=PAGE_SIZE,
            now=rt.clock.now(),
        )


async def _read(rt: Runtime, principal: Principal, after: int) -> repo.Page | None:
    """One page, or None if the database cannot answer now (the stream then ends).

    A client that disconnects cancels its stream; the read in flight (possibly waiting
    for the outbox lock) is shielded so it finishes and returns its connection cleanly
    instead of leaving a transaction to roll back mid-query.
    """
    task = asyncio.ensure_future(_read_page(rt, principal, after))
    _in_flight.add(task)
    task.add_done_callback(_settled)
    try:
        return await asyncio.shield(task)
    except (UnavailableError, asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
        _log.warning("events_read_failed", error_type=type(exc).__name__)
        return None


async def event_stream(rt: Runtime, hub: Hub, principal: Principal, start: int) -> AsyncIterator[bytes]:
    """The SSE body: events after ``start``, keep-alives, until the session or server ends."""
    with hub.subscribe(principal.account_id) as subscription:
        yield OPENING
        async for chunk in _deliver(rt, hub, principal, subscription, start):
            yield chunk


async def _deliver(
    rt: Runtime, hub: Hub, principal: Principal, subscription: Subscription, start: int
) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    keepalive_s = rt.settings.events_keepalive_s
    next_keepalive = loop.time() + keepalive_s
    last = start
    while not subscription.closed:
        for _ in range(PAGES_PER_TURN):
            page = await _read(rt, principal, last)
            if page is None:
                return
            if not page.live:
                yield SESSION_ENDED
                return
            for event in page.events:
                yield encode_event(event)
                last = event.id
            if len(page.events) < PAGE_SIZE:
                break
        else:
            subscription.wake.set()  # more pages are waiting: go on after a turn
        now = loop.time()
        if now >= next_keepalive:
            yield KEEPALIVE
            next_keepalive = now + keepalive_s
        await subscription.wait(max(0.0, min(hub.poll_s, next_keepalive - now)))

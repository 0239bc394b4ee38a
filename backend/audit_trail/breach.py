"""Breach scope: which clients and records an account (or a session's window) touched.

For a compromised account, give the account and a window (default: the last 30
days). For a compromised session, give the session: the window is its lifetime
(login to revocation, else its expiry), intersected with any window given. Events
do not name sessions, so a session's report covers everything its account did in
that window (an over-approximation, which is the safe side for notification).
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Final

import asyncpg

from backend.audit_trail import event_queries as events
from backend.audit_trail.errors import InvalidWindowError
from backend.audit_trail.schemas import BreachScope
from backend.audit_trail.service import audit_read, check_window, require_officer
from backend.audit_trail.writer import AuditContext
from backend.auth.principal import Principal
from backend.db.tenancy import tenant_transaction
from backend.errors import InvalidInputError, NotFoundError
from backend.runtime import Runtime

__all__ = ["BREACH_LIST_LIMIT", "DEFAULT_WINDOW", "breach_scope", "render_text"]

BREACH_LIST_LIMIT: Final = 10_000
DEFAULT_WINDOW: Final = dt.timedelta(days=30)


async def breach_scope(
    rt: Runtime,
    conn: asyncpg.Connection,
    principal: Principal,
    ctx: AuditContext,
    *,
    account: uuid.UUID | None,
    session: uuid.UUID | None,
    since: dt.datetime | None,
    until: dt.datetime | None,
) -> BreachScope:
    """The breach-scope report (audited as a read of the trail)."""
    require_officer(principal)
    check_window(since, until)
    async with tenant_transaction(conn, principal.org_id, isolation="repeatable_read"):
        if session is not None:
            found = await events.session_window(conn, principal.org_id, session)
            if found is None or (account is not None and found[0] != account):
                raise NotFoundError("No such session in your organization.")
            target, started, ended = found
            since = started if since is None else max(since, started)
            until = ended if until is None else min(until, ended)
        elif account is None:
            raise InvalidInputError("Give the account or the session to assess.")
        elif await events.account_in_org(conn, principal.org_id, account):
            target = account
        else:
            raise NotFoundError("No such account in your organization.")
        until = until or rt.clock.now()
        since = since or until - DEFAULT_WINDOW
        if since >= until:
            raise InvalidWindowError
        await audit_read(conn, rt, principal, ctx, "audit.breach_scope")
        totals = await events.breach_totals(conn, principal.org_id, target, since, until)
        limit = BREACH_LIST_LIMIT + 1
        clients = await events.breach_clients(
            conn, org_id=principal.org_id, account_id=target, since=since, until=until, limit=limit
        )
        records = await events.breach_records(
            conn, org_id=principal.org_id, account_id=target, since=since, until=until, limit=limit
        )
    return BreachScope(
        account_id=target,
        session_id=session,
        since=since,
        until=until,
        events=totals.events,
        failures=totals.failures,
        event_types=totals.event_types,
        clients=clients[:BREACH_LIST_LIMIT],
        records=records[:BREACH_LIST_LIMIT],
        truncated=len(clients) > BREACH_LIST_LIMIT or len(records) > BREACH_LIST_LIMIT,
    )


def _at(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def render_text(scope: BreachScope) -> str:
    """A plain-text summary of the report, for people (ids only, no names)."""
    who = f"account {scope.account_id}"
    if scope.session_id is not None:
        who += f" (session {scope.session_id})"
    lines = [
        "Breach scope report",
        f"Subject of assessment: {who}",
        f"Window: {_at(scope.since)} to {_at(scope.until)}",
        f"Events by the account: {scope.events} ({scope.failures} failed)",
        f"Clients concerned: {len(scope.clients)}",
        f"Records touched: {len(scope.records)}",
    ]
    if scope.truncated:
        lines.append(f"Lists are cut at {BREACH_LIST_LIMIT} entries; export the events for the rest.")
    if scope.event_types:
        lines += ["", "Events by type:"]
        lines += [f"  {name}: {count}" for name, count in scope.event_types.items()]
    if scope.clients:
        lines += ["", "Clients (first access, last access, events, actions):"]
        lines += [
            f"  {c.client_id}  {_at(c.first_at)}  {_at(c.last_at)}  {c.events}  {''.join(c.actions)}"
            for c in scope.clients
        ]
    if scope.records:
        lines += ["", "Records (type, id, client, first access, events, actions):"]
        lines += [
            f"  {r.entity_type}  {r.entity_id}  {r.subject_id or '-'}  {_at(r.first_at)}  {r.events}  "
            f"{''.join(r.actions)}"
            for r in scope.records
        ]
    return "\n".join(lines) + "\n"

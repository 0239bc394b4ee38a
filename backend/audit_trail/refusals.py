"""Refused attempts on a client's data are audited too, though the attempt itself rolls back.

A refusal raises inside the transaction of the attempted action, which then rolls back
with everything it wrote. The refusal's own event (the attempted event, outcome
``MINOR_FAILURE``, the policy's reason as subtype, no purpose of use and no consent:
nothing was granted) is written afterwards in a
transaction of its own, before the error reaches the caller: the answer (often a 404
identical to an unknown id's) tells the caller nothing, the trail tells a compliance
officer, and the client's accounting of disclosures, everything. Only refusals about
an object that exists are recorded (an unknown id names nothing to record).

::

    async with audit_refusals(conn, ctx, now) as refusals, tenant_transaction(conn, org_id):
        ...
        decision = refusals.require(principal.actor, action, resource, facts, attempt=event)
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import msgspec

from backend.audit_trail.writer import AuditContext, AuditEvent, Outcome, record
from backend.db.tenancy import tenant_transaction
from backend.errors import DomainError
from backend.policy import Action, Actor, Decision, Facts, Resource, decide, require

__all__ = ["Refusals", "audit_refusals"]


class Refusals:
    """The refusal of the attempt in progress, if any (one per unit of work)."""

    __slots__ = ("event",)

    def __init__(self) -> None:
        self.event: AuditEvent | None = None

    def require(
        self,
        actor: Actor,
        action: Action,
        resource: Resource,
        facts: Facts | None = None,
        *,
        attempt: AuditEvent,
    ) -> Decision:
        """:func:`backend.policy.require`, remembering ``attempt`` as refused when it raises."""
        decision = decide(actor, action, resource, facts)
        if not decision.allowed:
            self.note(attempt, decision.reason)
        return require(actor, action, resource, facts)

    def refuse(self, attempt: AuditEvent, reason: str, error: DomainError) -> DomainError:
        """Remember ``attempt`` as refused for ``reason``; returns ``error`` for the caller to raise."""
        self.note(attempt, reason)
        return error

    def note(self, attempt: AuditEvent, reason: str) -> None:
        """Remember ``attempt`` as refused for ``reason`` (a policy reason code)."""
        self.event = msgspec.structs.replace(
            attempt,
            outcome=Outcome.MINOR_FAILURE,
            outcome_reason=reason,
            purpose_of_use=None,
            consent_id=None,
        )


@asynccontextmanager
async def audit_refusals(
    conn: asyncpg.Connection, ctx: AuditContext, at: dt.datetime
) -> AsyncIterator[Refusals]:
    """Write the refusal noted in the block, if it ended with its error (a 403, 404 or 422), then re-raise."""
    refusals = Refusals()
    try:
        yield refusals
    except DomainError:
        event = refusals.event
        if event is not None and event.org_id is not None:
            async with tenant_transaction(conn, event.org_id):
                await record(conn, event, ctx, at)
        raise

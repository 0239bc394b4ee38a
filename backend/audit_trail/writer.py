"""Write audit events **in the same transaction** as the action they describe.

An event names codes and pseudonymous ids only (FHIR AuditEvent shape): who
(account id, role, organization, a keyed digest of the network address), what
(action code, type, entity type and id), about whom (subject), why (purpose of
use, consent id), with what outcome. No names, emails, tokens or content.
The raw network address goes to a separate, short-retention table.
"""

from __future__ import annotations

import datetime as dt
import enum
import ipaddress
import uuid
from typing import Literal

import asyncpg
import msgspec

__all__ = ["Action", "AuditContext", "AuditEvent", "NotInTransactionError", "Outcome", "record"]


class Action(enum.StrEnum):
    """FHIR AuditEvent.action."""

    CREATE = "C"
    READ = "R"
    UPDATE = "U"
    DELETE = "D"
    EXECUTE = "E"


class Outcome(enum.IntEnum):
    """FHIR AuditEvent.outcome (R4 codes)."""

    SUCCESS = 0
    MINOR_FAILURE = 4
    SERIOUS_FAILURE = 8
    MAJOR_FAILURE = 12


class AuditContext(msgspec.Struct, frozen=True, kw_only=True):
    """Where an event comes from: the request and the process."""

    source_instance: str
    request_id: str | None = None
    address: str | None = None
    address_digest: bytes | None = None


class AuditEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One auditable fact."""

    action: Action
    event_type: str
    outcome: Outcome = Outcome.SUCCESS
    outcome_reason: str | None = None
    org_id: uuid.UUID | None = None
    agent_account_id: uuid.UUID | None = None
    agent_role: Literal["client", "clinician", "compliance_officer", "admin"] | None = None
    entity_type: str | None = None
    entity_id: uuid.UUID | None = None
    subject_id: uuid.UUID | None = None
    purpose_of_use: str | None = None
    consent_id: uuid.UUID | None = None


class NotInTransactionError(RuntimeError):
    """An audit event must be written inside the transaction of its action."""


_INSERT = """
INSERT INTO audit_events (
    event_id, recorded_at, org_id, action, event_type, outcome, outcome_reason,
    agent_account_id, agent_role, agent_address_digest, source_instance,
    entity_type, entity_id, subject_id, purpose_of_use, request_id, consent_id
) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
"""

_INSERT_ADDRESS = "INSERT INTO audit_addresses (event_id, address, recorded_at) VALUES ($1, $2, $3)"


async def record(
    conn: asyncpg.Connection,
    event: AuditEvent,
    context: AuditContext,
    at: dt.datetime,
) -> uuid.UUID:
    """Insert ``event``; refuses to run outside a transaction."""
    if not conn.is_in_transaction():
        raise NotInTransactionError
    event_id = uuid.uuid4()
    await conn.execute(
        _INSERT,
        event_id,
        at,
        event.org_id,
        event.action.value,
        event.event_type,
        int(event.outcome),
        event.outcome_reason,
        event.agent_account_id,
        event.agent_role,
        context.address_digest,
        context.source_instance,
        event.entity_type,
        event.entity_id,
        event.subject_id,
        event.purpose_of_use,
        context.request_id,
        event.consent_id,
    )
    address = _parse_address(context.address)
    if address is not None:
        await conn.execute(_INSERT_ADDRESS, event_id, address, at)
    return event_id


def _parse_address(text: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if not text:
        return None
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None

"""Write audit events **in the same transaction** as the action they describe.

An event names codes and pseudonymous ids only (FHIR AuditEvent shape): who
(account id, role, organization, a keyed digest of the network address), what
(action code, type, entity type and id), about whom (subject), why (purpose of
use, consent id), with what outcome. No names, emails, tokens or content.
The raw network address goes to a separate, short-retention table.

Each event is also encoded once, here, as its Merkle leaf (:func:`audit.leaf.encode_leaf`):
those exact bytes are stored with the row (the database derives the leaf hash from
them) and are what the integrator appends to the verifiable log, exports and proofs
refer to. Mapping to the leaf: ``outcome_reason`` is the leaf ``subtype``; an agent
without a role is ``anonymous``; the network address is the keyed digest, in hex; an
entity is recorded only with its id.
"""

from __future__ import annotations

import datetime as dt
import enum
import ipaddress
import uuid
from typing import Literal

import asyncpg
import msgspec

from audit.leaf import AuditAgent, AuditEntity, encode_leaf, format_recorded
from audit.leaf import AuditEvent as LeafEvent

__all__ = [
    "ANONYMOUS_ROLE",
    "EVENT_PARAMETERS",
    "Action",
    "AuditContext",
    "AuditEvent",
    "NotInTransactionError",
    "Outcome",
    "build_leaf",
    "event_parameters",
    "event_statement",
    "record",
]

#: Leaf role of an event without an authenticated agent (a failed login, a CLI bootstrap).
ANONYMOUS_ROLE = "anonymous"


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


_COLUMNS = (
    "event_id, recorded_at, org_id, action, event_type, outcome, outcome_reason, "
    "agent_account_id, agent_role, agent_address_digest, source_instance, "
    "entity_type, entity_id, subject_id, purpose_of_use, request_id, consent_id, leaf"
)
#: How many parameters :func:`event_statement` takes (:func:`event_parameters` gives them).
EVENT_PARAMETERS = 19


def event_statement(first: int) -> str:
    """The CTEs ``audit_event`` and ``audit_address``, parameters numbered from ``first``.

    They write one event and its raw address; other statements embed them so that an
    action and its event are one round trip.
    """
    p = [f"${first + i}" for i in range(EVENT_PARAMETERS)]
    return f"""
    audit_event AS (
        INSERT INTO audit_events ({_COLUMNS}) VALUES ({", ".join(p[:18])}) RETURNING event_id
    ), audit_address AS (
        INSERT INTO audit_addresses (event_id, address, recorded_at)
        SELECT event_id, {p[18]}::inet, {p[1]}::timestamptz FROM audit_event WHERE {p[18]}::inet IS NOT NULL
    )"""  # noqa: S608 -- fixed columns and numbered parameters


def event_parameters(
    event: AuditEvent, context: AuditContext, at: dt.datetime
) -> tuple[uuid.UUID, tuple[object, ...]]:
    """A new event id and the parameters of :func:`event_statement` for ``event``."""
    event_id = uuid.uuid4()
    leaf = build_leaf(event_id, event, context, at)
    return event_id, (
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
        leaf,
        _parse_address(context.address),
    )


_INSERT = "WITH " + event_statement(1) + " SELECT 1"


async def record(
    conn: asyncpg.Connection,
    event: AuditEvent,
    context: AuditContext,
    at: dt.datetime,
) -> uuid.UUID:
    """Insert ``event`` with its leaf bytes (its raw address apart) in one statement.

    Refuses to run outside a transaction.

    Raises:
        NotInTransactionError: Called outside a transaction.
        audit.errors.AuditFormatError: The event cannot be a leaf (an unknown purpose
            code, an oversized field): the action fails with it.
    """
    if not conn.is_in_transaction():
        raise NotInTransactionError
    event_id, parameters = event_parameters(event, context, at)
    await conn.execute(_INSERT, *parameters)
    return event_id


def build_leaf(event_id: uuid.UUID, event: AuditEvent, context: AuditContext, at: dt.datetime) -> bytes:
    """The canonical leaf bytes of one event (what is hashed, stored and exported)."""
    digest = context.address_digest
    return encode_leaf(
        LeafEvent(
            id=event_id,
            recorded=format_recorded(at),
            action=event.action.value,
            type=event.event_type,
            subtype=event.outcome_reason,
            outcome=int(event.outcome),  # type: ignore[arg-type]  # Outcome's values are the leaf's codes
            agent=AuditAgent(
                account=event.agent_account_id,
                role=event.agent_role or ANONYMOUS_ROLE,
                org=event.org_id,
                network=digest.hex() if digest is not None else None,
            ),
            source=context.source_instance,
            entity=(
                AuditEntity(type=event.entity_type, id=str(event.entity_id))
                if event.entity_type is not None and event.entity_id is not None
                else None
            ),
            subject=event.subject_id,
            purpose=event.purpose_of_use,  # type: ignore[arg-type]  # checked by encode_leaf, fails closed
            request=context.request_id,
            consent=event.consent_id,
        )
    )


def _parse_address(text: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if not text:
        return None
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None

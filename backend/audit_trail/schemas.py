"""Request and response bodies of the audit trail routes (hashes are base64 in JSON)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Literal

import msgspec

from audit.leaf import AuditEvent as LeafEvent

__all__ = [
    "BreachClient",
    "BreachRecord",
    "BreachScope",
    "CheckpointView",
    "ConsistencyProofView",
    "CosignatureRequest",
    "CosignatureView",
    "Disclosure",
    "DisclosurePage",
    "EventFilters",
    "EventPage",
    "EventView",
    "InclusionProofView",
    "LogKeyView",
    "LogStatus",
]


class LogKeyView(msgspec.Struct, frozen=True, kw_only=True):
    """The log's public key: verify checkpoints and exports with ``vkey``.

    Attributes:
        origin: Checkpoint origin line, equal to the key name.
        vkey: C2SP signed-note verifier key ``<name>+<key id>+<base64(0x01 || key)>``.
        checkpoint_spec: The checkpoint format.
    """

    origin: str
    vkey: str
    checkpoint_spec: str


class CosignatureView(msgspec.Struct, frozen=True, kw_only=True):
    """A witness cosignature stored with a checkpoint."""

    witness: str
    cosigned_at: int


class CheckpointView(msgspec.Struct, frozen=True, kw_only=True):
    """A signed checkpoint; ``note`` carries the log signature and stored cosignatures."""

    size: int
    root: bytes
    note: str
    created_at: dt.datetime
    cosignatures: list[CosignatureView]


class InclusionProofView(msgspec.Struct, frozen=True, kw_only=True):
    """Leaf ``index``'s exact bytes, hash and inclusion proof in the tree of ``size``."""

    index: int
    size: int
    leaf_hash: bytes
    leaf: bytes | None
    """``None`` once pruned for retention (the hash, and so the proof, remain)."""
    proof: list[bytes]


class ConsistencyProofView(msgspec.Struct, frozen=True, kw_only=True):
    """Proof that the tree of size ``new`` extends the tree of size ``old``."""

    old: int
    new: int
    proof: list[bytes]


class CosignatureRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A witness's cosigned checkpoint and the witness's public key (type 0x04 vkey)."""

    note: Annotated[str, msgspec.Meta(min_length=1, max_length=65_536)]
    witness_key: Annotated[str, msgspec.Meta(min_length=1, max_length=512)]


class LogStatus(msgspec.Struct, frozen=True, kw_only=True):
    """How far the verifiable log is behind the events written.

    Attributes:
        tree_size: Leaves in the log.
        checkpoint_size: Size of the newest signed checkpoint.
        checkpoint_created_at: When it was signed.
        pending_events: Events written but not yet in the log.
        lag_s: Age of the oldest pending event (0 when none).
    """

    tree_size: int
    checkpoint_size: int | None
    checkpoint_created_at: dt.datetime | None
    pending_events: int
    lag_s: float


class EventFilters(msgspec.Struct, frozen=True, kw_only=True):
    """Filters shared by event search and export (always within the caller's organization)."""

    org_id: uuid.UUID
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    subject: uuid.UUID | None = None
    actor: uuid.UUID | None = None
    types: tuple[str, ...] | None = None
    outcomes: tuple[Literal[0, 4, 8, 12], ...] | None = None

    @property
    def narrowed(self) -> bool:
        """Whether anything beyond the organization is filtered."""
        return any(
            value is not None
            for value in (self.since, self.until, self.subject, self.actor, self.types, self.outcomes)
        )


class EventView(msgspec.Struct, frozen=True, kw_only=True):
    """One event: its log index (``None`` until integrated) and its leaf, decoded."""

    index: int | None
    event: LeafEvent


class EventPage(msgspec.Struct, frozen=True, kw_only=True):
    """A page of events, newest first; pass ``next_cursor`` as ``cursor`` for the next."""

    items: list[EventView]
    next_cursor: str | None


class Disclosure(msgspec.Struct, frozen=True, kw_only=True):
    """Someone else's access to, or change of, the client's records.

    Attributes:
        at: When.
        agent_id: The account that acted.
        agent_role: Its role.
        agent_name: Its display name, for staff of the client's organization.
        action: FHIR action code (C, R, U, D, E).
        type: Event type code.
        outcome: FHIR outcome code (0 = success).
        purpose: HL7 PurposeOfUse code (``ETREAT`` is break-glass).
        consent_id: The consent record the access relied on.
        entity_type: The kind of record.
        entity_id: The record's id.
    """

    at: dt.datetime
    agent_id: uuid.UUID | None
    agent_role: str | None
    agent_name: str | None
    action: str
    type: str
    outcome: int
    purpose: str | None
    consent_id: uuid.UUID | None
    entity_type: str | None
    entity_id: uuid.UUID | None


class DisclosurePage(msgspec.Struct, frozen=True, kw_only=True):
    """A page of disclosures, newest first."""

    items: list[Disclosure]
    next_cursor: str | None


class BreachClient(msgspec.Struct, frozen=True, kw_only=True):
    """A client whose records the account touched in the window."""

    client_id: uuid.UUID
    events: int
    first_at: dt.datetime
    last_at: dt.datetime
    actions: list[str]


class BreachRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A record the account touched in the window."""

    entity_type: str
    entity_id: uuid.UUID
    subject_id: uuid.UUID | None
    events: int
    first_at: dt.datetime
    last_at: dt.datetime
    actions: list[str]


class BreachScope(msgspec.Struct, frozen=True, kw_only=True):
    """What an account (or one of its sessions' windows) touched: for breach assessment.

    Attributes:
        account_id: The account assessed.
        session_id: The session whose lifetime bounded the window, if one was given.
        since: Window start (inclusive).
        until: Window end (exclusive).
        events: Events by the account in the window.
        failures: Of which with a failure outcome.
        event_types: Count per event type.
        clients: Clients concerned, by first access.
        records: Records touched, by first access.
        truncated: Lists were cut at their limit.
    """

    account_id: uuid.UUID
    session_id: uuid.UUID | None
    since: dt.datetime
    until: dt.datetime
    events: int
    failures: int
    event_types: dict[str, int]
    clients: list[BreachClient]
    records: list[BreachRecord]
    truncated: bool

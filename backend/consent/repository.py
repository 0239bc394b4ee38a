"""SQL for consent events, their projection, and break-glass openings."""

from __future__ import annotations

import datetime as dt
import uuid

import asyncpg
import msgspec

from backend.policy import ConsentFact, EmergencyFact

__all__ = [
    "CONSENT_FACTS_SQL",
    "EMERGENCY_FACTS_SQL",
    "ConsentEventRow",
    "ConsentRow",
    "EmergencyRow",
    "account_role",
    "consent_facts",
    "due_for_expiry",
    "emergency_facts",
    "end_consent",
    "find_active",
    "get_consent",
    "get_emergency",
    "insert_consent",
    "insert_emergency",
    "insert_event",
    "list_consents",
    "list_emergencies",
    "list_events",
    "load_actor_facts",
    "load_facts",
]


class ConsentRow(msgspec.Struct, frozen=True, kw_only=True):
    """The projection row of a consent."""

    consent_id: uuid.UUID
    org_id: uuid.UUID
    client_id: uuid.UUID
    client_key_version: int
    grantee_type: str
    grantee_id: uuid.UUID
    scopes: list[str]
    purpose: str
    valid_from: dt.datetime
    valid_until: dt.datetime | None
    status: str
    granted_at: dt.datetime
    ended_at: dt.datetime | None


class ConsentEventRow(msgspec.Struct, frozen=True, kw_only=True):
    """One stored event."""

    event_id: uuid.UUID
    kind: str
    statement: bytes | None
    receipt: bytes | None
    recorded_at: dt.datetime


class EmergencyRow(msgspec.Struct, frozen=True, kw_only=True):
    """A break-glass opening."""

    id: uuid.UUID
    org_id: uuid.UUID
    client_id: uuid.UUID
    clinician_id: uuid.UUID
    reason: str
    opened_at: dt.datetime
    expires_at: dt.datetime
    approved_by: uuid.UUID | None
    approved_at: dt.datetime | None
    closed_at: dt.datetime | None


_CONSENT_COLUMNS = """
    consent_id, org_id, client_id, client_key_version, grantee_type, grantee_id, scopes, purpose,
    valid_from, valid_until, status, granted_at, ended_at
"""
_EMERGENCY_COLUMNS = """
    id, org_id, client_id, clinician_id, reason, opened_at, expires_at, approved_by, approved_at, closed_at
"""


async def account_role(conn: asyncpg.Connection, account_id: uuid.UUID) -> tuple[uuid.UUID, str, str] | None:
    """``(org_id, role, status)`` of an account."""
    row = await conn.fetchrow("SELECT org_id, role, status FROM accounts WHERE id = $1", account_id)
    return None if row is None else (row["org_id"], row["role"], row["status"])


async def get_consent(
    conn: asyncpg.Connection, consent_id: uuid.UUID, *, lock: bool = False
) -> ConsentRow | None:
    """One consent's projection."""
    sql = _GET_CONSENT_FOR_UPDATE if lock else _GET_CONSENT
    row = await conn.fetchrow(sql, consent_id)
    return None if row is None else msgspec.convert(dict(row), ConsentRow)


_GET_CONSENT = f"SELECT {_CONSENT_COLUMNS} FROM consents WHERE consent_id = $1"  # noqa: S608 -- fixed columns
_GET_CONSENT_FOR_UPDATE = _GET_CONSENT + " FOR UPDATE"


async def find_active(
    conn: asyncpg.Connection, *, client_id: uuid.UUID, grantee_type: str, grantee_id: uuid.UUID, purpose: str
) -> ConsentRow | None:
    """The client's active consent to this grantee for this purpose, locked for update.

    There is at most one (index ``consents_one_active``, migration 0016).
    """
    row = await conn.fetchrow(
        f"""
        SELECT {_CONSENT_COLUMNS} FROM consents
        WHERE client_id = $1 AND grantee_type = $2 AND grantee_id = $3 AND purpose = $4 AND status = 'active'
        FOR UPDATE
        """,  # noqa: S608 -- fixed columns
        client_id,
        grantee_type,
        grantee_id,
        purpose,
    )
    return None if row is None else msgspec.convert(dict(row), ConsentRow)


async def insert_event(
    conn: asyncpg.Connection,
    *,
    event_id: uuid.UUID,
    consent_id: uuid.UUID,
    org_id: uuid.UUID,
    client_id: uuid.UUID,
    kind: str,
    statement: bytes | None,
    receipt: bytes | None,
    now: dt.datetime,
) -> None:
    """Append an event."""
    await conn.execute(
        """
        INSERT INTO consent_events
            (event_id, consent_id, org_id, client_id, kind, statement, receipt, recorded_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
        """,
        event_id,
        consent_id,
        org_id,
        client_id,
        kind,
        statement,
        receipt,
        now,
    )


_INSERT_CONSENT = f"""
    INSERT INTO consents ({_CONSENT_COLUMNS})
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
"""  # noqa: S608 -- fixed columns


async def insert_consent(conn: asyncpg.Connection, row: ConsentRow) -> None:
    """Create the projection of a new grant."""
    await conn.execute(
        _INSERT_CONSENT,
        row.consent_id,
        row.org_id,
        row.client_id,
        row.client_key_version,
        row.grantee_type,
        row.grantee_id,
        row.scopes,
        row.purpose,
        row.valid_from,
        row.valid_until,
        row.status,
        row.granted_at,
        row.ended_at,
    )


async def end_consent(conn: asyncpg.Connection, consent_id: uuid.UUID, status: str, now: dt.datetime) -> None:
    """Project a revocation or an expiry."""
    await conn.execute(
        "UPDATE consents SET status = $2, ended_at = $3 WHERE consent_id = $1 AND status = 'active'",
        consent_id,
        status,
        now,
    )


async def list_events(conn: asyncpg.Connection, consent_id: uuid.UUID) -> list[ConsentEventRow]:
    """A consent's events, oldest first."""
    rows = await conn.fetch(
        """
        SELECT event_id, kind, statement, receipt, recorded_at
        FROM consent_events WHERE consent_id = $1 ORDER BY seq
        """,
        consent_id,
    )
    return [msgspec.convert(dict(r), ConsentEventRow) for r in rows]


async def list_consents(
    conn: asyncpg.Connection,
    *,
    org_id: uuid.UUID,
    client_id: uuid.UUID | None = None,
    grantee_ids: tuple[uuid.UUID, ...] | None = None,
    limit: int = 200,
) -> list[ConsentRow]:
    """Consents of an organization, optionally of one client or naming given grantees."""
    rows = await conn.fetch(
        f"""
        SELECT {_CONSENT_COLUMNS} FROM consents
        WHERE org_id = $1
          AND ($2::uuid IS NULL OR client_id = $2)
          AND ($3::uuid[] IS NULL OR grantee_id = ANY($3))
        ORDER BY granted_at DESC, consent_id
        LIMIT $4
        """,  # noqa: S608 -- fixed columns
        org_id,
        client_id,
        list(grantee_ids) if grantee_ids is not None else None,
        limit,
    )
    return [msgspec.convert(dict(r), ConsentRow) for r in rows]


async def list_for_clinician(
    conn: asyncpg.Connection, *, org_id: uuid.UUID, clinician_id: uuid.UUID, limit: int = 200
) -> list[ConsentRow]:
    """Consents naming the clinician, and organization grants of clients they treat."""
    rows = await conn.fetch(
        f"""
        SELECT {_CONSENT_COLUMNS} FROM consents c
        WHERE c.org_id = $1 AND (
            c.grantee_id = $2
            OR (c.grantee_type = 'organization' AND EXISTS (
                SELECT 1 FROM care_relationships r WHERE r.clinician_id = $2 AND r.client_id = c.client_id
            ))
        )
        ORDER BY c.granted_at DESC, c.consent_id
        LIMIT $3
        """,  # noqa: S608 -- fixed columns
        org_id,
        clinician_id,
        limit,
    )
    return [msgspec.convert(dict(r), ConsentRow) for r in rows]


async def due_for_expiry(conn: asyncpg.Connection, now: dt.datetime, limit: int) -> list[ConsentRow]:
    """Active consents whose validity has ended, locked (skipping ones locked elsewhere)."""
    rows = await conn.fetch(
        f"""
        SELECT {_CONSENT_COLUMNS} FROM consents
        WHERE status = 'active' AND valid_until <= $1
        ORDER BY valid_until LIMIT $2 FOR UPDATE SKIP LOCKED
        """,  # noqa: S608 -- fixed columns
        now,
        limit,
    )
    return [msgspec.convert(dict(r), ConsentRow) for r in rows]


#: The policy's view of a client's consents and break-glass openings, as row expressions
#: (``c`` is the client id); other queries embed them to load the facts in the same round trip.
#:
#: The rows are locked FOR KEY SHARE until the reading transaction ends, so a decision
#: and the access it allows are one serial step against a revocation or a closing
#: (which lock the row FOR UPDATE first): an access either commits, audit event
#: included, before the revocation takes its lock, or waits for it and then sees the
#: consent ended (READ COMMITTED re-reads a row it waited for). Without the lock a read
#: that loaded the consent just before a revocation committed could still succeed after
#: it, its audit event after the revocation's (checklist A-08). KEY SHARE conflicts
#: with nothing but FOR UPDATE and deletion, so readers never wait for one another.
CONSENT_FACTS_SQL = """
    ARRAY(SELECT ROW(k.consent_id, k.grantee_type, k.grantee_id, k.scopes, k.valid_from, k.valid_until,
                     k.status)
          FROM consents k WHERE k.client_id = {c} AND k.status = 'active' FOR KEY SHARE)
"""
EMERGENCY_FACTS_SQL = """
    ARRAY(SELECT ROW(e.id, e.clinician_id, e.expires_at, e.closed_at IS NOT NULL)
          FROM emergency_access e WHERE e.client_id = {c} AND e.closed_at IS NULL FOR KEY SHARE)
"""


def consent_facts(rows: list[tuple[object, ...]]) -> list[ConsentFact]:
    """Facts from the rows of :data:`CONSENT_FACTS_SQL`."""
    return [
        ConsentFact(
            consent_id=r[0],  # type: ignore[arg-type]
            grantee_type=r[1],  # type: ignore[arg-type]
            grantee_id=r[2],  # type: ignore[arg-type]
            scopes=frozenset(r[3]),  # type: ignore[call-overload]
            valid_from=r[4],  # type: ignore[arg-type]
            valid_until=r[5],  # type: ignore[arg-type]
            status=r[6],  # type: ignore[arg-type]
        )
        for r in rows
    ]


def emergency_facts(rows: list[tuple[object, ...]]) -> list[EmergencyFact]:
    """Facts from the rows of :data:`EMERGENCY_FACTS_SQL`."""
    return [
        EmergencyFact(access_id=r[0], clinician_id=r[1], expires_at=r[2], closed=r[3])  # type: ignore[arg-type]
        for r in rows
    ]


_LOAD_FACTS = f"""
    SELECT {CONSENT_FACTS_SQL.format(c="$1")} AS consents, {EMERGENCY_FACTS_SQL.format(c="$1")} AS emergencies
"""


async def load_facts(
    conn: asyncpg.Connection, client_id: uuid.UUID
) -> tuple[list[ConsentFact], list[EmergencyFact]]:
    """Everything the policy needs about one client's consents and break-glass openings."""
    (row,) = await conn.fetch(_LOAD_FACTS, client_id)
    return consent_facts(row["consents"]), emergency_facts(row["emergencies"])


_LOAD_ACTOR_FACTS = f"""
    {_LOAD_FACTS},
    EXISTS (SELECT 1 FROM care_relationships WHERE clinician_id = $2 AND client_id = $1) AS treats
"""  # noqa: S608 -- fixed text


async def load_actor_facts(
    conn: asyncpg.Connection, client_id: uuid.UUID, actor_id: uuid.UUID
) -> tuple[list[ConsentFact], list[EmergencyFact], bool]:
    """:func:`load_facts` and whether ``actor_id`` treats the client, in one round trip."""
    (row,) = await conn.fetch(_LOAD_ACTOR_FACTS, client_id, actor_id)
    return consent_facts(row["consents"]), emergency_facts(row["emergencies"]), bool(row["treats"])


_INSERT_EMERGENCY = f"""
    INSERT INTO emergency_access ({_EMERGENCY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
"""  # noqa: S608 -- fixed columns


async def insert_emergency(conn: asyncpg.Connection, row: EmergencyRow) -> None:
    """Record a break-glass opening."""
    await conn.execute(
        _INSERT_EMERGENCY,
        row.id,
        row.org_id,
        row.client_id,
        row.clinician_id,
        row.reason,
        row.opened_at,
        row.expires_at,
        row.approved_by,
        row.approved_at,
        row.closed_at,
    )


async def get_emergency(conn: asyncpg.Connection, access_id: uuid.UUID) -> EmergencyRow | None:
    """One opening, locked for update."""
    row = await conn.fetchrow(
        f"SELECT {_EMERGENCY_COLUMNS} FROM emergency_access WHERE id = $1 FOR UPDATE",  # noqa: S608 -- fixed columns
        access_id,
    )
    return None if row is None else msgspec.convert(dict(row), EmergencyRow)


async def approve_emergency(
    conn: asyncpg.Connection, access_id: uuid.UUID, approver: uuid.UUID, now: dt.datetime
) -> None:
    """Record the second person's approval."""
    await conn.execute(
        """
        UPDATE emergency_access SET approved_by = $2, approved_at = $3
        WHERE id = $1 AND approved_by IS NULL
        """,
        access_id,
        approver,
        now,
    )


async def close_emergency(conn: asyncpg.Connection, access_id: uuid.UUID, now: dt.datetime) -> None:
    """End an opening early."""
    await conn.execute(
        "UPDATE emergency_access SET closed_at = $2 WHERE id = $1 AND closed_at IS NULL", access_id, now
    )


async def list_emergencies(
    conn: asyncpg.Connection, *, org_id: uuid.UUID, clinician_id: uuid.UUID | None, limit: int = 200
) -> list[EmergencyRow]:
    """Openings of an organization (or of one clinician), newest first."""
    rows = await conn.fetch(
        f"""
        SELECT {_EMERGENCY_COLUMNS} FROM emergency_access
        WHERE org_id = $1 AND ($2::uuid IS NULL OR clinician_id = $2)
        ORDER BY opened_at DESC LIMIT $3
        """,  # noqa: S608 -- fixed columns
        org_id,
        clinician_id,
        limit,
    )
    return [msgspec.convert(dict(r), EmergencyRow) for r in rows]

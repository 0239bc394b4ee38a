"""SQL for authentication: accounts by login, sessions, throttling, TOTP, recovery codes."""

from __future__ import annotations

import datetime as dt
import uuid

import asyncpg
import msgspec

from backend.auth.principal import Principal
from backend.auth.throttle import ThrottleState

__all__ = [
    "LoginAccount",
    "clear_throttle",
    "consume_recovery_code",
    "create_session",
    "find_login_account",
    "load_throttle",
    "revoke_account_sessions",
    "revoke_session",
    "save_throttle",
    "touch_session",
]


class LoginAccount(msgspec.Struct, frozen=True, kw_only=True):
    """What login needs to know about an account."""

    id: uuid.UUID
    org_id: uuid.UUID
    email: str
    role: str
    status: str
    password_hash: str | None
    """None once the account is erased (it can never log in again)."""
    totp_secret_sealed: bytes | None
    totp_pending_sealed: bytes | None
    totp_last_step: int | None


_LOGIN_COLUMNS = """
    a.id, a.org_id, a.email, a.role, a.status, a.password_hash,
    a.totp_secret_sealed, a.totp_pending_sealed, a.totp_last_step
"""


async def find_login_account(conn: asyncpg.Connection, org_slug: str, email: str) -> LoginAccount | None:
    """The account with this email in the organization with this slug."""
    # Before the organization is known: through the SECURITY DEFINER lookup of migration 0013.
    row = await conn.fetchrow(f"SELECT {_LOGIN_COLUMNS} FROM auth_login_account($1, $2) a", org_slug, email)  # noqa: S608 -- fixed columns
    return None if row is None else msgspec.convert(dict(row), LoginAccount)


async def get_login_account(conn: asyncpg.Connection, account_id: uuid.UUID) -> LoginAccount:
    """An account by id (for password and MFA changes), locked for update."""
    row = await conn.fetchrow(
        f"SELECT {_LOGIN_COLUMNS} FROM accounts a WHERE a.id = $1 FOR UPDATE",  # noqa: S608 -- fixed columns
        account_id,
    )
    if row is None:  # pragma: no cover -- callers hold a live session for this account
        raise LookupError(account_id)
    return msgspec.convert(dict(row), LoginAccount)


_THROTTLE = """
    SELECT failures, window_started_at, locked_until FROM login_throttle
    WHERE scope = $1 AND key_digest = $2
"""
_THROTTLE_FOR_UPDATE = _THROTTLE + " FOR UPDATE"


async def load_throttle(
    conn: asyncpg.Connection, scope: str, key: bytes, *, lock: bool
) -> ThrottleState | None:
    """A key's counters (locked for update inside a transaction when asked)."""
    row = await conn.fetchrow(_THROTTLE_FOR_UPDATE if lock else _THROTTLE, scope, key)
    return None if row is None else msgspec.convert(dict(row), ThrottleState)


async def save_throttle(
    conn: asyncpg.Connection, scope: str, key: bytes, state: ThrottleState, now: dt.datetime
) -> None:
    """Upsert a key's counters."""
    await conn.execute(
        """
        INSERT INTO login_throttle (scope, key_digest, failures, window_started_at, locked_until, updated_at)
        VALUES ($1, $2, $3, $4, $5, $6)
        ON CONFLICT (scope, key_digest) DO UPDATE SET
            failures = EXCLUDED.failures,
            window_started_at = EXCLUDED.window_started_at,
            locked_until = EXCLUDED.locked_until,
            updated_at = EXCLUDED.updated_at
        """,
        scope,
        key,
        state.failures,
        state.window_started_at,
        state.locked_until,
        now,
    )


async def clear_throttle(conn: asyncpg.Connection, scope: str, key: bytes) -> None:
    """Forget a key's failures (after a successful login)."""
    await conn.execute("DELETE FROM login_throttle WHERE scope = $1 AND key_digest = $2", scope, key)


async def create_session(
    conn: asyncpg.Connection,
    *,
    account_id: uuid.UUID,
    org_id: uuid.UUID,
    digest: bytes,
    mfa_satisfied: bool,
    now: dt.datetime,
    idle_expires_at: dt.datetime,
    absolute_expires_at: dt.datetime,
) -> uuid.UUID:
    """Insert a session row; returns its id."""
    session_id = uuid.uuid4()
    await conn.execute(
        """
        INSERT INTO sessions (id, account_id, org_id, token_digest, mfa_satisfied, created_at,
                              last_seen_at, idle_expires_at, absolute_expires_at)
        VALUES ($1, $2, $3, $4, $5, $6, $6, $7, $8)
        """,
        session_id,
        account_id,
        org_id,
        digest,
        mfa_satisfied,
        now,
        idle_expires_at,
        absolute_expires_at,
    )
    return session_id


# Before the organization is known, on every authenticated request: one call of the
# SECURITY DEFINER function of migration 0013 (it reads the session and its account,
# and writes the activity when it is due).
_LIVE_SESSION = "SELECT * FROM auth_session($1, $2, $3, $4)"


async def touch_session(
    conn: asyncpg.Connection, digest: bytes, now: dt.datetime, idle_s: int, touch_interval_s: int
) -> Principal | None:
    """The live session for ``digest``, extending its idle expiry; None if none.

    Live means: not revoked, idle and absolute expiry after ``now``, account
    active. Activity is written at most every ``touch_interval_s`` seconds, and a
    clock that jumps backwards never moves an expiry backwards nor extends it.
    """
    row = await conn.fetchrow(_LIVE_SESSION, digest, now, float(idle_s), float(touch_interval_s))
    if row is None:
        return None
    return Principal(
        session_id=row[0],
        account_id=row[1],
        org_id=row[2],
        role=row[3],
        mfa_satisfied=row[4],
        absolute_expires_at=row[5],
        email=row[6],
        display_name=row[7],
        mfa_enabled=row[8],
        account_created_at=row[9],
    )


async def revoke_session(
    conn: asyncpg.Connection, session_id: uuid.UUID, reason: str, now: dt.datetime
) -> None:
    """Revoke one session."""
    await conn.execute(
        "UPDATE sessions SET revoked_at = $2, revoked_reason = $3 WHERE id = $1 AND revoked_at IS NULL",
        session_id,
        now,
        reason,
    )


async def revoke_account_sessions(
    conn: asyncpg.Connection,
    account_id: uuid.UUID,
    reason: str,
    now: dt.datetime,
    *,
    keep: uuid.UUID | None = None,
) -> int:
    """Revoke every live session of an account (except ``keep``); returns how many."""
    result = await conn.execute(
        """
        UPDATE sessions SET revoked_at = $2, revoked_reason = $3
        WHERE account_id = $1 AND revoked_at IS NULL AND id IS DISTINCT FROM $4
        """,
        account_id,
        now,
        reason,
        keep,
    )
    return int(result.split()[-1])


async def set_password_hash(
    conn: asyncpg.Connection, account_id: uuid.UUID, new_hash: str, now: dt.datetime
) -> None:
    """Store a new hash (a password change or a parameter upgrade)."""
    await conn.execute(
        "UPDATE accounts SET password_hash = $2, password_changed_at = $3 WHERE id = $1",
        account_id,
        new_hash,
        now,
    )


async def rehash_password(conn: asyncpg.Connection, account_id: uuid.UUID, new_hash: str) -> None:
    """Replace a hash made with old parameters (the password itself is unchanged)."""
    await conn.execute("UPDATE accounts SET password_hash = $2 WHERE id = $1", account_id, new_hash)


async def set_totp_pending(conn: asyncpg.Connection, account_id: uuid.UUID, sealed: bytes) -> None:
    """Store a TOTP seed awaiting confirmation."""
    await conn.execute("UPDATE accounts SET totp_pending_sealed = $2 WHERE id = $1", account_id, sealed)


async def enable_totp(
    conn: asyncpg.Connection, account_id: uuid.UUID, sealed: bytes, step: int, now: dt.datetime
) -> None:
    """Make the pending seed the account's second factor."""
    await conn.execute(
        """
        UPDATE accounts SET totp_secret_sealed = $2, totp_pending_sealed = NULL,
               totp_enabled_at = $4, totp_last_step = $3
        WHERE id = $1
        """,
        account_id,
        sealed,
        step,
        now,
    )


async def record_totp_step(conn: asyncpg.Connection, account_id: uuid.UUID, step: int) -> bool:
    """Mark ``step`` used; False if it (or a later one) was used already (a replay)."""
    result = await conn.execute(
        """
        UPDATE accounts SET totp_last_step = $2
        WHERE id = $1 AND (totp_last_step IS NULL OR totp_last_step < $2)
        """,
        account_id,
        step,
    )
    return result.endswith(" 1")


async def mark_session_mfa(conn: asyncpg.Connection, session_id: uuid.UUID) -> None:
    """The session has now passed a second factor."""
    await conn.execute("UPDATE sessions SET mfa_satisfied = true WHERE id = $1", session_id)


async def replace_recovery_codes(
    conn: asyncpg.Connection, account_id: uuid.UUID, digests: list[bytes], now: dt.datetime
) -> None:
    """Replace an account's recovery codes."""
    await conn.execute("DELETE FROM recovery_codes WHERE account_id = $1", account_id)
    await conn.executemany(
        "INSERT INTO recovery_codes (account_id, code_digest, created_at) VALUES ($1, $2, $3)",
        [(account_id, digest, now) for digest in digests],
    )


async def consume_recovery_code(
    conn: asyncpg.Connection, account_id: uuid.UUID, digest: bytes, now: dt.datetime
) -> bool:
    """Use a recovery code once; False if unknown or already used."""
    result = await conn.execute(
        """
        UPDATE recovery_codes SET used_at = $3
        WHERE account_id = $1 AND code_digest = $2 AND used_at IS NULL
        """,
        account_id,
        digest,
        now,
    )
    return result.endswith(" 1")

"""The asyncpg pool: one per process, created in the app's lifespan."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import cast

import asyncpg
import structlog

from backend.db.tenancy import tenant_transaction
from backend.errors import UnavailableError
from backend.settings import Settings

__all__ = ["CLIENT_GRACE_S", "Pool", "command_timeout_s", "connection", "create_pool", "transaction"]

Pool = asyncpg.Pool

_log = structlog.get_logger("confide.db")


#: Added to the statement timeout for the client-side bound on every database wait.
CLIENT_GRACE_S = 2.0


def command_timeout_s(settings: Settings) -> float:
    """How long this side waits for any one database answer (a query, a cancel, a rollback)."""
    return settings.db_statement_timeout_ms / 1000 + CLIENT_GRACE_S


async def create_pool(settings: Settings, dsn: str) -> asyncpg.Pool:
    """Open the pool with the session settings every connection needs."""
    pool = await asyncpg.create_pool(
        dsn,
        min_size=settings.db_pool_min,
        max_size=settings.db_pool_max,
        timeout=settings.db_connect_timeout_s,
        # The server's statement_timeout bounds slow queries. A stalled or black-holed
        # network is bounded only on this side: without a client timeout, a query, the
        # cancel request that follows a cancelled one, and the ROLLBACK after it would
        # each wait for ever, holding the request past its deadline and the pool slot for
        # good (tests/faults/test_database_network.py). The grace lets the server's own
        # timeout answer first whenever the server is reachable. Costs one timer per query.
        command_timeout=command_timeout_s(settings),
        max_inactive_connection_lifetime=300,
        reset=_keep_session,
        server_settings={
            "application_name": "confide",
            "statement_timeout": str(settings.db_statement_timeout_ms),
            "lock_timeout": str(min(settings.db_statement_timeout_ms, 3_000)),
            "idle_in_transaction_session_timeout": str(settings.db_statement_timeout_ms * 4),
            "timezone": "UTC",
        },
    )
    if pool is None:  # pragma: no cover -- create_pool returns None only when awaited lazily
        raise UnavailableError
    return pool


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Skip asyncpg's default per-release reset query (a round trip on every request).

    asyncpg still rolls back an open transaction and drops listeners on release. The
    service never changes session state on pooled connections: settings are applied
    per transaction (``SET LOCAL``/``set_config(..., true)``; the organization that
    row-level security reads among them, see :mod:`backend.db.tenancy`), advisory
    locks and LISTEN use dedicated connections. So there is nothing left to reset.
    """
    del conn


@asynccontextmanager
async def connection(pool: asyncpg.Pool, acquire_timeout: float) -> AsyncIterator[asyncpg.Connection]:
    """Acquire a connection, turning a long wait into :class:`UnavailableError`."""
    try:
        async with asyncio.timeout(acquire_timeout):
            conn = await pool.acquire()
    except TimeoutError as exc:
        raise UnavailableError from exc
    try:
        # The pool hands out a proxy that behaves as the Connection it wraps.
        yield cast(asyncpg.Connection, conn)
    finally:
        try:
            await asyncio.shield(pool.release(conn))
        except asyncpg.InternalClientError:
            # The connection was lost (the server shut down or crashed) between asyncpg's
            # release check and the release itself: asyncpg already put it back. Raising
            # here would replace the error that matters (a 503) with an internal one (a
            # 500), and end the audit integrator's loop (tests/faults/test_database_down.py).
            _log.warning("db_release_after_loss")


@asynccontextmanager
async def transaction(
    pool: asyncpg.Pool, acquire_timeout: float, *, org_id: uuid.UUID, readonly: bool = False
) -> AsyncIterator[asyncpg.Connection]:
    """A connection inside one transaction for ``org_id``: commit on success, roll back on error.

    See :func:`backend.db.tenancy.tenant_transaction`.
    """
    async with connection(pool, acquire_timeout) as conn, tenant_transaction(conn, org_id, readonly=readonly):
        yield conn

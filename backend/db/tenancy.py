"""Which organization a transaction works for: the setting row-level security reads.

Migration 0013 puts a policy on every organization-owned table: a row is visible and
writable only when its ``org_id`` equals the transaction-local setting
``confide.org_id`` (the application role has no ``BYPASSRLS``; the table owner is not
subject to the policies). A transaction without the setting sees no such row at all, so
a query that forgot its organization filter fails closed. See
``docs/decisions/0013-row-level-security.md``.

Two ways in, both one simple-protocol round trip, the same one ``BEGIN`` costs anyway::

    async with tenant_transaction(conn, principal.org_id):   # BEGIN; set_config(org, ..., true)
        ...
    async with system_transaction(conn):                     # BEGIN; set_config(scope, 'system', true)
        ...  # cross-organization jobs only: retention, consent expiry, erasure, the CLI

Inside either, ``conn.transaction()`` (and a nested scope of the same kind) becomes a
savepoint, as with asyncpg's own transactions; nesting a different organization or
scope is a bug and raises :class:`TenancyError`. The settings are transaction-local
(``set_config(..., true)``), so nothing outlives the transaction on a pooled connection
(the pool skips asyncpg's reset query, see :mod:`backend.db.pool`).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Final, Literal

import asyncpg
from asyncpg.transaction import Transaction, TransactionState

__all__ = [
    "ORG_SETTING",
    "SCOPE_SETTING",
    "Isolation",
    "TenancyError",
    "system_transaction",
    "tenant_transaction",
]

#: The transaction-local setting the policies compare ``org_id`` with.
ORG_SETTING: Final = "confide.org_id"
#: Set to ``system`` by :func:`system_transaction`: the policies then admit every row.
SCOPE_SETTING: Final = "confide.scope"

Isolation = Literal["read_committed", "repeatable_read", "serializable"]
_ISOLATION_SQL: Final[dict[str, str]] = {
    "read_committed": " ISOLATION LEVEL READ COMMITTED",
    "repeatable_read": " ISOLATION LEVEL REPEATABLE READ",
    "serializable": " ISOLATION LEVEL SERIALIZABLE",
}
_SYSTEM: Final = "system"


class TenancyError(RuntimeError):
    """A transaction scope used wrongly: a bug in the caller, never a request's fault."""


class _ScopedTransaction(Transaction):
    """asyncpg's top-level transaction, begun together with its scope setting.

    Only :meth:`start` differs from asyncpg's: the ``BEGIN`` carries the
    ``set_config`` in the same query string (simple protocol, one round trip).
    Commit, rollback, savepoints nested with ``conn.transaction()`` and the pool's
    handling of an open transaction on release are asyncpg's own.
    """

    __slots__ = ("_begin", "scope")

    def __init__(
        self,
        conn: asyncpg.Connection,
        scope: uuid.UUID | str,
        begin: str,
        isolation: Isolation | None,
        readonly: bool,
    ) -> None:
        super().__init__(conn, isolation, readonly, False)
        self.scope = scope
        self._begin = begin

    async def start(self) -> None:
        """Begin the transaction and set the scope in one query."""
        con: Any = self._connection  # type: ignore[attr-defined]  # asyncpg's ConnectionResource
        if con._top_xact is not None or con.is_in_transaction():  # pragma: no cover -- checked by the caller
            raise TenancyError("a scoped transaction must be the outermost one")
        # What asyncpg's Transaction.start records for a top-level transaction.
        con._top_xact = self
        try:
            await con.execute(self._begin)
        except BaseException:
            self._state = TransactionState.FAILED
            if not con.is_in_transaction():
                con._top_xact = None
            raise
        self._state = TransactionState.STARTED


def _raw(conn: asyncpg.Connection) -> Any:
    """The connection behind a pool's proxy (asyncpg keeps transaction state there)."""
    return getattr(conn, "_con", conn)  # PoolConnectionProxy._con, else the connection itself


def _begin(isolation: Isolation | None, readonly: bool, setting: str, value: str) -> str:
    sql = "BEGIN" + (_ISOLATION_SQL[isolation] if isolation else "") + (" READ ONLY" if readonly else "")
    # Both values are ours (a uuid.UUID's canonical text, or a constant): nothing to quote.
    return f"{sql}; SELECT set_config('{setting}', '{value}', true)"


@asynccontextmanager
async def _scoped(
    conn: asyncpg.Connection,
    scope: uuid.UUID | str,
    begin: str,
    isolation: Isolation | None,
    readonly: bool,
) -> AsyncIterator[asyncpg.Connection]:
    raw = _raw(conn)
    outer = raw._top_xact
    if outer is not None or raw.is_in_transaction():
        if not isinstance(outer, _ScopedTransaction) or outer.scope != scope:
            raise TenancyError("a transaction scope nested in another scope (or in an unscoped transaction)")
        async with conn.transaction(isolation=isolation):  # a savepoint in the same scope
            yield conn
        return
    async with _ScopedTransaction(raw, scope, begin, isolation, readonly):
        yield conn


def tenant_transaction(
    conn: asyncpg.Connection,
    org_id: uuid.UUID,
    *,
    isolation: Isolation | None = None,
    readonly: bool = False,
) -> AbstractAsyncContextManager[asyncpg.Connection]:
    """A transaction that sees and writes only ``org_id``'s rows of the protected tables.

    Commits on success, rolls back on error; nested in a transaction of the same
    organization it is a savepoint.
    """
    # A security check, so no assert. The text that goes into the SQL is rebuilt from the
    # number (asyncpg hands out its own uuid.UUID subclass): 36 characters of hex and dashes.
    if not isinstance(org_id, uuid.UUID):
        raise TypeError("org_id must be a uuid.UUID")
    canonical = uuid.UUID(int=org_id.int)
    return _scoped(
        conn, canonical, _begin(isolation, readonly, ORG_SETTING, str(canonical)), isolation, readonly
    )


def system_transaction(
    conn: asyncpg.Connection,
    *,
    isolation: Isolation | None = None,
    readonly: bool = False,
) -> AbstractAsyncContextManager[asyncpg.Connection]:
    """A transaction that sees every organization's rows: cross-organization jobs only.

    For the retention job, consent expiry, the erasure executor and the CLI, never
    for a request made on behalf of a user (use :func:`tenant_transaction`).
    """
    return _scoped(conn, _SYSTEM, _begin(isolation, readonly, SCOPE_SETTING, _SYSTEM), isolation, readonly)

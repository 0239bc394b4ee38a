"""Dependencies every route can ask for: the runtime, a connection, the caller.

Authentication itself happens in :mod:`backend.http.auth_middleware`, before any
dependency is resolved; ``principal`` only hands its result to the handler.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
from litestar import Request
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide

from backend.audit_trail import AuditContext
from backend.auth.principal import Principal
from backend.db.pool import connection
from backend.errors import AuthenticationError
from backend.http.auth_middleware import PRINCIPAL_SCOPE_KEY
from backend.http.context import current_request_id
from backend.runtime import Runtime

__all__ = [
    "AuditCtxDep",
    "DbDep",
    "PrincipalDep",
    "RuntimeDep",
    "dependencies",
    "provide_audit_context",
    "provide_db",
    "provide_principal",
    "provide_runtime",
]


RuntimeDep = NamedDependency[Runtime]
DbDep = NamedDependency[asyncpg.Connection]
PrincipalDep = NamedDependency[Principal]
AuditCtxDep = NamedDependency[AuditContext]


def provide_runtime(state: State) -> Runtime:
    """The process's :class:`Runtime`."""
    runtime: Runtime = state.runtime
    return runtime


async def provide_db(runtime: RuntimeDep) -> AsyncIterator[asyncpg.Connection]:
    """One pooled connection for the request; services open their own transactions."""
    async with connection(runtime.require_pool(), runtime.settings.db_acquire_timeout_s) as conn:
        yield conn


def provide_principal(request: Request[Any, Any, Any]) -> Principal:
    """The caller, authenticated by :class:`AuthenticationMiddleware` before injection."""
    principal = request.scope.get(PRINCIPAL_SCOPE_KEY)
    if not isinstance(principal, Principal):
        # A public route asked for a principal: refuse rather than guess.
        raise AuthenticationError
    return principal


def provide_audit_context(request: Request[Any, Any, Any], runtime: RuntimeDep) -> AuditContext:
    """Request id, source instance and client address for audit events."""
    address = request.client.host if request.client else None
    return AuditContext(
        source_instance=runtime.instance_id,
        request_id=current_request_id(),
        address=address,
        address_digest=runtime.keys.digest("address", address) if address else None,
    )


dependencies: dict[str, Provide] = {
    "runtime": Provide(provide_runtime, sync_to_thread=False),
    "db": Provide(provide_db),
    "principal": Provide(provide_principal, sync_to_thread=False),
    "audit_ctx": Provide(provide_audit_context, sync_to_thread=False),
}

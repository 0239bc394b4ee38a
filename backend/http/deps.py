"""Dependencies every route can ask for: the runtime, a connection, the caller.

A route is public only when its handler sets ``opt={"public": True}``; any other
route asks for ``principal``, which authenticates the bearer token (a test walks
the route table and fails on a route that is neither). Staff who must enrol a
second factor are held to the routes marked ``opt={"mfa_enrollment": True}``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
from litestar import Request
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide

from backend.audit_trail import AuditContext
from backend.auth.service import Principal, authenticate, mfa_required_for
from backend.auth.tokens import parse_bearer
from backend.db.pool import connection
from backend.errors import MfaEnrollmentRequiredError
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


async def provide_principal(request: Request[Any, Any, Any], runtime: RuntimeDep, db: DbDep) -> Principal:
    """The authenticated caller, or a 401 problem."""
    principal = await authenticate(runtime, db, parse_bearer(request.headers.get("authorization")))
    if (
        not principal.mfa_satisfied
        and mfa_required_for(runtime, principal.role)
        and not request.route_handler.opt.get("mfa_enrollment", False)
    ):
        raise MfaEnrollmentRequiredError
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
    "principal": Provide(provide_principal),
    "audit_ctx": Provide(provide_audit_context, sync_to_thread=False),
}

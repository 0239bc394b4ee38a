"""Authentication before anything else runs: a route is public only if it says so.

Runs after routing (so it knows the handler) and before dependency injection, on
its own short-lived connection: one statement checks the token, refreshes the
idle timer and loads the account. A route that does not set
``opt={"public": True}`` never runs for an unauthenticated caller, whatever its
parameters; staff who must enrol a second factor reach only the routes marked
``opt={"mfa_enrollment": True}``.
"""

from __future__ import annotations

from typing import Any

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Receive, Scope, Send

from backend.auth.service import authenticate, mfa_required_for
from backend.auth.tokens import parse_bearer
from backend.db.pool import connection
from backend.errors import MfaEnrollmentRequiredError
from backend.http.context import extend_deadline
from backend.runtime import Runtime

__all__ = ["PRINCIPAL_SCOPE_KEY", "AuthenticationMiddleware"]

PRINCIPAL_SCOPE_KEY = "confide.principal"


class AuthenticationMiddleware:
    """Resolve the bearer token into a principal stored in the ASGI scope."""

    def __init__(self, app: ASGIApp, public_prefixes: tuple[str, ...] = ("/schema",)) -> None:
        self.app = app
        # The API description (OpenAPI document and its viewer) is public; it holds no data.
        self.public_prefixes = public_prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Authenticate unless the route is public, then continue."""
        handler: Any = scope.get("route_handler")
        if (
            scope["type"] == ScopeType.HTTP
            and handler is not None
            and not handler.opt.get("public", False)
            and not scope["path"].startswith(self.public_prefixes)
        ):
            runtime: Runtime = scope["litestar_app"].state.runtime
            token = parse_bearer(_header(scope, b"authorization"))
            async with connection(runtime.require_pool(), runtime.settings.db_acquire_timeout_s) as conn:
                principal = await authenticate(runtime, conn, token)
            if (
                not principal.mfa_satisfied
                and mfa_required_for(runtime, principal.role)
                and not handler.opt.get("mfa_enrollment", False)
            ):
                raise MfaEnrollmentRequiredError
            scope[PRINCIPAL_SCOPE_KEY] = principal  # type: ignore[literal-required]
        if handler is not None and (seconds := handler.opt.get("deadline_s")):
            # Routes that stream a large body in (uploads) declare a longer deadline.
            extend_deadline(float(seconds))
        await self.app(scope, receive, send)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return bytes(value).decode("latin-1")
    return None

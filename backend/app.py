"""The application factory: ``create_app(settings)``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.config.cors import CORSConfig
from litestar.datastructures import State
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme

from backend.accounts.controller import AccountsController
from backend.attachments.controller import AttachmentsController
from backend.audit_trail.controller import AuditController, DisclosuresController
from backend.audit_trail.integrator import Integrator
from backend.audit_trail.log_key import log_signer
from backend.auth.controller import AuthController
from backend.auth.passwords import PasswordService
from backend.clients.controller import ClientsController
from backend.clock import Clock, SystemClock
from backend.consent.controller import ConsentController, EmergencyAccessController
from backend.db.database import resolve_database_url
from backend.db.pool import create_pool
from backend.erasure.controller import ErasureRequestsController, MyErasureRequestsController
from backend.health.controller import BenchController, HealthController
from backend.http.auth_middleware import AuthenticationMiddleware
from backend.http.deps import dependencies
from backend.http.middleware import RequestContextMiddleware
from backend.http.openapi_problems import document_problems
from backend.http.openapi_schema import WireStructSchemaPlugin
from backend.http.problems import exception_handlers
from backend.http.rate_limit import RateLimiter, RateLimitMiddleware
from backend.key_log.controller import KeyLogController
from backend.key_log.integrator import catch_up as catch_up_key_log
from backend.key_log.signer import key_log_signer
from backend.keys.controller import KeysController
from backend.messaging.controller import ConversationsController
from backend.notes.controller import NotesController
from backend.realtime.controller import EventsController
from backend.realtime.hub import Hub
from backend.retention.controller import LegalHoldsController, RetentionController
from backend.retention.scheduler import RetentionScheduler
from backend.runtime import Runtime
from backend.server_keys import ServerKeys
from backend.settings import Settings, load_settings
from backend.subjects.controller import SubjectsController
from backend.telemetry import configure_logging, configure_tracing

__all__ = ["API_VERSION", "cors_config", "create_app", "create_app_from_env", "openapi_config"]

API_VERSION = "0.1.0"

ROUTE_HANDLERS = [
    HealthController,
    AuthController,
    AccountsController,
    KeysController,
    KeyLogController,
    AuditController,
    DisclosuresController,
    ConsentController,
    EmergencyAccessController,
    RetentionController,
    LegalHoldsController,
    MyErasureRequestsController,
    ErasureRequestsController,
    ClientsController,
    ConversationsController,
    NotesController,
    AttachmentsController,
    EventsController,
    SubjectsController,
]


def openapi_config() -> OpenAPIConfig:
    """The OpenAPI 3.1 document's metadata; served at ``/schema``."""
    return OpenAPIConfig(
        title="Confide API",
        version=API_VERSION,
        description=(
            "End-to-end encrypted clinical messaging and records. Errors are RFC 9457 "
            "problem documents (application/problem+json) with a stable `type` URI."
        ),
        path="/schema",
        render_plugins=[ScalarRenderPlugin()],
        components=Components(
            security_schemes={
                "bearer": SecurityScheme(
                    type="http", scheme="bearer", description="Session token from /v1/auth/login"
                )
            }
        ),
        security=[{"bearer": []}],
        use_handler_docstrings=True,
    )


def cors_config(settings: Settings) -> CORSConfig | None:
    """CORS for the configured browser origins only; ``None`` (no CORS headers) when there are none.

    Bearer tokens travel in ``Authorization``, never in cookies, so credentials stay off.
    """
    if not settings.cors_allowed_origins:
        return None
    return CORSConfig(
        allow_origins=list(settings.cors_allowed_origins),
        allow_methods=["GET", "POST", "PUT", "DELETE"],
        allow_headers=["authorization", "content-type", "idempotency-key", "if-match", "last-event-id"],
        allow_credentials=False,
        expose_headers=["etag", "retry-after", "x-request-id", "x-audit-tree-size", "content-disposition"],
        max_age=600,
    )


def create_app(
    settings: Settings, *, clock: Clock | None = None, database_url: str | None = None
) -> Litestar:
    """Build the ASGI application; the pool opens in its lifespan."""
    configure_logging(settings.log_level, settings.log_format)
    configure_tracing(
        settings.otel_exporter,
        service_name=settings.otel_service_name,
        endpoint=settings.otel_endpoint,
        sample_ratio=settings.effective_sample_ratio,
    )
    runtime = Runtime(
        settings=settings,
        clock=clock or SystemClock(),
        passwords=PasswordService(settings),
        keys=ServerKeys(settings.server_key()),
        instance_id=settings.effective_instance_id,
    )
    log_signer(settings)  # a missing or malformed audit log key stops start-up

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        dsn = database_url or resolve_database_url(settings)
        runtime.pool = await create_pool(settings, dsn)
        runtime.hub = hub = Hub(dsn, poll_s=min(5.0, settings.events_keepalive_s))
        hub.start()
        await catch_up_key_log(runtime.pool, key_log_signer(settings), runtime.clock)
        integrator: Integrator | None = None
        if settings.audit_integrator:
            integrator = Integrator(
                runtime.pool,
                log_signer(settings),
                runtime.clock,
                batch=settings.audit_integrate_batch,
                interval_s=settings.audit_integrate_interval_s,
            )
            integrator.start()
        retention: RetentionScheduler | None = None
        if settings.retention_scheduler:
            retention = RetentionScheduler(runtime, dsn)
            retention.start()
        try:
            yield
        finally:
            if retention is not None:
                await retention.stop()
            if integrator is not None:
                await integrator.stop()
            await hub.stop()
            await runtime.pool.close()
            runtime.pool = None
            runtime.passwords.close()

    app = Litestar(
        route_handlers=[*ROUTE_HANDLERS, *([BenchController] if settings.bench_routes else [])],
        dependencies=dependencies,
        exception_handlers=exception_handlers,
        lifespan=[lifespan],
        openapi_config=openapi_config(),
        cors_config=cors_config(settings),
        request_max_body_size=settings.max_body_bytes,
        # The rate limit runs first, so a refused request costs no database look-up.
        middleware=[
            DefineMiddleware(RateLimitMiddleware, limiter=RateLimiter.from_settings(settings)),
            AuthenticationMiddleware,
        ],
        plugins=[WireStructSchemaPlugin()],
        state=State({"runtime": runtime}),
        debug=False,
        # Logging is ours (structlog with an allow-list); Litestar's default config would
        # attach its own handlers and print third-party records unredacted.
        logging_config=None,
    )
    document_problems(app)
    # Outermost layer: request ids, spans, access log and security headers for every
    # response, including the router's own 404 and 405 answers.
    app.asgi_handler = RequestContextMiddleware(
        app.asgi_handler,
        request_timeout_s=settings.request_timeout_s,
        hsts_max_age_s=settings.hsts_max_age_s if settings.behind_tls else None,
        refuse_plain_http=settings.behind_tls,
    )
    return app


def create_app_from_env() -> Litestar:
    """Factory for ASGI servers: settings from ``CONFIDE_*``."""
    return create_app(load_settings())

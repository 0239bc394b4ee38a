"""The outermost ASGI layer: request id, trace span, access log, security headers.

It wraps Litestar's exception handling and routing, so every answer, a 404 from
the router included, carries the request id and is logged once. Spans and log
lines name the *route template* (``/v1/invites/{code}/redeem``), never the raw
path or query string, which may carry invite codes or ids of clinical objects.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from typing import Any

import msgspec
import structlog
from litestar.types import ASGIApp, Message, Receive, ReceiveMessage, Scope, Send
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from backend.http.context import request_deadline_var, request_id_var

__all__ = ["RequestContextMiddleware"]

_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{7,63}$")
_log = structlog.get_logger("confide.access")
_tracer = trace.get_tracer("confide.http")

_SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"cache-control", b"no-store"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
    (b"cross-origin-resource-policy", b"same-origin"),
)
# The interactive API docs load their own scripts and styles.
_DOCS_CSP = (
    b"default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net "
    b"https://unpkg.com; style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net "
    b"https://unpkg.com https://fonts.googleapis.com; img-src 'self' data: https:; "
    b"font-src 'self' https://fonts.gstatic.com; frame-ancestors 'none'"
)


_HTTPS_ONLY = (
    "This API answers only over HTTPS and does not redirect. Use the https:// address, and treat any "
    "token sent in clear as exposed."
)


class RequestContextMiddleware:
    """Assign a request id, open a span, log the outcome, add security headers."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        access_log: bool = True,
        request_timeout_s: float = 30.0,
        hsts_max_age_s: int | None = None,
        refuse_plain_http: bool = False,
    ) -> None:
        """Wrap ``app``.

        Args:
            app: The application (Litestar's ASGI handler, CORS included).
            access_log: Log one line per request.
            request_timeout_s: Deadline for the response to start.
            hsts_max_age_s: Send ``Strict-Transport-Security`` with this ``max-age``; ``None``
                when clients may reach the service without TLS (the header would be wrong there).
            refuse_plain_http: Answer 403 to a request its proxy received over plain HTTP
                (``X-Forwarded-Proto: http``) instead of serving or redirecting it: a redirect
                would teach clients that the plain request worked, after its token had already
                crossed the network in clear. Requests without the header (probes from inside
                the cluster) are served.
        """
        self.app = app
        self.access_log = access_log
        self.request_timeout_s = request_timeout_s
        self.refuse_plain_http = refuse_plain_http
        self.security_headers = _SECURITY_HEADERS
        if hsts_max_age_s is not None:
            hsts = (b"strict-transport-security", f"max-age={int(hsts_max_age_s)}".encode("ascii"))
            self.security_headers = (*_SECURITY_HEADERS, hsts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection."""
        if scope["type"] not in {"http", "websocket"}:
            await self.app(scope, receive, send)
            return
        request_id = _incoming_request_id(scope) or uuid.uuid4().hex
        token = request_id_var.set(request_id)
        method = str(scope.get("method", "WS"))
        started = time.perf_counter()
        status_holder: dict[str, int] = {"status": 500, "started": 0}
        is_docs = scope["path"].startswith("/schema")
        deadline = asyncio.timeout(self.request_timeout_s)
        deadline_token = request_deadline_var.set(deadline)

        body = _BodyWatch(scope, receive)

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = int(message["status"])
                status_holder["started"] = 1
                # The deadline bounds the work before the answer starts; a streamed body
                # (the audit export) is bounded by its route and the database timeouts.
                # Once expired (the timeout answer below), the deadline can no longer be moved.
                if not deadline.expired():
                    deadline.reschedule(None)
                message["headers"] = _response_headers(
                    message.get("headers", []), request_id, self.security_headers, is_docs=is_docs
                )
            await send(message)

        with _tracer.start_as_current_span(f"{method} request", kind=SpanKind.SERVER) as span:
            ctx = span.get_span_context()
            trace_id = format(ctx.trace_id, "032x") if ctx.is_valid else None
            structlog.contextvars.bind_contextvars(request_id=request_id, trace_id=trace_id)
            try:
                async with deadline:
                    if self.refuse_plain_http and _forwarded_over_plain_http(scope):
                        await _send_problem(
                            send_wrapper, 403, "https-required", "HTTPS required", _HTTPS_ONLY
                        )
                    else:
                        await self.app(scope, body.receive, send_wrapper)
            except TimeoutError:
                if status_holder["started"]:
                    raise
                # A body still arriving at the deadline is the client's delay (slow-loris
                # style): 408 and close. Otherwise the server was too slow: 503, retry.
                await _send_timeout(send_wrapper, slow_body=body.incomplete)
            finally:
                route = _route_template(scope)
                status = status_holder["status"]
                span.update_name(f"{method} {route}")
                span.set_attribute("http.request.method", method)
                span.set_attribute("http.route", route)
                span.set_attribute("http.response.status_code", status)
                span.set_attribute("confide.request_id", request_id)
                if status >= 500:
                    span.set_status(Status(StatusCode.ERROR))
                if self.access_log:
                    _log.info(
                        "request",
                        method=method,
                        route=route,
                        status=status,
                        duration_ms=round((time.perf_counter() - started) * 1000, 2),
                    )
                structlog.contextvars.unbind_contextvars("request_id", "trace_id")
                request_id_var.reset(token)
                request_deadline_var.reset(deadline_token)


class _BodyWatch:
    """Passes ``receive`` through; notes whether the deadline caught the app waiting for body bytes."""

    def __init__(self, scope: Scope, receive: Receive) -> None:
        self._receive = receive
        self._done = False
        self._cancelled_waiting = False
        self._expected = any(
            name == b"transfer-encoding" or (name == b"content-length" and value.strip() not in {b"", b"0"})
            for name, value in scope.get("headers", [])
        )

    async def receive(self) -> ReceiveMessage:
        try:
            message = await self._receive()
        except asyncio.CancelledError:
            self._cancelled_waiting = True
            raise
        if message["type"] == "http.request" and not message.get("more_body", False):
            self._done = True
        return message

    @property
    def incomplete(self) -> bool:
        """An announced body (a length above zero, or chunks) was still being waited for.

        Only then is the delay the client's: a body the app had not asked for yet (it was
        waiting for the database, say) is no fault of the client's (tests/faults).
        """
        return self._expected and not self._done and self._cancelled_waiting


def _forwarded_over_plain_http(scope: Scope) -> bool:
    for name, value in scope.get("headers", []):
        if name == b"x-forwarded-proto":
            # A proxy that appends puts its own value last (a value the client sent stays to
            # its left); a proxy that replaces leaves only its own.
            return bytes(value).rsplit(b",", 1)[-1].strip().lower() == b"http"
    return False


async def _send_timeout(send: Send, *, slow_body: bool = False) -> None:
    if slow_body:
        await _send_problem(send, 408, "request-timeout", "Request timeout",
                            "The request body arrived too slowly.", [(b"connection", b"close")])  # fmt: skip
    else:
        await _send_problem(send, 503, "unavailable", "Service unavailable",
                            "The request took too long and was abandoned. Try again shortly.",
                            [(b"retry-after", b"2")])  # fmt: skip


async def _send_problem(
    send: Send,
    status: int,
    slug: str,
    title: str,
    detail: str,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """A problem document written straight to ASGI (outside Litestar's exception handling)."""
    body = msgspec.json.encode(
        {
            "type": f"urn:confide:problem:{slug}",
            "title": title,
            "status": status,
            "detail": detail,
            "request_id": request_id_var.get(),
        }
    )
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(body)).encode()),
                *(extra or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


def _response_headers(
    given: Any, request_id: str, security: tuple[tuple[bytes, bytes], ...], *, is_docs: bool
) -> list[tuple[bytes, bytes]]:
    """The response's headers plus the request id and the security headers it lacks."""
    headers: list[tuple[bytes, bytes]] = list(given)
    present = {name.lower() for name, _ in headers}
    headers.append((b"x-request-id", request_id.encode("ascii")))
    for name, value in security:
        if name in present:
            continue
        if name == b"content-security-policy" and is_docs:
            headers.append((name, _DOCS_CSP))
        else:
            headers.append((name, value))
    return headers


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            text = value.decode("latin-1")
            return text if _REQUEST_ID_RE.match(text) else None
    return None


def _route_template(scope: Scope) -> str:
    template: Any = scope.get("path_template")
    if isinstance(template, str) and template:
        return template
    return "(unmatched)"

"""Route inventory, OpenAPI drift and the structure of answers every route shares."""

from __future__ import annotations

import json
import re

from litestar import Litestar
from litestar.handlers import HTTPRouteHandler
from litestar.testing import AsyncTestClient

from backend.openapi_doc import render_openapi
from tests.conftest import ROOT

# Every public route is named here; a new route must authenticate or be added on purpose.
PUBLIC_ROUTES = {
    ("POST", "/v1/auth/login"),
    ("POST", "/v1/invites/{code:str}/redeem"),
    ("GET", "/health/live"),
    ("GET", "/health/ready"),
    ("GET", "/v1/audit/log-key"),
    ("GET", "/v1/key-log/key"),
    ("GET", "/v1/consents/receipt-key"),  # the audit log's public key: what verifiers must trust
    # An erasure's outcome, for whoever holds its receipt token (the account cannot log in any more).
    ("GET", "/v1/erasure-requests/{request_id:uuid}/outcome"),
}


def _handlers(app: Litestar) -> list[tuple[str, str, HTTPRouteHandler]]:
    found: list[tuple[str, str, HTTPRouteHandler]] = []
    for route in app.routes:
        if route.path.startswith("/schema"):
            continue
        for handler in getattr(route, "route_handlers", []):
            if isinstance(handler, HTTPRouteHandler):
                methods = sorted(str(m) for m in handler.http_methods - {"HEAD", "OPTIONS"})
                found.extend((method, route.path, handler) for method in methods)
    return found


async def test_every_route_authenticates_or_is_listed_public(
    app: Litestar, client: AsyncTestClient[Litestar]
) -> None:
    """A-01: every route not on the public allow-list answers 401 to a caller without a token."""
    seen_public = set()
    for method, path, handler in _handlers(app):
        if handler.opt.get("public"):
            assert (method, path) in PUBLIC_ROUTES, f"unexpected public route {method} {path}"
            assert "principal" not in handler.parsed_fn_signature.parameters
            seen_public.add((method, path))
            continue
        concrete = re.sub(r"\{[^}]+:uuid\}", "00000000-0000-4000-8000-000000000000", path)
        concrete = re.sub(r"\{[^}]+:int\}", "1", concrete)
        concrete = re.sub(r"\{[^}]+\}", "x", concrete)
        for headers in ({}, {"Authorization": "Bearer cfd_" + "B" * 43}):
            response = await client.request(method, concrete, headers=headers, json={})
            assert response.status_code == 401, (
                f"{method} {path} answered {response.status_code} without a session"
            )
    assert seen_public == PUBLIC_ROUTES


def test_every_route_has_an_operation_id(app: Litestar) -> None:
    for method, path, handler in _handlers(app):
        assert handler.operation_id, f"{method} {path} has no operation_id"


def test_committed_openapi_matches_the_app() -> None:
    committed = (ROOT / "openapi" / "openapi.json").read_text(encoding="utf-8")
    current = render_openapi()
    assert json.loads(committed) == json.loads(current), "openapi/openapi.json drifted: run `make openapi`"
    assert committed == current


async def test_schema_is_served(client: AsyncTestClient[Litestar]) -> None:
    response = await client.get("/schema/openapi.json")
    assert response.status_code == 200
    assert response.json()["openapi"].startswith("3.1")


async def test_security_headers_and_request_id(client: AsyncTestClient[Litestar]) -> None:
    response = await client.get("/health/live", headers={"X-Request-ID": "trace-me-12345"})
    assert response.headers["x-request-id"] == "trace-me-12345"
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert "default-src 'none'" in response.headers["content-security-policy"]
    hostile = await client.get("/health/live", headers={"X-Request-ID": "bad\x1b[31mid with spaces"})
    assert hostile.headers["x-request-id"] != "bad\x1b[31mid with spaces"


def test_operations_guide_lists_every_setting() -> None:
    from backend.settings_doc import render_settings_reference  # noqa: PLC0415

    text = (ROOT / "docs" / "OPERATIONS.md").read_text(encoding="utf-8")
    current = text.split("<!-- settings:begin -->\n", 1)[1].split("<!-- settings:end -->", 1)[0]
    assert current == render_settings_reference(), "docs/OPERATIONS.md is stale: regenerate its table"


async def test_a_route_may_extend_its_deadline() -> None:
    """A declared ``deadline_s`` pushes the request deadline out (long uploads); others keep theirs."""
    import asyncio  # noqa: PLC0415

    from backend.http.context import extend_deadline, request_deadline_var  # noqa: PLC0415

    extend_deadline(5)  # no deadline in force: nothing to do
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(1) as deadline:
        token = request_deadline_var.set(deadline)
        try:
            extend_deadline(600)
            when = deadline.when()
            assert when is not None
            assert when > loop.time() + 500
            await asyncio.sleep(0)
        finally:
            request_deadline_var.reset(token)

"""Security headers on every answer, HSTS only behind TLS, CORS only for configured origins."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from backend.app import create_app
from backend.clock import FrozenClock
from tests.conftest import make_settings
from tests.helpers import problem

APP_ORIGIN = "https://app.clinic.example"
STRICT_HEADERS = {
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "content-security-policy": "default-src 'none'; frame-ancestors 'none'",
}


async def _client(database_url: str, **overrides: Any) -> AsyncIterator[AsyncTestClient[Litestar]]:
    app = create_app(make_settings(**overrides), clock=FrozenClock(), database_url=database_url)
    async with AsyncTestClient(app=app, base_url="http://127.0.0.1") as client:
        yield client


@pytest.fixture
async def plain(database_url: str) -> AsyncIterator[AsyncTestClient[Litestar]]:
    """The defaults: no TLS declared, no CORS origins."""
    async for client in _client(database_url):
        yield client


@pytest.fixture
async def behind_tls(database_url: str) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async for client in _client(database_url, behind_tls=True, hsts_max_age_s=63_072_000):
        yield client


@pytest.fixture
async def with_cors(database_url: str) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async for client in _client(database_url, cors_allowed_origins=(APP_ORIGIN,)):
        yield client


def _assert_strict(headers: Any) -> None:
    for name, value in STRICT_HEADERS.items():
        assert headers.get(name) == value, name
    assert headers.get("x-request-id")


# One success, and errors from the router (404, 405), authentication (401) and validation (400).
ANSWERS = [
    ("GET", "/health/live", None, 200),
    ("GET", "/v1/no-such-route", None, 404),
    ("DELETE", "/health/live", None, 405),
    ("GET", "/v1/me", None, 401),
    ("POST", "/v1/auth/login", {"organization": 1}, 400),
]


@pytest.mark.parametrize(("method", "path", "body", "status"), ANSWERS)
async def test_strict_headers_on_success_and_error_answers(
    plain: AsyncTestClient[Litestar], method: str, path: str, body: object, status: int
) -> None:
    """Every answer, errors included, is uncacheable, unframeable and carries a deny-all CSP."""
    response = await plain.request(method, path, json=body)
    assert response.status_code == status
    _assert_strict(response.headers)


@pytest.mark.parametrize(("method", "path", "body", "status"), ANSWERS)
async def test_hsts_absent_unless_behind_tls(
    plain: AsyncTestClient[Litestar], method: str, path: str, body: object, status: int
) -> None:
    """Without ``CONFIDE_BEHIND_TLS`` the service may be reached over plain HTTP: no HSTS."""
    response = await plain.request(method, path, json=body)
    assert response.status_code == status
    assert "strict-transport-security" not in response.headers


@pytest.mark.parametrize(("method", "path", "body", "status"), ANSWERS)
async def test_hsts_present_behind_tls(
    behind_tls: AsyncTestClient[Litestar], method: str, path: str, body: object, status: int
) -> None:
    response = await behind_tls.request(method, path, json=body)
    assert response.status_code == status
    assert response.headers["strict-transport-security"] == "max-age=63072000"
    _assert_strict(response.headers)


@pytest.mark.parametrize(("method", "path", "body", "status"), ANSWERS)
async def test_plain_http_through_the_proxy_is_refused_not_redirected(
    behind_tls: AsyncTestClient[Litestar], plain: AsyncTestClient[Litestar], method: str, path: str,
    body: object, status: int,
) -> None:  # fmt: skip
    """B-10: a request the proxy got over plain HTTP is refused with 403, never redirected or served."""
    forwarded = {"X-Forwarded-Proto": "http", "Authorization": "Bearer cfd_" + "A" * 43}
    refused = await behind_tls.request(method, path, json=body, headers=forwarded)
    assert refused.status_code == 403, refused.text
    assert "location" not in refused.headers
    assert problem(refused)["type"] == "urn:confide:problem:https-required"
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.headers["strict-transport-security"] == "max-age=63072000"
    _assert_strict(refused.headers)
    # A proxy that appends: the client's own claim of https, left of the proxy's http, is refused.
    claimed = await behind_tls.request(method, path, json=body, headers={"X-Forwarded-Proto": "https, http"})
    assert claimed.status_code == 403
    # Over HTTPS, or from inside the cluster (no forwarded scheme: probes), the same request is served.
    for headers in ({"X-Forwarded-Proto": "https"}, {"X-Forwarded-Proto": "http, https"}, {}):
        assert (await behind_tls.request(method, path, json=body, headers=headers)).status_code == status
    # A service that may be reached without TLS does not refuse anything on that ground.
    assert (await plain.request(method, path, json=body, headers=forwarded)).status_code != 403


async def test_no_cors_headers_by_default(plain: AsyncTestClient[Litestar]) -> None:
    """With no configured origin, neither a preflight nor a request gets any CORS permission."""
    preflight = await plain.options(
        "/v1/me",
        headers={
            "Origin": APP_ORIGIN,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    simple = await plain.get("/health/live", headers={"Origin": APP_ORIGIN})
    for response in (preflight, simple):
        assert not [name for name in response.headers if name.lower().startswith("access-control-")]
        _assert_strict(response.headers)


async def test_cors_preflight_allowed_for_a_configured_origin(with_cors: AsyncTestClient[Litestar]) -> None:
    response = await with_cors.options(
        "/v1/conversations",
        headers={
            "Origin": APP_ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, idempotency-key",
        },
    )
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == APP_ORIGIN
    assert "origin" in response.headers["vary"].lower()
    assert "POST" in response.headers["access-control-allow-methods"]
    allowed = {h.strip() for h in response.headers["access-control-allow-headers"].lower().split(",")}
    assert {"authorization", "content-type", "idempotency-key"} <= allowed
    assert "access-control-allow-credentials" not in response.headers
    _assert_strict(response.headers)

    # The actual request from that origin may read the answer (and its request id).
    actual = await with_cors.get("/health/live", headers={"Origin": APP_ORIGIN})
    assert actual.headers["access-control-allow-origin"] == APP_ORIGIN
    assert "x-request-id" in actual.headers["access-control-expose-headers"].lower()


@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.example",
        "http://app.clinic.example",  # same host, other scheme
        "https://app.clinic.example.evil.example",  # suffix trick
        "https://app.clinic.example:8443",  # other port
        "null",
    ],
)
async def test_cors_preflight_refused_for_another_origin(
    with_cors: AsyncTestClient[Litestar], origin: str
) -> None:
    """An origin that was not configured gets no Access-Control-Allow-Origin, on preflight or request."""
    preflight = await with_cors.options(
        "/v1/me", headers={"Origin": origin, "Access-Control-Request-Method": "GET"}
    )
    assert preflight.status_code == 400
    assert "access-control-allow-origin" not in preflight.headers
    _assert_strict(preflight.headers)
    actual = await with_cors.get("/health/live", headers={"Origin": origin})
    assert actual.status_code == 200
    assert "access-control-allow-origin" not in actual.headers


async def test_cors_refuses_a_method_the_api_does_not_use(with_cors: AsyncTestClient[Litestar]) -> None:
    response = await with_cors.options(
        "/v1/me", headers={"Origin": APP_ORIGIN, "Access-Control-Request-Method": "TRACE"}
    )
    assert response.status_code == 400

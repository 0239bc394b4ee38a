"""The general rate limit over the real app: 429 problem documents, buckets per session and address.

The clinic is set up through the suite's unlimited app; the checks run through a second
app on the same database with low limits, as a second server process would be. Rates are
a thousandth of a token a second, so nothing refills while a test runs: no timing matters.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from backend.app import create_app
from backend.auth.tokens import new_token
from backend.clock import FrozenClock
from tests.conftest import PgServer, as_role, make_settings
from tests.helpers import Clinic, make_clinic, problem, runtime_of

RATE_LIMITED = "urn:confide:problem:rate-limited"
SLOW = 0.001  # tokens a second: none comes back during a test

LimitedClient = Callable[..., AbstractAsyncContextManager[AsyncTestClient[Litestar]]]


@pytest.fixture
def limited(database_url: str, pg_server: PgServer) -> LimitedClient:
    """A client of a fresh app (its own buckets) on the test's database, with the given limits."""
    url = as_role(database_url, pg_server.app_role) if pg_server.app_role else database_url

    @asynccontextmanager
    async def open_client(**limits: Any) -> AsyncIterator[AsyncTestClient[Litestar]]:
        settings = make_settings(
            rate_limit_rps=limits.get("rps", SLOW),
            rate_limit_burst=limits.get("burst", 1000),
            rate_limit_address_rps=limits.get("address_rps", SLOW),
            rate_limit_address_burst=limits.get("address_burst", 1000),
        )
        app = create_app(settings, clock=FrozenClock(), database_url=url)
        async with AsyncTestClient(app=app, base_url="http://127.0.0.1") as client:
            yield client

    return open_client


@pytest.fixture
async def clinic(client: AsyncTestClient[Litestar], app: Litestar, db: asyncpg.Connection) -> Clinic:
    return await make_clinic(client, app, db)


def _bearer(token: str | None) -> dict[str, str]:
    assert token is not None
    return {"Authorization": f"Bearer {token}"}


def _assert_rate_limited(response: Any) -> None:
    assert response.status_code == 429, response.text
    body = problem(response)
    assert body["type"] == RATE_LIMITED
    assert body["status"] == 429
    retry_after = int(response.headers["retry-after"])
    assert retry_after >= 1
    assert body["retry_after"] == retry_after
    assert response.headers["x-request-id"] == body["request_id"]


async def test_a_session_past_its_burst_gets_a_429_problem_with_retry_after(
    clinic: Clinic, client: AsyncTestClient[Litestar], limited: LimitedClient
) -> None:
    """Five requests pass, the sixth gets 429 with Retry-After; other sessions and probes are untouched."""
    async with limited(burst=5) as slow:
        patient = _bearer(clinic.client.token)
        assert [(await slow.get("/v1/me", headers=patient)).status_code for _ in range(5)] == [200] * 5
        refused = await slow.get("/v1/me", headers=patient)
        _assert_rate_limited(refused)
        # 1 token at 0.001/s: about 1000 s to wait, rounded up to whole seconds.
        assert int(refused.headers["retry-after"]) == pytest.approx(1000, abs=2)
        # Every route that needs a session draws on the same bucket.
        _assert_rate_limited(await slow.get("/v1/conversations", headers=patient))
        # Another session has its own bucket; health probes have none.
        clinician = _bearer(clinic.clinician.token)
        assert (await slow.get("/v1/me", headers=clinician)).status_code == 200
        for _ in range(20):
            assert (await slow.get("/health/live")).status_code == 200
            assert (await slow.get("/health/ready")).status_code == 200
    # The limit is per process: the suite's own app (another process, in effect) still serves it.
    assert (await client.get("/v1/me", headers=patient)).status_code == 200


async def test_requests_without_a_session_are_limited_per_address(
    clinic: Clinic, limited: LimitedClient
) -> None:
    """Login (public) draws on the address's bucket, whatever bearer header it carries; sessions do not."""
    async with limited(address_burst=3) as slow:
        account = clinic.client
        body = {"organization": account.org_slug, "email": account.email, "password": account.password}
        made_up = {"Authorization": f"Bearer {new_token()}"}
        logins = [await slow.post("/v1/auth/login", json=body, headers=made_up) for _ in range(3)]
        assert [response.status_code for response in logins] == [200] * 3
        _assert_rate_limited(await slow.post("/v1/auth/login", json=body))
        # The API description is public too; a protected route without a token is refused here
        # as well (before authentication), not with a 401.
        _assert_rate_limited(await slow.get("/schema/openapi.json"))
        _assert_rate_limited(await slow.get("/v1/me"))
        # A session from the same address keeps its own budget.
        assert (await slow.get("/v1/me", headers=_bearer(account.token))).status_code == 200


async def test_made_up_tokens_are_refused_before_lookup_once_the_address_has_failed_enough(
    clinic: Clinic, limited: LimitedClient
) -> None:
    """Spraying tokens: each failure costs the address a token; then 429 without a look-up.

    A session this process has already seen authenticate carries on from the same address.
    """
    async with limited(address_burst=3) as slow:
        known = _bearer(clinic.clinician.token)
        assert (await slow.get("/v1/me", headers=known)).status_code == 200
        statuses = [(await slow.get("/v1/me", headers=_bearer(new_token()))).status_code for _ in range(3)]
        assert statuses == [401] * 3
        _assert_rate_limited(await slow.get("/v1/me", headers=_bearer(new_token())))
        # A real but not yet seen session from the failing address waits too (it looks the same)...
        _assert_rate_limited(await slow.get("/v1/me", headers=_bearer(clinic.client.token)))
        # ...while a session that authenticated here before is not held up.
        assert (await slow.get("/v1/me", headers=known)).status_code == 200
        # Public routes use the address's other bucket, untouched by the failures.
        assert (await slow.get("/health/live")).status_code == 200
        assert (await slow.get("/v1/audit/log-key")).status_code == 200


async def test_a_revoked_session_is_forgotten_and_its_failures_count(
    clinic: Clinic, client: AsyncTestClient[Litestar], limited: LimitedClient
) -> None:
    """After logout the token fails authentication; its failures drain the address like any other."""
    async with limited(address_burst=2) as slow:
        patient = _bearer(clinic.client.token)
        assert (await slow.get("/v1/me", headers=patient)).status_code == 200
        assert (await client.post("/v1/auth/logout", headers=patient)).status_code in {200, 204}
        assert [(await slow.get("/v1/me", headers=patient)).status_code for _ in range(2)] == [401, 401]
        _assert_rate_limited(await slow.get("/v1/me", headers=patient))


async def test_the_limited_answer_names_no_token(clinic: Clinic, limited: LimitedClient) -> None:
    """Neither the problem document nor its headers carry the token that was refused."""
    async with limited(burst=1) as slow:
        token = clinic.client.token
        assert token is not None
        await slow.get("/v1/me", headers=_bearer(token))
        refused = await slow.get("/v1/me", headers=_bearer(token))
        _assert_rate_limited(refused)
        assert token not in refused.text
        assert all(token not in value for value in refused.headers.values())


async def test_a_refused_request_never_reaches_the_database(clinic: Clinic, limited: LimitedClient) -> None:
    """With the pool taken away, refused requests still get their 429: no look-up, no connection."""
    async with limited(burst=1, address_burst=1) as slow:
        patient = _bearer(clinic.client.token)
        assert (await slow.get("/v1/me", headers=patient)).status_code == 200
        assert (await slow.get("/v1/me", headers=_bearer(new_token()))).status_code == 401
        assert (await slow.get("/v1/audit/log-key")).status_code == 200
        runtime = runtime_of(slow.app)
        pool, runtime.pool = runtime.pool, None
        try:
            _assert_rate_limited(await slow.get("/v1/me", headers=patient))  # session bucket
            _assert_rate_limited(await slow.get("/v1/me", headers=_bearer(new_token())))  # failures
            _assert_rate_limited(await slow.get("/v1/audit/log-key"))  # address bucket
        finally:
            runtime.pool = pool

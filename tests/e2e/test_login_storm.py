"""A login storm on the real server: bounded answers, never long waits or 5xx (checklist L-02).

One hashing thread and a wait bound below one hash: of concurrent logins, those that
would queue past the bound get 429 problem documents with Retry-After at once, the
others log in, the health probe stays responsive, and shed logins are not counted
as failed attempts against the account.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import asyncpg
import httpx
import pytest

from tests.e2e.conftest import RunningServer

pytestmark = pytest.mark.e2e

PASSWORD = "login storm e2e admin passphrase"


async def test_concurrent_logins_past_the_wait_bound_get_429_at_once(
    start_server: Callable[..., RunningServer], database_url: str
) -> None:
    server = start_server(
        CONFIDE_HASH_WORKERS="1", CONFIDE_ARGON2_TIME_COST="6", CONFIDE_HASH_QUEUE_MAX_WAIT_S="0.001"
    )
    created = server.run_cli(
        "admin", "create", "--organization", "storm", "--email", "admin@storm.example", "--name", "A",
        "--password-stdin", stdin=PASSWORD + "\n",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    body = {"organization": "storm", "email": "admin@storm.example", "password": PASSWORD}
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
        storm = [asyncio.create_task(http.post("/v1/auth/login", json=body)) for _ in range(12)]
        live = await http.get("/health/live")
        answers = await asyncio.gather(*storm)
        assert live.status_code == 200
        statuses = sorted(a.status_code for a in answers)
        assert set(statuses) == {200, 429}, statuses
        for busy in (a for a in answers if a.status_code == 429):
            assert busy.headers["content-type"] == "application/problem+json"
            assert busy.json()["type"] == "urn:confide:problem:too-many-requests"
            assert int(busy.headers["retry-after"]) >= 1
        # Nothing stays locked, and the shed logins were not failed attempts of the account.
        assert (await http.post("/v1/auth/login", json=body)).status_code == 200
    conn = await asyncpg.connect(database_url)
    try:
        failures = await conn.fetchval(
            "SELECT count(*) FROM audit_events WHERE event_type = 'auth.login' AND outcome <> 0"
        )
        locks = await conn.fetchval("SELECT count(*) FROM login_throttle WHERE failures > 0")
    finally:
        await conn.close()
    assert failures == 0
    assert locks == 0

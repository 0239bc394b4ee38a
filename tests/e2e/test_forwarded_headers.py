"""Behind a proxy: X-Forwarded-For is believed from the configured proxies only.

The client address matters for per-address login throttling and for security
investigations (``audit_addresses``). By default the peer is the client and a forged
header changes nothing; with ``CONFIDE_FORWARDED_ALLOW_IPS`` naming the proxy (here the
loopback address the test connects from), the forwarded client is recorded instead.
"""

from __future__ import annotations

from collections.abc import Callable

import asyncpg
import httpx
import pytest

from tests.e2e.conftest import RunningServer

pytestmark = pytest.mark.e2e

PASSWORD = "forwarded e2e admin passphrase"
FORWARDED_CLIENT = "203.0.113.7"


@pytest.mark.parametrize(
    ("trusted", "recorded"),
    [("", "127.0.0.1"), ("127.0.0.1", FORWARDED_CLIENT), ("10.0.0.0/8", "127.0.0.1")],
    ids=["no-proxy-trusted", "loopback-proxy-trusted", "other-proxy-trusted"],
)
async def test_the_recorded_client_address(
    start_server: Callable[..., RunningServer], database_url: str, trusted: str, recorded: str
) -> None:
    server = start_server(CONFIDE_FORWARDED_ALLOW_IPS=trusted)
    created = server.run_cli(
        "admin", "create", "--organization", "fwd", "--email", "admin@fwd.example", "--name", "A",
        "--password-stdin", stdin=PASSWORD + "\n",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
        response = await http.post(
            "/v1/auth/login",
            json={"organization": "fwd", "email": "admin@fwd.example", "password": PASSWORD},
            headers={"X-Forwarded-For": FORWARDED_CLIENT, "X-Forwarded-Proto": "https"},
        )
    assert response.status_code == 200, response.text
    conn = await asyncpg.connect(database_url)
    try:
        addresses = {row["a"] for row in await conn.fetch("SELECT host(address) AS a FROM audit_addresses")}
    finally:
        await conn.close()
    assert addresses == {recorded}

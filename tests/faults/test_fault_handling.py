"""In-process checks of the fault handling the fault tests rely on (fast, no server process)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, cast

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from audit.note import generate_signer
from backend.audit_trail.integrator import BatchResult, Integrator
from backend.clock import FrozenClock
from backend.db.migrate import pending
from backend.db.pool import CLIENT_GRACE_S, command_timeout_s, connection
from backend.http.middleware import RequestContextMiddleware
from backend.http.problems import _is_database_down
from backend.settings import Settings
from tests.conftest import make_settings


def test_the_client_side_bound_leaves_the_server_timeout_room_to_answer_first() -> None:
    settings = make_settings(db_statement_timeout_ms=1_500)
    assert command_timeout_s(settings) == 1.5 + CLIENT_GRACE_S


class _RacingPool:
    """A pool whose release finds the connection already returned (asyncpg's lost-connection race)."""

    def __init__(self) -> None:
        self.released = 0

    async def acquire(self) -> object:
        return object()

    async def release(self, _conn: object) -> None:
        self.released += 1
        raise asyncpg.InternalClientError("PoolConnectionHolder.release() called on a free connection holder")


async def test_a_release_racing_a_lost_connection_keeps_the_original_error() -> None:
    """The error that ended the work (here, the server going away) is what the caller sees."""
    racing = _RacingPool()
    with pytest.raises(asyncpg.AdminShutdownError):
        async with connection(cast(asyncpg.Pool, racing), acquire_timeout=1):
            raise asyncpg.AdminShutdownError("terminating connection due to administrator command")
    async with connection(cast(asyncpg.Pool, racing), acquire_timeout=1):
        pass
    assert racing.released == 2


async def test_the_integrator_loop_outlives_an_unexpected_error() -> None:
    """An error nobody foresaw is logged and counted; the loop goes on (it used to end, silently)."""
    integrator = Integrator(
        cast(asyncpg.Pool, None),
        generate_signer("units.confide.example/audit/v1"),
        FrozenClock(),
        batch=10,
        interval_s=0.01,
    )
    results: list[BaseException | BatchResult] = [
        asyncpg.InternalClientError("release() called on a free connection holder"),
        RuntimeError("anything else"),
        BatchResult(leader=True, integrated=0, size=0),
    ]

    async def run_once() -> BatchResult:
        result = results.pop(0)
        if isinstance(result, BaseException):
            raise result
        return result

    integrator.run_once = run_once  # type: ignore[method-assign]
    async with asyncio.timeout(5):
        await integrator.run(until_idle=True)
    assert integrator.status.errors == 2
    assert not results


@pytest.mark.parametrize(
    "exc",
    [
        asyncpg.LockNotAvailableError("lock timeout"),
        asyncpg.QueryCanceledError("statement timeout"),
        asyncpg.DeadlockDetectedError("deadlock detected"),
        asyncpg.SerializationError("could not serialize access"),
        asyncpg.TooManyConnectionsError("too many clients"),
        asyncpg.AdminShutdownError("terminating connection"),
        asyncpg.CannotConnectNowError("the database system is starting up"),
        asyncpg.ConnectionDoesNotExistError("connection was closed"),
        ConnectionRefusedError(),
        FileNotFoundError(),
        TimeoutError(),
    ],
    ids=type,
)
def test_transient_database_failures_are_503(exc: Exception) -> None:
    assert _is_database_down(exc)


@pytest.mark.parametrize(
    "exc",
    [asyncpg.UndefinedTableError("missing"), asyncpg.InternalClientError("bug"), RuntimeError("bug")],
    ids=type,
)
def test_bugs_are_not_dressed_up_as_outages(exc: Exception) -> None:
    assert not _is_database_down(exc)


@pytest.fixture
def settings() -> Settings:
    # The readiness check is "slow" past a quarter of the statement timeout: 100 ms here.
    return make_settings(db_statement_timeout_ms=400)


async def test_readiness_reports_a_slow_database_as_degraded(
    client: AsyncTestClient[Litestar], monkeypatch: pytest.MonkeyPatch
) -> None:
    """F-01: still ready (every instance shares the database) but visibly degraded."""
    ready = await client.get("/health/ready")
    assert ready.json() == {"status": "ok", "database": "ok", "migrations": "current"}

    async def slow_pending(conn: asyncpg.Connection) -> Any:
        started = time.monotonic()
        result = await pending(conn)
        await asyncio.sleep(max(0.0, 0.2 - (time.monotonic() - started)))
        return result

    monkeypatch.setattr("backend.health.controller.pending", slow_pending)
    slow = await client.get("/health/ready")
    assert slow.status_code == 200
    assert slow.json() == {"status": "degraded", "database": "slow", "migrations": "current"}


async def test_a_body_not_yet_read_when_the_database_stalls_is_not_the_clients_fault() -> None:
    """Deadline while the app waits on the database with the body unread: 503 (retry), not 408."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"{}", "more_body": False}  # all there, never asked for

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def waits_for_the_database(scope: Any, receive: Any, send: Any) -> None:
        del scope, receive, send
        await asyncio.sleep(3600)

    scope: Any = {"type": "http", "method": "POST", "path": "/v1/x", "headers": [(b"content-length", b"2")]}
    middleware = RequestContextMiddleware(waits_for_the_database, access_log=False, request_timeout_s=0.05)
    await middleware(scope, receive, send)  # type: ignore[arg-type]
    start, body = sent
    assert start["status"] == 503
    assert b"connection" not in {name for name, _ in start["headers"]}
    assert json.loads(body["body"])["type"] == "urn:confide:problem:unavailable"

"""``/health/live`` (the process answers) and ``/health/ready`` (it can serve)."""

from __future__ import annotations

import functools
import time
from typing import Annotated

import asyncpg
import msgspec
from litestar import Controller, MediaType, Response, get, post
from litestar.datastructures import State
from litestar.params import JSONBody, Parameter

from backend.db.migrate import MigrationError, pending
from backend.db.pool import connection
from backend.errors import UnavailableError
from backend.runtime import Runtime

__all__ = ["BenchController", "HealthController", "HealthStatus"]


class HealthStatus(msgspec.Struct, frozen=True, kw_only=True):
    """Health answer."""

    # status: ok, degraded (serving; the database answers slowly) or unavailable.

    status: str
    database: str | None = None
    migrations: str | None = None


#: A readiness check slower than this (at most a quarter of the statement timeout) is "degraded".
SLOW_CHECK_S = 1.0


def _slow_after_s(runtime: Runtime) -> float:
    return min(SLOW_CHECK_S, runtime.settings.db_statement_timeout_ms / 4000)


class HealthController(Controller):
    """Probes for load balancers and orchestrators; no authentication, no data."""

    path = "/health"
    tags = ("health",)
    # Probes are never rate limited: an orchestrator must see a busy instance as alive.
    opt = {"rate_limit": False}  # noqa: RUF012 -- Litestar's layer attribute

    @get("/live", operation_id="healthLive", opt={"public": True}, cache_control=None)
    async def live(self) -> HealthStatus:
        """Always 200 while the process serves requests."""
        return HealthStatus(status="ok")

    @get("/ready", operation_id="healthReady", opt={"public": True})
    async def ready(self, state: State) -> Response[HealthStatus]:
        """200 when the database answers and the schema is current, else 503."""
        # A database that answers slowly (network latency, overload) leaves the instance
        # ready, since every instance shares it, but the answer says degraded/slow.
        runtime: Runtime = state.runtime
        started = time.monotonic()
        try:
            async with connection(runtime.require_pool(), acquire_timeout=2.0) as conn:
                outstanding = await pending(conn)
        except MigrationError:
            return Response(
                HealthStatus(status="unavailable", database="ok", migrations="diverged"),
                status_code=503,
            )
        except (
            asyncpg.PostgresError,
            asyncpg.InterfaceError,
            OSError,
            TimeoutError,
            UnavailableError,
        ):
            return Response(HealthStatus(status="unavailable", database="unreachable"), status_code=503)
        if outstanding:
            return Response(
                HealthStatus(status="unavailable", database="ok", migrations="pending"),
                status_code=503,
            )
        if time.monotonic() - started > _slow_after_s(runtime):
            return Response(HealthStatus(status="degraded", database="slow", migrations="current"))
        return Response(HealthStatus(status="ok", database="ok", migrations="current"))


class EchoBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A benchmark body: some ids and an opaque blob, decoded like a real request."""

    id: str
    context: str
    blob: str


class EchoAck(msgspec.Struct, frozen=True, kw_only=True):
    """What the echo route answers."""

    id: str


#: The largest body ``GET /_bench/bytes`` answers with.
MAX_BENCH_BYTES = 4_000_000


@functools.lru_cache(maxsize=8)
def _json_of_size(size: int) -> bytes:
    """A JSON document of exactly ``size`` bytes: a string, or whitespace when shorter than one."""
    return b'"' + b"x" * (size - 2) + b'"' if size >= 2 else b" " * (size - 1) + b"0"


class BenchController(Controller):
    """Benchmark ceilings; registered only with ``CONFIDE_BENCH_ROUTES=true`` (never in production)."""

    path = "/_bench"
    tags = ("health",)
    include_in_schema = False

    @post("/echo", operation_id="benchEcho", opt={"public": True}, status_code=201)
    async def echo(self, data: JSONBody[EchoBody]) -> EchoAck:
        """Decode the body into a Struct and answer 201, touching no database."""
        return EchoAck(id=data.id)

    @get("/bytes", operation_id="benchBytes", opt={"public": True}, media_type=MediaType.JSON)
    async def sized(self, size: Annotated[int, Parameter(ge=1, le=MAX_BENCH_BYTES)]) -> Response[bytes]:
        """Answer 200 with a JSON body of ``size`` bytes, built once, touching no database."""
        return Response(_json_of_size(size), media_type=MediaType.JSON)

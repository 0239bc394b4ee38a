"""The real server process for the hostile-input tests: one per module, on loopback only."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import PgServer, with_database
from tests.e2e.conftest import RunningServer, launch_server, stop_servers
from tests.hostile.world import World, build_world

StartServer = Callable[..., RunningServer]


@pytest.fixture(scope="module")
def module_database_url(pg_server: PgServer) -> Iterator[str]:
    name = asyncio.run(pg_server.create_database())
    try:
        yield with_database(pg_server.admin_url, name)
    finally:
        asyncio.run(pg_server.drop_database(name))


@pytest.fixture(scope="module")
def start_module_server(
    module_database_url: str, pg_server: PgServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[StartServer]:
    """Start ``confide serve`` (uvicorn, one worker) with extra ``CONFIDE_*`` settings.

    As in production (and tests/e2e), the server connects as the suite's application role
    when there is one, so row-level security applies to everything tried here.
    """
    started: list[RunningServer] = []
    logs = tmp_path_factory.mktemp("server-logs")

    def start(**extra: str) -> RunningServer:
        server = launch_server(
            module_database_url, pg_server, Path(logs), **{"CONFIDE_LOG_LEVEL": "warning", **extra}
        )
        started.append(server)
        return server

    yield start
    stop_servers(started)


@pytest.fixture(scope="module")
def world_server(start_module_server: StartServer) -> RunningServer:
    return start_module_server()


@pytest.fixture(scope="module")
def world(world_server: RunningServer, module_database_url: str) -> World:
    return build_world(world_server.base_url, module_database_url, world_server.env)

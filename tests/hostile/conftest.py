"""The real server process for the hostile-input tests: one per module, on loopback only."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from backend.db.embedded import free_port
from tests.conftest import ROOT, PgServer, as_role, with_database
from tests.e2e.conftest import CONFIDE, RunningServer, server_env, wait_until_ready
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
        port = free_port()
        url = as_role(module_database_url, pg_server.app_role) if pg_server.app_role else module_database_url
        env = server_env(url, CONFIDE_PORT=str(port), CONFIDE_LOG_LEVEL="warning", **extra)
        log_path = Path(logs) / f"server-{port}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [CONFIDE, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT
            )
        server = RunningServer(f"http://127.0.0.1:{port}", env, log_path, process)
        started.append(server)
        wait_until_ready(server.base_url, process)
        return server

    yield start
    for server in started:
        server.process.terminate()
        try:
            server.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait(timeout=5)


@pytest.fixture(scope="module")
def world_server(start_module_server: StartServer) -> RunningServer:
    return start_module_server()


@pytest.fixture(scope="module")
def world(world_server: RunningServer, module_database_url: str) -> World:
    return build_world(world_server.base_url, module_database_url, world_server.env)

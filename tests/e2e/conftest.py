"""Start the real server process (``confide serve``) against a fresh database."""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from backend.db.embedded import free_port
from tests.at_rest import SecretRegistry, dump_database, recording, scan
from tests.conftest import ROOT, UNLIMITED_RATE, PgServer, as_role

CONFIDE = str(Path(sys.executable).parent / "confide")


@dataclass
class RunningServer:
    base_url: str
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes]

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=10)

    def run_cli(self, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [CONFIDE, *args],
            input=stdin,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )


def wait_until_ready(base_url: str, process: subprocess.Popen[bytes], deadline_s: float = 30.0) -> None:
    """Poll /health/ready until it answers 200, the process dies, or the deadline passes."""
    deadline = time.monotonic() + deadline_s
    with httpx.Client(base_url=base_url, timeout=1) as http:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"server exited with {process.returncode}")
            try:
                if http.get("/health/ready").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
    raise TimeoutError("server did not become ready")


def server_env(database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONFIDE_")}
    env.update(
        {
            "CONFIDE_DATABASE_URL": database_url,
            "CONFIDE_ENVIRONMENT": "test",
            "CONFIDE_SECRET_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
            "CONFIDE_ARGON2_TIME_COST": "2",
            "CONFIDE_ARGON2_MEMORY_KIB": "19456",
            "CONFIDE_LOG_LEVEL": "info",
            # The general rate limit stays out of the way unless a test sets its own.
            **{f"CONFIDE_{name.upper()}": str(value) for name, value in UNLIMITED_RATE.items()},
        }
    )
    env.update(extra)
    return env


def launch_server(database_url: str, pg_server: PgServer, log_dir: Path, **extra: str) -> RunningServer:
    """Start ``confide serve`` on a free loopback port; returns once it is ready.

    It connects as the suite's application role when there is one, and logs to ``log_dir``.
    """
    port = free_port()
    url = as_role(database_url, pg_server.app_role) if pg_server.app_role else database_url
    env = server_env(url, CONFIDE_PORT=str(port), **extra)
    log_path = log_dir / f"server-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [CONFIDE, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT
        )
    server = RunningServer(f"http://127.0.0.1:{port}", env, log_path, process)
    try:
        wait_until_ready(server.base_url, process)
    except BaseException:
        stop_servers([server])
        raise
    return server


def stop_servers(servers: list[RunningServer]) -> None:
    """Terminate server processes, killing any that do not stop within 15 s."""
    for server in servers:
        server.process.terminate()
        try:
            server.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait(timeout=5)


@pytest.fixture
def at_rest(monkeypatch: pytest.MonkeyPatch) -> Iterator[SecretRegistry]:
    """The secrets this end-to-end test used (see :mod:`tests.at_rest`)."""
    with recording(monkeypatch) as registry:
        yield registry


@pytest.fixture
def start_server(
    database_url: str, pg_server: PgServer, tmp_path: Path, at_rest: SecretRegistry
) -> Iterator[object]:
    """Start ``confide serve`` processes; afterwards, search the database and logs for secrets.

    The servers (and the ``confide`` commands run beside them) connect as the suite's
    application role when there is one (see ``tests/conftest.py``), as in production.

    When the test is over and its servers have stopped, a ``pg_dump`` of the test's
    database and every server log must hold none of the private keys, sealed plaintexts,
    passwords, codes and tokens the test used (D-01 and G-01 over every end-to-end flow).
    """
    started: list[RunningServer] = []

    def start(**extra: str) -> RunningServer:
        server = launch_server(database_url, pg_server, tmp_path, **extra)
        started.append(server)
        return server

    yield start
    stop_servers(started)
    if started and at_rest.found:
        places = [(s.log_path.name, s.log_path.read_bytes()) for s in started]
        places.append(("pg_dump", dump_database(database_url, tmp_path / "at-rest.sql")))
        hits = scan(at_rest, places)
        assert not hits, "secrets at rest: " + "; ".join(hits)

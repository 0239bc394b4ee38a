"""Start the real server for a benchmark: a fresh database, pinned to one core."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import psutil

from backend.db.embedded import EmbeddedPostgres, free_port
from backend.db.migrate import migrate

ROOT = Path(__file__).resolve().parents[2]
CONFIDE = str(Path(sys.executable).parent / "confide")
SERVER_CPUS = {0}
LOADGEN_CPUS = {1} if (os.cpu_count() or 1) > 1 else {0}


def _pin_postgres(cluster: EmbeddedPostgres, cpus: set[int]) -> None:
    """Set PostgreSQL's CPUs (affinity outlives a run: the cluster is reused, so always set it)."""
    pid_file = cluster.pgdata / "postmaster.pid"
    with contextlib.suppress(OSError, ValueError, psutil.Error):
        postmaster = psutil.Process(int(pid_file.read_text().split()[0]))
        for proc in [postmaster, *postmaster.children(recursive=True)]:
            proc.cpu_affinity(sorted(cpus))


def bench_database() -> str:
    """A fresh, migrated database on the benchmark cluster (or CONFIDE_DATABASE_URL's server)."""
    external = os.environ.get("CONFIDE_DATABASE_URL")
    cluster = EmbeddedPostgres(ROOT / ".data" / "pg-bench")
    admin = external or cluster.ensure_running()
    if not external:
        # By default PostgreSQL may use every core, as on a real machine; set
        # BENCH_PIN_POSTGRES=1 to keep it off the API's core instead.
        everything = set(range(os.cpu_count() or 1))
        _pin_postgres(cluster, LOADGEN_CPUS if os.environ.get("BENCH_PIN_POSTGRES") else everything)
    name = f"confide_bench_{uuid.uuid4().hex[:8]}"

    async def create() -> str:
        conn = await asyncpg.connect(admin)
        try:
            if not external:
                # Benchmarks run one after another: the databases of earlier runs are done with.
                stale = await conn.fetch(
                    "SELECT datname FROM pg_database WHERE datname LIKE 'confide_bench_%'"
                )
                for row in stale:
                    await conn.execute(f'DROP DATABASE "{row[0]}" WITH (FORCE)')
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        base, _, query = admin.partition("?")
        url = base.rsplit("/", 1)[0] + f"/{name}" + (f"?{query}" if query else "")
        await migrate(url)
        return url

    return asyncio.run(create())


def server_process(port: int) -> psutil.Process:
    """The process listening on ``port`` (the server under test)."""
    for conn in psutil.net_connections(kind="tcp"):
        if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN and conn.pid:
            return psutil.Process(conn.pid)
    raise RuntimeError("no server listening")


def postgres_processes() -> list[psutil.Process]:
    """The benchmark cluster's postmaster and its children (none with CONFIDE_DATABASE_URL)."""
    if os.environ.get("CONFIDE_DATABASE_URL"):
        return []
    pid_file = ROOT / ".data" / "pg-bench" / "cluster" / "postmaster.pid"
    try:
        postmaster = psutil.Process(int(pid_file.read_text().split()[0]))
        return [postmaster, *postmaster.children(recursive=True)]
    except (OSError, ValueError, psutil.Error):
        return []


def cpu_seconds(processes: list[psutil.Process]) -> dict[int, float]:
    """User and system CPU each process has used so far, by pid (those gone are left out)."""
    used: dict[int, float] = {}
    for proc in processes:
        with contextlib.suppress(psutil.Error):
            times = proc.cpu_times()
            used[proc.pid] = times.user + times.system
    return used


def cpu_spent(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds spent between two :func:`cpu_seconds` readings; a process new since counts whole."""
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())


def pin_loadgen() -> None:
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setaffinity(0, LOADGEN_CPUS)


@contextlib.contextmanager
def running_server(
    database_url: str, *, server: str = "uvicorn", **settings: str
) -> Iterator[tuple[str, int]]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONFIDE_")}
    env.update(
        {
            "CONFIDE_DATABASE_URL": database_url,
            "CONFIDE_ENVIRONMENT": "test",
            "CONFIDE_SECRET_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
            "CONFIDE_PORT": str(port),
            "CONFIDE_SERVER": server,
            "CONFIDE_LOG_LEVEL": "warning",
            "CONFIDE_HASH_WORKERS": str(len(SERVER_CPUS)),
            "CONFIDE_DB_POOL_MAX": "20",
            # Load generators send far beyond one client's rate: measure the server, not the limiter's
            # 429s (the limiter still runs on every request, so its cost is in the figures).
            "CONFIDE_RATE_LIMIT_RPS": "1000000",
            "CONFIDE_RATE_LIMIT_BURST": "1000000",
            "CONFIDE_RATE_LIMIT_ADDRESS_RPS": "1000000",
            "CONFIDE_RATE_LIMIT_ADDRESS_BURST": "1000000",
        }
    )
    env.update(settings)
    process = subprocess.Popen(
        [CONFIDE, "serve"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=lambda: os.sched_setaffinity(0, SERVER_CPUS),  # noqa: PLW1509 -- only sets CPU affinity
    )
    try:
        deadline = time.monotonic() + 30
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=1) as http:
            while True:
                if process.poll() is not None:
                    raise RuntimeError("server exited")
                with contextlib.suppress(httpx.TransportError):
                    if http.get("/health/ready").status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise TimeoutError("server not ready")
                time.sleep(0.1)
        yield "127.0.0.1", port
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

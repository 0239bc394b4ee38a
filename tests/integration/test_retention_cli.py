"""``confide retention run`` in-process: the summary table, progress, exit statuses."""

from __future__ import annotations

import asyncio
import io
import threading
from collections.abc import Iterator

import asyncpg
import pytest

from backend.cli import main
from backend.retention import RUN_LOCK_KEY
from backend.retention.cli import _Progress
from backend.retention.schemas import CategoryCounts
from tests import retention_helpers as seed
from tests.conftest import make_settings
from tests.retention_helpers import days


async def _seed(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        now = seed.real_now()
        org = await seed.seed_org(conn, "cli", now - days(400), clients=1)
        for _ in range(3):
            await seed.session(conn, org, org.clients[0], now - days(90), revoked=True)
        await conn.execute(
            """
            INSERT INTO login_throttle (scope, key_digest, failures, window_started_at, updated_at)
            VALUES ('address', $1, 3, $2, $2)
            """,
            b"\x01" * 32,
            now - days(2),
        )
        await conn.execute(
            "INSERT INTO account_events (account_id, kind, payload, created_at)"
            " VALUES ($1, 'message.new', '{}', $2)",
            org.clients[0],
            now - days(40),
        )
        await conn.execute(
            "INSERT INTO retention_runs (id, started_at, as_of, dry_run, status, trigger, instance)"
            " VALUES (gen_random_uuid(), $1, $1, false, 'running', 'cli', 'crashed')",
            now - days(1),
        )
    finally:
        await conn.close()


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, database_url: str) -> str:
    monkeypatch.setenv("CONFIDE_DATABASE_URL", database_url)
    monkeypatch.setenv("CONFIDE_SECRET_KEY", make_settings().secret_key or "")
    monkeypatch.setenv("CONFIDE_ENVIRONMENT", "test")
    asyncio.run(_seed(database_url))
    return database_url


def test_dry_run_then_run(env: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["retention", "run", "--dry-run", "--batch-size", "2"]) == 0
    out, err = capsys.readouterr()
    assert "(dry run: nothing was deleted)" in out
    assert "would delete" in out
    assert "sessions" in err, "progress on standard error"
    table = {line.split()[0]: line.split()[1:] for line in out.splitlines()[2:-1]}
    assert table["sessions"] == ["3", "0", "3", "0"]
    assert table["login_throttle"] == ["1", "0", "1", "0"]
    assert table["push_events"] == ["1", "0", "1", "0"]

    assert main(["retention", "run", "--quiet"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    table = {line.split()[0]: line.split()[1:] for line in out.splitlines()[2:-1]}
    assert table["sessions"] == ["3", "0", "3", "0"]
    assert table["login_throttle"][2] == "1"
    assert table["push_events"][2] == "1"
    assert out.splitlines()[-1] == "status: completed"

    async def statuses() -> list[str]:
        conn = await asyncpg.connect(env)
        try:
            return [r["status"] for r in await conn.fetch("SELECT status FROM retention_runs ORDER BY seq")]
        finally:
            await conn.close()

    assert asyncio.run(statuses()) == ["abandoned", "completed", "completed"]


@pytest.fixture
def lock_held(env: str) -> Iterator[None]:
    """Another process's run holds the lock (a thread with its own connection here)."""
    taken, release = threading.Event(), threading.Event()

    def hold() -> None:
        async def run() -> None:
            conn = await asyncpg.connect(env)
            try:
                await conn.execute("SELECT pg_advisory_lock($1)", RUN_LOCK_KEY)
                taken.set()
                await asyncio.to_thread(release.wait, 30)
            finally:
                await conn.close()

        asyncio.run(run())

    thread = threading.Thread(target=hold)
    thread.start()
    assert taken.wait(30)
    try:
        yield
    finally:
        release.set()
        thread.join(30)


@pytest.mark.usefixtures("lock_held")
def test_a_second_run_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["retention", "run"]) == 1
    assert "another retention run is in progress" in capsys.readouterr().err


@pytest.mark.usefixtures("env")
def test_bad_batch_size(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["retention", "run", "--batch-size", "0"]) == 2
    assert "--batch-size" in capsys.readouterr().err


def test_progress_on_a_terminal_rewrites_one_line() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Terminal()
    progress = _Progress(out)
    progress("messages", CategoryCounts(candidates=10, held=2, deleted=4), False)
    progress("messages", CategoryCounts(candidates=10, held=2, deleted=8), True)
    text = out.getvalue()
    assert text.count("\r\x1b[K") == 2
    assert text.endswith("\n")
    assert "8 of            8 due (2 held)" in text

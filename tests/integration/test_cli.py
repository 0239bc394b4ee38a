"""The ``confide`` command, in process (the end-to-end test runs it as a real process too)."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path

import asyncpg
import pytest

from backend.cli import main
from backend.db.database import embedded_cluster, resolve_database_url
from backend.db.migrate import load_migrations
from backend.settings import load_settings
from tests.conftest import PgServer, make_settings, with_database


@pytest.fixture
def fresh_database_url(pg_server: PgServer) -> str:
    import uuid  # noqa: PLC0415

    name = f"confide_cli_{uuid.uuid4().hex[:10]}"
    asyncio.run(pg_server.execute_admin(f'CREATE DATABASE "{name}"'))
    return with_database(pg_server.admin_url, name)


def test_openapi_command_prints_the_document(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["openapi"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["info"]["title"] == "Confide API"
    assert "/v1/auth/login" in document["paths"]


def test_migrate_then_bootstrap_admin(
    fresh_database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = make_settings()
    monkeypatch.setenv("CONFIDE_DATABASE_URL", fresh_database_url)
    monkeypatch.setenv("CONFIDE_SECRET_KEY", settings.secret_key or "")
    monkeypatch.setenv("CONFIDE_ARGON2_TIME_COST", "2")
    monkeypatch.setenv("CONFIDE_ARGON2_MEMORY_KIB", "19456")
    assert main(["migrate"]) == 0
    assert f"migrations applied: {len(load_migrations())}" in capsys.readouterr().out
    assert main(["migrate"]) == 0
    assert "migrations applied: 0" in capsys.readouterr().out

    argv = ["admin", "create", "--organization", "cli-org", "--email", "root@cli.example", "--name", "Root"]
    monkeypatch.setattr("sys.stdin", io.StringIO("a cli admin passphrase\n"))
    assert main([*argv, "--password-stdin"]) == 0
    created = json.loads(capsys.readouterr().out)
    assert created["role"] == "admin"
    assert "password" not in created

    monkeypatch.setattr("sys.stdin", io.StringIO("a cli admin passphrase\n"))
    assert main([*argv, "--password-stdin"]) == 1
    assert "already has an admin" in capsys.readouterr().err

    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    argv2 = ["admin", "create", "--organization", "other-org", "--email", "x@cli.example", "--name", "X"]
    assert main([*argv2, "--password-stdin"]) == 1

    async def audit_types() -> list[str]:
        conn = await asyncpg.connect(fresh_database_url)
        try:
            rows = await conn.fetch("SELECT event_type, source_instance FROM audit_events ORDER BY seq")
        finally:
            await conn.close()
        assert {r["source_instance"] for r in rows} == {"cli"}
        return [r["event_type"] for r in rows]

    assert asyncio.run(audit_types()) == ["organization.create", "account.create"]


def test_bad_setting_stops_the_command(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CONFIDE_PORT", "not-a-port")
    with pytest.raises(SystemExit) as stopped:
        main(["migrate"])
    assert stopped.value.code == 2
    assert "CONFIDE_PORT" in capsys.readouterr().err


def test_embedded_database_is_started_when_no_url_is_set(tmp_path: Path) -> None:
    settings = load_settings({}, data_dir=str(tmp_path / "data"))
    cluster = embedded_cluster(settings)
    try:
        url = resolve_database_url(settings)
        assert url.endswith("host=" + str(cluster.socket_dir))
        assert resolve_database_url(settings) == url, "a second call reuses the running cluster"

        async def ping() -> int:
            conn = await asyncpg.connect(url)
            try:
                value: int = await conn.fetchval("SELECT 1")
                return value
            finally:
                await conn.close()

        assert asyncio.run(ping()) == 1
        assert cluster.binary("pg_dump").exists()
        with pytest.raises(Exception, match="no such PostgreSQL program"):
            cluster.binary("no-such-tool")
    finally:
        cluster.stop()
    assert not cluster.is_running()

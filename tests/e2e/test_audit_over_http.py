"""The real server: exports verified offline, and a witness that refuses a rollback and a fork.

Export in three formats verified with ``confide audit verify``; ``confide audit witness``
cosigns consistent checkpoints and refuses a rolled-back or forked log.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import json
import time
from collections.abc import Callable
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.audit_helpers import rewrite_tail
from tests.e2e.conftest import RunningServer
from tests.helpers import totp_code

pytestmark = pytest.mark.e2e

ADMIN_PW = "E2E-admin-passphrase-1"
OFFICER_PW = "E2E-officer-passphrase-2"


def _login(http: httpx.Client, email: str, password: str) -> dict[str, str]:
    response = http.post(
        "/v1/auth/login", json={"organization": "audit-e2e", "email": email, "password": password}
    )
    assert response.status_code == 200, response.text
    headers = {"Authorization": f"Bearer {response.json()['token']}"}
    secret = http.post("/v1/auth/mfa/totp", headers=headers).json()["secret"]
    code = totp_code(secret, dt.datetime.now(dt.UTC))
    assert http.post("/v1/auth/mfa/totp/confirm", json={"code": code}, headers=headers).status_code == 200
    return headers


def _settled(http: httpx.Client, officer: dict[str, str]) -> int:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        status = http.get("/v1/audit/status", headers=officer).json()
        if status["pending_events"] == 0 and status["checkpoint_size"] == status["tree_size"]:
            return int(status["tree_size"])
        time.sleep(0.05)
    raise TimeoutError("the integrator did not catch up")


def _download(http: httpx.Client, officer: dict[str, str], path: Path, **params: str) -> None:
    with http.stream("GET", "/v1/audit/export", params=params, headers=officer) as response:
        assert response.status_code == 200
        with path.open("wb") as out:
            for chunk in response.iter_bytes():
                out.write(chunk)


def test_export_verify_and_witness(
    start_server: Callable[..., RunningServer], tmp_path: Path, database_url: str
) -> None:
    server = start_server(CONFIDE_AUDIT_INTEGRATE_INTERVAL_S="0.05")
    created = server.run_cli(
        "admin", "create", "--organization", "audit-e2e", "--email", "admin@audit.example", "--name", "Admin",
        "--password-stdin", stdin=ADMIN_PW + "\n",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    with server.client() as http:
        admin = _login(http, "admin@audit.example", ADMIN_PW)
        made = http.post(
            "/v1/accounts",
            json={
                "email": "co@audit.example",
                "display_name": "CO",
                "role": "compliance_officer",
                "password": OFFICER_PW,
            },
            headers=admin,
        )
        assert made.status_code == 201, made.text
        officer = _login(http, "co@audit.example", OFFICER_PW)
        key_file = tmp_path / "log.vkey"
        key_file.write_text(http.get("/v1/audit/log-key").json()["vkey"])
        _settled(http, officer)

        for fmt in ("jsonl", "csv", "fhir"):
            _download(http, officer, tmp_path / f"export.{fmt}", format=fmt)
        verified = server.run_cli(
            "audit", "verify", str(tmp_path / "export.jsonl"), "--log-key", f"@{key_file}"
        )
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert "OK:" in verified.stdout
        assert "complete" in verified.stdout
        with (tmp_path / "export.csv").open(encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        assert {"auth.login", "account.create"} <= {row["type"] for row in rows}
        assert json.loads((tmp_path / "export.fhir").read_text())["resourceType"] == "Bundle"
        _download(http, officer, tmp_path / "logins.jsonl", type="auth.login")
        filtered = server.run_cli(
            "audit", "verify", str(tmp_path / "logins.jsonl"), "--log-key", f"@{key_file}"
        )
        assert filtered.returncode == 0, filtered.stdout
        assert "filtered" in filtered.stdout

        witness_key, state, token = tmp_path / "witness.key", tmp_path / "witness.json", tmp_path / "token"
        made_key = server.run_cli(
            "audit", "keygen", "--witness", "--name", "witness.example/w1", "--out", str(witness_key)
        )
        assert made_key.returncode == 0, made_key.stdout
        token.write_text(officer["Authorization"].removeprefix("Bearer "))
        witness_args = (
            *("audit", "witness", "--server", server.base_url, "--state", str(state)),
            *("--key", str(witness_key), "--log-key", f"@{key_file}", "--token-file", str(token)),
        )
        first = server.run_cli(*witness_args)
        assert first.returncode == 0, first.stdout + first.stderr
        assert "cosigned" in first.stdout
        http.get("/v1/me", headers=admin)
        _download(http, officer, tmp_path / "again.jsonl")  # an audited export: the log grows
        _settled(http, officer)
        second = server.run_cli(*witness_args)
        assert second.returncode == 0, second.stdout + second.stderr
        accepted = json.loads(state.read_text())["checkpoint"]
        accepted_size = int(accepted.split("\n")[1])
        cosigned = http.get(f"/v1/audit/checkpoint?size={accepted_size}", headers=officer).json()
        assert cosigned["cosignatures"], "the server stores and serves the cosignature"

        # An insider with the log key rewrites history: first a smaller tree, then a fork.
        size = _settled(http, officer)
        # As the superuser: the server's own role cannot rewrite the log (0008).
        asyncio.run(_rewrite(database_url, size - 4, drop=3))
        smaller = _settled(http, officer)
        assert smaller < size
        rollback = server.run_cli(*witness_args)
        assert rollback.returncode == 1, rollback.stdout
        assert "rollback" in rollback.stdout
        for _ in range(6):  # each export is an audited event
            _download(http, officer, tmp_path / "more.csv", format="csv")
        assert _settled(http, officer) > size
        fork = server.run_cli(*witness_args)
        assert fork.returncode == 1, fork.stdout
        assert "REFUSED" in fork.stdout
        assert json.loads(state.read_text())["checkpoint"] == accepted, "a refused checkpoint is not kept"


async def _rewrite(database_url: str, keep: int, *, drop: int) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await rewrite_tail(conn, keep, drop=drop)
    finally:
        await conn.close()

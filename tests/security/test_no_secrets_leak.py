"""Nothing the server must not keep reaches its logs, its traces or its database.

Marker strings are planted in every field a user sends (passwords, emails,
names, TOTP codes) and the bearer tokens the server hands out; then the captured
log output, every exported span, and a ``pg_dump`` of the database are searched.
"""

from __future__ import annotations

import asyncio
import base64
import io
import subprocess
from pathlib import Path

import asyncpg
from litestar import Litestar
from litestar.testing import AsyncTestClient
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from backend.db.embedded import EmbeddedPostgres
from backend.telemetry import configure_logging
from tests.conftest import ROOT
from tests.helpers import Account, login, login_with_mfa, make_client, make_org_admin, make_staff

MARK = "ZQXMARKER"
CLIENT_PASSWORD = f"{MARK}-client-passphrase-long"
BAD_PASSWORD = f"{MARK}-wrong-password-attempt"


def _forms(secret: str) -> list[bytes]:
    raw = secret.encode()
    return [raw, base64.b64encode(raw), raw.hex().encode(), secret.encode("utf-16-le")]


async def _run_flows(client: AsyncTestClient[Litestar], app: Litestar, db: asyncpg.Connection) -> list[str]:
    admin = await make_org_admin(app, db, "leakcheck")
    await login_with_mfa(client, admin, app)
    clinician = await make_staff(client, app, admin, "clinician", f"{MARK.lower()}doc@leak.example")
    patient = await make_client(client, clinician, f"{MARK.lower()}pat@leak.example", CLIENT_PASSWORD)
    await client.post(
        "/v1/auth/login",
        json={"organization": "leakcheck", "email": patient.email, "password": BAD_PASSWORD},
    )
    await client.post(
        "/v1/auth/login",
        json={
            "organization": "leakcheck",
            "email": f"{MARK.lower()}@nowhere.example",
            "password": BAD_PASSWORD,
        },
    )
    await client.post(
        "/v1/auth/password",
        json={"current_password": CLIENT_PASSWORD, "new_password": f"{MARK}-new-passphrase-xyz"},
        headers=patient.headers,
    )
    await client.get("/v1/me", headers=patient.headers)
    await client.post("/v1/auth/logout", headers=patient.headers)
    invite = await client.post("/v1/invites", json={}, headers=clinician.headers)
    code = invite.json()["code"]
    await client.post(
        f"/v1/invites/{code}/redeem",
        json={"email": "second@leak.example", "display_name": f"{MARK} Name", "password": CLIENT_PASSWORD},
    )
    relogin = await login(
        client, Account(patient.id, patient.email, f"{MARK}-new-passphrase-xyz", "client", "leakcheck")
    )
    secrets_seen = [
        CLIENT_PASSWORD,
        BAD_PASSWORD,
        admin.password,
        clinician.password,
        code,
        relogin.json()["token"],
    ]
    for account in (admin, clinician, patient):
        if account.token:
            secrets_seen.append(account.token)
        if account.totp_secret:
            secrets_seen.append(account.totp_secret)
        secrets_seen.extend(account.recovery_codes or [])
    return secrets_seen


async def test_logs_and_spans_carry_no_secrets_or_personal_data(
    client: AsyncTestClient[Litestar], app: Litestar, db: asyncpg.Connection
) -> None:
    """G-01/G-02: planted markers, passwords, tokens and TOTP seeds never reach logs or spans."""
    buffer = io.StringIO()
    configure_logging("debug", "json", stream=buffer)
    exporter = InMemorySpanExporter()
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    try:
        secrets_seen = await _run_flows(client, app, db)
    finally:
        exporter.shutdown()
    logs = buffer.getvalue()
    assert '"event": "request"' in logs, "the access log was captured"
    spans = exporter.get_finished_spans()
    assert any(s.name == "POST /v1/auth/login" for s in spans)
    assert any(s.name.startswith("INSERT") or "audit" in str(s.attributes) for s in spans), (
        "asyncpg spans exist"
    )
    span_text = "\n".join(
        f"{s.name} {dict(s.attributes or {})} {[e.attributes for e in s.events]}" for s in spans
    )
    for secret in [MARK, MARK.lower(), *secrets_seen]:
        for form in _forms(secret):
            text = form.decode("latin-1")
            assert text not in logs, f"a secret reached the logs: {secret[:6]}..."
            assert text not in span_text, f"a secret reached a span: {secret[:6]}..."
    assert "/redeem" in span_text
    assert "/v1/invites/{code" in span_text, "spans name the route template, never the invite code"


async def test_database_dump_holds_no_secrets(
    client: AsyncTestClient[Litestar],
    app: Litestar,
    db: asyncpg.Connection,
    database_url: str,
    tmp_path: Path,
) -> None:
    """D-01: no password, token, TOTP seed, recovery code or invite code in a pg_dump."""
    secrets_seen = await _run_flows(client, app, db)
    pg_dump = EmbeddedPostgres(ROOT / ".data" / "pg-test").binary("pg_dump")
    dump = tmp_path / "dump.sql"
    await asyncio.to_thread(
        subprocess.run, [str(pg_dump), "--data-only", "-f", str(dump), database_url], check=True, timeout=120
    )
    data = dump.read_bytes()
    assert b"auth.login" in data, "the dump holds the audit rows"
    for secret in secrets_seen:
        for form in _forms(secret):
            assert form not in data, f"a secret is stored in the database: {secret[:6]}..."

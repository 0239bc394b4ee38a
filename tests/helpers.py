"""Helpers for tests: make organizations and accounts through the real code paths."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import msgspec
from litestar import Litestar

from backend.accounts.service import bootstrap_admin
from backend.audit_trail import AuditContext
from backend.auth import totp
from backend.runtime import Runtime

ADMIN_PASSWORD = "admin-password-7Hq!"
STAFF_PASSWORD = "staff-password-9Kw!"
CLIENT_PASSWORD = "client password long enough 42"


def runtime_of(app: Litestar) -> Runtime:
    runtime: Runtime = app.state.runtime
    return runtime


def totp_code(secret_b32: str, at: dt.datetime) -> str:
    padded = secret_b32 + "=" * (-len(secret_b32) % 8)
    import base64  # noqa: PLC0415

    return totp.hotp(base64.b32decode(padded), totp.time_step(at))


@dataclass
class Account:
    id: uuid.UUID
    email: str
    password: str
    role: str
    org_slug: str
    token: str | None = None
    totp_secret: str | None = None
    recovery_codes: list[str] | None = None

    @property
    def headers(self) -> dict[str, str]:
        assert self.token is not None
        return {"Authorization": f"Bearer {self.token}"}


async def make_org_admin(app: Litestar, db: asyncpg.Connection, slug: str = "clinic") -> Account:
    rt = runtime_of(app)
    email = f"admin@{slug}.example"
    view = await bootstrap_admin(
        rt,
        db,
        org_slug=slug,
        org_name=slug.title(),
        email=email,
        display_name="Admin",
        password=ADMIN_PASSWORD,
        ctx=AuditContext(source_instance="test"),
    )
    return Account(view.id, email, ADMIN_PASSWORD, "admin", slug)


async def login(client: Any, account: Account, **extra: Any) -> httpx.Response:
    body = {"organization": account.org_slug, "email": account.email, "password": account.password, **extra}
    response: httpx.Response = await client.post("/v1/auth/login", json=body)
    return response


async def login_with_mfa(client: Any, account: Account, app: Litestar) -> None:
    """Log in; enrol TOTP on first use, else answer with a fresh code."""
    rt = runtime_of(app)
    if account.totp_secret is None:
        response = await login(client, account)
        assert response.status_code == 200, response.text
        account.token = response.json()["token"]
        if response.json()["mfa_enrollment_required"]:
            enrol = await client.post("/v1/auth/mfa/totp", headers=account.headers)
            assert enrol.status_code == 200, enrol.text
            account.totp_secret = enrol.json()["secret"]
            code = totp_code(account.totp_secret, rt.clock.now())
            confirm = await client.post(
                "/v1/auth/mfa/totp/confirm", json={"code": code}, headers=account.headers
            )
            assert confirm.status_code == 200, confirm.text
            account.recovery_codes = confirm.json()["recovery_codes"]
        return
    # A code may be used once: move to the next step if this one was spent.
    clock = rt.clock
    if hasattr(clock, "advance"):
        clock.advance(totp.STEP_SECONDS)
    code = totp_code(account.totp_secret, clock.now())
    response = await login(client, account, totp_code=code)
    assert response.status_code == 200, response.text
    account.token = response.json()["token"]


async def make_staff(client: Any, app: Litestar, admin: Account, role: str, email: str) -> Account:
    response = await client.post(
        "/v1/accounts",
        json={"email": email, "display_name": role.title(), "role": role, "password": STAFF_PASSWORD},
        headers=admin.headers,
    )
    assert response.status_code == 201, response.text
    account = Account(uuid.UUID(response.json()["id"]), email, STAFF_PASSWORD, role, admin.org_slug)
    await login_with_mfa(client, account, app)
    return account


async def make_client(
    client: Any, clinician: Account, email: str, password: str = CLIENT_PASSWORD
) -> Account:
    invite = await client.post("/v1/invites", json={}, headers=clinician.headers)
    assert invite.status_code == 201, invite.text
    code = invite.json()["code"]
    redeemed = await client.post(
        f"/v1/invites/{code}/redeem",
        json={"email": email, "display_name": "Client", "password": password},
    )
    assert redeemed.status_code == 201, redeemed.text
    account = Account(uuid.UUID(redeemed.json()["id"]), email, password, "client", clinician.org_slug)
    response = await login(client, account)
    assert response.status_code == 200, response.text
    account.token = response.json()["token"]
    return account


@dataclass
class Clinic:
    admin: Account
    clinician: Account
    client: Account


async def make_clinic(client: Any, app: Litestar, db: asyncpg.Connection, slug: str = "clinic") -> Clinic:
    admin = await make_org_admin(app, db, slug)
    await login_with_mfa(client, admin, app)
    clinician = await make_staff(client, app, admin, "clinician", f"doc@{slug}.example")
    patient = await make_client(client, clinician, f"pat@{slug}.example")
    return Clinic(admin, clinician, patient)


async def audit_rows(db: asyncpg.Connection, event_type: str | None = None) -> list[dict[str, Any]]:
    if event_type is None:
        rows = await db.fetch("SELECT * FROM audit_events ORDER BY seq")
    else:
        rows = await db.fetch("SELECT * FROM audit_events WHERE event_type = $1 ORDER BY seq", event_type)
    return [dict(r) for r in rows]


def problem(response: httpx.Response) -> dict[str, Any]:
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    body: dict[str, Any] = msgspec.json.decode(response.content)
    assert body["type"].startswith("urn:confide:problem:")
    assert body["status"] == response.status_code
    return body

"""The whole authentication story through the real app and a real database."""

from __future__ import annotations

import asyncpg
from litestar import Litestar
from litestar.testing import AsyncTestClient

from backend.clock import FrozenClock
from tests.helpers import (
    audit_rows,
    login,
    login_with_mfa,
    make_clinic,
    make_org_admin,
    problem,
    totp_code,
)


async def test_onboarding_admin_clinician_client(
    client: AsyncTestClient[Litestar], app: Litestar, db: asyncpg.Connection
) -> None:
    clinic = await make_clinic(client, app, db)
    me = await client.get("/v1/me", headers=clinic.client.headers)
    assert me.status_code == 200
    body = me.json()
    assert body["role"] == "client"
    assert body["email"] == "pat@clinic.example"
    assert body["mfa_enabled"] is False
    # The inviting clinician now treats the client.
    relation = await db.fetchrow("SELECT * FROM care_relationships")
    assert relation is not None
    assert relation["client_id"] == clinic.client.id
    assert relation["clinician_id"] == clinic.clinician.id
    types = [row["event_type"] for row in await audit_rows(db)]
    for expected in ("account.create", "invite.create", "invite.redeem", "auth.login", "auth.mfa_confirm"):
        assert expected in types


async def test_staff_session_is_limited_until_mfa_enrolled(
    client: AsyncTestClient[Litestar], app: Litestar, db: asyncpg.Connection
) -> None:
    admin = await make_org_admin(app, db)
    response = await login(client, admin)
    assert response.status_code == 200
    assert response.json()["mfa_enrollment_required"] is True
    headers = {"Authorization": f"Bearer {response.json()['token']}"}
    # /v1/me is allowed, creating accounts is not.
    assert (await client.get("/v1/me", headers=headers)).status_code == 200
    denied = await client.post(
        "/v1/accounts",
        json={"email": "x@clinic.example", "display_name": "X", "role": "clinician", "password": "p" * 20},
        headers=headers,
    )
    assert denied.status_code == 403
    assert problem(denied)["type"].endswith("mfa-enrollment-required")


async def test_mfa_login_requires_code_and_refuses_replay(
    client: AsyncTestClient[Litestar], app: Litestar, db: asyncpg.Connection, clock: FrozenClock
) -> None:
    admin = await make_org_admin(app, db)
    await login_with_mfa(client, admin, app)
    assert admin.totp_secret is not None
    without = await login(client, admin)
    assert without.status_code == 401
    assert problem(without)["type"].endswith("mfa-required")
    clock.advance(30)
    code = totp_code(admin.totp_secret, clock.now())
    first = await login(client, admin, totp_code=code)
    assert first.status_code == 200
    replay = await login(client, admin, totp_code=code)
    assert replay.status_code == 401, "a TOTP code works once"
    wrong = await login(client, admin, totp_code="000000" if code != "000000" else "111111")
    assert wrong.status_code == 401
    clock.advance(120)
    stale = await login(client, admin, totp_code=code)
    assert stale.status_code == 401, "a code outside the window is refused"


async def test_recovery_code_works_once(
    client: AsyncTestClient[Litestar], app: Litestar, db: asyncpg.Connection
) -> None:
    admin = await make_org_admin(app, db)
    await login_with_mfa(client, admin, app)
    assert admin.recovery_codes is not None
    assert len(admin.recovery_codes) == 10
    code = admin.recovery_codes[0]
    assert (await login(client, admin, recovery_code=code)).status_code == 200
    assert (await login(client, admin, recovery_code=code)).status_code == 401


async def test_logout_revokes_only_this_session(
    client: AsyncTestClient[Litestar], app: Litestar, db: asyncpg.Connection
) -> None:
    clinic = await make_clinic(client, app, db)
    patient = clinic.client
    second = (await login(client, patient)).json()["token"]
    assert (await client.post("/v1/auth/logout", headers=patient.headers)).status_code == 204
    gone = await client.get("/v1/me", headers=patient.headers)
    assert gone.status_code == 401
    assert problem(gone)["type"].endswith("unauthenticated")
    assert (await client.get("/v1/me", headers={"Authorization": f"Bearer {second}"})).status_code == 200


async def test_logout_all_revokes_every_session(
    client: AsyncTestClient[Litestar], app: Litestar, db: asyncpg.Connection
) -> None:
    clinic = await make_clinic(client, app, db)
    patient = clinic.client
    second = (await login(client, patient)).json()["token"]
    assert (await client.post("/v1/auth/logout-all", headers=patient.headers)).status_code == 204
    assert (await client.get("/v1/me", headers=patient.headers)).status_code == 401
    assert (await client.get("/v1/me", headers={"Authorization": f"Bearer {second}"})).status_code == 401
    assert len(await audit_rows(db, "auth.logout_all")) == 1


async def test_password_change_revokes_other_sessions(
    client: AsyncTestClient[Litestar], app: Litestar, db: asyncpg.Connection
) -> None:
    clinic = await make_clinic(client, app, db)
    patient = clinic.client
    other = (await login(client, patient)).json()["token"]
    new_password = "a brand new passphrase 2026"
    wrong = await client.post(
        "/v1/auth/password",
        json={"current_password": "not the password at all", "new_password": new_password},
        headers=patient.headers,
    )
    assert wrong.status_code == 401
    weak = await client.post(
        "/v1/auth/password",
        json={"current_password": patient.password, "new_password": "short"},
        headers=patient.headers,
    )
    assert weak.status_code == 422
    assert problem(weak)["type"].endswith("weak-password")
    changed = await client.post(
        "/v1/auth/password",
        json={"current_password": patient.password, "new_password": new_password},
        headers=patient.headers,
    )
    assert changed.status_code == 204
    assert (await client.get("/v1/me", headers=patient.headers)).status_code == 200
    assert (await client.get("/v1/me", headers={"Authorization": f"Bearer {other}"})).status_code == 401
    assert (await login(client, patient)).status_code == 401
    patient.password = new_password
    assert (await login(client, patient)).status_code == 200
    outcomes = [row["outcome"] for row in await audit_rows(db, "auth.password_change")]
    assert outcomes == [4, 0]


async def test_idle_timeout(
    client: AsyncTestClient[Litestar], app: Litestar, db: asyncpg.Connection, clock: FrozenClock
) -> None:
    clinic = await make_clinic(client, app, db)
    headers = clinic.client.headers
    clock.advance(14 * 60 + 59)
    assert (await client.get("/v1/me", headers=headers)).status_code == 200
    clock.advance(15 * 60 + 1)
    assert (await client.get("/v1/me", headers=headers)).status_code == 401


async def test_absolute_timeout_despite_activity(
    client: AsyncTestClient[Litestar], app: Litestar, db: asyncpg.Connection, clock: FrozenClock
) -> None:
    clinic = await make_clinic(client, app, db)
    headers = clinic.client.headers
    for _ in range(71):  # activity every 10 minutes for 11 h 50 min
        clock.advance(600)
        assert (await client.get("/v1/me", headers=headers)).status_code == 200
    clock.advance(600)
    assert (await client.get("/v1/me", headers=headers)).status_code == 401


async def test_backwards_clock_does_not_extend_session(
    client: AsyncTestClient[Litestar], app: Litestar, db: asyncpg.Connection, clock: FrozenClock
) -> None:
    clinic = await make_clinic(client, app, db)
    headers = clinic.client.headers
    clock.advance(600)
    assert (await client.get("/v1/me", headers=headers)).status_code == 200
    before = await db.fetchval(
        "SELECT max(idle_expires_at) FROM sessions WHERE account_id = $1", clinic.client.id
    )
    clock.advance(-300)
    assert (await client.get("/v1/me", headers=headers)).status_code == 200
    after = await db.fetchval(
        "SELECT max(idle_expires_at) FROM sessions WHERE account_id = $1", clinic.client.id
    )
    assert after == before


async def test_rehash_on_login_when_parameters_change(
    client: AsyncTestClient[Litestar], app: Litestar, db: asyncpg.Connection
) -> None:
    clinic = await make_clinic(client, app, db)
    # Simulate a hash made with older, weaker parameters (t=2 -> stored as t=1 is below our floor,
    # so use a different memory cost the hasher will want to upgrade).
    from argon2 import PasswordHasher  # noqa: PLC0415

    old = PasswordHasher(time_cost=2, memory_cost=19_000, parallelism=1).hash(clinic.client.password)
    await db.execute("UPDATE accounts SET password_hash = $2 WHERE id = $1", clinic.client.id, old)
    assert (await login(client, clinic.client)).status_code == 200
    stored = await db.fetchval("SELECT password_hash FROM accounts WHERE id = $1", clinic.client.id)
    assert stored != old
    assert "m=19456,t=2,p=1" in stored


async def test_stored_secrets_are_digests_and_sealed(
    client: AsyncTestClient[Litestar], app: Litestar, db: asyncpg.Connection
) -> None:
    clinic = await make_clinic(client, app, db)
    assert clinic.client.token is not None
    tokens = await db.fetch("SELECT token_digest FROM sessions")
    assert all(len(row["token_digest"]) == 32 for row in tokens)
    assert clinic.clinician.totp_secret is not None
    sealed = await db.fetchval("SELECT totp_secret_sealed FROM accounts WHERE id = $1", clinic.clinician.id)
    assert clinic.clinician.totp_secret.encode() not in sealed
    hashes = await db.fetch("SELECT password_hash FROM accounts")
    assert all(row["password_hash"].startswith("$argon2id$v=19$m=19456,t=2,p=1$") for row in hashes)

"""Failed-login throttling: per account and per address, durable in PostgreSQL."""

from __future__ import annotations

import asyncpg
from litestar import Litestar
from litestar.testing import AsyncTestClient

from backend.clock import FrozenClock
from tests.helpers import audit_rows, login, make_clinic, problem


async def _bad_login(client: AsyncTestClient[Litestar], email: str, ip: str) -> int:
    response = await client.post(
        "/v1/auth/login",
        json={"organization": "clinic", "email": email, "password": "wrong password, wrong!"},
        headers={"X-Forwarded-For": ip},
    )
    return response.status_code


async def test_account_is_throttled_then_recovers(
    client: AsyncTestClient[Litestar], app: Litestar, db: asyncpg.Connection, clock: FrozenClock
) -> None:
    """150 wrong passwords are throttled long before 100 tries, and the right one works after back-off."""
    clinic = await make_clinic(client, app, db)
    patient = clinic.client
    statuses = [await _bad_login(client, patient.email, "10.0.0.1") for _ in range(150)]
    assert statuses[:5] == [401] * 5
    assert statuses[5] == 401  # the sixth failure is counted and starts the lock
    assert all(s == 429 for s in statuses[6:])
    checked = statuses.count(401)
    assert checked < 10, "only a handful of guesses are ever checked"
    locked = await login(client, patient)
    assert locked.status_code == 429
    body = problem(locked)
    assert int(locked.headers["retry-after"]) >= 1
    assert body["retry_after"] == int(locked.headers["retry-after"])
    clock.advance(int(locked.headers["retry-after"]))
    assert (await login(client, patient)).status_code == 200
    failures = [r for r in await audit_rows(db, "auth.login") if r["outcome"] != 0]
    assert len(failures) == 151, "every failure, throttled ones included, is audited"


async def test_lock_is_bounded_so_an_attacker_cannot_lock_forever(
    client: AsyncTestClient[Litestar], app: Litestar, db: asyncpg.Connection, clock: FrozenClock
) -> None:
    clinic = await make_clinic(client, app, db)
    for _ in range(40):
        await _bad_login(client, clinic.client.email, "10.0.0.2")
        clock.advance(1)
    row = await db.fetchrow("SELECT locked_until FROM login_throttle WHERE scope = 'account'")
    assert row is not None
    assert (row["locked_until"] - clock.now()).total_seconds() <= 900


async def test_unknown_account_is_throttled_like_a_known_one(
    client: AsyncTestClient[Litestar], app: Litestar, db: asyncpg.Connection
) -> None:
    """No enumeration: an unknown email gets the same answers in the same order."""
    await make_clinic(client, app, db)
    known = [await _bad_login(client, "pat@clinic.example", "10.0.1.1") for _ in range(7)]
    unknown = [await _bad_login(client, "nobody@clinic.example", "10.0.1.2") for _ in range(7)]
    assert known == unknown
    a = await client.post(
        "/v1/auth/login", json={"organization": "clinic", "email": "x@y.z", "password": "whatever it is"}
    )
    assert problem(a)["detail"] == "The organization, email or password is not correct."


async def test_throttle_survives_a_new_app_instance(
    client: AsyncTestClient[Litestar], app: Litestar, db: asyncpg.Connection
) -> None:
    clinic = await make_clinic(client, app, db)
    for _ in range(6):
        await _bad_login(client, clinic.client.email, "10.0.2.1")
    rows = await db.fetch("SELECT scope, failures FROM login_throttle ORDER BY scope")
    assert [(r["scope"], r["failures"]) for r in rows] == [("account", 6), ("address", 6)]
    # Stored as keyed digests: the email appears nowhere in the table.
    dump = await db.fetch("SELECT key_digest FROM login_throttle")
    assert all(clinic.client.email.encode() not in r["key_digest"] for r in dump)


async def test_one_address_guessing_many_accounts_is_throttled(
    client: AsyncTestClient[Litestar], app: Litestar, db: asyncpg.Connection, clock: FrozenClock
) -> None:
    """Per-address limit: spraying many accounts from one address is slowed after 20 failures."""
    clinic = await make_clinic(client, app, db)
    statuses = [await _bad_login(client, f"user{n}@clinic.example", "10.9.9.9") for n in range(25)]
    assert statuses[:20] == [401] * 20
    assert statuses[20] == 401  # the 21st failure is counted and locks the address
    assert set(statuses[21:]) == {429}
    # Even the right password of an untouched account waits out the address lock.
    locked = await login(client, clinic.client)
    assert locked.status_code == 429
    clock.advance(int(locked.headers["retry-after"]))
    assert (await login(client, clinic.client)).status_code == 200


async def test_password_change_guessing_is_throttled(
    client: AsyncTestClient[Litestar], app: Litestar, db: asyncpg.Connection
) -> None:
    """A stolen session cannot guess the current password without limit."""
    clinic = await make_clinic(client, app, db)
    statuses = []
    for _ in range(8):
        response = await client.post(
            "/v1/auth/password",
            json={"current_password": "not it, not it at all", "new_password": "a new passphrase 2026"},
            headers=clinic.client.headers,
        )
        statuses.append(response.status_code)
    assert statuses[:6] == [401] * 6
    assert set(statuses[6:]) == {429}

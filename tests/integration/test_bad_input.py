"""A table of bad inputs against every endpoint: a 4xx problem document, nothing changed, never a 5xx."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.helpers import Clinic, make_clinic, problem

LONG = "x" * 5000
BAD_TOKEN = {"Authorization": "Bearer cfd_" + "A" * 43}
MALFORMED_TOKEN = {"Authorization": "Bearer not-a-token"}
WRONG_SCHEME = {"Authorization": "Basic dXNlcjpwYXNz"}

TABLES = ["accounts", "sessions", "invites", "organizations", "recovery_codes", "care_relationships"]

# (name, method, path, who, body or raw bytes, expected status)
CASES: list[tuple[str, str, str, str, Any, int]] = [
    ("login: empty body", "POST", "/v1/auth/login", "anon", b"", 400),
    ("login: not json", "POST", "/v1/auth/login", "anon", b"{not json", 400),
    ("login: invalid utf-8", "POST", "/v1/auth/login", "anon", b'{"email": "\xff\xfe"}', 400),
    ("login: array", "POST", "/v1/auth/login", "anon", [], 400),
    (
        "login: missing password",
        "POST",
        "/v1/auth/login",
        "anon",
        {"organization": "clinic", "email": "a@b.c"},
        400,
    ),
    (
        "login: wrong type",
        "POST",
        "/v1/auth/login",
        "anon",
        {"organization": "clinic", "email": "a@b.c", "password": 12345},
        400,
    ),
    (
        "login: unknown field",
        "POST",
        "/v1/auth/login",
        "anon",
        {"organization": "clinic", "email": "a@b.c", "password": "p" * 20, "role": "admin"},
        400,
    ),
    (
        "login: oversized password",
        "POST",
        "/v1/auth/login",
        "anon",
        {"organization": "clinic", "email": "a@b.c", "password": LONG},
        400,
    ),
    (
        "login: bad slug",
        "POST",
        "/v1/auth/login",
        "anon",
        {"organization": "Clinic!", "email": "a@b.c", "password": "p" * 20},
        400,
    ),
    (
        "login: NUL in email",
        "POST",
        "/v1/auth/login",
        "anon",
        {"organization": "clinic", "email": "a\x00@b.c", "password": "p" * 20},
        400,
    ),
    (
        "login: totp not digits",
        "POST",
        "/v1/auth/login",
        "anon",
        {"organization": "clinic", "email": "a@b.c", "password": "p" * 20, "totp_code": "12ab56"},
        400,
    ),
    ("me: no token", "GET", "/v1/me", "anon", None, 401),
    ("me: unknown token", "GET", "/v1/me", "bad_token", None, 401),
    ("me: malformed token", "GET", "/v1/me", "malformed", None, 401),
    ("me: wrong scheme", "GET", "/v1/me", "basic", None, 401),
    ("logout: no token", "POST", "/v1/auth/logout", "anon", None, 401),
    ("logout-all: unknown token", "POST", "/v1/auth/logout-all", "bad_token", None, 401),
    (
        "password: no token",
        "POST",
        "/v1/auth/password",
        "anon",
        {"current_password": "a", "new_password": "b"},
        401,
    ),
    (
        "password: unknown field",
        "POST",
        "/v1/auth/password",
        "client",
        {"current_password": "a", "x": 1},
        400,
    ),
    ("mfa enrol: no token", "POST", "/v1/auth/mfa/totp", "anon", None, 401),
    ("mfa confirm: bad code", "POST", "/v1/auth/mfa/totp/confirm", "client", {"code": "abc"}, 400),
    ("mfa confirm: not started", "POST", "/v1/auth/mfa/totp/confirm", "client", {"code": "123456"}, 409),
    ("mfa enrol: already enrolled", "POST", "/v1/auth/mfa/totp", "clinician", None, 409),
    (
        "accounts: client may not",
        "POST",
        "/v1/accounts",
        "client",
        {"email": "n@c.example", "display_name": "N", "role": "clinician", "password": "p" * 20},
        403,
    ),
    (
        "accounts: clinician may not",
        "POST",
        "/v1/accounts",
        "clinician",
        {"email": "n@c.example", "display_name": "N", "role": "clinician", "password": "p" * 20},
        403,
    ),
    (
        "accounts: admin may not create clients",
        "POST",
        "/v1/accounts",
        "admin",
        {"email": "n@c.example", "display_name": "N", "role": "client", "password": "p" * 20},
        400,
    ),
    (
        "accounts: unknown role",
        "POST",
        "/v1/accounts",
        "admin",
        {"email": "n@c.example", "display_name": "N", "role": "root", "password": "p" * 20},
        400,
    ),
    (
        "accounts: mass assignment of org_id",
        "POST",
        "/v1/accounts",
        "admin",
        {
            "email": "n@c.example",
            "display_name": "N",
            "role": "clinician",
            "password": "p" * 20,
            "org_id": "00000000-0000-0000-0000-000000000000",
        },
        400,
    ),
    (
        "accounts: RTL override in name",
        "POST",
        "/v1/accounts",
        "admin",
        {"email": "n@c.example", "display_name": "N\u202eevil", "role": "clinician", "password": "p" * 20},
        400,
    ),
    (
        "accounts: weak password",
        "POST",
        "/v1/accounts",
        "admin",
        {"email": "n@c.example", "display_name": "N", "role": "clinician", "password": "short"},
        422,
    ),
    (
        "accounts: duplicate email, other case",
        "POST",
        "/v1/accounts",
        "admin",
        {
            "email": "DOC@clinic.example",
            "display_name": "N",
            "role": "clinician",
            "password": "a fine staff pass 1",
        },
        409,
    ),
    ("invites: client may not", "POST", "/v1/invites", "client", {}, 403),
    ("invites: admin may not", "POST", "/v1/invites", "admin", {}, 403),
    ("invites: ttl too long", "POST", "/v1/invites", "clinician", {"ttl_s": 10**9}, 400),
    ("invites: negative ttl", "POST", "/v1/invites", "clinician", {"ttl_s": -1}, 400),
    ("invites: ttl NaN-like", "POST", "/v1/invites", "clinician", b'{"ttl_s": NaN}', 400),
    (
        "redeem: unknown code",
        "POST",
        "/v1/invites/" + "a" * 32 + "/redeem",
        "anon",
        {"email": "n@c.example", "display_name": "N", "password": "a fine staff pass 1"},
        404,
    ),
    (
        "redeem: malformed code",
        "POST",
        "/v1/invites/../../etc/redeem",
        "anon",
        {"email": "n@c.example", "display_name": "N", "password": "p" * 20},
        404,
    ),
    ("redeem: bad body", "POST", "/v1/invites/" + "a" * 32 + "/redeem", "anon", {"email": 1}, 400),
    ("unknown route", "GET", "/v1/nothing-here", "anon", None, 404),
    ("wrong method", "DELETE", "/v1/me", "client", None, 405),
]


async def _counts(db: asyncpg.Connection) -> dict[str, int]:
    return {t: await db.fetchval(f"SELECT count(*) FROM {t}") for t in TABLES}  # noqa: S608 -- fixed names


@pytest.fixture
async def clinic(client: AsyncTestClient[Litestar], app: Litestar, db: asyncpg.Connection) -> Clinic:
    return await make_clinic(client, app, db)


@pytest.mark.parametrize(
    ("name", "method", "path", "who", "body", "status"), CASES, ids=[c[0] for c in CASES]
)
async def test_bad_input_is_refused_cleanly(
    client: AsyncTestClient[Litestar],
    db: asyncpg.Connection,
    clinic: Clinic,
    name: str,
    method: str,
    path: str,
    who: str,
    body: Any,
    status: int,
) -> None:
    del name
    headers = {
        "anon": {},
        "bad_token": BAD_TOKEN,
        "malformed": MALFORMED_TOKEN,
        "basic": WRONG_SCHEME,
        "client": clinic.client.headers,
        "clinician": clinic.clinician.headers,
        "admin": clinic.admin.headers,
    }[who]
    before = await _counts(db)
    if isinstance(body, bytes):
        response = await client.request(
            method, path, content=body, headers={**headers, "Content-Type": "application/json"}
        )
    elif body is None:
        response = await client.request(method, path, headers=headers)
    else:
        response = await client.request(method, path, json=body, headers=headers)
    assert response.status_code == status, response.text
    document = problem(response)
    assert document["request_id"] == response.headers["x-request-id"]
    assert "Traceback" not in response.text
    assert await _counts(db) == before, "a refused request changes nothing"


async def test_oversized_body_gets_413(client: AsyncTestClient[Litestar], settings: Any) -> None:
    body = (
        b'{"organization": "clinic", "email": "a@b.c", "password": "' + b"p" * settings.max_body_bytes + b'"}'
    )
    response = await client.post("/v1/auth/login", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert problem(response)["type"].endswith("payload-too-large")


async def test_deeply_nested_json_is_refused(client: AsyncTestClient[Litestar]) -> None:
    body = b'{"organization": ' + b"[" * 10_000 + b"]" * 10_000 + b"}"
    response = await client.post("/v1/auth/login", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    problem(response)


async def test_validation_problems_never_echo_values(
    client: AsyncTestClient[Litestar], clinic: Clinic
) -> None:
    marker = "secret-echo@clinic.example"
    response = await client.post(
        "/v1/accounts",
        json={"email": "n@c.example", "display_name": "N", "role": marker, "password": "a fine staff pass 1"},
        headers=clinic.admin.headers,
    )
    assert response.status_code == 400
    assert marker not in response.text
    assert problem(response)["errors"]


def test_if_match_accepts_ascii_revisions_only() -> None:
    from backend.keys.service import _revision_of  # noqa: PLC0415

    assert _revision_of('"r12"') == 12
    assert _revision_of(' "r3" ') == 3
    for bad in ('"r\xb2"', '"r¹"', "r12", 'W/"r1"', '"r"', '"r12345678901"', '"x1"'):
        assert _revision_of(bad) is None

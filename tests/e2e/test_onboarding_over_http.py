"""The real server process over HTTP.

Bootstrap → staff with TOTP → invite → client → throttling → idle expiry.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable

import httpx
import pytest

from tests.e2e.conftest import RunningServer
from tests.helpers import totp_code

pytestmark = pytest.mark.e2e

ADMIN_PW = "E2E-admin-passphrase-1"
DOC_PW = "E2E-doctor-passphrase-2"
CLIENT_PW = "E2E client passphrase number 3"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _enrol_totp(http: httpx.Client, headers: dict[str, str]) -> list[str]:
    enrol = http.post("/v1/auth/mfa/totp", headers=headers)
    assert enrol.status_code == 200, enrol.text
    secret = enrol.json()["secret"]
    confirm = http.post(
        "/v1/auth/mfa/totp/confirm", json={"code": totp_code(secret, _now())}, headers=headers
    )
    assert confirm.status_code == 200, confirm.text
    codes: list[str] = confirm.json()["recovery_codes"]
    return codes


def test_onboarding_throttling_and_idle_timeout(start_server: Callable[..., RunningServer]) -> None:
    server = start_server(
        CONFIDE_SESSION_IDLE_TIMEOUT_S="3",
        CONFIDE_SESSION_TOUCH_INTERVAL_S="0",
        CONFIDE_THROTTLE_ACCOUNT_FREE_FAILURES="3",
    )
    created = server.run_cli(
        "admin",
        "create",
        "--organization",
        "e2e-clinic",
        "--organization-name",
        "E2E Clinic",
        "--email",
        "admin@e2e.example",
        "--name",
        "Admin",
        "--password-stdin",
        stdin=ADMIN_PW + "\n",
    )
    assert created.returncode == 0, created.stderr
    again = server.run_cli(
        "admin", "create", "--organization", "e2e-clinic", "--email", "b@e2e.example", "--name", "B",
        "--password-stdin", stdin=ADMIN_PW + "\n",
    )  # fmt: skip
    assert again.returncode == 1, "the bootstrap works once per organization"

    with server.client() as http:
        login = http.post(
            "/v1/auth/login",
            json={"organization": "e2e-clinic", "email": "admin@e2e.example", "password": ADMIN_PW},
        )
        assert login.status_code == 200, login.text
        assert login.json()["mfa_enrollment_required"] is True
        admin = {"Authorization": f"Bearer {login.json()['token']}"}
        _enrol_totp(http, admin)

        staff = http.post(
            "/v1/accounts",
            json={
                "email": "doc@e2e.example",
                "display_name": "Dr Doe",
                "role": "clinician",
                "password": DOC_PW,
            },
            headers=admin,
        )
        assert staff.status_code == 201, staff.text

        doc_login = http.post(
            "/v1/auth/login",
            json={"organization": "e2e-clinic", "email": "doc@e2e.example", "password": DOC_PW},
        )
        doc = {"Authorization": f"Bearer {doc_login.json()['token']}"}
        assert http.post("/v1/invites", json={}, headers=doc).status_code == 403, "no invites before MFA"
        recovery = _enrol_totp(http, doc)
        with_recovery = http.post(
            "/v1/auth/login",
            json={
                "organization": "e2e-clinic",
                "email": "doc@e2e.example",
                "password": DOC_PW,
                "recovery_code": recovery[0],
            },
        )
        assert with_recovery.status_code == 200, with_recovery.text

        invite = http.post("/v1/invites", json={"ttl_s": 3600}, headers=doc)
        assert invite.status_code == 201, invite.text
        code = invite.json()["code"]
        redeem = http.post(
            f"/v1/invites/{code}/redeem",
            json={"email": "Client@E2E.example", "display_name": "C", "password": CLIENT_PW},
        )
        assert redeem.status_code == 201, redeem.text
        reuse = http.post(
            f"/v1/invites/{code}/redeem",
            json={"email": "other@e2e.example", "display_name": "O", "password": CLIENT_PW},
        )
        assert reuse.status_code == 404, "an invite is single-use"

        client_login = http.post(
            "/v1/auth/login",
            json={"organization": "e2e-clinic", "email": "client@e2e.example", "password": CLIENT_PW},
        )
        assert client_login.status_code == 200, "email is case-insensitive"
        client = {"Authorization": f"Bearer {client_login.json()['token']}"}
        me = http.get("/v1/me", headers=client)
        assert me.status_code == 200
        assert me.json()["role"] == "client"

        # Throttling: 3 free failures, then the account is locked with Retry-After.
        statuses = []
        for _ in range(5):
            bad = http.post(
                "/v1/auth/login",
                json={"organization": "e2e-clinic", "email": "client@e2e.example", "password": "wrong" * 4},
            )
            statuses.append(bad.status_code)
        assert statuses[:4] == [401, 401, 401, 401]
        assert statuses[4] == 429
        assert int(bad.headers["retry-after"]) >= 1
        assert bad.headers["content-type"].startswith("application/problem+json")

        # Idle timeout: the session dies once it has been idle for longer than 3 s.
        assert http.get("/v1/me", headers=client).status_code == 200
        last_used = time.monotonic()
        while time.monotonic() < last_used + 4.0:  # waiting for wall-clock time is the condition itself
            time.sleep(0.25)
        expired = http.get("/v1/me", headers=client)
        assert expired.status_code == 401
        assert expired.json()["type"] == "urn:confide:problem:unauthenticated"

    log = server.log_path.read_text()
    assert '"event": "request"' in log
    for secret in (ADMIN_PW, DOC_PW, CLIENT_PW, code, client_login.json()["token"], "client@e2e.example"):
        assert secret not in log, "the server log holds no password, code, token or email"

"""One active consent per (client, grantee, purpose): a second grant is a 409 (migration 0016)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import asyncpg
from litestar import Litestar
from litestar.testing import AsyncTestClient

from backend.clock import FrozenClock
from crypto.client import sign_consent
from crypto.client.keys import IdentityKeys
from crypto.public import ConsentAction
from tests.helpers import Clinic, audit_rows, login, make_clinic, problem
from tests.messaging_helpers import as_json, publish_keys


def _statement(
    clinic: Clinic, keys: IdentityKeys, org_id: uuid.UUID, clock: FrozenClock, *, hours: int = 24,
    action: ConsentAction = ConsentAction.GRANT, consent_id: uuid.UUID | None = None,
    scopes: tuple[str, ...] = ("messaging",),
) -> Any:  # fmt: skip
    start = clock.now().replace(microsecond=0) - dt.timedelta(minutes=1)
    return as_json(
        sign_consent(
            keys,
            action=action,
            consent_id=consent_id or uuid.uuid4(),
            organization_id=org_id,
            grantee_type="clinician",
            grantee_id=clinic.clinician.id,
            scopes=scopes,
            purpose="TREAT",
            valid_from=start,
            valid_until=start + dt.timedelta(hours=hours),
            clock=clock.now,
        )
    )


async def test_a_second_grant_to_the_same_grantee_and_purpose_is_refused_until_the_first_ends(
    client: AsyncTestClient[Litestar], app: Litestar, db: asyncpg.Connection, clock: FrozenClock
) -> None:
    """Two active consents for one grantee and purpose would let revoking one leave access open."""
    clinic = await make_clinic(client, app, db)
    keys = await publish_keys(client, clinic.client)
    org_id = uuid.UUID((await client.get("/v1/me", headers=clinic.client.headers)).json()["organization_id"])
    patient = clinic.client.headers
    first = _statement(clinic, keys, org_id, clock)
    assert (await client.post("/v1/consents", json=first, headers=patient)).status_code == 201
    wider = _statement(clinic, keys, org_id, clock, scopes=("messaging", "records.read"))
    refused = await client.post("/v1/consents", json=wider, headers=patient)
    assert refused.status_code == 409, refused.text
    assert "revoke it" in problem(refused)["detail"]
    assert await db.fetchval("SELECT count(*) FROM consent_events WHERE consent_id = $1",
                             uuid.UUID(wider["consent_id"])) == 0  # fmt: skip
    assert len(await audit_rows(db, "consent.grant")) == 1

    revoke = _statement(clinic, keys, org_id, clock, action=ConsentAction.REVOKE,
                        consent_id=uuid.UUID(first["consent_id"]))  # fmt: skip
    revoked = await client.post(f"/v1/consents/{first['consent_id']}/revoke", json=revoke, headers=patient)
    assert revoked.status_code == 200, revoked.text
    again = _statement(clinic, keys, org_id, clock, hours=1)
    assert (await client.post("/v1/consents", json=again, headers=patient)).status_code == 201

    # Past its validity but not swept yet: the new grant records the old one's expiry first.
    clock.advance(2 * 3600)
    session = await login(client, clinic.client)  # the old session timed out meanwhile
    patient = {"Authorization": f"Bearer {session.json()['token']}"}
    renewed = await client.post("/v1/consents", json=_statement(clinic, keys, org_id, clock), headers=patient)
    assert renewed.status_code == 201, renewed.text
    ended = await db.fetchrow(
        "SELECT status FROM consents WHERE consent_id = $1", uuid.UUID(again["consent_id"])
    )
    assert ended is not None
    assert ended["status"] == "expired"
    expiries = await audit_rows(db, "consent.expire")
    assert [r["consent_id"] for r in expiries] == [uuid.UUID(again["consent_id"])]
    assert await db.fetchval("SELECT count(*) FROM consents WHERE status = 'active'") == 1

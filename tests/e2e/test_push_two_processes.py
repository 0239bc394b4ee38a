"""Two server processes on one database: a message sent through A reaches a stream on B.

Fan-out goes through PostgreSQL LISTEN/NOTIFY only (the processes share nothing else),
within 1 s; a reconnection with Last-Event-ID gets exactly the events it missed.
"""

from __future__ import annotations

import base64
import datetime as dt
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import msgspec
import pytest

from crypto.client import InnerPayload, generate_identity, seal_envelope, sign_consent
from crypto.client.keys import IdentityKeys
from crypto.public import ConsentAction, EnvelopeKind
from tests.e2e.conftest import RunningServer
from tests.helpers import totp_code
from tests.integration.test_push import SseReader
from tests.messaging_helpers import as_json

pytestmark = pytest.mark.e2e

DEADLINE_S = 1.0


@dataclass
class Parties:
    doc: dict[str, str]
    pat: dict[str, str]
    doc_keys: IdentityKeys
    pat_keys: IdentityKeys
    conversation_id: uuid.UUID
    admin: dict[str, str]


async def _set_up(server: RunningServer, http: httpx.AsyncClient) -> Parties:
    created = server.run_cli(
        "admin", "create", "--organization", "push-e2e", "--email", "admin@push.example", "--name", "A",
        "--password-stdin", stdin="push e2e admin passphrase\n",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr

    async def login(email: str, password: str) -> dict[str, str]:
        body = {"organization": "push-e2e", "email": email, "password": password}
        r = await http.post("/v1/auth/login", json=body)
        assert r.status_code == 200, r.text
        return {"Authorization": f"Bearer {r.json()['token']}"}

    async def enrol(headers: dict[str, str]) -> None:
        secret = (await http.post("/v1/auth/mfa/totp", headers=headers)).json()["secret"]
        code = totp_code(secret, dt.datetime.now(dt.UTC))
        confirmed = await http.post("/v1/auth/mfa/totp/confirm", json={"code": code}, headers=headers)
        assert confirmed.status_code == 200, confirmed.text

    admin = await login("admin@push.example", "push e2e admin passphrase")
    await enrol(admin)
    doc_body = {
        "email": "doc@push.example",
        "display_name": "D",
        "role": "clinician",
        "password": "doc pass 12345",
    }
    assert (await http.post("/v1/accounts", json=doc_body, headers=admin)).status_code == 201
    doc = await login("doc@push.example", "doc pass 12345")
    await enrol(doc)
    code = (await http.post("/v1/invites", json={}, headers=doc)).json()["code"]
    pat_body = {"email": "pat@push.example", "display_name": "P", "password": "patient passphrase 1"}
    pat_id = uuid.UUID((await http.post(f"/v1/invites/{code}/redeem", json=pat_body)).json()["id"])
    pat = await login("pat@push.example", "patient passphrase 1")
    me = (await http.get("/v1/me", headers=doc)).json()
    doc_id, org_id = uuid.UUID(me["id"]), uuid.UUID(me["organization_id"])

    doc_keys, pat_keys = generate_identity(doc_id), generate_identity(pat_id)
    for headers, identity in ((doc, doc_keys), (pat, pat_keys)):
        assert (
            await http.put("/v1/me/keys", json=as_json(identity.bundle), headers=headers)
        ).status_code == 201
    start = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(minutes=1)
    consent = sign_consent(
        pat_keys, action=ConsentAction.GRANT, consent_id=uuid.uuid4(), organization_id=org_id,
        grantee_type="clinician", grantee_id=doc_id, scopes=("messaging",), purpose="TREAT",
        valid_from=start, valid_until=start + dt.timedelta(days=1),
    )  # fmt: skip
    assert (await http.post("/v1/consents", json=as_json(consent), headers=pat)).status_code == 201
    conversation_id = uuid.uuid4()
    conversation = {"id": str(conversation_id), "kind": "direct", "client_id": str(pat_id)}
    assert (await http.post("/v1/conversations", json=conversation, headers=doc)).status_code == 201
    return Parties(doc, pat, doc_keys, pat_keys, conversation_id, admin)


async def _send(http: httpx.AsyncClient, p: Parties, text: str) -> uuid.UUID:
    envelope = seal_envelope(
        p.doc_keys, kind=EnvelopeKind.MESSAGE, context_id=p.conversation_id, item_id=uuid.uuid4(),
        payload=InnerPayload(version=1, content_type="text/plain", body=text.encode()),
        recipients=[p.doc_keys.bundle, p.pat_keys.bundle],
    )  # fmt: skip
    r = await http.post(
        f"/v1/conversations/{p.conversation_id}/messages", json=as_json(envelope), headers=p.doc
    )
    assert r.status_code == 201, r.text
    return envelope.item_id


def _message_id(event: dict[str, str]) -> str:
    assert event["event"] == "message.created"
    return str(msgspec.json.decode(event["data"])["message_id"])


async def test_a_message_sent_through_one_process_reaches_a_stream_on_the_other(
    start_server: Callable[..., RunningServer],
) -> None:
    """R-02: cross-process delivery within 1 s, and exact resumption after a dropped connection."""
    shared_key = base64.b64encode(secrets.token_bytes(32)).decode()
    server_a = start_server(CONFIDE_SECRET_KEY=shared_key)
    server_b = start_server(CONFIDE_SECRET_KEY=shared_key)
    async with (
        httpx.AsyncClient(base_url=server_a.base_url, timeout=10) as a,
        httpx.AsyncClient(base_url=server_b.base_url, timeout=10) as b,
    ):
        parties = await _set_up(server_a, a)
        latencies: list[float] = []
        async with b.stream("GET", "/v1/events", headers=parties.pat) as response:
            assert response.status_code == 200
            reader = SseReader(response)
            await reader.comment("stream open")
            for n in range(3):
                started = time.monotonic()
                sent = await _send(a, parties, f"live {n}")
                event = await reader.expect(within_s=DEADLINE_S)
                latencies.append(time.monotonic() - started)
                assert _message_id(event) == str(sent)
            last_seen = event["id"]
        shown = [round(x * 1000, 1) for x in latencies]
        print(f"cross-process delivery (send through A -> event on B): {shown} ms")
        assert max(latencies) < DEADLINE_S, latencies

        # The connection is gone; two messages are sent meanwhile; B resumes after the last id.
        missed = [await _send(a, parties, "missed 1"), await _send(a, parties, "missed 2")]
        async with b.stream(
            "GET", "/v1/events", headers={**parties.pat, "Last-Event-ID": last_seen}
        ) as response:
            assert response.status_code == 200
            reader = SseReader(response)
            resumed = [await reader.expect(), await reader.expect()]
            marker = await _send(a, parties, "after resuming")
            following = await reader.expect(within_s=DEADLINE_S)
        assert [_message_id(e) for e in resumed] == [str(m) for m in missed]
        assert _message_id(following) == str(marker), "exactly the two missed events, nothing else"

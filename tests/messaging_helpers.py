"""Front-end behaviour for tests: keys, consent and sealed messages, as a real client would do it."""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from typing import Any

import msgspec

from backend.clock import FrozenClock
from crypto.client import InnerPayload, generate_identity, open_envelope, seal_envelope, sign_consent
from crypto.client.keys import IdentityKeys
from crypto.public import ConsentAction, Envelope, EnvelopeKind, KeyBundle, encode
from tests.helpers import Account


def as_json(value: Any) -> Any:
    return msgspec.json.decode(encode(value))


async def upload_attachment(
    client: Any, headers: dict[str, str], conversation_id: uuid.UUID, attachment_id: uuid.UUID, blob: bytes
) -> Any:
    """Upload an encrypted attachment blob with its BLAKE2b digest, as a front end does."""
    return await client.post(
        f"/v1/conversations/{conversation_id}/attachments",
        params={"id": str(attachment_id)},
        content=blob,
        headers={
            **headers,
            "Content-Type": "application/octet-stream",
            "X-Content-BLAKE2b": hashlib.blake2b(blob, digest_size=32).hexdigest(),
        },
    )


async def publish_keys(client: Any, account: Account) -> IdentityKeys:
    identity = generate_identity(account.id)
    response = await client.put("/v1/me/keys", json=as_json(identity.bundle), headers=account.headers)
    assert response.status_code == 201, response.text
    return identity


async def consent_to(
    client: Any,
    patient: Account,
    identity: IdentityKeys,
    org_id: uuid.UUID,
    clinician_id: uuid.UUID,
    clock: FrozenClock,
    scopes: tuple[str, ...] = ("messaging", "records.read"),
) -> dict[str, Any]:
    start = clock.now().replace(microsecond=0) - dt.timedelta(minutes=1)
    statement = sign_consent(
        identity,
        action=ConsentAction.GRANT,
        consent_id=uuid.uuid4(),
        organization_id=org_id,
        grantee_type="clinician",
        grantee_id=clinician_id,
        scopes=scopes,
        purpose="TREAT",
        valid_from=start,
        valid_until=start + dt.timedelta(days=30),
        clock=clock.now,
    )
    body: dict[str, Any] = as_json(statement)
    response = await client.post("/v1/consents", json=body, headers=patient.headers)
    assert response.status_code == 201, response.text
    return body


def seal(
    sender: IdentityKeys,
    conversation_id: uuid.UUID,
    text: str,
    recipients: list[KeyBundle],
    *,
    kind: EnvelopeKind = EnvelopeKind.MESSAGE,
    references: uuid.UUID | None = None,
    item_id: uuid.UUID | None = None,
) -> Envelope:
    payload = InnerPayload(version=1, content_type="text/plain; charset=utf-8", body=text.encode())
    return seal_envelope(
        sender,
        kind=kind,
        context_id=conversation_id,
        item_id=item_id or uuid.uuid4(),
        payload=payload,
        recipients=recipients,
        references=references,
    )


def read(
    envelope_json: Any, reader: IdentityKeys, sender_bundle: KeyBundle, conversation_id: uuid.UUID
) -> str:
    envelope = msgspec.convert(envelope_json, Envelope, strict=False)
    opened = open_envelope(
        envelope,
        reader=reader,
        sender_bundle=sender_bundle,
        context_id=conversation_id,
        kinds={EnvelopeKind.MESSAGE, EnvelopeKind.MESSAGE_EDIT, EnvelopeKind.MESSAGE_DELETE},
    )
    return opened.payload.body.decode()

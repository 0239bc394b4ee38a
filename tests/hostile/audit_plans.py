"""The calls and the audit-event reading of the G-05 test (tests/hostile/test_audit_completeness.py).

A *plan* builds one call (making what it needs first, through the API: a support group,
a break-glass opening, a fresh client with keys); a *pick* names an id an event must carry.
Audit events are read back by request id, as the database owner (row-level security does
not hide another organization's rows from the check).
"""

# ruff: noqa: ARG001 -- every plan takes (scene, actor); most need only one of them

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import secrets
import uuid
from collections.abc import Callable
from typing import Any

import asyncpg
import httpx

from audit.cosignature import witness_checkpoint
from audit.note import COSIGNATURE_V1, VerifierKey, generate_signer
from crypto.client import (
    InnerPayload,
    create_key_backup,
    generate_identity,
    rotate_identity,
    seal_envelope,
    share_envelope,
)
from crypto.public import ConsentAction, Envelope, EnvelopeKind
from tests.hostile.test_authorization_matrix import Call, Targets, _send
from tests.hostile.world import CLIENT_PASSWORD, Builder, Member, World, as_json, consent_statement


@dataclasses.dataclass
class Scene:
    """What a plan may use: the world, a client to reach the server, and what earlier plans made."""

    world: World
    http: httpx.Client
    builder: Builder
    t: Targets
    made: dict[str, Any] = dataclasses.field(default_factory=dict)

    def ok(self, member: Member, call: Call, *statuses: int) -> httpx.Response:
        response = _send(self.http, call, member.token)
        assert response.status_code in (statuses or (200, 201)), (
            f"setup {call.method} {call.path}: {response.status_code} {response.text}"
        )
        return response


@dataclasses.dataclass(frozen=True)
class Done:
    """One call made: the scene, who made it, what was sent, what came back."""

    scene: Scene
    actor: Member
    call: Call
    response: httpx.Response

    @property
    def t(self) -> Targets:
        return self.scene.t

    def body(self) -> Any:
        return self.response.json()


Pick = Callable[[Done], uuid.UUID | None]
#: An expected id that must be present, whatever its value (a server-made id not in the answer).
PRESENT = object()


def as_uuid(value: Any) -> uuid.UUID:
    return uuid.UUID(str(value))


# Picks of expected ids.
def the_actor(d: Done) -> uuid.UUID:
    return d.actor.id


def the_client(d: Done) -> uuid.UUID:
    return d.t.client_id


def the_former(d: Done) -> uuid.UUID:
    return d.t.former_id


def created_id(d: Done) -> uuid.UUID:
    return as_uuid(d.body()["id"])


def chosen_id(d: Done) -> uuid.UUID:
    """The id the caller chose: a conversation's ``id``, an envelope's ``item_id``."""
    body = d.call.json
    return as_uuid(body["id"] if "id" in body else body["item_id"])


@dataclasses.dataclass(frozen=True)
class Expect:
    """The one event a successful call writes, field by field (``status``: the answer, else any 2xx)."""

    event_type: str
    action: str
    entity_type: str | None
    entity_id: Pick | object | None  # a pick, PRESENT, or None (the event names no single object)
    subject: Pick | None
    purpose: str | None = None
    # The consent that allowed the access: a pick, or PRESENT (a clinician's access to a client).
    consent: Pick | object | None = None
    reason: str | None = None
    role: str | None = None  # who calls: by default the first role the matrix allows
    plan: Callable[[Scene, Member], Call] | None = None  # by default the matrix's recipe
    actor: Callable[[Scene], Member] | None = None  # instead of ``role``: a member the plan makes
    status: int | None = None
    anonymous: bool = False  # sent without a session (a public route): the event names no agent


# -- plans for calls the matrix's recipes make fail on purpose --------------------------


def newcomer(s: Scene) -> Member:
    """A client of the first organization made for this module (keys, backup), invited by the clinician."""
    if "newcomer" not in s.made:
        s.made["newcomer"] = _new_client(s, "newcomer")
    member: Member = s.made["newcomer"]
    return member


def _new_client(s: Scene, name: str) -> Member:
    doc = s.world.a.clinician
    code = s.ok(doc, Call("POST", "/v1/invites", {})).json()["code"]
    email = f"{name}-{uuid.uuid4().hex[:6]}@alpha.example"
    body = {"email": email, "display_name": name.title(), "password": CLIENT_PASSWORD}
    redeemed = s.http.post(f"/v1/invites/{code}/redeem", json=body)
    assert redeemed.status_code == 201, redeemed.text
    answer = s.builder.login("alpha", email, CLIENT_PASSWORD).json()
    return Member("client", as_uuid(answer["account_id"]), email, CLIENT_PASSWORD, "alpha", answer["token"])


def publish_first(s: Scene, actor: Member) -> Call:
    actor.keys = generate_identity(actor.id)
    return Call("PUT", "/v1/me/keys", as_json(actor.keys.bundle))


def rotate(s: Scene, actor: Member) -> Call:
    assert actor.keys is not None
    actor.keys = rotate_identity(actor.keys)
    return Call("PUT", "/v1/me/keys", as_json(actor.keys.bundle))


def revoke_first(s: Scene, actor: Member) -> Call:
    return Call("POST", "/v1/me/keys/1/revoke")


def put_backup(s: Scene, actor: Member) -> Call:
    assert actor.keys is not None
    backup = create_key_backup(actor.keys, "newcomer backup passphrase " + secrets.token_hex(4))
    return Call("PUT", "/v1/me/key-backup", as_json(backup))


def rotate_custodian(s: Scene, actor: Member) -> Call:
    """The second organization's admin rotates its custodian key (the first keeps its own)."""
    s.world.b.custodian = rotate_identity(s.world.b.custodian)
    return Call("PUT", "/v1/organization/custodian-key", as_json(s.world.b.custodian.bundle))


def grant(s: Scene, actor: Member) -> Call:
    assert actor.keys is not None
    consent_id = uuid.uuid4()
    s.made["granted"] = consent_id
    body = consent_statement(
        actor.keys, s.world.a.id, s.t.clinician_id, ConsentAction.GRANT, consent_id, "COC"
    )
    return Call("POST", "/v1/consents", body)


def _sealed_note(s: Scene) -> Envelope:
    doc = s.world.a.clinician
    assert doc.keys is not None
    return seal_envelope(
        doc.keys,
        kind=EnvelopeKind.NOTE,
        context_id=s.t.client_id,
        item_id=uuid.uuid4(),
        payload=InnerPayload(version=1, content_type="text/markdown", body=b"audit completeness note"),
        recipients=[doc.keys.bundle, s.world.a.custodian.bundle],
    )


def share(s: Scene, actor: Member) -> Call:
    """The clinician writes a note, then shares it with the client."""
    note = _sealed_note(s)
    s.ok(actor, Call("POST", f"/v1/clients/{s.t.client_id}/notes", as_json(note)), 201)
    assert actor.keys is not None
    assert s.world.a.client.keys is not None
    shared = share_envelope(note, sender=actor.keys, add=[s.world.a.client.keys.bundle])
    s.made["shared_note"] = note.item_id
    return Call("POST", f"/v1/notes/{note.item_id}/shares", as_json(shared))


def _group(s: Scene) -> uuid.UUID:
    """A support group the clinician runs (no client of its own)."""
    if "group" not in s.made:
        group = uuid.uuid4()
        body: dict[str, Any] = {
            "id": str(group),
            "kind": "support_group",
            "client_id": None,
            "clinicians": [],
        }
        s.ok(s.world.a.clinician, Call("POST", "/v1/conversations", body), 201)
        s.made["group"] = group
    group_id: uuid.UUID = s.made["group"]
    return group_id


def invite_to_group(s: Scene, actor: Member) -> Call:
    return Call("POST", f"/v1/conversations/{_group(s)}/members", {"account_id": str(s.t.client_id)})


def join_group(s: Scene, actor: Member) -> Call:
    return Call("POST", f"/v1/conversations/{_group(s)}/join", {"pseudonym": "Blue Heron"})


def remove_from_group(s: Scene, actor: Member) -> Call:
    return Call("DELETE", f"/v1/conversations/{_group(s)}/members/{s.t.client_id}")


def _break_glass(s: Scene) -> uuid.UUID:
    """The colleague (no consent, no care relationship) opens emergency access to the client."""
    if "emergency" not in s.made:
        body = {"client_id": str(s.t.client_id), "reason": "Collapsed in the waiting room, allergies needed"}
        opened = s.ok(s.world.a.colleague, Call("POST", "/v1/emergency-access", body), 201)
        s.made["emergency"] = as_uuid(opened.json()["id"])
    emergency: uuid.UUID = s.made["emergency"]
    return emergency


def wraps(s: Scene, actor: Member) -> Call:
    """The custodian's holder hands the colleague the note's key (opaque bytes to the server)."""
    body = {
        "key_version": 1,
        "wraps": [{"note_id": str(s.t.note_id), "wrapped_key": as_json(secrets.token_bytes(80))}],
    }
    return Call("POST", f"/v1/emergency-access/{_break_glass(s)}/key-wraps", body)


def read_by_break_glass(s: Scene, actor: Member) -> Call:
    return Call("GET", f"/v1/notes/{s.t.note_id}")


def cosign(s: Scene, actor: Member) -> Call:
    """A witness cosigns the newest checkpoint (as ``confide audit witness`` would)."""
    log_key = VerifierKey.parse(s.ok(actor, Call("GET", "/v1/audit/log-key")).json()["vkey"])
    checkpoint = s.ok(actor, Call("GET", "/v1/audit/checkpoint")).json()
    witness = generate_signer("witness.example/g05", COSIGNATURE_V1)
    _, cosigned = witness_checkpoint(
        checkpoint["note"], [log_key], witness, timestamp=1_700_000_000, previous=None, proof=[]
    )
    return Call("POST", "/v1/audit/cosignatures", {"note": cosigned, "witness_key": str(witness.verifier())})


def file_erasure(s: Scene, actor: Member) -> Call:
    return Call("POST", "/v1/me/erasure-requests", {})


def erasure_outcome(s: Scene, actor: Member) -> Call:
    filed = s.made["fileErasureRequest"].json()
    return Call(
        "GET",
        f"/v1/erasure-requests/{filed['request']['id']}/outcome",
        headers={"Erasure-Receipt": filed["receipt_token"]},
    )


def filed_id(d: Done) -> uuid.UUID:
    return as_uuid(d.scene.made["fileErasureRequest"].json()["request"]["id"])


def emergency_id(d: Done) -> uuid.UUID:
    return as_uuid(d.scene.made["emergency"])


def group_member(d: Done) -> uuid.UUID:
    return d.t.client_id


def group_id(d: Done) -> uuid.UUID:
    return as_uuid(d.scene.made["group"])


# -- reading the events back ----------------------------------------------------------

_COLUMNS = (
    "event_type, action, outcome, outcome_reason, org_id, agent_account_id, agent_role, "
    "agent_address_digest, entity_type, entity_id, subject_id, purpose_of_use, consent_id, "
    "request_id, recorded_at, source_instance"
)


def events_of(world: World, request_id: str) -> list[dict[str, Any]]:
    """The audit events written under ``request_id``, oldest first (read as the owner: no RLS)."""

    async def go() -> list[dict[str, Any]]:
        conn = await asyncpg.connect(world.database_url)
        try:
            rows = await conn.fetch(
                f"SELECT {_COLUMNS} FROM audit_events WHERE request_id = $1 ORDER BY seq",  # noqa: S608 -- fixed columns
                request_id,
            )
        finally:
            await conn.close()
        return [dict(row) for row in rows]

    return asyncio.run(go())


def _request_id() -> str:
    return f"g05-{uuid.uuid4().hex}"


@dataclasses.dataclass(frozen=True)
class Sent:
    request_id: str
    before: dt.datetime
    after: dt.datetime
    response: httpx.Response


def send_traced(http: httpx.Client, call: Call, token: str | None) -> Sent:
    """Send ``call`` under a fresh request id; the server must answer under the same id."""
    request_id = _request_id()
    call.headers["X-Request-ID"] = request_id
    before = dt.datetime.now(dt.UTC)
    response = _send(http, call, token)
    after = dt.datetime.now(dt.UTC)
    assert response.headers["x-request-id"] == request_id
    return Sent(request_id, before, after, response)


def _org_id(world: World, member: Member | None) -> uuid.UUID:
    return world.b.id if member is not None and member.org_slug == "beta" else world.a.id


def common_fields(
    world: World, sent: Sent, event: dict[str, Any], actor: Member | None, *, org: bool = True
) -> list[str]:
    """Fields every event of a request must carry: who, from where, when, under which id."""
    wrong = []
    expected = {
        "org_id": _org_id(world, actor) if org else None,
        "agent_account_id": actor.id if actor else None,
        "agent_role": actor.role if actor else None,
        "request_id": sent.request_id,
    }
    wrong += [f"{k}={event[k]!r} (expected {v!r})" for k, v in expected.items() if event[k] != v]
    digest = event["agent_address_digest"]
    if digest is None or len(digest) != 32:
        wrong.append("no network address digest")
    slack = dt.timedelta(seconds=5)  # the server's clock is this machine's: only a sanity bound
    if not sent.before - slack <= event["recorded_at"] <= sent.after + slack:
        wrong.append(f"recorded_at {event['recorded_at']} outside the call")
    if not event["source_instance"]:
        wrong.append("no source_instance")
    return wrong

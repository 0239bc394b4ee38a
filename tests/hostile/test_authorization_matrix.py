"""A-01, A-02, B-02, B-11: every endpoint as every role, from another organization, with dead tokens.

Built from the app's route table: a route without a row in :mod:`tests.hostile.access`
(or a request recipe below) fails the first test, so a new endpoint cannot arrive
unexamined. Against the real server process and a world of two organizations
(:mod:`tests.hostile.world`):

- each role of the first organization on its own organization's objects: the table's
  allowed cells get past authorization (never 401/403, nor 404 where the object is
  theirs to see), every other cell gets exactly the table's 403 or 404;
- each role of the second organization on the first one's objects: the same answer,
  status and problem document, as for ids that exist nowhere (no existence leak);
- each role of the first organization denied with 404 (or 422 for an id in a body) on its
  own organization's objects (outside a client's circle, not a reader of a note...): the
  same answer as for ids that exist nowhere;
- no token, a malformed, a forged, an expired and a logged-out token: 401, one document;
- a clinician whose client revoked consent: 403 on that client's record;
- every JSON body with one unknown key first: 400 naming the unknown field.
"""

# ruff: noqa: ARG005 -- every recipe takes (targets, world, actor); most need only some of them

from __future__ import annotations

import base64
import dataclasses
import hashlib
import secrets
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from litestar.handlers import HTTPRouteHandler

from backend.app import create_app
from crypto.client import InnerPayload, generate_identity, seal_envelope
from crypto.public import ConsentAction, EnvelopeKind
from tests.conftest import make_settings
from tests.e2e.conftest import RunningServer
from tests.hostile.access import PUBLIC, ROLES, TABLE
from tests.hostile.world import (
    STAFF_PASSWORD,
    Builder,
    Member,
    Org,
    World,
    as_json,
    consent_statement,
    run_sql,
)

pytestmark = pytest.mark.e2e


@dataclasses.dataclass(frozen=True)
class Targets:
    """The objects a request names: an organization's, or ids that exist nowhere."""

    org: Org | None
    client_id: uuid.UUID
    clinician_id: uuid.UUID
    admin_id: uuid.UUID
    former_id: uuid.UUID
    consent_id: uuid.UUID
    spare_consent_id: uuid.UUID
    conversation_id: uuid.UUID
    message_id: uuid.UUID
    attachment_id: uuid.UUID
    note_id: uuid.UUID
    emergency_access_id: uuid.UUID
    legal_hold_id: uuid.UUID
    erasure_request_id: uuid.UUID

    @classmethod
    def of(cls, org: Org) -> Targets:
        return cls(
            org,
            org.client.id,
            org.clinician.id,
            org.admin.id,
            org.revoked_client.id,
            org.consent_id,
            org.spare_consent_id,
            org.conversation_id,
            org.message_id,
            org.attachment_id,
            org.note_id,
            org.emergency_access_id,
            org.legal_hold_id,
            org.erasure_request_id,
        )

    @classmethod
    def nowhere(cls) -> Targets:
        return cls(None, *(uuid.uuid4() for _ in range(13)))


@dataclasses.dataclass
class Call:
    method: str
    path: str
    json: Any = None
    content: bytes | None = None
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    params: dict[str, str] = dataclasses.field(default_factory=dict)
    stream: bool = False


def _b64(size: int) -> str:
    return base64.b64encode(secrets.token_bytes(size)).decode()


def _note(t: Targets, world: World, *, amends: uuid.UUID | None = None) -> Any:
    """A note sealed by the first organization's clinician (a real, fresh envelope)."""
    doc = world.a.clinician
    assert doc.keys is not None
    return as_json(
        seal_envelope(
            doc.keys,
            kind=EnvelopeKind.NOTE_AMENDMENT if amends else EnvelopeKind.NOTE,
            context_id=t.client_id,
            item_id=uuid.uuid4(),
            payload=InnerPayload(version=1, content_type="text/markdown", body=b"matrix note"),
            recipients=[doc.keys.bundle, world.a.custodian.bundle],
            references=amends,
        )
    )


def _message(t: Targets, world: World, sender: Member) -> Any:
    """A message to the conversation, sealed by ``sender`` when they have keys (else by the clinician)."""
    doc, pat = world.a.clinician, world.a.client
    assert doc.keys is not None
    assert pat.keys is not None
    return as_json(
        seal_envelope(
            sender.keys or doc.keys,
            kind=EnvelopeKind.MESSAGE,
            context_id=t.conversation_id,
            item_id=uuid.uuid4(),
            payload=InnerPayload(version=1, content_type="text/plain", body=b"matrix message"),
            recipients=[doc.keys.bundle, pat.keys.bundle],
        )
    )


def _consent(t: Targets, world: World, action: ConsentAction, consent_id: uuid.UUID) -> Any:
    client = (t.org or world.a).client
    assert client.keys is not None
    org_id = t.org.id if t.org else uuid.uuid4()
    return consent_statement(client.keys, org_id, t.clinician_id, action, consent_id)


def _bundle(actor: Member) -> Any:
    return as_json(actor.keys.bundle if actor.keys else generate_identity(actor.id).bundle)


def _upload(t: Targets) -> Call:
    blob = secrets.token_bytes(64)
    return Call(
        "POST",
        f"/v1/conversations/{t.conversation_id}/attachments",
        content=blob,
        params={"id": str(uuid.uuid4())},
        headers={
            "Content-Type": "application/octet-stream",
            "X-Content-BLAKE2b": hashlib.blake2b(blob, digest_size=32).hexdigest(),
        },
    )


Recipe = Callable[[Targets, World, Member], Call]

REASON = "Matrix test: a reason long enough"
RECIPES: dict[str, Recipe] = {
    "getMe": lambda t, w, a: Call("GET", "/v1/me"),
    "changePassword": lambda t, w, a: Call(
        "POST", "/v1/auth/password", {"current_password": "not the password at all", "new_password": "x" * 20}
    ),
    "enrollTotp": lambda t, w, a: Call("POST", "/v1/auth/mfa/totp"),
    "confirmTotp": lambda t, w, a: Call("POST", "/v1/auth/mfa/totp/confirm", {"code": "000000"}),
    "logout": lambda t, w, a: Call("POST", "/v1/auth/logout"),
    "logoutAll": lambda t, w, a: Call("POST", "/v1/auth/logout-all"),
    "exportMyData": lambda t, w, a: Call("GET", "/v1/me/export", stream=True),
    "getKeyBackup": lambda t, w, a: Call("GET", "/v1/me/key-backup"),
    "putKeyBackup": lambda t, w, a: Call(
        "PUT",
        "/v1/me/key-backup",
        {
            "version": 1,
            "account_id": str(a.id),
            "key_version": 1,
            "kdf": "argon2id",
            "opslimit": 3,
            "memlimit": 67_108_864,
            "salt": _b64(16),
            "nonce": _b64(24),
            "ciphertext": _b64(96),
        },
    ),
    "publishKeyBundle": lambda t, w, a: Call("PUT", "/v1/me/keys", _bundle(a)),
    "revokeKeyBundle": lambda t, w, a: Call("POST", f"/v1/me/keys/{2**31 - 1}/revoke"),
    "streamEvents": lambda t, w, a: Call("GET", "/v1/events", stream=True),
    "createStaffAccount": lambda t, w, a: Call(
        "POST",
        "/v1/accounts",
        {
            "email": f"new-{uuid.uuid4().hex[:8]}@matrix.example",
            "display_name": "New",
            "role": "clinician",
            "password": STAFF_PASSWORD,
        },
    ),
    # No-ops on the organization's admin (the world must stay as it is for the other cells).
    "setAccountRole": lambda t, w, a: Call("PUT", f"/v1/accounts/{t.admin_id}/role", {"role": "admin"}),
    "setAccountStatus": lambda t, w, a: Call(
        "PUT", f"/v1/accounts/{t.admin_id}/status", {"status": "active"}
    ),
    "createInvite": lambda t, w, a: Call("POST", "/v1/invites", {}),
    "listAccountKeys": lambda t, w, a: Call("GET", f"/v1/accounts/{t.clinician_id}/keys"),
    "getKeyLogCheckpoint": lambda t, w, a: Call("GET", "/v1/key-log/checkpoint"),
    "getKeyLogConsistencyProof": lambda t, w, a: Call(
        "GET", "/v1/key-log/proofs/consistency", params={"old": "0", "new": "0"}
    ),
    "getCustodianKey": lambda t, w, a: Call("GET", "/v1/organization/custodian-key"),
    "publishCustodianKey": lambda t, w, a: Call(
        "PUT", "/v1/organization/custodian-key", as_json((t.org or w.a).custodian.bundle)
    ),
    "getAuditLogStatus": lambda t, w, a: Call("GET", "/v1/audit/status"),
    "getAuditCheckpoint": lambda t, w, a: Call("GET", "/v1/audit/checkpoint"),
    "getAuditInclusionProof": lambda t, w, a: Call(
        "GET", "/v1/audit/proofs/inclusion", params={"index": "0"}
    ),
    "getAuditConsistencyProof": lambda t, w, a: Call(
        "GET", "/v1/audit/proofs/consistency", params={"old": "0", "new": "0"}
    ),
    "addAuditCosignature": lambda t, w, a: Call(
        "POST", "/v1/audit/cosignatures", {"note": "not a note", "witness_key": "not a key"}
    ),
    "listAuditEvents": lambda t, w, a: Call("GET", "/v1/audit/events"),
    "exportAuditTrail": lambda t, w, a: Call(
        "GET", "/v1/audit/export", params={"format": "csv"}, stream=True
    ),
    "getBreachScope": lambda t, w, a: Call(
        "GET", "/v1/audit/breach-scope", params={"account": str(t.client_id)}
    ),
    "getBreachScopeSummary": lambda t, w, a: Call(
        "GET", "/v1/audit/breach-scope/summary", params={"account": str(t.client_id)}
    ),
    "listMyDisclosures": lambda t, w, a: Call("GET", "/v1/me/disclosures"),
    "grantConsent": lambda t, w, a: Call(
        "POST", "/v1/consents", _consent(t, w, ConsentAction.GRANT, uuid.uuid4())
    ),
    "revokeConsent": lambda t, w, a: Call(
        "POST",
        f"/v1/consents/{t.spare_consent_id}/revoke",
        _consent(t, w, ConsentAction.REVOKE, t.spare_consent_id),
    ),
    "listConsents": lambda t, w, a: Call("GET", "/v1/consents"),
    "getConsentHistory": lambda t, w, a: Call("GET", f"/v1/consents/{t.consent_id}/history"),
    "getConsentReceipt": lambda t, w, a: Call("GET", f"/v1/consents/{t.consent_id}/receipt"),
    "openEmergencyAccess": lambda t, w, a: Call(
        "POST", "/v1/emergency-access", {"client_id": str(t.former_id), "reason": REASON}
    ),
    "approveEmergencyAccess": lambda t, w, a: Call(
        "POST", f"/v1/emergency-access/{t.emergency_access_id}/approve"
    ),
    "addEmergencyKeyWraps": lambda t, w, a: Call(
        "POST",
        f"/v1/emergency-access/{t.emergency_access_id}/key-wraps",
        {"key_version": 1, "wraps": [{"note_id": str(t.note_id), "wrapped_key": _b64(80)}]},
    ),
    "closeEmergencyAccess": lambda t, w, a: Call(
        "POST", f"/v1/emergency-access/{t.emergency_access_id}/close"
    ),
    "listEmergencyAccess": lambda t, w, a: Call("GET", "/v1/emergency-access"),
    "listRetentionPolicies": lambda t, w, a: Call("GET", "/v1/retention/policies"),
    "setRetentionPolicy": lambda t, w, a: Call(
        "PUT",
        "/v1/retention/policies/invites",
        {"period_days": 30, "legal_basis": "Matrix test: keep invites a month"},
    ),
    "listRetentionRuns": lambda t, w, a: Call("GET", "/v1/retention/runs"),
    "placeLegalHold": lambda t, w, a: Call(
        "POST", "/v1/legal-holds", {"scope": "client", "client_id": str(t.former_id), "reason": REASON}
    ),
    "listLegalHolds": lambda t, w, a: Call("GET", "/v1/legal-holds"),
    "releaseLegalHold": lambda t, w, a: Call(
        "POST", f"/v1/legal-holds/{t.legal_hold_id}/release", {"reason": REASON}
    ),
    "fileErasureRequest": lambda t, w, a: Call("POST", "/v1/me/erasure-requests", {}),
    "listMyErasureRequests": lambda t, w, a: Call("GET", "/v1/me/erasure-requests"),
    "listErasureRequests": lambda t, w, a: Call("GET", "/v1/erasure-requests"),
    "decideErasureRequest": lambda t, w, a: Call(
        "POST",
        f"/v1/erasure-requests/{t.erasure_request_id}/decision",
        {"decision": "reject", "reason": REASON},
    ),
    "getClient": lambda t, w, a: Call("GET", f"/v1/clients/{t.client_id}"),
    "listNotes": lambda t, w, a: Call("GET", f"/v1/clients/{t.client_id}/notes"),
    "createNote": lambda t, w, a: Call("POST", f"/v1/clients/{t.client_id}/notes", _note(t, w)),
    "getNote": lambda t, w, a: Call("GET", f"/v1/notes/{t.note_id}"),
    "amendNote": lambda t, w, a: Call(
        "POST", f"/v1/notes/{t.note_id}/amendments", _note(t, w, amends=t.note_id)
    ),
    "shareNote": lambda t, w, a: Call("POST", f"/v1/notes/{t.note_id}/shares", _note(t, w)),
    "createConversation": lambda t, w, a: Call(
        "POST",
        "/v1/conversations",
        {"id": str(uuid.uuid4()), "kind": "direct", "client_id": str(t.client_id), "clinicians": []},
    ),
    "listConversations": lambda t, w, a: Call("GET", "/v1/conversations"),
    "getConversation": lambda t, w, a: Call("GET", f"/v1/conversations/{t.conversation_id}"),
    "joinConversation": lambda t, w, a: Call(
        "POST", f"/v1/conversations/{t.conversation_id}/join", {"pseudonym": "Blue Heron"}
    ),
    "sendMessage": lambda t, w, a: Call(
        "POST", f"/v1/conversations/{t.conversation_id}/messages", _message(t, w, a)
    ),
    "listMessages": lambda t, w, a: Call("GET", f"/v1/conversations/{t.conversation_id}/messages"),
    "markConversationRead": lambda t, w, a: Call(
        "POST", f"/v1/conversations/{t.conversation_id}/read", {"up_to": str(t.message_id)}
    ),
    "addConversationMember": lambda t, w, a: Call(
        "POST", f"/v1/conversations/{t.conversation_id}/members", {"account_id": str(t.admin_id)}
    ),
    "removeConversationMember": lambda t, w, a: Call(
        "DELETE", f"/v1/conversations/{t.conversation_id}/members/{t.admin_id}"
    ),
    "uploadAttachment": lambda t, w, a: _upload(t),
    "downloadAttachment": lambda t, w, a: Call("GET", f"/v1/attachments/{t.attachment_id}", stream=True),
}
# Allowed cells where 404 is the service's answer about the caller's own things, not a
# denial: no backup yet, no such key version, the admin is no member, no checkpoint yet.
ALLOWED_NOT_FOUND = {
    "getKeyBackup",
    "revokeKeyBundle",
    "removeConversationMember",
    "addConversationMember",
    "getAuditCheckpoint",
    "getAuditInclusionProof",
    "getBreachScope",
    "getBreachScopeSummary",
}
# Operations that end the session they are called with: run on fresh sessions.
SESSION_ENDING = {"logout", "logoutAll"}
# Own-account operations whose refusal of a wrong current password is itself a 401.
SELF_ONLY = {"changePassword", "confirmTotp"}


def _send(http: httpx.Client, call: Call, token: str | None) -> httpx.Response:
    headers = dict(call.headers)
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    request = http.build_request(
        call.method, call.path, json=call.json, content=call.content, headers=headers, params=call.params
    )
    response = http.send(request, stream=call.stream)
    if call.stream and response.is_success:
        response.close()  # the status and headers are the answer; the body may never end
    else:
        response.read()
    return response


def _text(response: httpx.Response) -> str:
    try:
        return response.text[:160]
    except httpx.ResponseNotRead:
        return "(streamed)"


def _shape(response: httpx.Response) -> tuple[int, Any]:
    """What a caller can learn from an answer: the status and the problem document, minus the request id."""
    if not response.headers.get("content-type", "").startswith("application/problem+json"):
        return response.status_code, response.headers.get("content-type")
    body = response.json()
    return response.status_code, {k: v for k, v in body.items() if k != "request_id"}


def _operations() -> set[str]:
    app = create_app(make_settings(), database_url="postgresql://unused")
    found: set[str] = set()
    for route in app.routes:
        if route.path.startswith("/schema"):
            continue
        for handler in getattr(route, "route_handlers", []):
            if isinstance(handler, HTTPRouteHandler) and handler.http_methods - {"HEAD", "OPTIONS"}:
                found.add(str(handler.operation_id))
    return found


def test_every_route_has_a_row_and_a_recipe() -> None:
    """A-01: a route added without an expectation (and a request to try it) fails here."""
    operations = _operations()
    missing = operations - PUBLIC - set(TABLE)
    assert not missing, f"routes without a row in tests/hostile/access.py: {sorted(missing)}"
    assert not (operations - PUBLIC) - set(RECIPES), "routes without a recipe in this module"
    assert not (set(TABLE) | PUBLIC) - operations, "rows for routes that no longer exist"


@pytest.fixture(scope="module")
def http(world: World) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=world.base_url, timeout=30) as client:
        yield client


def test_revoked_consent_closes_the_record(world: World, http: httpx.Client) -> None:
    """A-08 (sequential form): once the client revoked, their clinician is refused their record.

    Runs before the matrix, whose allowed cells open break-glass access to this client.
    """
    doc, former = world.a.clinician, world.a.revoked_client
    for call in (
        Call("GET", f"/v1/clients/{former.id}"),
        Call("GET", f"/v1/clients/{former.id}/notes"),
        Call(
            "POST",
            "/v1/conversations",
            {"id": str(uuid.uuid4()), "kind": "direct", "client_id": str(former.id), "clinicians": []},
        ),
    ):
        response = _send(http, call, doc.token)
        assert response.status_code == 403, (
            f"{call.method} {call.path}: {response.status_code} {response.text}"
        )
    # The client themselves still reads their record.
    assert _send(http, Call("GET", f"/v1/clients/{former.id}"), former.token).status_code == 200


def _run_role_matrix(world: World, http: httpx.Client, org: Org) -> list[str]:
    targets = Targets.of(world.a)
    problems: list[str] = []
    builder = Builder(http, world.env)
    order = sorted(RECIPES, key=lambda op: op in {"revokeConsent", "closeEmergencyAccess"})
    for operation_id in order:
        row = TABLE[operation_id]
        # Denied roles first, so an allowed call that changes state comes after them.
        for role in sorted(ROLES, key=lambda r: r in row.allowed):
            member = org.members[role]
            token = builder.relogin(member) if operation_id in SESSION_ENDING else member.token
            call = RECIPES[operation_id](targets, world, member)
            response = _send(http, call, token)
            if operation_id == "logoutAll":
                member.token = builder.relogin(member)  # every session of the account ended
            status = response.status_code
            cell = f"{operation_id} as {org.slug}/{role}: {status} {_text(response)}"
            if status >= 500:
                problems.append(cell)
            elif org is world.a and role in row.allowed:
                hidden = status == 404 and operation_id not in ALLOWED_NOT_FOUND
                refused = status in {401, 403} and operation_id not in SELF_ONLY
                # A read the table allows succeeds outright (writes may meet a state conflict).
                unread = (
                    call.method == "GET" and not response.is_success and operation_id not in ALLOWED_NOT_FOUND
                )
                if hidden or refused or unread:
                    problems.append(f"allowed cell refused: {cell}")
            elif org is world.a and status != row.expected_denial(role):
                problems.append(f"expected {row.expected_denial(role)}: {cell}")
    return problems


def test_each_role_gets_only_its_cells(world: World, http: httpx.Client) -> None:
    """A-02: every operation as every role on the organization's own objects, against the table."""
    problems = _run_role_matrix(world, http, world.a)
    assert not problems, "\n".join(problems)


def test_other_organizations_objects_answer_like_ids_that_do_not_exist(
    world: World, http: httpx.Client
) -> None:
    """A-02/B-11: a foreign object and a random id get the same answer: existence does not leak."""
    foreign, nowhere = Targets.of(world.a), Targets.nowhere()
    problems: list[str] = []
    for operation_id, recipe in RECIPES.items():
        if operation_id in SESSION_ENDING | SELF_ONLY:
            continue
        for role in ROLES:
            member = world.b.members[role]
            seen_foreign = _shape(_send(http, recipe(foreign, world, member), member.token))
            seen_nowhere = _shape(_send(http, recipe(nowhere, world, member), member.token))
            cell = f"{operation_id} as beta/{role}: foreign {seen_foreign} vs unknown {seen_nowhere}"
            names_foreign = not _names_no_foreign_object(operation_id)
            if max(seen_foreign[0], seen_nowhere[0]) >= 500 or (
                names_foreign and seen_foreign != seen_nowhere
            ):
                problems.append(cell)
            elif 200 <= seen_foreign[0] < 300 and not _names_no_foreign_object(operation_id):
                problems.append(f"foreign object reached: {cell}")
    assert not problems, "\n".join(problems)


def _names_no_foreign_object(operation_id: str) -> bool:
    """Operations whose request names no object of another organization (own account, own listings)."""
    return operation_id in _PLAIN


# Recipes that name no object at all: every organization answers about its own things.
_PLAIN = {
    "getMe",
    "enrollTotp",
    "confirmTotp",
    "exportMyData",
    "getKeyBackup",
    "putKeyBackup",
    "publishKeyBundle",
    "revokeKeyBundle",
    "streamEvents",
    "createStaffAccount",
    "createInvite",
    "getCustodianKey",
    "publishCustodianKey",
    "getAuditLogStatus",
    "getAuditCheckpoint",
    "getAuditInclusionProof",
    "getAuditConsistencyProof",
    # The key-transparency log is one for the whole deployment: its checkpoints and proofs
    # name no organization's object.
    "getKeyLogCheckpoint",
    "getKeyLogConsistencyProof",
    "addAuditCosignature",
    "listAuditEvents",
    "exportAuditTrail",
    "listMyDisclosures",
    "listConsents",
    "listEmergencyAccess",
    "listRetentionPolicies",
    "setRetentionPolicy",
    "listRetentionRuns",
    "listLegalHolds",
    "fileErasureRequest",
    "listMyErasureRequests",
    "listErasureRequests",
    "listConversations",
}


def test_hidden_objects_answer_like_ids_that_do_not_exist(world: World, http: httpx.Client) -> None:
    """A-02: inside one organization, a 404 (or 422) denial is an unknown id's answer, status and document."""
    own, nowhere = Targets.of(world.a), Targets.nowhere()
    problems: list[str] = []
    checked = 0
    for operation_id, recipe in RECIPES.items():
        row = TABLE[operation_id]
        if operation_id in SESSION_ENDING | SELF_ONLY or _names_no_foreign_object(operation_id):
            continue
        for role in ROLES:
            if role in row.allowed or row.expected_denial(role) not in {404, 422}:
                continue
            member = world.a.members[role]
            hidden = _shape(_send(http, recipe(own, world, member), member.token))
            unknown = _shape(_send(http, recipe(nowhere, world, member), member.token))
            checked += 1
            if hidden != unknown or hidden[0] != row.expected_denial(role):
                problems.append(f"{operation_id} as alpha/{role}: hidden {hidden} vs unknown {unknown}")
    assert not problems, "\n".join(problems)
    assert checked >= 25


@pytest.mark.parametrize("kind", ["missing", "malformed", "forged", "expired", "logged_out", "wrong_scheme"])
def test_dead_tokens_get_one_401(world: World, http: httpx.Client, kind: str) -> None:
    """A-06/A-06b: without a live session every non-public endpoint answers the same 401 document."""
    member = world.a.clinician
    builder = Builder(http, world.env)
    token: str | None
    headers: dict[str, str] = {}
    match kind:
        case "missing":
            token = None
        case "malformed":
            token = "not-a-token"
        case "forged":
            token = "cfd_" + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
        case "expired":
            token = builder.relogin(member)
            digest = hashlib.sha256(token.encode()).digest()
            run_sql(
                world.database_url,
                "UPDATE sessions SET idle_expires_at = now() - interval '1 second' WHERE token_digest = $1",
                digest,
            )
        case "logged_out":
            token = builder.relogin(member)
            assert _send(http, Call("POST", "/v1/auth/logout"), token).status_code == 204
        case _:
            token = None
            headers = {"Authorization": "Basic " + base64.b64encode(b"doc:password").decode()}
    shapes = set()
    for operation_id, recipe in RECIPES.items():
        call = recipe(Targets.of(world.a), world, member)
        call.headers.update(headers)
        response = _send(http, call, token)
        assert response.status_code == 401, f"{operation_id} with a {kind} token: {response.status_code}"
        shapes.add(repr(_shape(response)))
    assert len(shapes) == 1, shapes


def test_unknown_fields_are_refused_on_every_body(world: World, http: httpx.Client) -> None:
    """B-02/A-03: every JSON body with an extra key first (owner, org, role...) is a 400 naming it."""
    targets = Targets.of(world.a)
    checked = 0
    for operation_id, recipe in RECIPES.items():
        row = TABLE[operation_id]
        role = next(
            (r for r in ("clinician", "client", "compliance_officer", "admin") if r in row.allowed), "admin"
        )
        member = world.a.members[role]
        call = recipe(targets, world, member)
        if not isinstance(call.json, dict):
            continue
        call.json = {"org_id": str(uuid.uuid4()), **call.json}
        response = _send(http, call, member.token)
        assert response.status_code == 400, f"{operation_id}: {response.status_code} {response.text}"
        assert "unknown field" in response.text, response.text
        checked += 1
    assert checked >= 25


def test_the_world_server_is_still_healthy(world_server: RunningServer) -> None:
    log = world_server.log_path.read_text(encoding="utf-8", errors="replace")
    assert "unhandled_exception" not in log, log[-3_000:]

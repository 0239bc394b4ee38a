"""G-05: every operation on personal data, and every auth event, writes exactly its audit events.

The denominator is the app's route table, the inventory of A-01: every operation is either
in :data:`EXPECTED` (one successful call as a role the authorization matrix allows, and
the events that call must write), in :data:`NOT_AUDITED` (with the reason it touches no
personal data and is no security event), or one of :data:`AUTH_EVENTS` (checked by the
auth test below, successes and failures). A new route in none of them fails the first test.

Against the real server process and the matrix's world of two organizations
(:mod:`tests.hostile.world`), each call carries its own ``X-Request-ID`` (the server
keeps a well-formed incoming id, :mod:`backend.http.middleware`) and the events are read
back from ``audit_events`` by that id: their number, and every required field (type,
action, outcome, organization, agent account and role, network address digest, entity,
subject, purpose of use, the consent that allowed the access, recorded time, source
instance). One refused call per operation (a role the matrix denies) writes exactly the
refusal event :mod:`backend.audit_trail.refusals` promises for that operation, and never
an event of success.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.helpers import totp_code
from tests.hostile.access import PUBLIC, ROLES, TABLE, fuzzing_role
from tests.hostile.audit_plans import (
    PRESENT,
    Done,
    Expect,
    Pick,
    Scene,
    Sent,
    as_uuid,
    chosen_id,
    common_fields,
    cosign,
    created_id,
    emergency_id,
    erasure_outcome,
    events_of,
    file_erasure,
    filed_id,
    grant,
    group_id,
    group_member,
    invite_to_group,
    join_group,
    newcomer,
    publish_first,
    put_backup,
    read_by_break_glass,
    remove_from_group,
    revoke_first,
    rotate,
    rotate_custodian,
    send_traced,
    share,
    the_actor,
    the_client,
    the_former,
    wraps,
)
from tests.hostile.test_authorization_matrix import RECIPES, Call, Targets, _operations
from tests.hostile.world import CLIENT_PASSWORD, Builder, Member, World

pytestmark = pytest.mark.e2e

# -- the inventory -------------------------------------------------------------------

#: Operations that write no audit event, and why none is owed.
NOT_AUDITED: dict[str, str] = {
    "healthLive": "liveness probe: no account, no data",
    "healthReady": "readiness probe: no account, no data",
    "getAuditLogKey": "the audit log's public verifier key",
    "getKeyLogKey": "the key log's public verifier key",
    "getConsentReceiptKey": "the server's public key for consent receipts",
    "getKeyLogCheckpoint": "a signed tree head of the key log: hashes only",
    "getKeyLogConsistencyProof": "hashes between two sizes of the key log",
    "getCustodianKey": "the organization's public custodian key: an organization's key, no person's",
    "getAuditLogStatus": "tree size, checkpoint size and integration lag: counts",
    "getAuditCheckpoint": "a signed tree head and its witness cosignatures: hashes and signatures",
    "getAuditConsistencyProof": "hashes between two tree sizes",
    "listRetentionPolicies": "the organization's retention periods and legal bases: configuration",
    "listRetentionRuns": "run times and per-category counts: no record, no person",
    "getMe": "the caller's own profile as loaded with their session (no query): nobody else's data",
}

#: Auth and session events, each checked (success and failure) by the auth test.
AUTH_EVENTS = frozenset(
    {"login", "logout", "logoutAll", "changePassword", "enrollTotp", "confirmTotp", "redeemInvite"}
)


# -- what each operation must write -----------------------------------------------------

EXPECTED: dict[str, Expect] = {
    # A the_client's record, notes, conversations and attachments: the clinician their consent names.
    "getClient": Expect("client.read", "R", "client", the_client, the_client, "TREAT", PRESENT),
    "listNotes": Expect("note.list", "R", "client", the_client, the_client, "TREAT", PRESENT),
    # Writing and sharing notes rest on the care relationship (treatment records have their
    # own legal basis: backend/policy/decide.py), not on a consent: no consent is named.
    "createNote": Expect("note.create", "C", "note", created_id, the_client, "TREAT", status=201),
    "getNote": Expect("note.read", "R", "note", lambda d: d.t.note_id, the_client, "TREAT", PRESENT),
    "amendNote": Expect("note.amend", "C", "note", created_id, the_client, "TREAT", status=201),
    "shareNote": Expect(
        "note.share", "U", "note", lambda d: d.scene.made["shared_note"], the_client, "TREAT", plan=share
    ),
    "createConversation": Expect(
        "conversation.create", "C", "conversation", chosen_id, the_client, "TREAT", PRESENT, status=201
    ),
    "listConversations": Expect("conversation.list", "R", "conversation", None, None),
    "getConversation": Expect(
        "conversation.read", "R", "conversation", lambda d: d.t.conversation_id, the_client, "TREAT", PRESENT
    ),
    "sendMessage": Expect(
        "message.create", "C", "message", chosen_id, the_client, "TREAT", PRESENT, status=201
    ),
    "listMessages": Expect(
        "message.read", "R", "conversation", lambda d: d.t.conversation_id, the_client, "TREAT", PRESENT
    ),
    "markConversationRead": Expect(
        "message.mark_read", "U", "conversation", lambda d: d.t.conversation_id, the_client, "TREAT", PRESENT
    ),
    # A support group has no client of its own: the event's entity and subject are the client
    # added or removed (it shows in their accounting of disclosures).
    "addConversationMember": Expect(
        "conversation.member_add", "U", "account", group_member, group_member, "TREAT", plan=invite_to_group
    ),
    "joinConversation": Expect(
        "conversation.join", "U", "conversation", group_id, the_actor, role="client", plan=join_group
    ),
    "removeConversationMember": Expect(
        "conversation.member_remove",
        "U",
        "account",
        group_member,
        group_member,
        "TREAT",
        plan=remove_from_group,
    ),
    "uploadAttachment": Expect(
        "attachment.create",
        "C",
        "attachment",
        lambda d: as_uuid(d.call.params["id"]),
        the_client,
        "TREAT",
        PRESENT,
        status=201,
    ),
    "downloadAttachment": Expect(
        "attachment.read", "R", "attachment", lambda d: d.t.attachment_id, the_client, "TREAT", PRESENT
    ),
    # Consent: the the_client signs; the parties and compliance read.
    "grantConsent": Expect(
        "consent.grant",
        "C",
        "consent",
        lambda d: d.scene.made["granted"],
        the_client,
        consent=lambda d: d.scene.made["granted"],
        plan=grant,
        status=201,
    ),
    "revokeConsent": Expect(
        "consent.revoke",
        "U",
        "consent",
        lambda d: d.t.spare_consent_id,
        the_client,
        consent=lambda d: d.t.spare_consent_id,
    ),
    "listConsents": Expect("consent.list", "R", "consent", None, None),
    "getConsentHistory": Expect(
        "consent.read", "R", "consent", lambda d: d.t.consent_id, the_client, consent=lambda d: d.t.consent_id
    ),
    "getConsentReceipt": Expect(
        "consent.read", "R", "consent", lambda d: d.t.consent_id, the_client, consent=lambda d: d.t.consent_id
    ),
    # Break-glass: purpose ETREAT throughout.
    "openEmergencyAccess": Expect(
        "emergency.open", "E", "emergency_access", created_id, the_former, "ETREAT", status=201
    ),
    "approveEmergencyAccess": Expect(
        "emergency.approve", "E", "emergency_access", lambda d: d.t.emergency_access_id, the_former, "ETREAT"
    ),
    "addEmergencyKeyWraps": Expect(
        "emergency.rewrap", "E", "emergency_access", emergency_id, the_client, "ETREAT", plan=wraps
    ),
    "closeEmergencyAccess": Expect(
        "emergency.close", "E", "emergency_access", lambda d: d.t.emergency_access_id, the_former, "ETREAT"
    ),
    "listEmergencyAccess": Expect("emergency.list", "R", "emergency_access", None, None),
    # Accounts and access.
    "createStaffAccount": Expect("account.create", "C", "account", created_id, None, status=201),
    "setAccountRole": Expect(
        "account.role_change", "U", "account", lambda d: d.t.admin_id, None, reason="admin_to_admin"
    ),
    "setAccountStatus": Expect(
        "account.status_change", "U", "account", lambda d: d.t.admin_id, None, reason="active_to_active"
    ),
    "createInvite": Expect("invite.create", "C", "invite", created_id, None, status=201),
    # Keys: a the_client made for this module publishes, rotates, revokes and backs up its own.
    "publishKeyBundle": Expect(
        "key.publish",
        "C",
        "account_keys",
        the_actor,
        the_actor,
        actor=newcomer,
        plan=publish_first,
        status=201,
    ),
    "revokeKeyBundle": Expect(
        "key.revoke", "U", "account_keys", the_actor, the_actor, actor=newcomer, plan=revoke_first, status=204
    ),
    "putKeyBackup": Expect(
        "key_backup.put",
        "C",
        "account_keys",
        the_actor,
        the_actor,
        actor=newcomer,
        plan=put_backup,
        status=201,
    ),
    "getKeyBackup": Expect("key_backup.get", "R", "account_keys", the_actor, the_actor, actor=newcomer),
    "listAccountKeys": Expect("key.read", "R", "account_keys", lambda d: d.t.clinician_id, None),
    "publishCustodianKey": Expect(
        "custodian_key.publish",
        "C",
        "organization",
        lambda d: d.scene.world.b.id,
        None,
        actor=lambda s: s.world.b.admin,
        plan=rotate_custodian,
        status=201,
    ),
    "streamEvents": Expect("events.subscribe", "R", "account", the_actor, None),
    "exportMyData": Expect("subject.export", "R", "subject_export", PRESENT, the_actor, "PATRQT"),
    # The audit trail read is itself audited.
    "addAuditCosignature": Expect("audit.cosignature", "C", None, None, None, plan=cosign, status=201),
    "listAuditEvents": Expect("audit.search", "R", None, None, None),
    # One leaf is one whole event (agent, subject, purpose): read one, leave a trace.
    "getAuditInclusionProof": Expect("audit.proof", "R", None, None, None),
    "exportAuditTrail": Expect("audit.export", "R", None, None, None, reason="csv"),
    "getBreachScope": Expect("audit.breach_scope", "R", None, None, None),
    "getBreachScopeSummary": Expect("audit.breach_scope", "R", None, None, None),
    "listMyDisclosures": Expect("audit.disclosures", "R", None, None, the_actor),
    # Retention, legal holds, erasure.
    "setRetentionPolicy": Expect(
        "retention.policy_update", "U", "retention_policy_change", PRESENT, None, reason="basis_changed"
    ),
    "placeLegalHold": Expect("legal_hold.place", "C", "legal_hold", created_id, the_former, status=201),
    "listLegalHolds": Expect("legal_hold.list", "R", None, None, None),
    "releaseLegalHold": Expect(
        "legal_hold.release", "U", "legal_hold", lambda d: d.t.legal_hold_id, the_former
    ),
    "fileErasureRequest": Expect(
        "erasure.request",
        "C",
        "erasure_request",
        lambda d: as_uuid(d.body()["request"]["id"]),
        the_actor,
        plan=file_erasure,
        status=201,
    ),
    # The receipt's holder, after the account may be gone: no agent.
    "getErasureOutcome": Expect(
        "erasure.outcome",
        "R",
        "erasure_request",
        filed_id,
        the_client,
        plan=erasure_outcome,
        role="client",
        anonymous=True,
    ),
    "listMyErasureRequests": Expect("erasure.list", "R", None, None, the_actor),
    "listErasureRequests": Expect("erasure.list", "R", None, None, None),
    "decideErasureRequest": Expect(
        "erasure.decide",
        "U",
        "erasure_request",
        lambda d: d.t.erasure_request_id,
        the_former,
        reason="rejected",
    ),
}

# Calls beyond one per operation: another event type of the same operation, another purpose.
EXTRA: dict[str, Expect] = {
    # A rotation is a second, distinct event type of the same operation.
    "publishKeyBundle (rotation)": dataclasses.replace(
        EXPECTED["publishKeyBundle"], event_type="key.rotate", plan=rotate
    ),
    # Break-glass: the colleague reads the note with the wrapped key; purpose ETREAT, no consent.
    "getNote (break-glass)": Expect(
        "note.read",
        "R",
        "note",
        lambda d: d.t.note_id,
        the_client,
        "ETREAT",
        actor=lambda s: s.world.a.colleague,
        plan=read_by_break_glass,
    ),
}

# Calls whose plans need what an earlier one made, in order; then those that end what
# other calls rely on (a consent, a break-glass opening, a hold, an open erasure request).
FIRST = (
    "publishKeyBundle",
    "publishKeyBundle (rotation)",
    "revokeKeyBundle",
    "putKeyBackup",
    "getKeyBackup",
    "addEmergencyKeyWraps",
    "getNote (break-glass)",
    "addConversationMember",
    "joinConversation",
    "removeConversationMember",
)
LAST = (
    "revokeConsent",
    "closeEmergencyAccess",
    "decideErasureRequest",
    "releaseLegalHold",
    "fileErasureRequest",
    "getErasureOutcome",
)

#: Whom a refusal concerns where it is not the targets' client.
REFUSAL_SUBJECTS: dict[str, Callable[[Done], uuid.UUID]] = {
    "approveEmergencyAccess": the_former,
    "closeEmergencyAccess": the_former,
}

#: Refusals :mod:`backend.audit_trail.refusals` records (an attempt on a client's data by
#: someone outside the client's circle, or not the note's author or reader): the role
#: refused, and the policy's reason. Every other refusal writes nothing.
REFUSALS: dict[str, tuple[str, str]] = {
    "getClient": ("compliance_officer", "not_found"),
    "listNotes": ("compliance_officer", "not_found"),
    "createNote": ("client", "role"),
    "getNote": ("client", "not_reader"),
    "amendNote": ("client", "not_author"),
    "shareNote": ("client", "not_author"),
    # A clinician outside the client's circle gets an unknown client_id's 422; audited.
    "createConversation": ("colleague", "not_found"),
    # A conversation someone is not a member of answers like an unknown id; audited, as is
    # a member refused what their role may not do.
    "getConversation": ("colleague", "not_found"),
    "joinConversation": ("colleague", "not_found"),
    "sendMessage": ("colleague", "not_found"),
    "listMessages": ("colleague", "not_found"),
    "markConversationRead": ("colleague", "not_found"),
    "addConversationMember": ("client", "role"),
    "removeConversationMember": ("client", "role"),
    "uploadAttachment": ("colleague", "not_found"),
    "downloadAttachment": ("colleague", "not_found"),
    # A consent is the client's: others' attempts on it are audited.
    "getConsentHistory": ("colleague", "not_found"),
    "getConsentReceipt": ("admin", "not_found"),
    "revokeConsent": ("clinician", "role"),
    # Break-glass: an approval or an early close by someone who may not is audited.
    "approveEmergencyAccess": ("clinician", "role"),
    "closeEmergencyAccess": ("clinician", "not_found"),
}


def _value(pick: Pick | object | None, done: Done) -> object:
    return pick(done) if callable(pick) else pick


def _check(done: Done, spec: Expect, sent: Sent, events: list[dict[str, Any]]) -> list[str]:
    """Differences between the events a successful call wrote and what ``spec`` says."""
    types = [e["event_type"] for e in events]
    if types != [spec.event_type]:
        return [f"events {types}, expected exactly [{spec.event_type!r}]"]
    event = events[0]
    wrong = common_fields(done.scene.world, sent, event, None if spec.anonymous else done.actor)
    expected = {
        "action": spec.action,
        "outcome": 0,
        "outcome_reason": spec.reason,
        "entity_type": spec.entity_type,
        "purpose_of_use": spec.purpose,
        "subject_id": spec.subject(done) if spec.subject else None,
    }
    wrong += [f"{k}={event[k]!r} (expected {v!r})" for k, v in expected.items() if event[k] != v]
    for field, pick in (("entity_id", spec.entity_id), ("consent_id", spec.consent)):
        if pick is PRESENT:
            allowed = _consents_of_the_clinician(done) if field == "consent_id" else None
            if event[field] is None or (allowed is not None and event[field] not in allowed):
                wrong.append(
                    f"{field}={event[field]!r} (expected {'one of ' + str(allowed) if allowed else 'one'})"
                )
        elif event[field] != _value(pick, done):
            wrong.append(f"{field}={event[field]!r} (expected {_value(pick, done)!r})")
    return wrong


def _consents_of_the_clinician(done: Done) -> set[uuid.UUID]:
    """The client's consents naming the clinician (one per purpose), any of which may allow an access."""
    granted = done.scene.made.get("granted")
    return {done.t.consent_id, done.t.spare_consent_id, *([granted] if granted else [])}


# -- the tests -------------------------------------------------------------------------


def test_every_operation_is_audited_or_says_why_not() -> None:
    """G-05 denominator: the route table (A-01) is exactly the audited, the exempt and the auth operations."""
    operations = _operations()
    classified = set(EXPECTED) | set(NOT_AUDITED) | AUTH_EVENTS
    assert not operations - classified, (
        f"operations without an audit expectation: {sorted(operations - classified)}"
    )
    assert not classified - operations, (
        f"expectations for operations that do not exist: {sorted(classified - operations)}"
    )
    assert not set(EXPECTED) & set(NOT_AUDITED), "an operation both audited and exempt"
    assert not (set(EXPECTED) | set(NOT_AUDITED)) & AUTH_EVENTS
    assert operations >= PUBLIC
    assert set(EXTRA) | set(EXPECTED) >= set(FIRST) | set(LAST)


@pytest.fixture(scope="module")
def scene(world: World) -> Iterator[Scene]:
    with httpx.Client(base_url=world.base_url, timeout=30) as http:
        yield Scene(world, http, Builder(http, world.env), Targets.of(world.a))


def test_refusals_write_exactly_the_promised_refusal_event(scene: Scene) -> None:
    """G-05: a refused call leaves no event of success; an attempt on a client's data leaves its refusal."""
    world = scene.world
    problems: list[str] = []
    refused: set[str] = set()
    for operation_id, row in TABLE.items():
        denied = [role for role in ROLES if role not in row.allowed]
        if not denied:
            continue
        refused.add(operation_id)
        role, reason = REFUSALS.get(operation_id, (denied[0], ""))
        member = world.a.members[role]
        call = RECIPES[operation_id](scene.t, world, member)
        sent = send_traced(scene.http, call, member.token)
        events = events_of(world, sent.request_id)
        cell = f"{operation_id} refused to {role} ({sent.response.status_code})"
        if sent.response.status_code != row.expected_denial(role):
            problems.append(f"{cell}: expected {row.expected_denial(role)}")
            continue
        if operation_id not in REFUSALS:
            if events:
                problems.append(f"{cell}: wrote {[(e['event_type'], e['outcome']) for e in events]}")
            continue
        spec = EXPECTED[operation_id]
        if [(e["event_type"], e["outcome"]) for e in events] != [(spec.event_type, 4)]:
            problems.append(
                f"{cell}: {[(e['event_type'], e['outcome']) for e in events]}, expected one refusal"
            )
            continue
        event = events[0]
        wrong = common_fields(world, sent, event, member)
        # Whom the attempt concerned (a success names the joining client; a refused join, the
        # conversation's): the client, or the former client break-glass was opened for.
        concerned = REFUSAL_SUBJECTS.get(operation_id, the_client)(Done(scene, member, call, sent.response))
        expected = {
            "outcome_reason": reason,
            "entity_type": spec.entity_type,
            "subject_id": concerned,
            "purpose_of_use": None,  # nothing was granted: no purpose, no consent
            "consent_id": None,
        }
        wrong += [f"{k}={event[k]!r} (expected {v!r})" for k, v in expected.items() if event[k] != v]
        if wrong:
            problems.append(f"{cell}: {'; '.join(wrong)}")
    assert not problems, "\n".join(problems)
    assert refused >= set(REFUSALS)
    assert len(refused) >= 45  # every operation but the own-account and everyone-may ones


def _recipe(operation_id: str) -> Callable[[Scene, Member], Call]:
    """The matrix's request for ``operation_id``, as a plan."""

    def plan(scene: Scene, actor: Member) -> Call:
        return RECIPES[operation_id](scene.t, scene.world, actor)

    return plan


def _plan_order() -> list[str]:
    rest = sorted(set(EXPECTED) - set(FIRST) - set(LAST))
    return [*FIRST, *rest, *LAST]


def test_each_operation_writes_exactly_its_events(scene: Scene) -> None:
    """G-05: one successful call per operation writes exactly its event, every required field filled."""
    world = scene.world
    roles = fuzzing_role()  # the first role the matrix allows, the clinician when several may
    problems: list[str] = []
    sources: set[str] = set()
    for name in _plan_order():
        spec = EXTRA.get(name) or EXPECTED[name]
        operation_id = name.split(" ")[0]
        if spec.actor is not None:
            actor = spec.actor(scene)
        else:
            actor = world.a.members[spec.role or roles[operation_id]]
        call = (spec.plan or _recipe(operation_id))(scene, actor)
        sent = send_traced(scene.http, call, None if spec.anonymous else actor.token)
        scene.made[name] = sent.response
        status = sent.response.status_code
        expected_status = spec.status or (200 if call.method in {"GET", "PUT"} else status)
        if status != expected_status or status >= 300:
            problems.append(f"{name}: {status} {sent.response.text[:200] if not call.stream else ''}")
            continue
        events = events_of(world, sent.request_id)
        sources |= {e["source_instance"] for e in events}
        done = Done(scene, actor, call, sent.response)
        wrong = _check(done, spec, sent, events)
        if wrong:
            problems.append(f"{name}: {'; '.join(wrong)}")
    assert not problems, "\n".join(problems)
    assert len(sources) == 1, f"one server, one source instance: {sources}"


@dataclasses.dataclass(frozen=True)
class AuthStep:
    """One auth call and the single event it must write."""

    name: str
    call: Callable[[], Call]
    token: Callable[[], str | None]
    status: int
    event_type: str
    action: str
    outcome: int = 0
    reason: str | None = None
    known: bool = True  # the event names the account (an unknown email names nobody)


def test_auth_events_write_exactly_one_event_each(scene: Scene) -> None:
    """G-05: login success and failures, logout, MFA enrolment and confirmation, password change, invites."""
    world, http = scene.world, scene.http
    doc = world.a.clinician
    code = scene.ok(doc, Call("POST", "/v1/invites", {})).json()["code"]
    email = f"auth-{uuid.uuid4().hex[:6]}@alpha.example"
    password, new_password = CLIENT_PASSWORD, "a new client passphrase for G-05"
    state: dict[str, Any] = {}
    who = Member("client", uuid.uuid4(), email, password, "alpha", "")

    def login(**extra: str) -> Call:
        body = {"organization": "alpha", "email": email, "password": password, **extra}
        return Call("POST", "/v1/auth/login", body)

    def totp_now() -> str:
        return totp_code(state["secret"], dt.datetime.now(dt.UTC))

    def wrong_totp() -> str:
        return f"{(int(totp_now()) + 1) % 1_000_000:06d}"

    def session() -> str | None:
        return who.token

    def nobody() -> str | None:
        return None

    steps = [
        AuthStep(
            "login with a wrong password",
            lambda: login(password="not the password at all"),
            nobody,
            401,
            "auth.login",
            "E",
            4,
            "bad_credentials",
        ),
        AuthStep(
            "login with an unknown email",
            lambda: Call(
                "POST",
                "/v1/auth/login",
                {"organization": "alpha", "email": "nobody@alpha.example", "password": password},
            ),
            nobody,
            401,
            "auth.login",
            "E",
            4,
            "bad_credentials",
            known=False,
        ),
        AuthStep("login", login, nobody, 200, "auth.login", "E"),
        AuthStep(
            "enrollTotp", lambda: Call("POST", "/v1/auth/mfa/totp"), session, 200, "auth.mfa_enroll", "U"
        ),
        AuthStep(
            "confirmTotp with a wrong code",
            lambda: Call("POST", "/v1/auth/mfa/totp/confirm", {"code": "000000"}),
            session,
            401,
            "auth.mfa_confirm",
            "U",
            4,
        ),
        AuthStep(
            "confirmTotp",
            lambda: Call("POST", "/v1/auth/mfa/totp/confirm", {"code": totp_now()}),
            session,
            200,
            "auth.mfa_confirm",
            "U",
        ),
        AuthStep("login without the second factor", login, nobody, 401, "auth.login", "E", 4, "mfa_required"),
        AuthStep(
            "login with a wrong second factor",
            lambda: login(totp_code=wrong_totp()),
            nobody,
            401,
            "auth.login",
            "E",
            4,
            "bad_second_factor",
        ),
        AuthStep(
            "login with a recovery code",
            lambda: login(recovery_code=state["recovery"].pop()),
            nobody,
            200,
            "auth.login",
            "E",
        ),
        AuthStep(
            "changePassword with a wrong current password",
            lambda: Call(
                "POST",
                "/v1/auth/password",
                {"current_password": "not the password", "new_password": new_password},
            ),
            session,
            401,
            "auth.password_change",
            "U",
            4,
        ),
        AuthStep(
            "changePassword",
            lambda: Call(
                "POST", "/v1/auth/password", {"current_password": password, "new_password": new_password}
            ),
            session,
            204,
            "auth.password_change",
            "U",
        ),
        AuthStep("logout", lambda: Call("POST", "/v1/auth/logout"), session, 204, "auth.logout", "E"),
        AuthStep(
            "logoutAll",
            lambda: Call("POST", "/v1/auth/logout-all"),
            lambda: state["second"],
            204,
            "auth.logout_all",
            "E",
        ),
    ]

    problems: list[str] = []
    # Redeeming an invite creates the client's account and uses the invite: two events, one request.
    body = {"email": email, "display_name": "Auth", "password": password}
    sent = send_traced(http, Call("POST", f"/v1/invites/{code}/redeem", body), None)
    assert sent.response.status_code == 201, sent.response.text
    who.id = as_uuid(sent.response.json()["id"])
    events = events_of(world, sent.request_id)
    if [(e["event_type"], e["entity_type"], e["outcome"]) for e in events] != [
        ("account.create", "account", 0),
        ("invite.redeem", "invite", 0),
    ]:
        problems.append(f"redeemInvite: {[(e['event_type'], e['entity_type']) for e in events]}")
    for event in events:
        wrong = common_fields(world, sent, event, who)
        wrong += [] if event["subject_id"] == who.id else [f"subject_id={event['subject_id']}"]
        problems += [f"redeemInvite {event['event_type']}: {w}" for w in wrong]
    unused = send_traced(http, Call("POST", f"/v1/invites/{code}/redeem", body), None)
    failed = [
        (e["event_type"], e["outcome"], e["outcome_reason"]) for e in events_of(world, unused.request_id)
    ]
    if unused.response.status_code != 404 or failed != [("invite.redeem", 4, "invalid_code")]:
        problems.append(f"redeemInvite of a used code: {unused.response.status_code} {failed}")

    for step in steps:
        sent = send_traced(http, step.call(), step.token())
        events = events_of(world, sent.request_id)
        cell = f"{step.name} ({sent.response.status_code})"
        if sent.response.status_code != step.status:
            problems.append(f"{cell}: expected {step.status} {sent.response.text[:120]}")
            continue
        if [e["event_type"] for e in events] != [step.event_type]:
            problems.append(
                f"{cell}: events {[e['event_type'] for e in events]}, expected [{step.event_type}]"
            )
            continue
        event = events[0]
        # An unknown email names no account, organization or role.
        wrong = common_fields(world, sent, event, who if step.known else None, org=step.known)
        identity = {
            "entity_type": "account" if step.known else None,
            "entity_id": who.id if step.known else None,
            "subject_id": who.id if step.known else None,
        }
        expected = {"action": step.action, "outcome": step.outcome, "outcome_reason": step.reason, **identity}
        wrong += [f"{k}={event[k]!r} (expected {v!r})" for k, v in expected.items() if event[k] != v]
        if wrong:
            problems.append(f"{cell}: {'; '.join(wrong)}")
        answer = sent.response.json() if sent.response.status_code == 200 else {}
        if "token" in answer:
            who.token = answer["token"]
        state["secret"] = answer.get("secret", state.get("secret"))
        state["recovery"] = answer.get("recovery_codes", state.get("recovery"))
        if step.name == "changePassword":
            password = new_password
            state["second"] = scene.builder.login(
                "alpha", email, password, recovery_code=state["recovery"].pop()
            ).json()["token"]
    assert not problems, "\n".join(problems)

"""A populated deployment on the real server process, built through the public API.

Two organizations, each with every role (admin, clinician, a second clinician who does
not treat anyone, compliance officer, a client with an active consent, a client whose
consent was revoked), published keys, a custodian key, a conversation with a message and
an attachment, a note, a break-glass opening, a legal hold and an erasure request. The
hostile-input tests aim at this world: schemathesis fuzzes it, the authorization matrix
points every role of one organization at the objects of both.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import secrets
import subprocess
import uuid
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
import msgspec

from crypto.client import InnerPayload, generate_identity, seal_envelope, sign_consent
from crypto.client.keys import IdentityKeys
from crypto.public import ConsentAction, EnvelopeKind, KeyBundle, encode
from tests.e2e.conftest import CONFIDE
from tests.helpers import totp_code

ADMIN_PASSWORD = "hostile admin passphrase 1"
STAFF_PASSWORD = "hostile staff passphrase 2"
CLIENT_PASSWORD = "hostile client passphrase 3"


@dataclass
class Member:
    """One account of the world, with a live session."""

    role: str
    id: uuid.UUID
    email: str
    password: str
    org_slug: str
    token: str
    keys: IdentityKeys | None = None
    recovery_codes: list[str] = field(default_factory=list)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class Org:
    """One organization and the objects that belong to it."""

    slug: str
    id: uuid.UUID
    admin: Member
    clinician: Member
    colleague: Member
    compliance: Member
    client: Member
    revoked_client: Member
    custodian: IdentityKeys
    consent_id: uuid.UUID
    spare_consent_id: uuid.UUID
    revoked_consent_id: uuid.UUID
    conversation_id: uuid.UUID
    message_id: uuid.UUID
    attachment_id: uuid.UUID
    note_id: uuid.UUID
    emergency_access_id: uuid.UUID
    legal_hold_id: uuid.UUID
    erasure_request_id: uuid.UUID

    @property
    def members(self) -> dict[str, Member]:
        return {
            "admin": self.admin,
            "clinician": self.clinician,
            "colleague": self.colleague,
            "compliance_officer": self.compliance,
            "client": self.client,
            "revoked_client": self.revoked_client,
        }


@dataclass
class World:
    base_url: str
    database_url: str
    env: dict[str, str]
    a: Org
    b: Org

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=30)


def as_json(value: Any) -> Any:
    return msgspec.json.decode(encode(value))


def _ok(response: httpx.Response, *statuses: int) -> httpx.Response:
    assert response.status_code in (statuses or (200, 201)), (
        f"{response.request.method} {response.request.url.path}: {response.status_code} {response.text}"
    )
    return response


def run_sql(database_url: str, sql: str, *args: Any) -> None:
    """Run one statement as the owner (tests only: to move a session's clock, for example)."""

    async def go() -> None:
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute(sql, *args)
        finally:
            await conn.close()

    asyncio.run(go())


def consent_statement(
    keys: IdentityKeys,
    org_id: uuid.UUID,
    grantee: uuid.UUID,
    action: ConsentAction,
    consent_id: uuid.UUID,
    purpose: str = "TREAT",
) -> Any:
    """A consent statement signed by the client's key, as JSON (grant or revoke)."""
    start = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(minutes=1)
    return as_json(
        sign_consent(
            keys,
            action=action,
            consent_id=consent_id,
            organization_id=org_id,
            grantee_type="clinician",
            grantee_id=grantee,
            scopes=("messaging", "records.read", "records.share"),
            purpose=purpose,
            valid_from=start,
            valid_until=start + dt.timedelta(days=30),
        )
    )


class Builder:
    """Creates accounts and objects over HTTP, as front ends and the CLI would."""

    def __init__(self, http: httpx.Client, env: dict[str, str]) -> None:
        self.http = http
        self.env = env

    def login(self, slug: str, email: str, password: str, **extra: str) -> httpx.Response:
        body = {"organization": slug, "email": email, "password": password, **extra}
        return self.http.post("/v1/auth/login", json=body)

    def staff_session(self, slug: str, email: str, password: str, role: str) -> Member:
        """First login of a staff account: enrol TOTP and confirm it (the session then has MFA)."""
        answer = _ok(self.login(slug, email, password), 200).json()
        member = Member(role, uuid.UUID(answer["account_id"]), email, password, slug, answer["token"])
        enrol = _ok(self.http.post("/v1/auth/mfa/totp", headers=member.headers), 200).json()
        code = totp_code(enrol["secret"], dt.datetime.now(dt.UTC))
        confirmed = self.http.post("/v1/auth/mfa/totp/confirm", json={"code": code}, headers=member.headers)
        member.recovery_codes = list(_ok(confirmed, 200).json()["recovery_codes"])
        return member

    def relogin(self, member: Member) -> str:
        """A second, independent session (staff spend a recovery code as their second factor)."""
        extra = {"recovery_code": member.recovery_codes.pop()} if member.role != "client" else {}
        return str(
            _ok(self.login(member.org_slug, member.email, member.password, **extra), 200).json()["token"]
        )

    def publish_keys(self, member: Member) -> None:
        member.keys = generate_identity(member.id)
        _ok(self.http.put("/v1/me/keys", json=as_json(member.keys.bundle), headers=member.headers), 201)

    def consent(
        self,
        client: Member,
        org_id: uuid.UUID,
        grantee: uuid.UUID,
        action: ConsentAction,
        consent_id: uuid.UUID,
        purpose: str = "TREAT",
    ) -> None:
        assert client.keys is not None
        statement = consent_statement(client.keys, org_id, grantee, action, consent_id, purpose)
        url = "/v1/consents" if action == ConsentAction.GRANT else f"/v1/consents/{consent_id}/revoke"
        _ok(self.http.post(url, json=statement, headers=client.headers))

    def org(self, slug: str) -> Org:
        admin_email = f"admin@{slug}.example"
        created = subprocess.run(
            [
                CONFIDE,
                "admin",
                "create",
                "--organization",
                slug,
                "--email",
                admin_email,
                "--name",
                "Admin",
                "--password-stdin",
            ],
            input=ADMIN_PASSWORD + "\n",
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert created.returncode == 0, created.stderr
        admin = self.staff_session(slug, admin_email, ADMIN_PASSWORD, "admin")
        staff: dict[str, Member] = {}
        for name, role in (
            ("doc", "clinician"),
            ("colleague", "clinician"),
            ("compliance", "compliance_officer"),
        ):
            email = f"{name}@{slug}.example"
            body = {"email": email, "display_name": name.title(), "role": role, "password": STAFF_PASSWORD}
            _ok(self.http.post("/v1/accounts", json=body, headers=admin.headers), 201)
            staff[name] = self.staff_session(slug, email, STAFF_PASSWORD, role)
        doc = staff["doc"]
        clients = []
        for name in ("pat", "former"):
            code = _ok(self.http.post("/v1/invites", json={}, headers=doc.headers), 201).json()["code"]
            email = f"{name}@{slug}.example"
            body = {"email": email, "display_name": name.title(), "password": CLIENT_PASSWORD}
            _ok(self.http.post(f"/v1/invites/{code}/redeem", json=body), 201)
            answer = _ok(self.login(slug, email, CLIENT_PASSWORD), 200).json()
            clients.append(
                Member(
                    "client", uuid.UUID(answer["account_id"]), email, CLIENT_PASSWORD, slug, answer["token"]
                )
            )
        pat, former = clients
        for member in (doc, staff["colleague"], pat, former):
            self.publish_keys(member)
        org_id = uuid.UUID(_ok(self.http.get("/v1/me", headers=pat.headers)).json()["organization_id"])
        custodian = generate_identity(org_id)
        _ok(
            self.http.put(
                "/v1/organization/custodian-key", json=as_json(custodian.bundle), headers=admin.headers
            )
        )

        consent_id, spare_id, revoked_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        self.consent(pat, org_id, doc.id, ConsentAction.GRANT, consent_id)
        # For the matrix to revoke: another purpose (one active consent per grantee and purpose).
        self.consent(pat, org_id, doc.id, ConsentAction.GRANT, spare_id, "CAREMGT")
        self.consent(former, org_id, doc.id, ConsentAction.GRANT, revoked_id)

        conversation_id = uuid.uuid4()
        _ok(
            self.http.post(
                "/v1/conversations",
                json={
                    "id": str(conversation_id),
                    "kind": "direct",
                    "client_id": str(pat.id),
                    "clinicians": [],
                },
                headers=doc.headers,
            ),
            201,
        )
        assert doc.keys is not None
        assert pat.keys is not None
        recipients: list[KeyBundle] = [doc.keys.bundle, pat.keys.bundle]
        message = seal_envelope(
            doc.keys,
            kind=EnvelopeKind.MESSAGE,
            context_id=conversation_id,
            item_id=uuid.uuid4(),
            payload=InnerPayload(version=1, content_type="text/plain", body=b"hostile world message"),
            recipients=recipients,
        )
        url = f"/v1/conversations/{conversation_id}/messages"
        _ok(self.http.post(url, json=as_json(message), headers=doc.headers), 201)

        blob = secrets.token_bytes(256)
        attachment_id = uuid.uuid4()
        _ok(
            self.http.post(
                f"/v1/conversations/{conversation_id}/attachments",
                params={"id": str(attachment_id)},
                content=blob,
                headers={
                    **doc.headers,
                    "Content-Type": "application/octet-stream",
                    "X-Content-BLAKE2b": hashlib.blake2b(blob, digest_size=32).hexdigest(),
                },
            ),
            201,
        )

        note = seal_envelope(
            doc.keys,
            kind=EnvelopeKind.NOTE,
            context_id=pat.id,
            item_id=uuid.uuid4(),
            payload=InnerPayload(version=1, content_type="text/markdown", body=b"hostile world note"),
            recipients=[doc.keys.bundle, custodian.bundle],
        )
        _ok(self.http.post(f"/v1/clients/{pat.id}/notes", json=as_json(note), headers=doc.headers), 201)

        # The second client withdraws: their consent is the "revoked consent" of the matrix.
        self.consent(former, org_id, doc.id, ConsentAction.REVOKE, revoked_id)

        emergency = self.http.post(
            "/v1/emergency-access",
            json={"client_id": str(former.id), "reason": "Unconscious in clinic, medication history needed"},
            headers=staff["colleague"].headers,
        )
        hold = self.http.post(
            "/v1/legal-holds",
            json={
                "scope": "client",
                "client_id": str(former.id),
                "reason": "Litigation notice received today",
            },
            headers=staff["compliance"].headers,
        )
        erasure = self.http.post("/v1/me/erasure-requests", json={}, headers=former.headers)
        return Org(
            slug=slug,
            id=org_id,
            admin=admin,
            clinician=doc,
            colleague=staff["colleague"],
            compliance=staff["compliance"],
            client=pat,
            revoked_client=former,
            custodian=custodian,
            consent_id=consent_id,
            spare_consent_id=spare_id,
            revoked_consent_id=revoked_id,
            conversation_id=conversation_id,
            message_id=message.item_id,
            attachment_id=attachment_id,
            note_id=note.item_id,
            emergency_access_id=uuid.UUID(_ok(emergency, 201).json()["id"]),
            legal_hold_id=uuid.UUID(_ok(hold, 201).json()["id"]),
            erasure_request_id=uuid.UUID(_ok(erasure, 201).json()["request"]["id"]),
        )


def build_world(base_url: str, database_url: str, env: dict[str, str]) -> World:
    """Two organizations, ``alpha`` and ``beta``, populated through the API."""
    with httpx.Client(base_url=base_url, timeout=30) as http:
        builder = Builder(http, env)
        return World(base_url, database_url, env, builder.org("alpha"), builder.org("beta"))


def random_token() -> str:
    """A well-formed bearer token that no session has."""
    return "cfd_" + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")

"""B-07: every field any response can carry is on a reviewed allow-list; none is an internal one.

The allow-list (``response_fields.json``) is every property of every schema reachable from
a response in the committed OpenAPI document. A new field fails here until it is added
there on purpose. Field names that look like secrets are allowed only with the reason
they are safe to hand out. At run time the same document says ``additionalProperties:
false`` on every Struct, so schemathesis fails any answer with a field it does not list.
To update after a reviewed change: ``CONFIDE_UPDATE_RESPONSE_FIELDS=1 pytest`` this file.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

from tests.conftest import ROOT

ALLOW_LIST = ROOT / "tests" / "hostile" / "response_fields.json"
SENSITIVE = re.compile(
    r"password|hash|digest|secret|private|seed|token|code|salt|nonce|email|totp", re.IGNORECASE
)
# Fields whose names look sensitive, each with why handing it out is right.
REVIEWED = {
    "AccountView.email": "the caller's own account (GET /v1/me) or staff created by an admin",
    "AttachmentCreated.digest": "BLAKE2b of the ciphertext the uploader sent",
    "ErasureFiled.receipt_token": "shown once to the client who filed the request, to follow its outcome",
    "InclusionProofView.leaf_hash": "public Merkle data for the compliance officer's verification",
    "InviteCreated.code": "the invite code the clinician hands to the client (single use, expiring)",
    "LoginResponse.token": "the new session's bearer token, shown once (the server keeps only its digest)",
    "LoginResponse.token_type": "the word Bearer",
    "RecoveryCodesResponse.recovery_codes": "shown once at enrolment to their owner",
    "TotpEnrollmentResponse.secret": "the TOTP seed for the owner's authenticator app, shown once",
    "KeyBackup.salt": "public Argon2id salt of the owner's passphrase-encrypted backup",
    "KeyBackup.nonce": "public nonce of the owner's encrypted backup",
    "Envelope.nonce": "public AEAD nonce of end-to-end encrypted content",
}


def _refs(value: Any, found: set[str]) -> None:
    if isinstance(value, dict):
        if "$ref" in value:
            found.add(value["$ref"].rsplit("/", 1)[1])
        for item in value.values():
            _refs(item, found)
    elif isinstance(value, list):
        for item in value:
            _refs(item, found)


def response_fields() -> dict[str, list[str]]:
    """Schema name -> its properties, for every schema reachable from an answer."""
    document = json.loads((ROOT / "openapi" / "openapi.json").read_text(encoding="utf-8"))
    schemas = document["components"]["schemas"]
    reachable: set[str] = set()
    for operations in document["paths"].values():
        for operation in operations.values():
            if isinstance(operation, dict):
                _refs(operation.get("responses", {}), reachable)
    pending = list(reachable)
    while pending:
        nested: set[str] = set()
        _refs(schemas[pending.pop()], nested)
        pending.extend(nested - reachable)
        reachable |= nested
    return {name: sorted(schemas[name].get("properties", {})) for name in sorted(reachable)}


def test_responses_carry_only_reviewed_fields() -> None:
    """B-07: set equality with the allow-list: no field appears in an answer without review."""
    current = response_fields()
    if os.environ.get("CONFIDE_UPDATE_RESPONSE_FIELDS"):
        ALLOW_LIST.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    allowed = json.loads(ALLOW_LIST.read_text(encoding="utf-8"))
    added = {f"{s}.{f}" for s, fields in current.items() for f in fields} - {
        f"{s}.{f}" for s, fields in allowed.items() for f in fields
    }
    removed = {f"{s}.{f}" for s, fields in allowed.items() for f in fields} - {
        f"{s}.{f}" for s, fields in current.items() for f in fields
    }
    assert not added, f"new response fields, review them and add them to {ALLOW_LIST.name}: {sorted(added)}"
    assert not removed, f"fields gone from the answers, drop them from {ALLOW_LIST.name}: {sorted(removed)}"


def test_no_internal_field_is_answered() -> None:
    """B-07: no password, hash, digest, secret, seed or token leaves the server except those reviewed."""
    flagged = {
        f"{schema}.{field}"
        for schema, fields in response_fields().items()
        for field in fields
        if SENSITIVE.search(field)
    }
    assert flagged <= set(REVIEWED), f"unreviewed sensitive-looking fields: {sorted(flagged - set(REVIEWED))}"
    assert set(REVIEWED) <= flagged, f"reviewed fields no answer has: {sorted(set(REVIEWED) - flagged)}"
    assert not any("password" in name.split(".", 1)[1] for name in flagged), "a password never leaves"

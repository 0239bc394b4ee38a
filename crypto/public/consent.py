"""Signed consent statements: the wire format, its signed bytes and its verification.

A client grants (or revokes) access to its data by signing a :class:`ConsentStatement`
with its Ed25519 key (:func:`crypto.client.sign_consent`). Anyone holding the client's
key bundle (the server, a clinician, an auditor) checks it with :func:`verify_consent`
and needs to trust nobody else: the signature covers every field, and each action has
its own signature domain, so a server can neither forge or alter a consent nor replay a
grant as a revoke (SPEC.md "Consent statements").

Nothing here touches a private key; :func:`decode_consent` is what the server runs on a
request body (size limit before parsing, structure checked on construction).
"""

from __future__ import annotations

import enum
import itertools
import re
import uuid
from datetime import datetime, timedelta
from typing import Literal

import msgspec

from crypto.errors import FormatError, KeyChainError
from crypto.public._sodium import ed25519_verify_strict
from crypto.public.encoding import CanonicalWriter
from crypto.public.limits import MAX_CONSENT_JSON_BYTES, MAX_CONSENT_SCOPE_CHARS, MAX_CONSENT_SCOPES
from crypto.public.verify import verify_bundle
from crypto.public.wire import SIGNATURE_BYTES, KeyBundle, KeyRef, _decode

__all__ = [
    "CONSENT_DOMAINS",
    "CONSENT_VERSION",
    "GRANTEE_TYPES",
    "ConsentAction",
    "ConsentStatement",
    "GranteeType",
    "consent_signed_bytes",
    "decode_consent",
    "verify_consent",
]

CONSENT_VERSION = 1

#: Who a consent names: one clinician, or the organization as a whole.
GranteeType = Literal["clinician", "organization"]
GRANTEE_TYPES: tuple[GranteeType, ...] = ("clinician", "organization")

# ASCII only: Python's [a-z] and [A-Z] never match other scripts, and fullmatch (not
# match with "$") refuses a trailing newline.
_SCOPE = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*")
_PURPOSE = re.compile(r"[A-Z]{2,16}")


class ConsentAction(enum.Enum):
    """What a consent statement does; each action has its own signature domain."""

    GRANT = "grant"
    REVOKE = "revoke"

    @property
    def code(self) -> int:
        """The one-byte code of this action in the signed bytes."""
        return _ACTION_CODES[self]


_ACTION_CODES = {ConsentAction.GRANT: 1, ConsentAction.REVOKE: 2}

#: One signature domain per action: "confide/v1/consent/<action value>".
CONSENT_DOMAINS: dict[ConsentAction, str] = {
    action: f"confide/v1/consent/{action.value}" for action in ConsentAction
}


def _check_time(value: datetime, what: str) -> None:
    if not isinstance(value, datetime) or value.utcoffset() != timedelta(0):
        raise FormatError(f"{what} must be a UTC datetime")
    if value.microsecond != 0:
        raise FormatError(f"{what} must be a whole number of seconds")
    if value.timestamp() < 0:
        raise FormatError(f"{what} must not be before 1970")


def _check_scopes(scopes: tuple[str, ...]) -> None:
    if not 1 <= len(scopes) <= MAX_CONSENT_SCOPES:
        raise FormatError("scope count out of range")
    for scope in scopes:
        if len(scope) > MAX_CONSENT_SCOPE_CHARS or _SCOPE.fullmatch(scope) is None:
            raise FormatError("scope is not a dotted lowercase name")
    # Scopes are ASCII, so str order is byte order: the signed list is canonical.
    if any(a >= b for a, b in itertools.pairwise(scopes)):
        raise FormatError("scopes must be sorted and unique")


class ConsentStatement(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A client's signed grant or revocation of consent (SPEC.md "Consent statements").

    Checked on construction and decoding: version 1; field types; ``grantee_type``
    ``clinician`` or ``organization`` (for ``organization``, ``grantee_id`` must be
    ``organization_id``); 1..16 scopes, sorted, unique, each a dotted lowercase name of
    at most 64 characters; ``purpose`` an HL7 purpose-of-use code (2..16 capitals);
    times in UTC, whole seconds, not before 1970, ``valid_until`` after ``valid_from``
    when set; a 64-byte signature. The signature itself is checked by
    :func:`verify_consent`.

    A revoke names the grant it revokes by ``consent_id`` and repeats the grant's
    organization, grantee, scopes, purpose and validity; it revokes the whole grant.
    """

    version: int
    action: ConsentAction
    consent_id: uuid.UUID
    client: KeyRef
    organization_id: uuid.UUID
    grantee_type: GranteeType
    grantee_id: uuid.UUID
    scopes: tuple[str, ...]
    purpose: str
    valid_from: datetime
    valid_until: datetime | None
    issued_at: datetime
    signature: bytes

    def __post_init__(self) -> None:
        if self.version != CONSENT_VERSION:
            raise FormatError("unsupported consent statement version")
        ids = (self.consent_id, self.organization_id, self.grantee_id)
        well_typed = (
            isinstance(self.action, ConsentAction)
            and isinstance(self.client, KeyRef)
            and all(isinstance(value, uuid.UUID) for value in ids)
            and isinstance(self.scopes, tuple)
            and all(isinstance(scope, str) for scope in self.scopes)
            and isinstance(self.purpose, str)
            and isinstance(self.signature, bytes)
        )
        if not well_typed:
            raise FormatError("consent statement field of the wrong type")
        if self.grantee_type not in GRANTEE_TYPES:
            raise FormatError("unknown grantee type")
        if self.grantee_type == "organization" and self.grantee_id != self.organization_id:
            raise FormatError("an organization grantee must be the statement's organization")
        _check_scopes(self.scopes)
        if _PURPOSE.fullmatch(self.purpose) is None:
            raise FormatError("purpose is not a purpose-of-use code")
        _check_time(self.valid_from, "valid_from")
        _check_time(self.issued_at, "issued_at")
        if self.valid_until is not None:
            _check_time(self.valid_until, "valid_until")
            if self.valid_until <= self.valid_from:
                raise FormatError("valid_until must be after valid_from")
        if len(self.signature) != SIGNATURE_BYTES:
            raise FormatError("signature has the wrong length")


def _seconds(value: datetime) -> int:
    return int(value.timestamp())


def consent_signed_bytes(statement: ConsentStatement) -> bytes:
    """Bytes the client signs: every field of the statement except the signature.

    The first item is the action's own domain (``confide/v1/consent/grant`` or
    ``confide/v1/consent/revoke``), so a grant's signature never verifies as a revoke.
    """
    writer = (
        CanonicalWriter(CONSENT_DOMAINS[statement.action])
        .u32(CONSENT_VERSION)
        .u8(statement.action.code)
        .uuid(statement.consent_id)
        .uuid(statement.client.account_id)
        .u32(statement.client.key_version)
        .uuid(statement.organization_id)
        .item(statement.grantee_type.encode("ascii"))
        .uuid(statement.grantee_id)
        .u32(len(statement.scopes))
    )
    for scope in statement.scopes:
        writer.item(scope.encode("ascii"))
    return (
        writer.item(statement.purpose.encode("ascii"))
        .u64(_seconds(statement.valid_from))
        .optional_u64(None if statement.valid_until is None else _seconds(statement.valid_until))
        .u64(_seconds(statement.issued_at))
        .getvalue()
    )


def verify_consent(statement: ConsentStatement, client_bundle: KeyBundle) -> None:
    """Verify a consent statement against the signing client's key bundle.

    Structure was checked when ``statement`` was built or decoded. This adds: the
    bundle's self-signature; that the bundle is the key the statement names as
    ``client`` (account and key version); and the strict Ed25519 signature over
    :func:`consent_signed_bytes`. Whether that key is the client's *current* one, and
    whether the statement fits the server's records (a revoke naming an existing grant
    of the same client, a fresh ``consent_id`` for a grant), is for the caller.

    Raises:
        SignatureError: the bundle's self-signature or the statement's signature fails
            (including a grant presented as a revoke and any altered field).
        KeyChainError: the bundle is not the key the statement names (another account
            or key version).
    """
    verify_bundle(client_bundle)
    if client_bundle.ref != statement.client:
        raise KeyChainError("consent statement names another key than this bundle")
    ed25519_verify_strict(client_bundle.signing_key, consent_signed_bytes(statement), statement.signature)


_CONSENT_DECODER = msgspec.json.Decoder(ConsentStatement)


def decode_consent(data: bytes) -> ConsentStatement:
    """Decode and structurally check a consent statement from JSON (signature not checked).

    Raises:
        FormatError: too large (checked before parsing), malformed JSON, unknown field,
            action, grantee type or version, or any rule of :class:`ConsentStatement`.
    """
    return _decode(data, _CONSENT_DECODER, MAX_CONSENT_JSON_BYTES, FormatError)

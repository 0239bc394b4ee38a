"""Signed consent statements: round trips, tampering, domain separation, keys, validation."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crypto.client import IdentityKeys, generate_identity, rotate_identity, sign_consent
from crypto.errors import CryptoError, FormatError, KeyChainError, SignatureError
from crypto.public import (
    CONSENT_VERSION,
    ConsentAction,
    ConsentStatement,
    KeyRef,
    consent_signed_bytes,
    decode_consent,
    encode,
    limits,
    verify_consent,
)
from crypto.public._sodium import ED25519_ORDER
from crypto.public.consent import CONSENT_DOMAINS
from tests.unit.crypto.conftest import Cast

ORGANIZATION = uuid.UUID("0e000000-0000-4000-8000-000000000001")
CLINICIAN = uuid.UUID("c1000000-0000-4000-8000-000000000002")
OTHER = uuid.UUID("0f000000-0000-4000-8000-000000000003")
JAN_1 = datetime(2025, 1, 1, tzinfo=UTC)
JUL_1 = datetime(2025, 7, 1, tzinfo=UTC)


def _clock() -> datetime:
    return datetime(2025, 1, 1, 9, 30, 15, 999_999, tzinfo=UTC)


def _sign(identity: IdentityKeys, **overrides: object) -> ConsentStatement:
    fields: dict[str, object] = {
        "action": ConsentAction.GRANT,
        "consent_id": uuid.UUID("c0000000-0000-4000-8000-00000000000c"),
        "organization_id": ORGANIZATION,
        "grantee_type": "clinician",
        "grantee_id": CLINICIAN,
        "scopes": ["records.read", "messaging"],
        "purpose": "TREAT",
        "valid_from": JAN_1,
        "valid_until": JUL_1,
        "clock": _clock,
    }
    fields.update(overrides)
    return sign_consent(identity, **fields)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def grant(cast: Cast) -> ConsentStatement:
    return _sign(cast.alice)


# ---- round trips ----


def test_signed_grant_round_trips_through_json_and_verifies(cast: Cast, grant: ConsentStatement) -> None:
    decoded = decode_consent(encode(grant))
    assert decoded == grant
    verify_consent(decoded, cast.alice.bundle)
    assert grant.version == CONSENT_VERSION
    assert grant.client == cast.alice.ref
    assert grant.scopes == ("messaging", "records.read")  # sorted by sign_consent
    assert grant.issued_at == datetime(2025, 1, 1, 9, 30, 15, tzinfo=UTC)  # clock, to the second


def test_json_carries_times_in_utc_with_z_and_an_explicit_null_validity_end(cast: Cast) -> None:
    statement = _sign(cast.alice, valid_until=None)
    text = encode(statement).decode()
    assert '"valid_from":"2025-01-01T00:00:00Z"' in text
    assert '"valid_until":null' in text
    assert '"action":"grant"' in text
    verify_consent(decode_consent(text.encode()), cast.alice.bundle)


def test_revoke_of_a_grant_verifies_and_differs_only_in_action_time_and_signature(
    cast: Cast, grant: ConsentStatement
) -> None:
    later = datetime(2025, 2, 1, tzinfo=UTC)
    revoke = _sign(cast.alice, action=ConsentAction.REVOKE, clock=lambda: later)
    verify_consent(revoke, cast.alice.bundle)
    assert revoke.consent_id == grant.consent_id
    same = msgspec.structs.replace(
        revoke, action=ConsentAction.GRANT, issued_at=grant.issued_at, signature=grant.signature
    )
    assert same == grant


def test_scopes_are_sorted_and_deduplicated_and_times_converted_to_utc(cast: Cast) -> None:
    plus_two = timezone(timedelta(hours=2))
    statement = _sign(
        cast.alice,
        scopes=("records.share", "messaging", "records.share", "emergency_access"),
        valid_from=datetime(2025, 1, 1, 2, 0, tzinfo=plus_two),
        valid_until=(datetime(2025, 7, 1, 2, 0, tzinfo=plus_two)),
    )
    assert statement.scopes == ("emergency_access", "messaging", "records.share")
    assert statement.valid_from == JAN_1
    assert statement.valid_from.utcoffset() == timedelta(0)
    assert statement.valid_until == JUL_1
    verify_consent(statement, cast.alice.bundle)


def test_organization_grantee_names_the_organization(cast: Cast) -> None:
    statement = _sign(cast.alice, grantee_type="organization", grantee_id=ORGANIZATION)
    verify_consent(decode_consent(encode(statement)), cast.alice.bundle)


_SCOPE = st.from_regex(r"[a-z][a-z0-9_]{0,10}(\.[a-z][a-z0-9_]{0,10}){0,2}", fullmatch=True)
_SECONDS = st.integers(min_value=0, max_value=2**33)


@settings(max_examples=25, deadline=None)
@given(
    action=st.sampled_from(ConsentAction),
    organization=st.uuids(),
    clinician=st.uuids(),
    to_organization=st.booleans(),
    scopes=st.lists(_SCOPE, min_size=1, max_size=limits.MAX_CONSENT_SCOPES),
    purpose=st.from_regex(r"[A-Z]{2,16}", fullmatch=True),
    start=_SECONDS,
    length=st.none() | st.integers(min_value=1, max_value=2**31),
    issued=_SECONDS,
)
def test_any_valid_statement_round_trips_and_verifies_only_as_its_own_action(
    cast: Cast,
    action: ConsentAction,
    organization: uuid.UUID,
    clinician: uuid.UUID,
    to_organization: bool,
    scopes: list[str],
    purpose: str,
    start: int,
    length: int | None,
    issued: int,
) -> None:
    """Property: sign → JSON → decode is the identity, verifies, and never as the other action."""
    valid_from = datetime.fromtimestamp(start, UTC)
    statement = sign_consent(
        cast.bob,
        action=action,
        consent_id=uuid.uuid4(),
        organization_id=organization,
        grantee_type="organization" if to_organization else "clinician",
        grantee_id=organization if to_organization else clinician,
        scopes=scopes,
        purpose=purpose,
        valid_from=valid_from,
        valid_until=None if length is None else valid_from + timedelta(seconds=length),
        clock=lambda: datetime.fromtimestamp(issued, UTC),
    )
    decoded = decode_consent(encode(statement))
    assert decoded == statement
    assert list(decoded.scopes) == sorted(set(scopes))
    verify_consent(decoded, cast.bob.bundle)
    other = ConsentAction.REVOKE if action is ConsentAction.GRANT else ConsentAction.GRANT
    with pytest.raises(SignatureError):
        verify_consent(msgspec.structs.replace(decoded, action=other), cast.bob.bundle)


# ---- signed bytes and domain separation ----


def test_signed_bytes_layout_matches_the_specification(grant: ConsentStatement) -> None:
    def item(data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + data

    expected = b"".join(
        [
            item(b"confide/v1/consent/grant"),
            item((1).to_bytes(4, "big")),
            item(b"\x01"),
            item(grant.consent_id.bytes),
            item(grant.client.account_id.bytes),
            item(grant.client.key_version.to_bytes(4, "big")),
            item(ORGANIZATION.bytes),
            item(b"clinician"),
            item(CLINICIAN.bytes),
            item((2).to_bytes(4, "big")),
            item(b"messaging"),
            item(b"records.read"),
            item(b"TREAT"),
            item(int(JAN_1.timestamp()).to_bytes(8, "big")),
            item(int(JUL_1.timestamp()).to_bytes(8, "big")),
            item(int(grant.issued_at.timestamp()).to_bytes(8, "big")),
        ]
    )
    assert consent_signed_bytes(grant) == expected
    open_ended = msgspec.structs.replace(grant, valid_until=None)
    tail = item(int(grant.issued_at.timestamp()).to_bytes(8, "big"))
    assert consent_signed_bytes(open_ended).endswith(b"\x00\x00\x00\x00" + tail)


def test_grant_and_revoke_have_distinct_signature_domains(grant: ConsentStatement) -> None:
    """Domain separation: the first item names the action, so the signed bytes differ."""
    assert CONSENT_DOMAINS == {
        ConsentAction.GRANT: "confide/v1/consent/grant",
        ConsentAction.REVOKE: "confide/v1/consent/revoke",
    }
    revoke = msgspec.structs.replace(grant, action=ConsentAction.REVOKE)
    grant_bytes, revoke_bytes = consent_signed_bytes(grant), consent_signed_bytes(revoke)
    assert grant_bytes.startswith(b"\x00\x00\x00\x18confide/v1/consent/grant")
    assert revoke_bytes.startswith(b"\x00\x00\x00\x19confide/v1/consent/revoke")
    assert grant_bytes[4 + 24 :] != revoke_bytes[4 + 25 :]  # the action code differs too


def test_grant_signature_replayed_as_revoke_is_refused(cast: Cast, grant: ConsentStatement) -> None:
    """A server cannot turn a client's grant into a revoke (or back) by relabelling it."""
    replayed = msgspec.structs.replace(grant, action=ConsentAction.REVOKE)
    with pytest.raises(SignatureError):
        verify_consent(replayed, cast.alice.bundle)
    revoke = _sign(cast.alice, action=ConsentAction.REVOKE)
    with pytest.raises(SignatureError):
        verify_consent(msgspec.structs.replace(revoke, action=ConsentAction.GRANT), cast.alice.bundle)


# ---- tampering: every field region ----

_TAMPERS: dict[str, Callable[[ConsentStatement], dict[str, object]]] = {
    "consent_id": lambda s: {"consent_id": uuid.UUID(int=s.consent_id.int ^ 1)},
    "organization_id": lambda _: {"organization_id": OTHER},
    "grantee_type": lambda s: {"grantee_type": "organization", "grantee_id": s.organization_id},
    "grantee_id": lambda _: {"grantee_id": OTHER},
    "scope widened": lambda s: {"scopes": (*s.scopes, "records.share")},
    "scope narrowed": lambda s: {"scopes": s.scopes[:1]},
    "scope replaced": lambda _: {"scopes": ("emergency_access", "records.read")},
    "purpose": lambda _: {"purpose": "HPAYMT"},
    "valid_from earlier": lambda s: {"valid_from": s.valid_from - timedelta(seconds=1)},
    "valid_until extended": lambda _: {"valid_until": JUL_1 + timedelta(days=365)},
    "valid_until removed": lambda _: {"valid_until": None},
    "issued_at": lambda s: {"issued_at": s.issued_at + timedelta(seconds=1)},
    "action": lambda _: {"action": ConsentAction.REVOKE},
}


@pytest.mark.parametrize("field", sorted(_TAMPERS))
def test_altering_any_signed_field_breaks_the_signature(
    cast: Cast, grant: ConsentStatement, field: str
) -> None:
    """The server cannot widen scopes, change the grantee, purpose or validity, or re-date it."""
    tampered = msgspec.structs.replace(grant, **_TAMPERS[field](grant))
    assert consent_signed_bytes(tampered) != consent_signed_bytes(grant)
    with pytest.raises(SignatureError):
        verify_consent(tampered, cast.alice.bundle)
    with pytest.raises(SignatureError):
        verify_consent(decode_consent(encode(tampered)), cast.alice.bundle)


@pytest.mark.parametrize("index", [0, 31, 32, 63])
def test_flipping_a_bit_of_the_signature_is_refused(cast: Cast, grant: ConsentStatement, index: int) -> None:
    raw = bytearray(grant.signature)
    raw[index] ^= 0x01
    with pytest.raises(SignatureError):
        verify_consent(msgspec.structs.replace(grant, signature=bytes(raw)), cast.alice.bundle)


def test_malleable_signature_is_refused(cast: Cast, grant: ConsentStatement) -> None:
    """Strict verification: S + L verifies in lax Ed25519 implementations, not here."""
    s = int.from_bytes(grant.signature[32:], "little") + ED25519_ORDER
    malleable = grant.signature[:32] + s.to_bytes(32, "little")
    with pytest.raises(SignatureError):
        verify_consent(msgspec.structs.replace(grant, signature=malleable), cast.alice.bundle)


# ---- keys ----


def test_bundle_of_another_account_is_refused_as_a_key_mismatch(cast: Cast, grant: ConsentStatement) -> None:
    with pytest.raises(KeyChainError):
        verify_consent(grant, cast.bob.bundle)


def test_statement_relabelled_to_another_client_is_refused(cast: Cast, grant: ConsentStatement) -> None:
    """Naming mallory as the client (and checking with her key) fails the signature."""
    relabelled = msgspec.structs.replace(grant, client=cast.mallory.ref)
    with pytest.raises(SignatureError):
        verify_consent(relabelled, cast.mallory.bundle)


def test_wrong_client_key_version_is_refused() -> None:
    v1 = generate_identity(uuid.uuid4())
    v2 = rotate_identity(v1)
    statement = _sign(v2)
    verify_consent(statement, v2.bundle)
    with pytest.raises(KeyChainError):
        verify_consent(statement, v1.bundle)
    relabelled = msgspec.structs.replace(
        statement, client=KeyRef(account_id=v1.ref.account_id, key_version=1)
    )
    with pytest.raises(KeyChainError):
        verify_consent(relabelled, v2.bundle)
    with pytest.raises(SignatureError):
        verify_consent(relabelled, v1.bundle)


def test_substituted_key_under_the_clients_account_and_version_is_refused(
    cast: Cast, grant: ConsentStatement
) -> None:
    """A server presenting a bundle of its own making for (alice, v1) cannot vouch for a consent."""
    impostor = generate_identity(cast.alice.ref.account_id)
    assert impostor.ref == cast.alice.ref
    with pytest.raises(SignatureError):
        verify_consent(grant, impostor.bundle)


def test_bundle_with_a_broken_self_signature_is_refused(cast: Cast, grant: ConsentStatement) -> None:
    raw = bytearray(cast.alice.bundle.self_signature)
    raw[0] ^= 0x01
    broken = msgspec.structs.replace(cast.alice.bundle, self_signature=bytes(raw))
    with pytest.raises(SignatureError):
        verify_consent(grant, broken)


# ---- validation: construction and signing ----

_BAD_SIGNING_INPUTS: dict[str, dict[str, object]] = {
    "no scopes": {"scopes": []},
    "too many scopes": {"scopes": [f"scope_{i}" for i in range(limits.MAX_CONSENT_SCOPES + 1)]},
    "scope too long": {"scopes": ["a" * (limits.MAX_CONSENT_SCOPE_CHARS + 1)]},
    "scope upper case": {"scopes": ["Messaging"]},
    "scope empty segment": {"scopes": ["records..read"]},
    "scope trailing dot": {"scopes": ["records."]},
    "scope leading digit": {"scopes": ["1records"]},
    "scope hyphen": {"scopes": ["records-read"]},
    "scope trailing newline": {"scopes": ["messaging\n"]},
    "scope non-ascii": {"scopes": ["r\u00e9cords"]},
    "scope empty": {"scopes": [""]},
    "scopes as one string": {"scopes": "messaging"},
    "scopes as bytes": {"scopes": b"messaging"},
    "scope not a string": {"scopes": ["messaging", 7]},
    "purpose lower case": {"purpose": "treat"},
    "purpose one letter": {"purpose": "T"},
    "purpose seventeen letters": {"purpose": "A" * 17},
    "purpose trailing newline": {"purpose": "TREAT\n"},
    "purpose not a string": {"purpose": 7},
    "grantee type unknown": {"grantee_type": "patient"},
    "organization grantee of another organization": {"grantee_type": "organization", "grantee_id": OTHER},
    "valid_until equals valid_from": {"valid_until": JAN_1},
    "valid_until before valid_from": {"valid_until": JAN_1 - timedelta(days=1)},
    "valid_from with microseconds": {"valid_from": JAN_1.replace(microsecond=1)},
    "valid_until with microseconds": {"valid_until": JUL_1.replace(microsecond=1)},
    "valid_from naive": {"valid_from": JAN_1.replace(tzinfo=None)},
    "valid_until naive": {"valid_until": JUL_1.replace(tzinfo=None)},
    "valid_from not a datetime": {"valid_from": "2025-01-01T00:00:00Z"},
    "valid_from a date": {"valid_from": date(2025, 1, 1)},
    "valid_from before 1970": {"valid_from": datetime(1969, 12, 31, tzinfo=UTC)},
    "action as text": {"action": "grant"},
    "consent id as text": {"consent_id": "c0000000-0000-4000-8000-00000000000c"},
    "naive clock": {"clock": lambda: datetime(2025, 1, 1)},  # noqa: DTZ001 - the point of the test
    "clock before 1970": {"clock": lambda: datetime(1969, 1, 1, tzinfo=UTC)},
}


@pytest.mark.parametrize("case", sorted(_BAD_SIGNING_INPUTS))
def test_sign_consent_refuses_bad_input_with_format_error(cast: Cast, case: str) -> None:
    """Bad input is refused, never truncated, and only ever with a CryptoError."""
    with pytest.raises(FormatError):
        _sign(cast.alice, **_BAD_SIGNING_INPUTS[case])


_BAD_STRUCT_FIELDS: dict[str, dict[str, object]] = {
    "version 2": {"version": 2},
    "version 0": {"version": 0},
    "client not a key ref": {"client": {"account_id": ORGANIZATION, "key_version": 1}},
    "scopes as a list": {"scopes": ["messaging"]},
    "unsorted scopes": {"scopes": ("records.read", "messaging")},
    "duplicate scopes": {"scopes": ("messaging", "messaging")},
    "signature as text": {"signature": "00" * 64},
    "short signature": {"signature": bytes(63)},
    "issued_at with offset": {"issued_at": datetime(2025, 1, 1, tzinfo=timezone(timedelta(hours=1)))},
}


@pytest.mark.parametrize("case", sorted(_BAD_STRUCT_FIELDS))
def test_building_a_malformed_statement_raises_format_error(grant: ConsentStatement, case: str) -> None:
    with pytest.raises(FormatError):
        msgspec.structs.replace(grant, **_BAD_STRUCT_FIELDS[case])


# ---- decoding ----


def _json(grant: ConsentStatement, change: Callable[[dict[str, object]], None]) -> bytes:
    obj = msgspec.json.decode(encode(grant), type=dict[str, object])
    change(obj)
    return msgspec.json.encode(obj)


def _set(key: str, value: object) -> Callable[[dict[str, object]], None]:
    def change(obj: dict[str, object]) -> None:
        obj[key] = value

    return change


def _drop(key: str) -> Callable[[dict[str, object]], None]:
    def change(obj: dict[str, object]) -> None:
        del obj[key]

    return change


_BAD_JSON: dict[str, Callable[[dict[str, object]], None]] = {
    "unknown field": _set("debug", True),
    "unknown action": _set("action", "amend"),
    "unknown grantee type": _set("grantee_type", "patient"),
    "missing valid_until": _drop("valid_until"),
    "missing signature": _drop("signature"),
    "unsorted scopes": _set("scopes", ["records.read", "messaging"]),
    "scopes not a list": _set("scopes", "messaging"),
    "fractional seconds": _set("issued_at", "2025-01-01T09:30:15.5Z"),
    "offset time": _set("valid_from", "2025-01-01T01:00:00+01:00"),
    "naive time": _set("valid_from", "2025-01-01T00:00:00"),
    "bad uuid": _set("consent_id", "not-a-uuid"),
    "key version 0": _set("client", {"account_id": str(ORGANIZATION), "key_version": 0}),
    "signature not base64": _set("signature", "!!"),
    "version as text": _set("version", "1"),
}


@pytest.mark.parametrize("case", sorted(_BAD_JSON))
def test_decode_consent_refuses_malformed_json_with_format_error(grant: ConsentStatement, case: str) -> None:
    with pytest.raises(FormatError):
        decode_consent(_json(grant, _BAD_JSON[case]))


@pytest.mark.parametrize(
    "data",
    [b"", b"{", b"[]", b"null", b"\xff\xfe", b'{"version":1}'],
    ids=["empty", "truncated", "array", "null", "not utf-8", "fields missing"],
)
def test_decode_consent_refuses_garbage(data: bytes) -> None:
    with pytest.raises(FormatError):
        decode_consent(data)


def test_decode_consent_checks_the_size_limit_before_parsing(grant: ConsentStatement) -> None:
    text = encode(grant)
    padded = text[:-1] + b" " * (limits.MAX_CONSENT_JSON_BYTES - len(text)) + b"}"
    assert len(padded) == limits.MAX_CONSENT_JSON_BYTES
    assert decode_consent(padded) == grant
    with pytest.raises(FormatError, match="size limit"):
        decode_consent(padded + b" ")


def test_largest_legal_statement_fits_the_size_limit(cast: Cast) -> None:
    scopes = [f"{chr(ord('a') + i)}{'x' * (limits.MAX_CONSENT_SCOPE_CHARS - 1)}" for i in range(16)]
    statement = _sign(cast.alice, scopes=scopes, purpose="A" * 16)
    assert len(encode(statement)) < limits.MAX_CONSENT_JSON_BYTES
    verify_consent(decode_consent(encode(statement)), cast.alice.bundle)


def test_every_refusal_is_a_crypto_error_never_value_or_type_error(cast: Cast) -> None:
    """The backend maps CryptoError to 4xx; a ValueError or TypeError would become a 500."""
    extra: list[dict[str, object]] = [{"consent_id": 5}, {"organization_id": None}]
    for overrides in [*_BAD_SIGNING_INPUTS.values(), *extra]:
        try:
            _sign(cast.alice, **overrides)
        except CryptoError:
            continue
        pytest.fail(f"accepted {overrides!r}")

"""Wire formats: versioned, strict, size-limited; decoding raises only CryptoError."""

from __future__ import annotations

import contextlib
import uuid

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crypto.client import InnerPayload
from crypto.client.payload import decode_payload, encode_payload
from crypto.errors import CryptoError, EnvelopeFormatError, FormatError
from crypto.public import EnvelopeKind, KeyRef, decode_bundle, decode_envelope, encode, limits
from tests.unit.crypto.conftest import Cast


def test_envelope_json_carries_version_and_base64_bytes(cast: Cast) -> None:
    envelope = cast.seal()
    wire = msgspec.json.decode(encode(envelope))
    assert wire["version"] == 1
    assert wire["kind"] == "message"
    assert isinstance(wire["signature"], str)
    assert decode_envelope(encode(envelope)) == envelope


def test_oversized_envelope_is_refused_before_parsing() -> None:
    with pytest.raises(EnvelopeFormatError):
        decode_envelope(b" " * (limits.MAX_ENVELOPE_JSON_BYTES + 1))


def test_oversized_bundle_is_refused_before_parsing() -> None:
    with pytest.raises(FormatError):
        decode_bundle(b" " * (limits.MAX_BUNDLE_JSON_BYTES + 1))


@pytest.mark.parametrize("data", [b"", b"[]", b"{", b'{"version": 1}', b"\xff"])
def test_malformed_envelopes_are_format_errors(data: bytes) -> None:
    with pytest.raises(EnvelopeFormatError):
        decode_envelope(data)


def test_missing_version_is_refused(cast: Cast) -> None:
    """Fail closed: an envelope without a version field is not assumed to be v1."""
    wire = msgspec.json.decode(encode(cast.seal()))
    del wire["version"]
    with pytest.raises(EnvelopeFormatError):
        decode_envelope(msgspec.json.encode(wire))


@settings(max_examples=100, deadline=None)
@given(data=st.binary(max_size=300))
def test_decoding_arbitrary_bytes_raises_only_crypto_errors(data: bytes) -> None:
    for decode in (decode_envelope, decode_bundle):
        with contextlib.suppress(CryptoError):
            decode(data)


def test_recipient_count_limits(cast: Cast) -> None:
    """No empty recipient list; no fan-out beyond MAX_RECIPIENTS (B-05)."""
    envelope = cast.seal()
    with pytest.raises(EnvelopeFormatError):
        msgspec.structs.replace(envelope, recipients=())
    too_many = tuple(
        msgspec.structs.replace(envelope.recipients[0], account_id=uuid.UUID(int=i))
        for i in range(limits.MAX_RECIPIENTS + 1)
    )
    with pytest.raises(EnvelopeFormatError):
        msgspec.structs.replace(envelope, recipients=too_many)


def test_duplicate_recipients_are_refused(cast: Cast) -> None:
    envelope = cast.seal()
    doubled = (envelope.recipients[0], *envelope.recipients)
    with pytest.raises(EnvelopeFormatError):
        msgspec.structs.replace(envelope, recipients=doubled)


@pytest.mark.parametrize("field", ["nonce", "key_commitment", "signature"], ids=str)
def test_fixed_length_fields(cast: Cast, field: str) -> None:
    with pytest.raises(EnvelopeFormatError):
        msgspec.structs.replace(cast.seal(), **{field: b"\x00"})


def test_wrapped_key_length_and_recipient_version(cast: Cast) -> None:
    entry = cast.seal().recipients[0]
    with pytest.raises(EnvelopeFormatError):
        msgspec.structs.replace(entry, wrapped_key=bytes(79))
    with pytest.raises(EnvelopeFormatError):
        msgspec.structs.replace(entry, key_version=0)


def test_key_ref_range_and_lookup(cast: Cast) -> None:
    with pytest.raises(FormatError):
        KeyRef(account_id=uuid.uuid4(), key_version=0)
    assert cast.seal().recipient(cast.mallory.ref) is None


def test_reference_rule_per_kind(cast: Cast) -> None:
    """Edits, deletions and amendments must reference an item; other kinds must not."""
    with pytest.raises(EnvelopeFormatError):
        cast.seal(kind=EnvelopeKind.MESSAGE_DELETE)
    with pytest.raises(EnvelopeFormatError):
        cast.seal(references=uuid.uuid4())


def test_payload_too_large_for_the_largest_bucket(cast: Cast) -> None:
    with pytest.raises(FormatError):
        cast.seal(b"x" * limits.MAX_PADDED_PAYLOAD_BYTES)


def test_inner_payload_rules_and_redacted_repr() -> None:
    payload = InnerPayload(version=1, content_type="text/plain", body=b"canary-1234")
    assert "canary" not in repr(payload)
    assert decode_payload(encode_payload(payload)) == payload
    with pytest.raises(FormatError):
        InnerPayload(version=2, content_type="text/plain", body=b"")
    with pytest.raises(FormatError):
        InnerPayload(version=1, content_type="x" * 256, body=b"")
    for bad in (b"{}", b"\xff", b"[1]"):
        with pytest.raises(FormatError):
            decode_payload(bad)

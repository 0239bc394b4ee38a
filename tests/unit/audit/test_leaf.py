"""The canonical leaf encoding: round trips, and fail-closed decoding."""

from __future__ import annotations

import random
import typing
from datetime import UTC, datetime, timedelta, timezone

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from audit.errors import AuditFormatError
from audit.leaf import (
    MAX_LEAF_BYTES,
    PURPOSE_OF_USE_CODES,
    AuditEvent,
    decode_leaf,
    encode_leaf,
    format_recorded,
)
from tests.unit.audit.conftest import make_event


def _event(n: int = 1, **changes: object) -> AuditEvent:
    return make_event(random.Random(n), n, **changes)


def test_leaf_bytes_are_compact_json_in_field_order() -> None:
    raw = encode_leaf(_event(1))
    assert raw.startswith(b'{"v":1,"id":"')
    assert b" " not in raw
    keys = list(msgspec.json.decode(raw, type=dict[str, object]))
    assert keys == ["v", *AuditEvent.__struct_fields__]
    assert len(raw) <= MAX_LEAF_BYTES


@given(st.integers(min_value=0, max_value=10_000), st.randoms(use_true_random=False))
def test_round_trip_is_exact(n: int, rnd: random.Random) -> None:
    event = make_event(rnd, n)
    raw = encode_leaf(event)
    assert decode_leaf(raw) == event
    assert encode_leaf(decode_leaf(raw)) == raw


def test_purpose_codes_match_the_type() -> None:
    field_type = typing.get_type_hints(AuditEvent, include_extras=True)["purpose"]
    literal = next(a for a in typing.get_args(field_type) if a is not type(None))
    assert set(typing.get_args(literal)) == PURPOSE_OF_USE_CODES


@pytest.mark.parametrize(
    "mutation",
    [
        pytest.param(lambda raw: raw.replace(b'{"v":1,', b'{"v":2,'), id="unknown-version"),
        pytest.param(lambda raw: raw.replace(b'{"v":1,', b"{"), id="missing-version"),
        pytest.param(lambda raw: raw[:-1] + b',"name":"x"}', id="unknown-field"),
        pytest.param(lambda raw: raw.replace(b'"source":"api-1",', b""), id="missing-field"),
        pytest.param(lambda raw: raw.replace(b'{"v":1,', b'{ "v":1,'), id="whitespace"),
        pytest.param(lambda raw: raw.replace(b'"action":"', b'"action": "'), id="inner-space"),
        pytest.param(lambda raw: raw.replace(b'"source":"api-1"', b'"source":"api\\u002d1"'), id="escape"),
        pytest.param(lambda raw: raw + b"\n", id="trailing-newline"),
        pytest.param(lambda raw: raw[:-1], id="truncated"),
        pytest.param(lambda raw: raw.replace(b'"role":"clinician"', b'"role":"Dr Who"'), id="free-text"),
        pytest.param(lambda raw: raw.replace(b'"outcome":4', b'"outcome":5'), id="outcome"),
        pytest.param(lambda raw: raw.replace(b"2025-03-02", b"2025-13-02"), id="bad-date"),
        pytest.param(lambda raw: raw.replace(b".000001Z", b"Z"), id="no-microseconds"),
        pytest.param(lambda raw: raw.replace(b".000001Z", b".000001+00:00"), id="offset"),
    ],
)
def test_decode_fails_closed(mutation: typing.Callable[[bytes], bytes]) -> None:
    raw = encode_leaf(_event(1))
    changed = mutation(raw)
    assert changed != raw
    with pytest.raises(AuditFormatError):
        decode_leaf(changed)


def test_reordered_fields_are_not_canonical() -> None:
    raw = encode_leaf(_event(1))
    as_dict = msgspec.json.decode(raw, type=dict[str, object])
    reordered = msgspec.json.encode(dict(reversed(list(as_dict.items()))))
    assert msgspec.json.decode(reordered, type=AuditEvent) == decode_leaf(raw)
    with pytest.raises(AuditFormatError):
        decode_leaf(reordered)


def test_size_cap_on_encode_and_decode() -> None:
    with pytest.raises(AuditFormatError):
        decode_leaf(b" " * (MAX_LEAF_BYTES + 1))
    big = _event(1, subtype="x" * 60, request="r" * 128)
    assert len(encode_leaf(big)) < MAX_LEAF_BYTES
    with pytest.raises(AuditFormatError):
        encode_leaf(_event(1, request="r" * 129))


def test_size_cap_refuses_an_oversized_encoding(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("audit.leaf.MAX_LEAF_BYTES", 100)
    with pytest.raises(AuditFormatError):
        encode_leaf(_event(1))


@pytest.mark.parametrize(
    "changes",
    [
        {"type": "Message Read"},
        {"purpose": "MARKETING"},
        {"request": "-starts-with-dash"},
        {"source": "=cmd"},
    ],
)
def test_encode_validates_fields(changes: dict[str, object]) -> None:
    with pytest.raises(AuditFormatError):
        encode_leaf(_event(1, **changes))


def test_recorded_time_must_have_the_exact_form() -> None:
    with pytest.raises(ValueError, match="recorded"):
        _event(1, recorded="2025-01-01T00:00:00Z")
    assert _event(1).recorded_at.tzinfo is UTC


def test_format_recorded_is_utc_with_microseconds() -> None:
    moment = datetime(2025, 1, 2, 4, 4, 5, tzinfo=timezone(timedelta(hours=1)))
    assert format_recorded(moment) == "2025-01-02T03:04:05.000000Z"
    with pytest.raises(AuditFormatError):
        format_recorded(datetime(2025, 1, 2))  # noqa: DTZ001 - the naive datetime is the point

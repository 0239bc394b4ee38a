"""Safety numbers: the same for both people, different for any other key."""

from __future__ import annotations

import uuid

import pytest

from crypto.client import generate_identity, rotate_identity
from crypto.errors import FingerprintMismatchError, FormatError
from crypto.public import (
    bundle_fingerprint,
    safety_number,
    safety_number_qr,
    verify_safety_number_qr,
)

A = generate_identity(uuid.uuid4())
B = generate_identity(uuid.uuid4())


def test_safety_number_is_symmetric_and_grouped() -> None:
    number = safety_number(A.bundle, B.bundle)
    assert number == safety_number(B.bundle, A.bundle)
    groups = number.split(" ")
    assert len(groups) == 12
    assert all(len(group) == 5 and group.isdigit() for group in groups)
    assert bundle_fingerprint(A.bundle) in number
    assert bundle_fingerprint(B.bundle) in number


def test_any_key_change_changes_the_safety_number() -> None:
    """A server that swaps B's key (or B rotating) shows a different number."""
    rotated = rotate_identity(B)
    assert safety_number(A.bundle, rotated.bundle) != safety_number(A.bundle, B.bundle)


def test_qr_payload_verifies_from_either_side() -> None:
    payload = safety_number_qr(A.bundle, B.bundle)
    assert payload[0] == 1
    assert len(payload) == 65
    verify_safety_number_qr(payload, B.bundle, A.bundle)


def test_qr_payload_for_other_keys_is_a_mismatch() -> None:
    mallory = generate_identity(uuid.uuid4())
    with pytest.raises(FingerprintMismatchError):
        verify_safety_number_qr(safety_number_qr(A.bundle, mallory.bundle), A.bundle, B.bundle)


@pytest.mark.parametrize("mutate", [lambda p: p[:-1], lambda p: b"\x02" + p[1:]], ids=["short", "version"])
def test_malformed_qr_payload_is_a_format_error(mutate: object) -> None:
    payload = safety_number_qr(A.bundle, B.bundle)
    with pytest.raises(FormatError):
        verify_safety_number_qr(mutate(payload), A.bundle, B.bundle)  # type: ignore[operator]

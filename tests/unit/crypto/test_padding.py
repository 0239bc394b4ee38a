"""Padding (ISO/IEC 7816-4 to power-of-two buckets from 256 B): lengths say little."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crypto.errors import DecryptionError, FormatError
from crypto.hazmat.padding import pad, unpad
from crypto.public.limits import MAX_PADDED_PAYLOAD_BYTES, padded_size, valid_padded_sizes


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=5000))
def test_pad_then_unpad_is_identity_and_lands_on_a_bucket(data: bytes) -> None:
    padded = pad(data)
    assert len(padded) in valid_padded_sizes()
    assert len(padded) == padded_size(len(data))
    assert unpad(padded) == data


@pytest.mark.parametrize(
    ("length", "bucket"),
    [(0, 256), (255, 256), (256, 512), (511, 512), (512, 1024), (2**20 - 1, 2**20)],
)
def test_bucket_boundaries(length: int, bucket: int) -> None:
    assert padded_size(length) == bucket


def test_payload_that_fills_the_largest_bucket_is_refused() -> None:
    with pytest.raises(FormatError):
        pad(bytes(MAX_PADDED_PAYLOAD_BYTES))
    with pytest.raises(FormatError, match="padding buckets"):
        padded_size(-1)


@pytest.mark.parametrize(
    "padded",
    [
        bytes(256),  # no 0x80 marker
        b"\x80" + bytes(254),  # not a bucket size
        b"a" * 255 + b"\x81",  # wrong marker
        b"a" * 10 + b"\x80" + bytes(501),  # 10 bytes belong in the 256 bucket, not 512
    ],
    ids=["no-marker", "odd-size", "bad-marker", "oversized-bucket"],
)
def test_malformed_padding_is_a_decryption_error(padded: bytes) -> None:
    with pytest.raises(DecryptionError):
        unpad(padded)

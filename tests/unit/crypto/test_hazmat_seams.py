"""Hazmat wrappers behave at their edges; the deterministic seams match libsodium."""

from __future__ import annotations

import nacl.bindings
import pytest

from crypto.errors import DecryptionError
from crypto.hazmat.primitives import seal, seal_open, x25519_public_key
from crypto.hazmat.rng import ScriptedRng
from crypto.hazmat.secretstream import StreamPuller, StreamPusher
from crypto.public._sodium import constant_time_equal, ed25519_is_valid_point


def test_scripted_rng_returns_values_in_order_and_fails_loudly() -> None:
    rng = ScriptedRng([b"ab", b"cde"])
    assert rng(2) == b"ab"
    assert not rng.exhausted
    with pytest.raises(LookupError, match="wrong length"):
        rng(2)
    with pytest.raises(LookupError, match="exhausted"):
        rng(1)
    assert ScriptedRng([]).exhausted


def test_deterministic_seal_is_a_standard_sealed_box() -> None:
    """The vector seam rebuilds crypto_box_seal exactly: libsodium opens it."""
    secret = bytes(range(1, 33))
    public = x25519_public_key(secret)
    sealed = seal(public, b"k" * 32, ephemeral_secret=bytes(range(32, 64)))
    assert nacl.bindings.crypto_box_seal_open(sealed, public, secret) == b"k" * 32
    assert seal_open(public, secret, sealed) == b"k" * 32
    with pytest.raises(DecryptionError):
        seal_open(public, secret, sealed[:-1])


def test_deterministic_secretstream_header_matches_libsodium_pull() -> None:
    key, header = bytes(32), bytes(range(24))
    pusher = StreamPusher(key, header=header)
    chunk = pusher.push(b"data", b"ad", final=True)
    state = nacl.bindings.crypto_secretstream_xchacha20poly1305_state()
    nacl.bindings.crypto_secretstream_xchacha20poly1305_init_pull(state, header, key)
    message, tag = nacl.bindings.crypto_secretstream_xchacha20poly1305_pull(state, chunk, b"ad")
    assert message == b"data"
    assert tag == nacl.bindings.crypto_secretstream_xchacha20poly1305_TAG_FINAL


def test_stream_puller_refuses_a_malformed_header() -> None:
    with pytest.raises(DecryptionError):
        StreamPuller(bytes(32), b"short")


def test_sodium_helpers_at_their_edges() -> None:
    assert not constant_time_equal(b"a", b"ab")
    assert constant_time_equal(b"ab", b"ab")
    assert not ed25519_is_valid_point(bytes(31))

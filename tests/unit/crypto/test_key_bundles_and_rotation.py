"""Key bundles are self-signed; rotation keeps a chain of custody; resets break it."""

from __future__ import annotations

import pickle
import uuid
from datetime import UTC, datetime, timedelta, timezone

import msgspec
import pytest

from crypto.client import IdentityKeys, generate_identity, rotate_identity, utc_now
from crypto.client.keys import _generate_identity
from crypto.errors import FormatError, InvalidKeyError, KeyChainError, SignatureError
from crypto.hazmat.rng import system_rng
from crypto.public import (
    decode_bundle,
    encode,
    verify_bundle,
    verify_bundle_chain,
    verify_rotation,
)

T0 = datetime(2025, 3, 1, 12, 0, 0, 987654, tzinfo=UTC)


def test_generated_bundle_verifies_and_round_trips_through_json() -> None:
    keys = generate_identity(uuid.uuid4(), clock=lambda: T0)
    verify_bundle(keys.bundle)
    assert decode_bundle(encode(keys.bundle)) == keys.bundle
    assert keys.bundle.created_at == T0.replace(microsecond=0)
    assert keys.bundle.rotation_signature is None
    assert keys.ref == keys.bundle.ref


def test_clock_in_another_zone_is_normalised_to_utc() -> None:
    paris = timezone(timedelta(hours=1))
    keys = generate_identity(uuid.uuid4(), clock=lambda: datetime(2025, 1, 1, 10, tzinfo=paris))
    assert keys.bundle.created_at == datetime(2025, 1, 1, 9, tzinfo=UTC)
    assert utc_now().tzinfo is UTC


def test_naive_clock_is_refused() -> None:
    with pytest.raises(FormatError):
        generate_identity(uuid.uuid4(), clock=lambda: datetime(2025, 1, 1))  # noqa: DTZ001


def test_rotation_chain_of_custody() -> None:
    """v2 and v3 are each signed by their predecessor; the chain verifies end to end."""
    v1 = generate_identity(uuid.uuid4())
    v2 = rotate_identity(v1)
    v3 = rotate_identity(v2)
    verify_rotation(v1.bundle, v2.bundle)
    verify_bundle_chain([v1.bundle, v2.bundle, v3.bundle])
    verify_bundle_chain([v2.bundle, v3.bundle])
    assert v3.ref.key_version == 3


def test_rotation_never_dates_a_successor_before_its_predecessor() -> None:
    v1 = generate_identity(uuid.uuid4(), clock=lambda: T0)
    v2 = rotate_identity(v1, clock=lambda: T0 - timedelta(days=1))
    assert v2.bundle.created_at == v1.bundle.created_at
    verify_rotation(v1.bundle, v2.bundle)


def test_key_reset_is_a_broken_chain() -> None:
    """Lost keys: a new version without rotation signature; peers must re-verify."""
    v1 = generate_identity(uuid.uuid4())
    reset = generate_identity(v1.ref.account_id, key_version=2)
    verify_bundle(reset.bundle)
    with pytest.raises(KeyChainError):
        verify_rotation(v1.bundle, reset.bundle)


@pytest.mark.parametrize("case", ["other-account", "skipped-version", "older", "forged"])
def test_rotation_rules(case: str) -> None:
    """Same account, next version, not older, signed by the previous key: else refused."""
    v1 = generate_identity(uuid.uuid4(), clock=lambda: T0)
    other = generate_identity(uuid.uuid4())
    account = v1.ref.account_id
    if case == "other-account":
        new = rotate_identity(other).bundle
    elif case == "skipped-version":
        new = rotate_identity(rotate_identity(v1)).bundle
    elif case == "older":
        earlier = T0.replace(microsecond=0) - timedelta(days=1)
        new = _generate_identity(
            account, key_version=2, created_at=earlier, rng=system_rng, previous=v1
        ).bundle
    else:
        new = _generate_identity(
            account, key_version=2, created_at=v1.bundle.created_at, rng=system_rng, previous=other
        ).bundle
    verify_bundle(new)
    with pytest.raises(KeyChainError):
        verify_rotation(v1.bundle, new)


def test_rotation_requires_both_bundles_to_verify() -> None:
    v1 = generate_identity(uuid.uuid4())
    v2 = rotate_identity(v1)
    broken = msgspec.structs.replace(v2.bundle, self_signature=bytes(64))
    with pytest.raises(SignatureError):
        verify_rotation(v1.bundle, broken)


def test_empty_chain_is_refused() -> None:
    with pytest.raises(KeyChainError):
        verify_bundle_chain([])


def test_identity_keys_must_match_their_bundle() -> None:
    a, b = generate_identity(uuid.uuid4()), generate_identity(uuid.uuid4())
    secrets = a._backup_plaintext()
    with pytest.raises(InvalidKeyError):
        IdentityKeys(bundle=b.bundle, encryption_secret=secrets[:32], signing_seed=secrets[32:])
    with pytest.raises(InvalidKeyError):
        IdentityKeys(bundle=a.bundle, encryption_secret=secrets[:31], signing_seed=secrets[32:])
    same = IdentityKeys(bundle=a.bundle, encryption_secret=secrets[:32], signing_seed=secrets[32:])
    assert same.bundle == a.bundle


def test_identity_keys_never_reveal_or_serialise_private_keys() -> None:
    """No key material in repr, and pickling is refused."""
    keys = generate_identity(uuid.uuid4())
    secrets = keys._backup_plaintext()
    text = repr(keys)
    assert "redacted" in text
    assert secrets[:32].hex() not in text
    with pytest.raises(TypeError):
        pickle.dumps(keys)


def test_first_bundle_cannot_carry_a_rotation_signature() -> None:
    keys = generate_identity(uuid.uuid4())
    with pytest.raises(FormatError):
        msgspec.structs.replace(keys.bundle, rotation_signature=bytes(64))
    v2 = rotate_identity(keys)
    with pytest.raises(FormatError):
        msgspec.structs.replace(v2.bundle, rotation_signature=bytes(63))


@pytest.mark.parametrize(
    "changes",
    [
        {"version": 2},
        {"key_version": 0},
        {"key_version": 2**32},
        {"created_at": datetime(2025, 1, 1, tzinfo=timezone(timedelta(hours=2)))},
        {"created_at": datetime(2025, 1, 1, 0, 0, 0, 1, tzinfo=UTC)},
        {"created_at": datetime(1969, 12, 31, tzinfo=UTC)},
        {"self_signature": bytes(63)},
    ],
    ids=["version", "key-version-0", "key-version-overflow", "not-utc", "microseconds",
         "before-epoch", "short-signature"],
)  # fmt: skip
def test_malformed_bundles_are_refused_on_construction(changes: dict[str, object]) -> None:
    keys = generate_identity(uuid.uuid4())
    with pytest.raises(FormatError):
        msgspec.structs.replace(keys.bundle, **changes)

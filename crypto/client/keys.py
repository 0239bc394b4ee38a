"""Per-account identity keys: generation, rotation and the signed key bundle.

An :class:`IdentityKeys` holds one key version's private keys (X25519 for encryption,
Ed25519 for signing) together with its signed public :class:`KeyBundle`. Private keys
never leave it except through :func:`crypto.client.create_key_backup`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from crypto.errors import FormatError, InvalidKeyError
from crypto.hazmat.primitives import (
    ed25519_keypair,
    ed25519_sign,
    seal_open,
    x25519_public_key,
)
from crypto.hazmat.rng import Rng, system_rng
from crypto.public._sodium import constant_time_equal
from crypto.public.canonical import bundle_signed_bytes, rotation_signed_bytes
from crypto.public.wire import BUNDLE_VERSION, SIGNATURE_BYTES, KeyBundle, KeyRef

__all__ = ["Clock", "IdentityKeys", "generate_identity", "rotate_identity", "utc_now"]

#: Returns the current time; must be timezone-aware.
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The default :data:`Clock`: the current time in UTC."""
    return datetime.now(UTC)


class IdentityKeys:
    """One key version of an account: private keys plus the matching signed bundle.

    Build with :func:`generate_identity`, :func:`rotate_identity` or
    :func:`crypto.client.open_key_backup`. The constructor checks that the private
    keys match the bundle's public keys. Not serialisable, not comparable, and its
    ``repr`` never shows key material.
    """

    __slots__ = ("_bundle", "_encryption_secret", "_signing_secret")

    def __init__(self, *, bundle: KeyBundle, encryption_secret: bytes, signing_seed: bytes) -> None:
        if len(encryption_secret) != 32 or len(signing_seed) != 32:
            raise InvalidKeyError("private keys must be 32 bytes")
        signing_public, signing_secret = ed25519_keypair(signing_seed)
        matches = constant_time_equal(
            x25519_public_key(encryption_secret), bundle.encryption_key
        ) & constant_time_equal(signing_public, bundle.signing_key)
        if not matches:
            raise InvalidKeyError("private keys do not match the key bundle")
        self._bundle = bundle
        self._encryption_secret = encryption_secret
        self._signing_secret = signing_secret

    @property
    def bundle(self) -> KeyBundle:
        """The signed public key bundle of this key version."""
        return self._bundle

    @property
    def ref(self) -> KeyRef:
        """(account id, key version) of these keys."""
        return self._bundle.ref

    def __repr__(self) -> str:
        return (
            f"IdentityKeys(account_id={self._bundle.account_id!s}, "
            f"key_version={self._bundle.key_version}, private keys redacted)"
        )

    def __reduce__(self) -> str:
        raise TypeError("IdentityKeys cannot be pickled; use create_key_backup")

    def _sign(self, message: bytes) -> bytes:
        return ed25519_sign(self._signing_secret, message)

    def _unseal(self, sealed: bytes) -> bytes:
        return seal_open(self._bundle.encryption_key, self._encryption_secret, sealed)

    def _backup_plaintext(self) -> bytes:
        return self._encryption_secret + self._signing_secret[:32]


def _now(clock: Clock) -> datetime:
    now = clock()
    if now.utcoffset() is None:
        raise FormatError("the clock must return a timezone-aware datetime")
    return now.astimezone(UTC).replace(microsecond=0)


def _generate_identity(
    account_id: uuid.UUID,
    *,
    key_version: int,
    created_at: datetime,
    rng: Rng,
    previous: IdentityKeys | None,
) -> IdentityKeys:
    """Private seam: :func:`generate_identity` / :func:`rotate_identity` with an RNG."""
    encryption_secret = rng(32)
    signing_seed = rng(32)
    signing_public, signing_secret = ed25519_keypair(signing_seed)
    unsigned = KeyBundle(
        version=BUNDLE_VERSION,
        account_id=account_id,
        key_version=key_version,
        encryption_key=x25519_public_key(encryption_secret),
        signing_key=signing_public,
        created_at=created_at,
        self_signature=bytes(SIGNATURE_BYTES),
    )
    self_signature = ed25519_sign(signing_secret, bundle_signed_bytes(unsigned))
    rotation_signature = None
    if previous is not None:
        rotation_signature = previous._sign(
            rotation_signed_bytes(
                previous_key_version=previous.ref.key_version,
                previous_signing_key=previous.bundle.signing_key,
                bundle=unsigned,
            )
        )
    bundle = KeyBundle(
        version=BUNDLE_VERSION,
        account_id=account_id,
        key_version=key_version,
        encryption_key=unsigned.encryption_key,
        signing_key=signing_public,
        created_at=created_at,
        self_signature=self_signature,
        rotation_signature=rotation_signature,
    )
    return IdentityKeys(bundle=bundle, encryption_secret=encryption_secret, signing_seed=signing_seed)


def generate_identity(account_id: uuid.UUID, *, key_version: int = 1, clock: Clock = utc_now) -> IdentityKeys:
    """Generate fresh keys and a self-signed bundle for ``account_id``.

    ``key_version`` above 1 is a key *reset* (the previous keys are lost): the bundle
    carries no rotation signature, so peers see a broken chain and must compare
    safety numbers again. To rotate keys you still hold, use :func:`rotate_identity`.
    """
    return _generate_identity(
        account_id, key_version=key_version, created_at=_now(clock), rng=system_rng, previous=None
    )


def rotate_identity(current: IdentityKeys, *, clock: Clock = utc_now) -> IdentityKeys:
    """Generate the next key version, signed by ``current`` as well (chain of custody)."""
    return _generate_identity(
        current.ref.account_id,
        key_version=current.ref.key_version + 1,
        # A successor is never dated before its predecessor, even if the clock went back.
        created_at=max(_now(clock), current.bundle.created_at),
        rng=system_rng,
        previous=current,
    )

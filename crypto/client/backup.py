"""Key backup: one key version's private keys under a passphrase (SPEC.md, section 7).

The passphrase (NFKC-normalised, UTF-8) and a random 16-byte salt go through Argon2id
v1.3; the 32-byte result keys XChaCha20-Poly1305 over ``X25519 secret || Ed25519
seed``, with associated data binding the account, key version and KDF parameters. The
server stores the :class:`KeyBackup` and never sees the passphrase.
"""

from __future__ import annotations

import unicodedata

from crypto.client.keys import IdentityKeys
from crypto.errors import BackupError, InvalidKeyError
from crypto.hazmat.primitives import aead_decrypt, aead_encrypt, argon2id
from crypto.hazmat.rng import Rng, system_rng
from crypto.public.canonical import backup_associated_data
from crypto.public.limits import (
    BACKUP_MEMLIMIT_DEFAULT,
    BACKUP_OPSLIMIT_DEFAULT,
    BACKUP_PASSPHRASE_MIN_CHARS,
)
from crypto.public.verify import verify_bundle
from crypto.public.wire import (
    AEAD_NONCE_BYTES,
    BACKUP_CIPHERTEXT_BYTES,
    BACKUP_SALT_BYTES,
    BACKUP_VERSION,
    KeyBackup,
    KeyBundle,
)

__all__ = ["create_key_backup", "open_key_backup"]

_KDF = "argon2id13"


def _normalise(passphrase: str) -> bytes:
    return unicodedata.normalize("NFKC", passphrase).encode("utf-8")


def _associated_data(backup: KeyBackup) -> bytes:
    return backup_associated_data(
        account_id=backup.account_id,
        key_version=backup.key_version,
        opslimit=backup.opslimit,
        memlimit=backup.memlimit,
        salt=backup.salt,
    )


def _create_key_backup(
    identity: IdentityKeys, passphrase: str, *, opslimit: int, memlimit: int, rng: Rng
) -> KeyBackup:
    """Private seam: :func:`create_key_backup` with an injectable RNG (vectors only)."""
    if len(unicodedata.normalize("NFKC", passphrase)) < BACKUP_PASSPHRASE_MIN_CHARS:
        raise BackupError("passphrase too short")
    unsealed = KeyBackup(
        version=BACKUP_VERSION,
        account_id=identity.ref.account_id,
        key_version=identity.ref.key_version,
        kdf=_KDF,
        opslimit=opslimit,
        memlimit=memlimit,
        salt=rng(BACKUP_SALT_BYTES),
        nonce=rng(AEAD_NONCE_BYTES),
        ciphertext=bytes(BACKUP_CIPHERTEXT_BYTES),
    )
    key = argon2id(_normalise(passphrase), unsealed.salt, opslimit=opslimit, memlimit=memlimit)
    ciphertext = aead_encrypt(
        key,
        unsealed.nonce,
        identity._backup_plaintext(),
        _associated_data(unsealed),
    )
    return KeyBackup(
        version=BACKUP_VERSION,
        account_id=unsealed.account_id,
        key_version=unsealed.key_version,
        kdf=_KDF,
        opslimit=opslimit,
        memlimit=memlimit,
        salt=unsealed.salt,
        nonce=unsealed.nonce,
        ciphertext=ciphertext,
    )


def create_key_backup(
    identity: IdentityKeys,
    passphrase: str,
    *,
    opslimit: int = BACKUP_OPSLIMIT_DEFAULT,
    memlimit: int = BACKUP_MEMLIMIT_DEFAULT,
) -> KeyBackup:
    """Encrypt ``identity``'s private keys under ``passphrase``.

    Slow on purpose (Argon2id, 256 MiB by default): run it off any event loop.

    Raises:
        BackupError: passphrase shorter than 12 characters, or parameters outside
            [floor, ceiling] (see :mod:`crypto.public.limits`).
    """
    return _create_key_backup(identity, passphrase, opslimit=opslimit, memlimit=memlimit, rng=system_rng)


def open_key_backup(backup: KeyBackup, passphrase: str, *, bundle: KeyBundle) -> IdentityKeys:
    """Recover the private keys of ``bundle`` from ``backup``.

    ``bundle`` is the account's published bundle for that key version, which the
    caller trusts; the recovered keys must match it, so a backup can never install
    keys the account did not publish.

    Raises:
        BackupError: the backup is for another account or key version, or decrypts to
            keys that do not match ``bundle``.
        SignatureError: ``bundle``'s self-signature fails.
        DecryptionError: wrong passphrase or tampered backup (one opaque error).
    """
    if backup.ref != bundle.ref:
        raise BackupError("backup is for another account or key version")
    verify_bundle(bundle)
    key = argon2id(_normalise(passphrase), backup.salt, opslimit=backup.opslimit, memlimit=backup.memlimit)
    secrets = aead_decrypt(key, backup.nonce, backup.ciphertext, _associated_data(backup))
    try:
        return IdentityKeys(bundle=bundle, encryption_secret=secrets[:32], signing_seed=secrets[32:])
    except InvalidKeyError as exc:
        raise BackupError("backup does not hold this bundle's keys") from exc

"""Key backup: Argon2id with floors and ceilings, AEAD bound to account and version."""

from __future__ import annotations

import uuid

import msgspec
import pytest

from crypto.client import create_key_backup, generate_identity, open_key_backup
from crypto.errors import BackupError, DecryptionError, FormatError
from crypto.public import decode_key_backup, encode
from crypto.public.limits import (
    BACKUP_MEMLIMIT_MAX,
    BACKUP_MEMLIMIT_MIN,
    BACKUP_OPSLIMIT_MAX,
    BACKUP_OPSLIMIT_MIN,
    MAX_BACKUP_JSON_BYTES,
)

PASSPHRASE = "a long enough passphrase"
FLOOR = {"opslimit": BACKUP_OPSLIMIT_MIN, "memlimit": BACKUP_MEMLIMIT_MIN}

ALICE = generate_identity(uuid.uuid4())
BACKUP = create_key_backup(ALICE, PASSPHRASE, **FLOOR)


def test_backup_round_trips_through_json_and_restores_the_keys() -> None:
    restored = open_key_backup(decode_key_backup(encode(BACKUP)), PASSPHRASE, bundle=ALICE.bundle)
    assert restored.bundle == ALICE.bundle
    assert restored._backup_plaintext() == ALICE._backup_plaintext()


def test_passphrase_is_nfkc_normalised() -> None:
    """The ligature "fi" and its two letters are the same passphrase."""
    backup = create_key_backup(ALICE, "\ufb01ve boxing wizards jump", **FLOOR)
    open_key_backup(backup, "five boxing wizards jump", bundle=ALICE.bundle)


def test_wrong_passphrase_is_one_opaque_error() -> None:
    with pytest.raises(DecryptionError):
        open_key_backup(BACKUP, PASSPHRASE + "x", bundle=ALICE.bundle)


@pytest.mark.parametrize(
    "changes",
    [
        {"opslimit": BACKUP_OPSLIMIT_MIN - 1},
        {"memlimit": BACKUP_MEMLIMIT_MIN - 1},
        {"opslimit": BACKUP_OPSLIMIT_MAX + 1},
        {"memlimit": BACKUP_MEMLIMIT_MAX + 1},
        {"kdf": "scrypt"},
    ],
    ids=["ops-downgrade", "mem-downgrade", "ops-ceiling", "mem-ceiling", "other-kdf"],
)
def test_downgraded_or_absurd_kdf_parameters_are_refused_before_derivation(
    changes: dict[str, object],
) -> None:
    """A malicious server cannot weaken (or inflate) the stored Argon2id parameters."""
    with pytest.raises(BackupError):
        msgspec.structs.replace(BACKUP, **changes)
    if "kdf" not in changes:
        with pytest.raises(BackupError):
            create_key_backup(ALICE, PASSPHRASE, **{**FLOOR, **changes})  # type: ignore[arg-type]


def test_parameters_are_bound_by_the_associated_data() -> None:
    """Raising the parameters (still in range) changes the key and the AD: refused."""
    raised = msgspec.structs.replace(BACKUP, opslimit=BACKUP_OPSLIMIT_MIN + 1)
    with pytest.raises(DecryptionError):
        open_key_backup(raised, PASSPHRASE, bundle=ALICE.bundle)


@pytest.mark.parametrize("field", ["salt", "nonce", "ciphertext"])
def test_flipped_byte_in_each_region_is_refused(field: str) -> None:
    value = bytearray(getattr(BACKUP, field))
    value[-1] ^= 1
    with pytest.raises(DecryptionError):
        open_key_backup(
            msgspec.structs.replace(BACKUP, **{field: bytes(value)}), PASSPHRASE, bundle=ALICE.bundle
        )


def test_backup_for_another_account_or_version_is_refused() -> None:
    bob = generate_identity(uuid.uuid4())
    with pytest.raises(BackupError):
        open_key_backup(BACKUP, PASSPHRASE, bundle=bob.bundle)
    relabelled = msgspec.structs.replace(BACKUP, key_version=2)
    with pytest.raises(BackupError):
        open_key_backup(relabelled, PASSPHRASE, bundle=ALICE.bundle)


def test_backup_can_only_install_the_published_keys() -> None:
    """Decrypting fine is not enough: the keys must be those of the trusted bundle."""
    twin = generate_identity(ALICE.ref.account_id)  # same (account, version), other keys
    with pytest.raises(BackupError):
        open_key_backup(BACKUP, PASSPHRASE, bundle=twin.bundle)


def test_short_passphrase_is_refused() -> None:
    with pytest.raises(BackupError):
        create_key_backup(ALICE, "too short", **FLOOR)


@pytest.mark.parametrize(
    "changes",
    [{"version": 2}, {"salt": bytes(15)}, {"nonce": bytes(23)}, {"ciphertext": bytes(79)},
     {"key_version": 0}],
    ids=["version", "salt", "nonce", "ciphertext", "key-version"],
)  # fmt: skip
def test_malformed_backups_are_refused(changes: dict[str, object]) -> None:
    with pytest.raises(FormatError):
        msgspec.structs.replace(BACKUP, **changes)


def test_decoding_refuses_oversized_and_malformed_json() -> None:
    with pytest.raises(FormatError):
        decode_key_backup(b" " * (MAX_BACKUP_JSON_BYTES + 1))
    with pytest.raises(FormatError):
        decode_key_backup(b'{"version": 1}')

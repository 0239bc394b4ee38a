"""Constants, fixed inputs and identities shared by the vector generator modules."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import msgspec

from crypto.client.keys import IdentityKeys, _generate_identity
from crypto.client.payload import AttachmentKey
from crypto.hazmat.rng import ScriptedRng
from crypto.public._sodium import blake2b
from crypto.public.canonical import bundle_signed_bytes, rotation_signed_bytes
from crypto.public.consent import ConsentStatement
from crypto.public.wire import Envelope, KeyBackup, KeyBundle
from crypto.vectors.schema import IdentityVector

__all__ = [
    "ACCOUNTS",
    "CLIENT_RECORD",
    "CONVERSATION",
    "FORMAT",
    "ORGANIZATION",
    "OTHER_CONVERSATION",
    "PASSPHRASE",
    "PASSPHRASE_NFKC",
    "Keys",
    "at",
    "attachment_plaintext",
    "fixed",
    "make_keys",
    "wire_json",
]

FORMAT = "confide-crypto-vectors/1"

ACCOUNTS = {
    "alice": uuid.UUID("a11ce000-0000-4000-8000-000000000001"),
    "bob": uuid.UUID("b0b00000-0000-4000-8000-000000000002"),
    "carol": uuid.UUID("ca401000-0000-4000-8000-000000000003"),
    "mallory": uuid.UUID("3a110000-0000-4000-8000-000000000004"),
    "dana": uuid.UUID("da4a0000-0000-4000-8000-000000000005"),
    #: The practice's custodian key bundle is registered under the organization's id.
    "practice": uuid.UUID("0e000000-0000-4000-8000-0000000000a9"),
}
CONVERSATION = uuid.UUID("c0000000-0000-4000-8000-00000000c0de")
OTHER_CONVERSATION = uuid.UUID("c0000000-0000-4000-8000-00000000beef")
CLIENT_RECORD = uuid.UUID("c1000000-0000-4000-8000-0000000000a1")
ORGANIZATION = ACCOUNTS["practice"]
PASSPHRASE = "correct horse battery staple"  # noqa: S105 - published vector input
#: NFKC turns the "fi" ligature and the fullwidth digits into ASCII.
PASSPHRASE_NFKC = "\ufb01rst-aid kit \u2602 \uff12\uff10\uff12\uff15"  # noqa: S105 - vector


def fixed(label: str, size: int) -> bytes:
    """The fixed "random" bytes of a vector.

    Block 0 is BLAKE2b-512(``"confide test vector: " + label``), block i > 0 is
    BLAKE2b-512 of the same string followed by ``"#i"``; the blocks are concatenated and
    truncated to ``size``.
    """
    prefix = b"confide test vector: " + label.encode()
    blocks = [blake2b(prefix, size=64)]
    while len(blocks) * 64 < size:
        blocks.append(blake2b(prefix + f"#{len(blocks)}".encode(), size=64))
    return b"".join(blocks)[:size]


def attachment_plaintext(size: int) -> bytes:
    """Plaintext of the attachment vectors: byte i is ``i % 251``."""
    return bytes(i % 251 for i in range(size))


def at(day: int) -> datetime:
    """09:30 UTC on the given day of January 2025."""
    return datetime(2025, 1, day, 9, 30, tzinfo=UTC)


def wire_json(value: KeyBundle | Envelope | KeyBackup | AttachmentKey | ConsentStatement) -> str:
    """The exact JSON text of a wire object."""
    return msgspec.json.encode(value).decode()


class Keys:
    """The vector identities by name, with their :class:`IdentityVector` records."""

    def __init__(self) -> None:
        self.by_name: dict[str, IdentityKeys] = {}
        self.vectors: list[IdentityVector] = []

    def make(self, name: str, account: str, version: int, previous: str | None) -> None:
        """Create identity ``name`` from fixed secrets (rotated from ``previous``)."""
        secrets = [fixed(f"{name} encryption secret", 32), fixed(f"{name} signing seed", 32)]
        prior = self.by_name[previous] if previous else None
        keys = _generate_identity(
            ACCOUNTS[account],
            key_version=version,
            created_at=at(version),
            rng=ScriptedRng(secrets),
            previous=prior,
        )
        self.by_name[name] = keys
        bundle = keys.bundle
        rotation = None
        if prior is not None:
            rotation = rotation_signed_bytes(
                previous_key_version=prior.ref.key_version,
                previous_signing_key=prior.bundle.signing_key,
                bundle=bundle,
            ).hex()
        self.vectors.append(
            IdentityVector(
                name=name,
                account_id=str(bundle.account_id),
                key_version=bundle.key_version,
                created_at=msgspec.json.encode(bundle.created_at).decode().strip('"'),
                previous=previous,
                encryption_secret=secrets[0].hex(),
                signing_seed=secrets[1].hex(),
                encryption_key=bundle.encryption_key.hex(),
                signing_key=bundle.signing_key.hex(),
                bundle_signed_bytes=bundle_signed_bytes(bundle).hex(),
                rotation_signed_bytes=rotation,
                bundle=wire_json(bundle),
            )
        )

    def bundle(self, name: str) -> KeyBundle:
        """The bundle of identity ``name``."""
        return self.by_name[name].bundle


def make_keys() -> Keys:
    """All vector identities.

    alice v1..v3 (a rotation chain), bob, carol, mallory; practice (the organization's
    custodian key) and dana (a clinician with break-glass access) for the re-wrap vector.
    """
    keys = Keys()
    keys.make("alice-v1", "alice", 1, None)
    keys.make("alice-v2", "alice", 2, "alice-v1")
    keys.make("alice-v3", "alice", 3, "alice-v2")
    keys.make("bob-v1", "bob", 1, None)
    keys.make("carol-v1", "carol", 1, None)
    keys.make("mallory-v1", "mallory", 1, None)
    keys.make("practice-v1", "practice", 1, None)
    keys.make("dana-v1", "dana", 1, None)
    return keys

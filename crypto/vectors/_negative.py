"""Negative vectors: tampered, downgraded and adversarial inputs, each with its error."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable
from typing import cast

import msgspec

from crypto.client.envelope import _commitment, _rewrap_for, _signed
from crypto.client.keys import _generate_identity
from crypto.client.payload import AttachmentKey
from crypto.hazmat.primitives import seal
from crypto.hazmat.rng import ScriptedRng
from crypto.public._sodium import ED25519_ORDER
from crypto.public.consent import ConsentStatement, consent_signed_bytes
from crypto.public.keys import X25519_SMALL_ORDER_POINTS
from crypto.public.wire import Envelope, EnvelopeKind, KeyBackup
from crypto.vectors._common import (
    ACCOUNTS,
    CLIENT_RECORD,
    CONVERSATION,
    OTHER_CONVERSATION,
    PASSPHRASE,
    Keys,
    at,
    fixed,
    wire_json,
)
from crypto.vectors.schema import NegativeVector

__all__ = [
    "REWRAP_KINDS",
    "attachment_negatives",
    "backup_negatives",
    "bundle_negatives",
    "consent_negatives",
    "envelope_negatives",
    "rewrap_negatives",
    "rotation_negatives",
]

#: The kinds a custodian re-wraps and an emergency reader expects.
REWRAP_KINDS = frozenset({EnvelopeKind.NOTE, EnvelopeKind.NOTE_AMENDMENT})

JsonObject = dict[str, object]


def _mutate(wire: str, change: Callable[[JsonObject], None]) -> str:
    """Return ``wire`` (JSON text) with ``change`` applied to its decoded object."""
    obj = msgspec.json.decode(wire.encode(), type=JsonObject)
    change(obj)
    return msgspec.json.encode(obj).decode()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _flip(value: object, index: int) -> str:
    raw = bytearray(base64.b64decode(cast("str", value)))
    raw[index] ^= 0x01
    return _b64(bytes(raw))


def _malleable(signature: bytes) -> bytes:
    s = int.from_bytes(signature[32:], "little") + ED25519_ORDER
    return signature[:32] + s.to_bytes(32, "little")


def _recipients(obj: JsonObject) -> list[JsonObject]:
    return cast("list[JsonObject]", obj["recipients"])


def _set(key: str, value: object) -> Callable[[JsonObject], None]:
    def change(obj: JsonObject) -> None:
        obj[key] = value

    return change


def _flip_field(key: str, index: int) -> Callable[[JsonObject], None]:
    def change(obj: JsonObject) -> None:
        obj[key] = _flip(obj[key], index)

    return change


_Change = Callable[[JsonObject], None]


def _envelope_changes(keys: Keys) -> list[tuple[str, str, str, _Change]]:
    """(name, expected error, description, change) for tampered copies of "message"."""

    def flip_wrapped_key(obj: JsonObject) -> None:
        entry = _recipients(obj)[0]
        entry["wrapped_key"] = _flip(entry["wrapped_key"], 60)

    def drop_bob(obj: JsonObject) -> None:
        bob = str(ACCOUNTS["bob"])
        obj["recipients"] = [r for r in _recipients(obj) if r["account_id"] != bob]

    def add_mallory(obj: JsonObject) -> None:
        mallory = keys.bundle("mallory-v1")
        entry: JsonObject = {
            "account_id": str(mallory.account_id),
            "key_version": 1,
            "public_key": _b64(mallory.encryption_key),
            "wrapped_key": _b64(fixed("server-made wrapped key", 80)),
        }
        merged = [*_recipients(obj), entry]
        obj["recipients"] = sorted(merged, key=lambda r: uuid.UUID(cast("str", r["account_id"])).bytes)

    def swap_bob_key(obj: JsonObject) -> None:
        for entry in _recipients(obj):
            if entry["account_id"] == str(ACCOUNTS["bob"]):
                entry["public_key"] = _b64(keys.bundle("mallory-v1").encryption_key)

    def small_order_key(obj: JsonObject) -> None:
        _recipients(obj)[0]["public_key"] = _b64(sorted(X25519_SMALL_ORDER_POINTS)[2])

    def unsorted(obj: JsonObject) -> None:
        obj["recipients"] = list(reversed(_recipients(obj)))

    def truncate(obj: JsonObject) -> None:
        obj["ciphertext"] = _b64(base64.b64decode(cast("str", obj["ciphertext"]))[:-1])

    def malleable(obj: JsonObject) -> None:
        obj["signature"] = _b64(_malleable(base64.b64decode(cast("str", obj["signature"]))))

    alice_v1 = {"account_id": str(ACCOUNTS["alice"]), "key_version": 1}
    reference = str(uuid.UUID(int=9, version=4))
    return [
        ("flip-nonce", "SignatureError", "one bit of the nonce", _flip_field("nonce", 3)),
        ("flip-ciphertext", "SignatureError", "one bit of the body", _flip_field("ciphertext", 40)),
        ("flip-tag", "SignatureError", "one bit of the AEAD tag", _flip_field("ciphertext", -1)),
        ("flip-commitment", "SignatureError", "key commitment", _flip_field("key_commitment", 0)),
        ("flip-signature", "SignatureError", "one bit of R", _flip_field("signature", 5)),
        ("malleable-signature", "SignatureError", "S replaced by S + L", malleable),
        ("flip-wrapped-key", "SignatureError", "first wrapped key", flip_wrapped_key),
        ("swap-context", "SignatureError", "moved to another conversation",
         _set("context_id", str(OTHER_CONVERSATION))),
        ("swap-item", "SignatureError", "item id changed",
         _set("item_id", str(uuid.UUID(int=7, version=4)))),
        ("swap-kind", "SignatureError", "message presented as a note (domain separation)",
         _set("kind", "note")),
        ("wrong-sender-version", "RecipientSetError", "sender key version 1 instead of 2",
         _set("sender", alice_v1)),
        ("drop-recipient", "SignatureError", "server removed a recipient", drop_bob),
        ("add-recipient", "SignatureError", "server added a recipient", add_mallory),
        ("swap-recipient-key", "SignatureError", "server swapped bob's key binding", swap_bob_key),
        ("version-2", "EnvelopeFormatError", "unknown version", _set("version", 2)),
        ("version-0", "EnvelopeFormatError", "downgrade to version 0", _set("version", 0)),
        ("unknown-field", "EnvelopeFormatError", "extra field", _set("debug", True)),
        ("truncated-ciphertext", "EnvelopeFormatError", "last byte removed", truncate),
        ("unsorted-recipients", "EnvelopeFormatError", "recipients out of order", unsorted),
        ("small-order-recipient", "InvalidKeyError", "order-8 X25519 point", small_order_key),
        ("reference-on-message", "EnvelopeFormatError", "a plain message with a reference",
         _set("references", reference)),
    ]  # fmt: skip


def envelope_negatives(keys: Keys, envelopes: dict[str, Envelope]) -> list[NegativeVector]:
    message = wire_json(envelopes["message"])
    alice = keys.by_name["alice-v2"]
    original = envelopes["message"]
    cases = [
        (f"envelope-{name}", error, description, _mutate(message, change))
        for name, error, description, change in _envelope_changes(keys)
    ]
    # Signed by the real sender but internally inconsistent: the signature verifies,
    # so only the AEAD associated data or the key commitment can catch these.
    other_item = msgspec.structs.replace(original, item_id=uuid.UUID(int=8, version=4))
    bad_commit = msgspec.structs.replace(original, key_commitment=fixed("bad commit", 32))
    cases += [
        ("envelope-signed-ad-mismatch", "DecryptionError",
         "sender re-signed with another item id than the AEAD was bound to",
         wire_json(_signed(alice, other_item))),
        ("envelope-signed-commitment-mismatch", "DecryptionError",
         "sender re-signed with a key commitment that does not match the content key",
         wire_json(_signed(alice, bad_commit))),
    ]  # fmt: skip
    out = [
        NegativeVector(
            name=name,
            category="envelope",
            description=description,
            expected_error=error,
            data=data,
            identity="alice-v2",
            reader="bob-v1",
            context_id=str(CONVERSATION),
        )
        for name, error, description, data in cases
    ]
    out.append(
        NegativeVector(
            name="envelope-replayed-into-other-context",
            category="envelope",
            description="authentic note presented while reading a conversation",
            expected_error="ContextError",
            data=wire_json(envelopes["note"]),
            identity="bob-v1",
            reader="alice-v2",
            context_id=str(CONVERSATION),
        )
    )
    return out


def bundle_negatives(keys: Keys) -> list[NegativeVector]:
    bundle = wire_json(keys.bundle("alice-v2"))
    p = 2**255 - 19

    def malleable(obj: JsonObject) -> None:
        signature = base64.b64decode(cast("str", obj["self_signature"]))
        obj["self_signature"] = _b64(_malleable(signature))

    cases: list[tuple[str, str, str, _Change]] = [
        ("flip-self-signature", "SignatureError", "self signature",
         _flip_field("self_signature", 1)),
        ("changed-created-at", "SignatureError", "creation time changed",
         _set("created_at", "2025-01-03T09:30:00Z")),
        ("malleable-self-signature", "SignatureError", "S + L", malleable),
        ("zero-encryption-key", "InvalidKeyError", "all-zero X25519 key",
         _set("encryption_key", _b64(bytes(32)))),
        ("small-order-encryption-key", "InvalidKeyError", "order-8 X25519 point",
         _set("encryption_key", _b64(sorted(X25519_SMALL_ORDER_POINTS)[3]))),
        ("noncanonical-encryption-key", "InvalidKeyError", "u = p + 1",
         _set("encryption_key", _b64((p + 1).to_bytes(32, "little")))),
        ("identity-signing-key", "InvalidKeyError", "Ed25519 neutral element (small order)",
         _set("signing_key", _b64((1).to_bytes(32, "little")))),
        ("noncanonical-signing-key", "InvalidKeyError", "y = p + 1 (non-canonical)",
         _set("signing_key", _b64((p + 1).to_bytes(32, "little")))),
        ("microsecond-created-at", "FormatError", "sub-second time",
         _set("created_at", "2025-01-02T09:30:00.500000Z")),
        ("version-2", "FormatError", "unknown version", _set("version", 2)),
    ]  # fmt: skip
    return [
        NegativeVector(
            name=f"bundle-{name}",
            category="bundle",
            description=description,
            expected_error=error,
            data=_mutate(bundle, change),
        )
        for name, error, description, change in cases
    ]


def rotation_negatives(keys: Keys) -> list[NegativeVector]:
    reset = _generate_identity(
        ACCOUNTS["alice"],
        key_version=2,
        created_at=at(2),
        rng=ScriptedRng([fixed("reset enc", 32), fixed("reset sig", 32)]),
        previous=None,
    )
    forged = _generate_identity(
        ACCOUNTS["alice"],
        key_version=2,
        created_at=at(2),
        rng=ScriptedRng([fixed("forged enc", 32), fixed("forged sig", 32)]),
        previous=keys.by_name["mallory-v1"],
    )
    cases = [
        ("skips-version", "v3 presented as successor of v1", keys.bundle("alice-v3")),
        ("wrong-account", "bob v1 presented as successor of alice v1", keys.bundle("bob-v1")),
        ("reset-without-signature", "v2 not signed by v1 (key reset)", reset.bundle),
        ("signed-by-other-key", "v2 whose rotation signature is mallory's", forged.bundle),
    ]
    return [
        NegativeVector(
            name=f"rotation-{name}",
            category="rotation",
            description=description,
            expected_error="KeyChainError",
            data=wire_json(bundle),
            identity="alice-v1",
        )
        for name, description, bundle in cases
    ]


def backup_negatives(backups: dict[str, KeyBackup]) -> list[NegativeVector]:
    backup = wire_json(backups["ascii"])
    cases: list[tuple[str, str, str, str, str]] = [
        ("downgraded-opslimit", "BackupError", "opslimit 2, below the floor",
         _mutate(backup, _set("opslimit", 2)), PASSPHRASE),
        ("downgraded-memlimit", "BackupError", "memlimit 8 MiB, below the floor",
         _mutate(backup, _set("memlimit", 8 * 2**20)), PASSPHRASE),
        ("absurd-memlimit", "BackupError", "memlimit 64 GiB, above the ceiling",
         _mutate(backup, _set("memlimit", 64 * 2**30)), PASSPHRASE),
        ("other-kdf", "BackupError", "another KDF name",
         _mutate(backup, _set("kdf", "scrypt")), PASSPHRASE),
        ("other-key-version", "BackupError", "backup relabelled as version 3",
         _mutate(backup, _set("key_version", 3)), PASSPHRASE),
        ("wrong-passphrase", "DecryptionError", "one character more", backup, PASSPHRASE + "!"),
        ("raised-opslimit", "DecryptionError", "opslimit 4: bound by the AD and the KDF",
         _mutate(backup, _set("opslimit", 4)), PASSPHRASE),
        ("flip-ciphertext", "DecryptionError", "one bit of the blob",
         _mutate(backup, _flip_field("ciphertext", 10)), PASSPHRASE),
    ]  # fmt: skip
    return [
        NegativeVector(
            name=f"backup-{name}",
            category="backup",
            description=description,
            expected_error=error,
            data=data,
            identity="alice-v2",
            passphrase=phrase,
        )
        for name, error, description, data, phrase in cases
    ]


def attachment_negatives(
    small: tuple[AttachmentKey, bytes], large: tuple[AttachmentKey, bytes]
) -> list[NegativeVector]:
    small_json, blob = wire_json(small[0]), small[1]
    other_id = _mutate(small_json, _set("attachment_id", str(uuid.UUID(int=5, version=4))))
    wrong_hash = _mutate(small_json, _set("ciphertext_hash", _b64(bytes(32))))
    flipped = blob[:100] + bytes([blob[100] ^ 1]) + blob[101:]
    cases = [
        ("truncated-after-full-chunk", "final chunk removed after a full chunk",
         large[1][: len(large[1]) - (100 + 17)], wire_json(large[0])),
        ("header-only", "every chunk removed", blob[:24], small_json),
        ("extended", "one byte appended", blob + b"\x00", small_json),
        ("flip-chunk", "one bit of the chunk", flipped, small_json),
        ("other-id", "attachment id changed (chunk AD)", blob, other_id),
        ("wrong-hash", "hash of another blob", blob, wrong_hash),
    ]  # fmt: skip
    return [
        NegativeVector(
            name=f"attachment-{name}",
            category="attachment",
            description=description,
            expected_error="DecryptionError",
            data=_b64(data),
            attachment_key=key,
        )
        for name, description, data, key in cases
    ]


def consent_negatives(keys: Keys, consents: dict[str, ConsentStatement]) -> list[NegativeVector]:
    grant = consents["grant"]
    grant_json, revoke_json = wire_json(grant), wire_json(consents["revoke"])
    forged = msgspec.structs.replace(
        grant, signature=keys.by_name["mallory-v1"]._sign(consent_signed_bytes(grant))
    )

    def malleable(obj: JsonObject) -> None:
        obj["signature"] = _b64(_malleable(base64.b64decode(cast("str", obj["signature"]))))

    alice_v1 = {"account_id": str(ACCOUNTS["alice"]), "key_version": 1}
    cases: list[tuple[str, str, str, str]] = [
        ("flip-signature", "SignatureError", "one bit of R",
         _mutate(grant_json, _flip_field("signature", 5))),
        ("malleable-signature", "SignatureError", "S replaced by S + L",
         _mutate(grant_json, malleable)),
        ("forged-by-other-key", "SignatureError", "alice's statement signed with mallory's key",
         wire_json(forged)),
        ("altered-scope", "SignatureError", "server widened the scopes (records.share added)",
         _mutate(grant_json, _set("scopes", ["messaging", "records.read", "records.share"]))),
        ("changed-grantee", "SignatureError", "server named mallory as the grantee",
         _mutate(grant_json, _set("grantee_id", str(ACCOUNTS["mallory"])))),
        ("extended-validity", "SignatureError", "valid_until moved a year later",
         _mutate(grant_json, _set("valid_until", "2026-07-02T09:30:00Z"))),
        ("changed-purpose", "SignatureError", "purpose TREAT changed to HPAYMT",
         _mutate(grant_json, _set("purpose", "HPAYMT"))),
        ("grant-replayed-as-revoke", "SignatureError", "a grant relabelled as a revoke (domain separation)",
         _mutate(grant_json, _set("action", "revoke"))),
        ("revoke-replayed-as-grant", "SignatureError", "a revoke relabelled as a grant (domain separation)",
         _mutate(revoke_json, _set("action", "grant"))),
        ("wrong-client-key-version", "KeyChainError", "names alice's key version 1; checked with v2",
         _mutate(grant_json, _set("client", alice_v1))),
        ("unsorted-scopes", "FormatError", "scopes out of order",
         _mutate(grant_json, _set("scopes", ["records.read", "messaging"]))),
        ("duplicate-scopes", "FormatError", "a scope listed twice",
         _mutate(grant_json, _set("scopes", ["messaging", "messaging"]))),
        ("empty-scopes", "FormatError", "no scope at all", _mutate(grant_json, _set("scopes", []))),
        ("bad-scope", "FormatError", "scope with an upper-case letter",
         _mutate(grant_json, _set("scopes", ["Messaging"]))),
        ("lowercase-purpose", "FormatError", "purpose not an HL7 code",
         _mutate(grant_json, _set("purpose", "treat"))),
        ("validity-reversed", "FormatError", "valid_until before valid_from",
         _mutate(grant_json, _set("valid_until", "2025-01-01T09:30:00Z"))),
        ("fractional-issued-at", "FormatError", "sub-second time",
         _mutate(grant_json, _set("issued_at", "2025-01-02T09:30:00.500000Z"))),
        ("organization-grantee-mismatch", "FormatError", "organization grantee is another organization",
         _mutate(grant_json, _set("grantee_type", "organization"))),
        ("unknown-action", "FormatError", "action 'amend'", _mutate(grant_json, _set("action", "amend"))),
        ("unknown-field", "FormatError", "extra field", _mutate(grant_json, _set("debug", True))),
        ("version-2", "FormatError", "unknown version", _mutate(grant_json, _set("version", 2))),
    ]  # fmt: skip
    return [
        NegativeVector(
            name=f"consent-{name}",
            category="consent",
            description=description,
            expected_error=error,
            data=data,
            identity="alice-v2",
        )
        for name, error, description, data in cases
    ]


def rewrap_negatives(keys: Keys, envelopes: dict[str, Envelope], wrap: bytes) -> list[NegativeVector]:
    """Wraps the emergency reader (dana) must refuse for the "note-custodian" envelope.

    ``wrap`` is the genuine re-wrap of that envelope for dana (the positive vector).
    """
    note = envelopes["note-custodian"]
    dana = keys.bundle("dana-v1")

    def rewrap(envelope: Envelope, custodian: str, reader: str, label: str) -> bytes:
        return _rewrap_for(
            envelope,
            custodian=keys.by_name[custodian],
            sender_bundle=keys.bundle("bob-v1"),
            context_id=CLIENT_RECORD,
            kinds=REWRAP_KINDS,
            reader_bundle=keys.bundle(reader),
            rng=ScriptedRng([fixed(f"rewrap {label} ephemeral", 32)]),
        )

    # Signed by the author with a commitment to another key: the genuine content key
    # still decrypts the ciphertext, so only the commitment check refuses it.
    uncommitted = _signed(
        keys.by_name["bob-v1"],
        msgspec.structs.replace(
            note, key_commitment=_commitment(fixed("rewrap uncommitted key", 32), note.nonce)
        ),
    )
    flipped = bytearray(wrap)
    flipped[40] ^= 0x01
    server_made = seal(
        dana.encryption_key,
        fixed("rewrap server-chosen key", 32),
        ephemeral_secret=fixed("rewrap server-made ephemeral", 32),
    )
    cases = [
        ("other-envelope-key", "DecryptionError",
         "genuine re-wrap of the 'note' vector (by its recipient carol-v1) served beside this note",
         note, rewrap(envelopes["note"], "carol-v1", "dana-v1", "other-envelope-key"), CLIENT_RECORD),
        ("other-reader", "DecryptionError", "the custodian's re-wrap for mallory-v1, presented to dana",
         note, rewrap(note, "practice-v1", "mallory-v1", "other-reader"), CLIENT_RECORD),
        ("truncated", "DecryptionError", "last byte of the wrap removed", note, wrap[:-1], CLIENT_RECORD),
        ("flip-tag", "DecryptionError", "one bit of the sealed box's tag", note, bytes(flipped),
         CLIENT_RECORD),
        ("server-made", "DecryptionError", "a key of the server's choice sealed to dana's public key",
         note, server_made, CLIENT_RECORD),
        ("uncommitted-key", "DecryptionError",
         "author re-signed a commitment to another key; the wrapped key still decrypts the AEAD",
         uncommitted, wrap, CLIENT_RECORD),
        ("other-context", "ContextError", "genuine wrap, but read as part of a conversation",
         note, wrap, CONVERSATION),
    ]  # fmt: skip
    return [
        NegativeVector(
            name=f"rewrap-{name}",
            category="rewrap",
            description=description,
            expected_error=error,
            data=wire_json(envelope),
            identity="bob-v1",
            reader="dana-v1",
            context_id=str(context),
            wrapped_key=_b64(wrapped),
        )
        for name, error, description, envelope, wrapped, context in cases
    ]

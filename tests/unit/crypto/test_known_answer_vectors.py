"""Known-answer vectors (crypto/vectors/*.json): reproduced byte for byte and checked.

Provenance: every file is written by ``python -m crypto.vectors.generate`` from fixed
inputs (see that module's docstring); ``crypto/interop`` checks the same files with
libsodium.js, an implementation that shares no code with this one.
"""

from __future__ import annotations

import base64
import io
import uuid
from pathlib import Path

import msgspec
import pytest

import crypto.errors
from crypto.client import (
    AttachmentKey,
    IdentityKeys,
    InnerPayload,
    decrypt_attachment,
    open_envelope,
    open_envelope_with_wrap,
    open_key_backup,
    rewrap_for,
)
from crypto.client.envelope import _rewrap_for
from crypto.client.payload import encode_payload
from crypto.hazmat.padding import pad
from crypto.hazmat.rng import ScriptedRng
from crypto.public import (
    EnvelopeKind,
    KeyBundle,
    bundle_fingerprint,
    bundle_signed_bytes,
    consent_signed_bytes,
    decode_bundle,
    decode_consent,
    decode_envelope,
    decode_key_backup,
    envelope_signed_bytes,
    rotation_signed_bytes,
    safety_number,
    safety_number_qr,
    verify_bundle,
    verify_bundle_chain,
    verify_consent,
    verify_envelope,
    verify_rotation,
    verify_safety_number_qr,
)
from crypto.vectors import VECTOR_DIR, VECTOR_FILES, generate
from crypto.vectors.schema import (
    AttachmentVectors,
    BackupVectors,
    ConsentVectors,
    EnvelopeVectors,
    FingerprintVectors,
    KeyVectors,
    NegativeVector,
    NegativeVectors,
    RewrapVectors,
)

KEYS = msgspec.json.decode((VECTOR_DIR / "keys.json").read_bytes(), type=KeyVectors)
IDENTITIES = {vector.name: vector for vector in KEYS.identities}
NEGATIVES = msgspec.json.decode((VECTOR_DIR / "negative.json").read_bytes(), type=NegativeVectors)


def _bundle(name: str) -> KeyBundle:
    return decode_bundle(IDENTITIES[name].bundle.encode())


def _identity(name: str) -> IdentityKeys:
    vector = IDENTITIES[name]
    return IdentityKeys(
        bundle=_bundle(name),
        encryption_secret=bytes.fromhex(vector.encryption_secret),
        signing_seed=bytes.fromhex(vector.signing_seed),
    )


def _plaintext(size: int) -> bytes:
    return bytes(i % 251 for i in range(size))


def test_generator_reproduces_every_vector_file_byte_for_byte() -> None:
    """Deterministic generation: the committed files are exactly what the code produces."""
    produced = generate.generate()
    assert sorted(produced) == sorted(VECTOR_FILES)
    for name, text in produced.items():
        assert (VECTOR_DIR / name).read_text(encoding="utf-8") == text, name


def test_generator_check_mode_reports_current_and_stale_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(generate, "VECTOR_DIR", tmp_path)
    assert generate.main(["--check"]) == 1
    assert generate.main([]) == 0
    assert generate.main(["--check"]) == 0
    (tmp_path / "keys.json").write_text("{}", encoding="utf-8")
    assert generate.main(["--check"]) == 1
    monkeypatch.setattr("sys.argv", ["generate", "--check"])
    assert generate.main() == 1


@pytest.mark.parametrize("name", sorted(IDENTITIES))
def test_bundle_vectors(name: str) -> None:
    vector = IDENTITIES[name]
    bundle = _bundle(name)
    verify_bundle(bundle)
    assert bundle_signed_bytes(bundle).hex() == vector.bundle_signed_bytes
    assert bundle.encryption_key.hex() == vector.encryption_key
    assert bundle.signing_key.hex() == vector.signing_key
    _identity(name)  # private keys from the vector match the bundle
    if vector.previous is not None:
        previous = _bundle(vector.previous)
        verify_rotation(previous, bundle)
        expected = rotation_signed_bytes(
            previous_key_version=previous.key_version,
            previous_signing_key=previous.signing_key,
            bundle=bundle,
        )
        assert expected.hex() == vector.rotation_signed_bytes


def test_chain_vector() -> None:
    verify_bundle_chain([_bundle(name) for name in KEYS.chain])


ENVELOPES = msgspec.json.decode((VECTOR_DIR / "envelopes.json").read_bytes(), type=EnvelopeVectors)


@pytest.mark.parametrize("vector", ENVELOPES.envelopes, ids=lambda v: v.name)
def test_envelope_vectors_open_for_every_recipient(vector: object) -> None:
    assert isinstance(vector, type(ENVELOPES.envelopes[0]))
    envelope = decode_envelope(vector.envelope.encode())
    assert envelope_signed_bytes(envelope).hex() == vector.signed_bytes
    assert envelope.key_commitment.hex() == vector.key_commitment
    verify_envelope(envelope, _bundle(vector.sender))
    payload = msgspec.json.decode(vector.payload.encode(), type=InnerPayload)
    assert pad(encode_payload(payload)).hex() == vector.padded_payload
    for reader in vector.recipients:
        opened = open_envelope(
            envelope,
            reader=_identity(reader),
            sender_bundle=_bundle(vector.sender),
            context_id=uuid.UUID(vector.context_id),
            kinds=set(EnvelopeKind),
        )
        assert opened.payload == payload
        assert opened.kind.value == vector.kind


ATTACHMENTS = msgspec.json.decode((VECTOR_DIR / "attachments.json").read_bytes(), type=AttachmentVectors)


@pytest.mark.parametrize("vector", ATTACHMENTS.attachments, ids=lambda v: v.name)
def test_attachment_vectors_decrypt(vector: object) -> None:
    assert isinstance(vector, type(ATTACHMENTS.attachments[0]))
    key = msgspec.json.decode(vector.attachment_key.encode(), type=AttachmentKey)
    blob = base64.b64decode(vector.ciphertext)
    assert b"".join(decrypt_attachment(io.BytesIO(blob), key)) == _plaintext(vector.size)


BACKUPS = msgspec.json.decode((VECTOR_DIR / "backups.json").read_bytes(), type=BackupVectors)


@pytest.mark.parametrize("vector", BACKUPS.backups, ids=lambda v: v.name)
def test_backup_vectors_open(vector: object) -> None:
    assert isinstance(vector, type(BACKUPS.backups[0]))
    backup = decode_key_backup(vector.backup.encode())
    restored = open_key_backup(backup, vector.passphrase, bundle=_bundle(vector.identity))
    assert restored.bundle == _bundle(vector.identity)


FINGERPRINTS = msgspec.json.decode((VECTOR_DIR / "fingerprints.json").read_bytes(), type=FingerprintVectors)


@pytest.mark.parametrize("vector", FINGERPRINTS.fingerprints, ids=lambda v: f"{v.a}+{v.b}")
def test_fingerprint_vectors(vector: object) -> None:
    assert isinstance(vector, type(FINGERPRINTS.fingerprints[0]))
    a, b = _bundle(vector.a), _bundle(vector.b)
    assert bundle_fingerprint(a) == vector.fingerprint_a
    assert bundle_fingerprint(b) == vector.fingerprint_b
    assert safety_number(a, b) == safety_number(b, a) == vector.safety_number
    assert safety_number_qr(a, b).hex() == vector.qr_payload
    verify_safety_number_qr(bytes.fromhex(vector.qr_payload), b, a)


CONSENTS = msgspec.json.decode((VECTOR_DIR / "consents.json").read_bytes(), type=ConsentVectors)


@pytest.mark.parametrize("vector", CONSENTS.consents, ids=lambda v: v.name)
def test_consent_vectors_verify_and_reproduce_their_signed_bytes(vector: object) -> None:
    assert isinstance(vector, type(CONSENTS.consents[0]))
    statement = decode_consent(vector.statement.encode())
    assert consent_signed_bytes(statement).hex() == vector.signed_bytes
    verify_consent(statement, _bundle(vector.identity))
    # Ed25519 is deterministic: the vector's private key re-signs to the same signature.
    assert _identity(vector.identity)._sign(bytes.fromhex(vector.signed_bytes)) == statement.signature


REWRAPS = msgspec.json.decode((VECTOR_DIR / "rewraps.json").read_bytes(), type=RewrapVectors)


@pytest.mark.parametrize("vector", REWRAPS.rewraps, ids=lambda v: v.name)
def test_rewrap_vectors_reproduce_the_wrap_and_open_for_the_reader(vector: object) -> None:
    assert isinstance(vector, type(REWRAPS.rewraps[0]))
    source = next(item for item in ENVELOPES.envelopes if item.name == vector.envelope)
    assert vector.custodian in source.recipients
    assert vector.reader not in source.recipients
    assert vector.content_key == source.content_key
    envelope = decode_envelope(source.envelope.encode())
    context_id, kinds = uuid.UUID(vector.context_id), {EnvelopeKind(kind) for kind in vector.kinds}
    custodian, sender, reader = _identity(vector.custodian), _bundle(source.sender), _bundle(vector.reader)
    scripted = ScriptedRng([bytes.fromhex(vector.ephemeral_secret)])
    wrap = _rewrap_for(
        envelope,
        custodian=custodian,
        sender_bundle=sender,
        context_id=context_id,
        kinds=kinds,
        reader_bundle=reader,
        rng=scripted,
    )
    assert wrap.hex() == vector.wrapped_key
    assert scripted.exhausted
    fresh = rewrap_for(
        envelope,
        custodian=custodian,
        sender_bundle=sender,
        context_id=context_id,
        kinds=kinds,
        reader_bundle=reader,
    )
    payload = msgspec.json.decode(source.payload.encode(), type=InnerPayload)
    for candidate in (wrap, fresh):
        opened = open_envelope_with_wrap(
            envelope,
            reader=_identity(vector.reader),
            wrapped_key=candidate,
            sender_bundle=sender,
            context_id=context_id,
            kinds=kinds,
        )
        assert opened.payload == payload


def _refuse(vector: NegativeVector) -> None:
    data = vector.data.encode()
    if vector.category == "envelope":
        assert vector.identity
        assert vector.reader
        assert vector.context_id
        open_envelope(
            decode_envelope(data),
            reader=_identity(vector.reader),
            sender_bundle=_bundle(vector.identity),
            context_id=uuid.UUID(vector.context_id),
            kinds={EnvelopeKind.MESSAGE},
        )
    elif vector.category == "bundle":
        verify_bundle(decode_bundle(data))
    elif vector.category == "rotation":
        assert vector.identity
        verify_rotation(_bundle(vector.identity), decode_bundle(data))
    elif vector.category == "backup":
        assert vector.identity
        assert vector.passphrase
        open_key_backup(decode_key_backup(data), vector.passphrase, bundle=_bundle(vector.identity))
    elif vector.category == "consent":
        assert vector.identity
        verify_consent(decode_consent(data), _bundle(vector.identity))
    elif vector.category == "rewrap":
        assert vector.identity
        assert vector.reader
        assert vector.context_id
        assert vector.wrapped_key is not None
        open_envelope_with_wrap(
            decode_envelope(data),
            reader=_identity(vector.reader),
            wrapped_key=base64.b64decode(vector.wrapped_key),
            sender_bundle=_bundle(vector.identity),
            context_id=uuid.UUID(vector.context_id),
            kinds={EnvelopeKind.NOTE, EnvelopeKind.NOTE_AMENDMENT},
        )
    else:
        assert vector.category == "attachment"
        assert vector.attachment_key
        key = msgspec.json.decode(vector.attachment_key.encode(), type=AttachmentKey)
        for _ in decrypt_attachment(io.BytesIO(base64.b64decode(vector.data)), key):
            pass


@pytest.mark.parametrize("vector", NEGATIVES.vectors, ids=lambda v: v.name)
def test_negative_vectors_fail_with_their_specific_error(vector: NegativeVector) -> None:
    """Every adversarial vector is refused, with exactly the error class it names."""
    expected = getattr(crypto.errors, vector.expected_error)
    with pytest.raises(expected) as caught:
        _refuse(vector)
    assert type(caught.value) is expected

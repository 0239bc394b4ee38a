"""Pin the public API: a change here is an API change and belongs in the CHANGELOG."""

from __future__ import annotations

import importlib
import inspect

import pytest

EXPECTED = {
    "crypto": [],
    "crypto.errors": [
        "ArchiveError",
        "BackupError",
        "ContextError",
        "CryptoError",
        "DecryptionError",
        "EnvelopeFormatError",
        "FingerprintMismatchError",
        "FormatError",
        "InvalidKeyError",
        "KeyChainError",
        "RecipientSetError",
        "SignatureError",
    ],
    "crypto.public": [
        "BACKUP_VERSION",
        "BUNDLE_VERSION",
        "CONSENT_VERSION",
        "ENVELOPE_VERSION",
        "ConsentAction",
        "ConsentStatement",
        "Envelope",
        "EnvelopeKind",
        "KeyBackup",
        "KeyBundle",
        "KeyRef",
        "Recipient",
        "bundle_digest",
        "bundle_fingerprint",
        "bundle_log_bytes",
        "bundle_signed_bytes",
        "check_recipients",
        "consent_signed_bytes",
        "decode_bundle",
        "decode_consent",
        "decode_envelope",
        "decode_key_backup",
        "encode",
        "envelope_signed_bytes",
        "limits",
        "rotation_signed_bytes",
        "safety_number",
        "safety_number_qr",
        "validate_ed25519_public_key",
        "validate_x25519_public_key",
        "verified_recipients",
        "verify_bundle",
        "verify_bundle_chain",
        "verify_consent",
        "verify_envelope",
        "verify_recipient_addition",
        "verify_rotation",
        "verify_safety_number_qr",
    ],
    "crypto.client": [
        "PAYLOAD_VERSION",
        "AttachmentKey",
        "Clock",
        "IdentityKeys",
        "InnerPayload",
        "OpenedEnvelope",
        "OpenedExport",
        "create_key_backup",
        "decrypt_attachment",
        "encrypt_attachment",
        "encrypted_attachment_size",
        "generate_identity",
        "open_envelope",
        "open_envelope_with_wrap",
        "open_export",
        "open_key_backup",
        "read_archive",
        "rewrap_for",
        "rotate_identity",
        "seal_envelope",
        "share_envelope",
        "sign_consent",
        "unlock_keys",
        "utc_now",
    ],
    "crypto.hazmat": ["padding", "primitives", "rng", "secretstream"],
    "crypto.vectors": ["VECTOR_DIR", "VECTOR_FILES"],
}


@pytest.mark.parametrize("module_name", sorted(EXPECTED))
def test_public_api_is_pinned(module_name: str) -> None:
    module = importlib.import_module(module_name)
    assert sorted(module.__all__) == sorted(EXPECTED[module_name])


@pytest.mark.parametrize("module_name", sorted(EXPECTED))
def test_every_exported_name_exists_and_is_documented(module_name: str) -> None:
    module = importlib.import_module(module_name)
    assert module.__doc__
    for name in module.__all__:
        member = getattr(module, name)
        if inspect.isfunction(member) or inspect.isclass(member):
            assert inspect.getdoc(member), f"{module_name}.{name} has no docstring"


def test_hazmat_modules_open_with_a_warning_naming_the_safe_recipe() -> None:
    """Every hazmat module docstring starts with WARNING and points at crypto.client."""
    for name in ("crypto.hazmat", *(f"crypto.hazmat.{m}" for m in EXPECTED["crypto.hazmat"])):
        doc = importlib.import_module(name).__doc__ or ""
        assert doc.startswith("WARNING:"), name
        assert "crypto.client" in doc, name

"""What the server may use: wire formats, canonical bytes, key validation, verification.

Nothing in this package touches a private key, and it imports nothing from
``crypto.client`` or ``crypto.hazmat`` (an import contract and a test enforce it), so
``backend`` can depend on ``crypto.public`` and ``crypto.errors`` alone.
"""

from __future__ import annotations

from crypto.public import limits
from crypto.public.canonical import (
    bundle_digest,
    bundle_log_bytes,
    bundle_signed_bytes,
    envelope_signed_bytes,
    rotation_signed_bytes,
)
from crypto.public.consent import (
    CONSENT_VERSION,
    ConsentAction,
    ConsentStatement,
    consent_signed_bytes,
    decode_consent,
    verify_consent,
)
from crypto.public.fingerprint import (
    bundle_fingerprint,
    safety_number,
    safety_number_qr,
    verify_safety_number_qr,
)
from crypto.public.keys import validate_ed25519_public_key, validate_x25519_public_key
from crypto.public.verify import (
    check_recipients,
    verified_recipients,
    verify_bundle,
    verify_bundle_chain,
    verify_envelope,
    verify_recipient_addition,
    verify_rotation,
)
from crypto.public.wire import (
    BACKUP_VERSION,
    BUNDLE_VERSION,
    ENVELOPE_VERSION,
    Envelope,
    EnvelopeKind,
    KeyBackup,
    KeyBundle,
    KeyRef,
    Recipient,
    decode_bundle,
    decode_envelope,
    decode_key_backup,
    encode,
)

__all__ = [
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
]

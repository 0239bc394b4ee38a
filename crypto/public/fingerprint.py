"""Safety numbers and QR payloads for comparing keys in person (SPEC.md, section 8).

Modelled on Signal's numeric fingerprints: each side's identity (account id and both
public keys, domain-separated) is hashed with 5200 iterations of SHA-512; the first 30
bytes give 30 digits (six 5-byte big-endian chunks, each mod 100000). A pair's safety
number puts the two sides in a fixed order (by digest bytes), so both people see the
same 60 digits, grouped by five.
"""

from __future__ import annotations

from crypto.errors import FingerprintMismatchError, FormatError
from crypto.public._sodium import constant_time_equal, sha512
from crypto.public.canonical import FINGERPRINT_DOMAIN
from crypto.public.encoding import CanonicalWriter
from crypto.public.wire import KeyBundle

__all__ = [
    "FINGERPRINT_ITERATIONS",
    "FINGERPRINT_VERSION",
    "QR_PAYLOAD_BYTES",
    "bundle_fingerprint",
    "safety_number",
    "safety_number_qr",
    "verify_safety_number_qr",
]

FINGERPRINT_VERSION = 1
FINGERPRINT_ITERATIONS = 5200
_DIGEST_BYTES = 32
#: version (1) + two 32-byte digests.
QR_PAYLOAD_BYTES = 1 + 2 * _DIGEST_BYTES


def _digest(bundle: KeyBundle) -> bytes:
    identity = (
        CanonicalWriter(FINGERPRINT_DOMAIN)
        .u32(FINGERPRINT_VERSION)
        .uuid(bundle.account_id)
        .item(bundle.signing_key)
        .item(bundle.encryption_key)
        .getvalue()
    )
    digest = identity
    for _ in range(FINGERPRINT_ITERATIONS):
        digest = sha512(digest + identity)
    return digest[:_DIGEST_BYTES]


def _digits(digest: bytes) -> list[str]:
    return [f"{int.from_bytes(digest[i : i + 5], 'big') % 100000:05d}" for i in range(0, 30, 5)]


def bundle_fingerprint(bundle: KeyBundle) -> str:
    """Return one bundle's 30-digit fingerprint as six groups of five digits."""
    return " ".join(_digits(_digest(bundle)))


def _ordered_digests(a: KeyBundle, b: KeyBundle) -> list[bytes]:
    return sorted((_digest(a), _digest(b)))


def safety_number(a: KeyBundle, b: KeyBundle) -> str:
    """Return the 60-digit safety number of two bundles (same result in either order)."""
    first, second = _ordered_digests(a, b)
    return " ".join(_digits(first) + _digits(second))


def safety_number_qr(a: KeyBundle, b: KeyBundle) -> bytes:
    """Return the QR payload: ``u8 version || digest || digest`` in safety-number order."""
    first, second = _ordered_digests(a, b)
    return bytes([FINGERPRINT_VERSION]) + first + second


def verify_safety_number_qr(payload: bytes, a: KeyBundle, b: KeyBundle) -> None:
    """Check a scanned QR payload against the two bundles this device holds.

    Raises:
        FormatError: the payload has the wrong length or an unknown version.
        FingerprintMismatchError: the payload was made from other keys.
    """
    if len(payload) != QR_PAYLOAD_BYTES or payload[0] != FINGERPRINT_VERSION:
        raise FormatError("not a supported safety-number QR payload")
    if not constant_time_equal(payload, safety_number_qr(a, b)):
        raise FingerprintMismatchError("safety numbers differ")

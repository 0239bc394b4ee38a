"""TOTP (RFC 6238: HMAC-SHA-1, 30-second steps, 6 digits) with replay protection.

Verification returns the matched time step; the caller stores it and refuses any
step not greater than the last one used, so a code works once (ASVS 6.5.1).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import secrets
import struct
import urllib.parse

__all__ = ["DIGITS", "STEP_SECONDS", "generate_secret", "hotp", "provisioning_uri", "verify_totp"]

STEP_SECONDS = 30
DIGITS = 6
SECRET_BYTES = 20
WINDOW_STEPS = 1


def generate_secret() -> bytes:
    """A fresh 160-bit TOTP seed."""
    return secrets.token_bytes(SECRET_BYTES)


def hotp(secret: bytes, counter: int, digits: int = DIGITS) -> str:
    """RFC 4226 HOTP value for ``counter``."""
    mac = hmac.new(secret, struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    code = struct.unpack(">I", mac[offset : offset + 4])[0] & 0x7FFFFFFF
    return str(code % (10**digits)).zfill(digits)


def time_step(at: dt.datetime) -> int:
    """The RFC 6238 time step containing ``at``."""
    return int(at.timestamp()) // STEP_SECONDS


def verify_totp(secret: bytes, code: str, at: dt.datetime, last_step: int | None) -> int | None:
    """The step ``code`` is valid for (within ±1 step and after ``last_step``), or None."""
    if len(code) != DIGITS or not code.isascii() or not code.isdigit():
        return None
    current = time_step(at)
    matched: int | None = None
    for step in range(current - WINDOW_STEPS, current + WINDOW_STEPS + 1):
        # Compare every candidate (no early exit) in constant time.
        if hmac.compare_digest(hotp(secret, step), code) and matched is None:
            matched = step
    if matched is None or (last_step is not None and matched <= last_step):
        return None
    return matched


def encode_secret(secret: bytes) -> str:
    """Base32 without padding, as authenticator apps expect."""
    return base64.b32encode(secret).decode("ascii").rstrip("=")


def provisioning_uri(secret: bytes, *, issuer: str, account_label: str) -> str:
    """An ``otpauth://`` URI for QR enrolment."""
    label = urllib.parse.quote(f"{issuer}:{account_label}")
    query = urllib.parse.urlencode(
        {
            "secret": encode_secret(secret),
            "issuer": issuer,
            "algorithm": "SHA1",
            "digits": DIGITS,
            "period": STEP_SECONDS,
        }
    )
    return f"otpauth://totp/{label}?{query}"

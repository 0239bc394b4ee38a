"""Server receipts for consent events: what the server recorded, when, signed by it.

A receipt is versioned JSON whose signature (Ed25519, the server's receipt key) covers
a domain-separated, length-prefixed encoding of its fields, never the JSON text:

    u32 len || "confide/v1/consent-receipt"
    u32 len || version (u32, big-endian)
    u32 len || event id (16 bytes) || ...

with, in order: version, consent id, event id, event kind (UTF-8), SHA-256 of the
statement's canonical JSON, recorded-at (RFC 3339 UTC with microseconds, UTF-8).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import struct
import uuid
from typing import Literal

import msgspec
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

__all__ = ["RECEIPT_DOMAIN", "ConsentReceipt", "receipt_signed_bytes", "verify_receipt"]

RECEIPT_DOMAIN = b"confide/v1/consent-receipt"
RECEIPT_VERSION = 1


class ConsentReceipt(msgspec.Struct, frozen=True, kw_only=True):
    """The server's signed acknowledgement of one consent event."""

    version: int
    consent_id: uuid.UUID
    event_id: uuid.UUID
    event: Literal["grant", "revoke"]
    statement_sha256: str
    recorded_at: dt.datetime
    server_key: bytes
    signature: bytes


def _item(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def receipt_signed_bytes(
    *,
    consent_id: uuid.UUID,
    event_id: uuid.UUID,
    event: str,
    statement_sha256: str,
    recorded_at: dt.datetime,
    version: int = RECEIPT_VERSION,
) -> bytes:
    """The exact bytes the server signs for a receipt."""
    stamp = recorded_at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return b"".join(
        _item(part)
        for part in (
            RECEIPT_DOMAIN,
            struct.pack(">I", version),
            consent_id.bytes,
            event_id.bytes,
            event.encode(),
            bytes.fromhex(statement_sha256),
            stamp.encode(),
        )
    )


def statement_digest(statement_json: bytes) -> str:
    """SHA-256 (hex) of a statement's canonical JSON, as receipts name it."""
    return hashlib.sha256(statement_json).hexdigest()


def verify_receipt(receipt: ConsentReceipt, server_key: bytes) -> None:
    """Check a receipt against the server's published receipt key; raise ValueError if it fails."""
    if receipt.version != RECEIPT_VERSION or receipt.server_key != server_key:
        raise ValueError("receipt version or key not recognised")
    message = receipt_signed_bytes(
        consent_id=receipt.consent_id,
        event_id=receipt.event_id,
        event=receipt.event,
        statement_sha256=receipt.statement_sha256,
        recorded_at=receipt.recorded_at,
        version=receipt.version,
    )
    try:
        VerifyKey(server_key).verify(message, receipt.signature)
    except BadSignatureError as exc:
        raise ValueError("receipt signature does not verify") from exc

"""Opaque bearer tokens: 256 random bits, stored only as SHA-256."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets

__all__ = ["TOKEN_PREFIX", "new_token", "parse_bearer", "token_digest"]

TOKEN_PREFIX = "cfd_"  # noqa: S105 -- a public prefix, not a secret
_TOKEN_RE = re.compile(r"^cfd_[A-Za-z0-9_-]{43}$")


def new_token() -> str:
    """A fresh session token (prefixed so secret scanners can spot a leaked one)."""
    raw = secrets.token_bytes(32)
    return TOKEN_PREFIX + base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def token_digest(token: str) -> bytes:
    """What the database stores and looks up."""
    return hashlib.sha256(token.encode("ascii")).digest()


def parse_bearer(header: str | None) -> str | None:
    """The token in an ``Authorization: Bearer`` header, if well-formed."""
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    value = value.strip()
    return value if _TOKEN_RE.match(value) else None

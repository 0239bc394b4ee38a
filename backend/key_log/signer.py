"""The key log's signing key: derived from the audit log key, with its own name and origin.

Its checkpoints must never be taken for the audit log's: the key log signs under its own
Ed25519 key, ``BLAKE2b-256(key = audit log seed, person = "confide/key-log")``, named
(and so with the origin) ``<audit log origin>/key-log``. A verifier pins that key and
origin; an audit checkpoint fails it, and the reverse. No new secret to deploy: the
public half is served at ``GET /v1/key-log/key``.
"""

from __future__ import annotations

import base64
import functools
import hashlib
from typing import Final

from audit.note import NoteSigner
from backend.audit_trail.log_key import log_signer
from backend.settings import Settings

__all__ = ["ORIGIN_SUFFIX", "key_log_signer"]

ORIGIN_SUFFIX: Final = "/key-log"
_PERSON: Final = b"confide/key-log"


@functools.lru_cache(maxsize=8)
def key_log_signer(settings: Settings) -> NoteSigner:
    """The key log's checkpoint signer for ``settings`` (cached per settings value).

    Raises:
        SettingsError: The audit log key is missing, unreadable or malformed.
    """
    audit = log_signer(settings)
    # The audit key's text form is PRIVATE+KEY+<name>+<id>+<base64(0x01 || seed)> (no "+" in a name).
    seed = base64.b64decode(str(audit).split("+", 4)[4])[1:]
    derived = hashlib.blake2b(b"", key=seed, person=_PERSON, digest_size=32).digest()
    return NoteSigner(audit.name + ORIGIN_SUFFIX, derived)

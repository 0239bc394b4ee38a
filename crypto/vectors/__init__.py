"""Known-answer test vectors for ``crypto/SPEC.md`` and the generator that writes them.

Regenerate with ``python -m crypto.vectors.generate`` (deterministic: fixed keys,
nonces, content keys and ephemeral keys, injected through the private RNG seams of
:mod:`crypto.client`). ``crypto/interop`` checks the same files with libsodium.js.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["VECTOR_DIR", "VECTOR_FILES"]

VECTOR_DIR = Path(__file__).resolve().parent
VECTOR_FILES = (
    "keys.json",
    "envelopes.json",
    "attachments.json",
    "backups.json",
    "fingerprints.json",
    "consents.json",
    "rewraps.json",
    "negative.json",
)

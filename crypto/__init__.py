"""Client-side end-to-end encryption for Confide (wire format: ``crypto/SPEC.md``).

Subpackages, by who may use them:

- :mod:`crypto.public` — wire formats, canonical signed bytes, key validation,
  signature / key-chain / envelope / consent verification, fingerprints, size limits.
  No secret key anywhere: the server imports this and :mod:`crypto.errors`, nothing else.
- :mod:`crypto.client` — recipes that use private keys (generate, sign, seal, open,
  back up, encrypt attachments, sign consent statements). Clients and tests only.
- :mod:`crypto.hazmat` — low-level wrappers the recipes are built from. Avoid.
- :mod:`crypto.vectors` — known-answer test vectors and their generator.

This module imports none of them, so importing :mod:`crypto.public` never loads
secret-key code.
"""

from __future__ import annotations

__all__: list[str] = []

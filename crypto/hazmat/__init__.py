"""WARNING: low-level building blocks. Use :mod:`crypto.client` instead.

Nothing here checks signatures, binds context, pads, or picks nonces for you. The safe
recipes are :func:`crypto.client.seal_envelope` / :func:`crypto.client.open_envelope`
for messages and notes, :func:`crypto.client.encrypt_attachment` for files and
:func:`crypto.client.create_key_backup` for key backups. These modules exist so that
those recipes, the test-vector generator and the tests share one typed, audited wrapper
around each libsodium call.
"""

from __future__ import annotations

__all__ = ["padding", "primitives", "rng", "secretstream"]

from crypto.hazmat import padding, primitives, rng, secretstream

"""Client-side recipes: everything that touches a private key.

The server never imports this package (an import contract enforces it). Start here:
:func:`generate_identity`, :func:`seal_envelope` / :func:`open_envelope`,
:func:`encrypt_attachment` / :func:`decrypt_attachment`, :func:`create_key_backup` /
:func:`open_key_backup`, :func:`sign_consent`; break-glass re-wrap with :func:`rewrap_for` /
:func:`open_envelope_with_wrap`; a data-subject export with :func:`read_archive`,
:func:`unlock_keys` and :func:`open_export`.
"""

from __future__ import annotations

from crypto.client.attachments import (
    decrypt_attachment,
    encrypt_attachment,
    encrypted_attachment_size,
)
from crypto.client.backup import create_key_backup, open_key_backup
from crypto.client.consent import sign_consent
from crypto.client.envelope import (
    OpenedEnvelope,
    open_envelope,
    open_envelope_with_wrap,
    rewrap_for,
    seal_envelope,
    share_envelope,
)
from crypto.client.export import OpenedExport, open_export, read_archive, unlock_keys
from crypto.client.keys import Clock, IdentityKeys, generate_identity, rotate_identity, utc_now
from crypto.client.payload import PAYLOAD_VERSION, AttachmentKey, InnerPayload

__all__ = [
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
]

"""The audit log's signing key: loaded once per process from the settings.

The secret is a C2SP signed-note Ed25519 key (``PRIVATE+KEY+<origin>+<id>+<base64>``,
made by ``confide audit keygen``); its name is the checkpoints' origin. The public
half is served at ``GET /v1/audit/log-key``.
"""

from __future__ import annotations

import functools

from audit.errors import AuditFormatError
from audit.note import ED25519, NoteSigner
from backend.settings import Settings, SettingsError

__all__ = ["log_signer"]


@functools.lru_cache(maxsize=8)
def log_signer(settings: Settings) -> NoteSigner:
    """The checkpoint signer named by ``settings`` (cached per settings value).

    Raises:
        SettingsError: The key is missing, unreadable or malformed.
    """
    try:
        text = settings.audit_log_key_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError("CONFIDE_AUDIT_LOG_KEY_FILE cannot be read") from exc
    try:
        signer = NoteSigner.parse(text, ED25519)
    except AuditFormatError as exc:
        raise SettingsError("CONFIDE_AUDIT_LOG_KEY is not an audit log signing key") from exc
    return signer

"""Request and response bodies of the authentication routes."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Literal

import msgspec

__all__ = [
    "LoginRequest",
    "LoginResponse",
    "PasswordChangeRequest",
    "RecoveryCodesResponse",
    "TotpConfirmRequest",
    "TotpEnrollmentResponse",
]

OrgSlug = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9-]{1,62}$", max_length=63)]
Email = Annotated[
    str, msgspec.Meta(min_length=3, max_length=254, pattern=r"^[^\s@\x00-\x1f]+@[^\s@\x00-\x1f]+$")
]
# Long enough for any accepted password; the policy (min length) is checked in the service.
Password = Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]
TotpCode = Annotated[str, msgspec.Meta(pattern=r"^[0-9]{6}$")]
RecoveryCode = Annotated[str, msgspec.Meta(pattern=r"^[a-z2-7]{5}-[a-z2-7]{5}$")]


class LoginRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Credentials; staff with MFA add ``totp_code`` (or a ``recovery_code``)."""

    organization: OrgSlug
    email: Email
    password: Password
    totp_code: TotpCode | None = None
    recovery_code: RecoveryCode | None = None


class LoginResponse(msgspec.Struct, frozen=True, kw_only=True):
    """A new session. The token is shown once; the server keeps only its digest."""

    token: str
    token_type: Literal["Bearer"]
    account_id: uuid.UUID
    role: str
    expires_at: dt.datetime
    idle_timeout_s: int
    mfa_enrollment_required: bool


class PasswordChangeRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Change the caller's password; every other session is revoked."""

    current_password: Password
    new_password: Password


class TotpEnrollmentResponse(msgspec.Struct, frozen=True, kw_only=True):
    """A new TOTP seed to put into an authenticator app, then confirm with a code."""

    secret: str
    otpauth_uri: str
    digits: int
    period_s: int


class TotpConfirmRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A current code from the app, proving it holds the seed."""

    code: TotpCode


class RecoveryCodesResponse(msgspec.Struct, frozen=True, kw_only=True):
    """Single-use recovery codes, shown once."""

    recovery_codes: list[str]

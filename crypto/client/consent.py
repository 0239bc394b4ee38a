"""Signing consent statements: the client's recipe for grants and revocations.

The statement is built and checked (:class:`crypto.public.ConsentStatement`), then
signed over :func:`crypto.public.consent_signed_bytes` with the identity's Ed25519 key.
Inputs are never silently adjusted beyond putting the scopes in canonical order: a
sub-second time, a naive datetime or a malformed scope is refused with
:class:`FormatError`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, datetime

import msgspec

from crypto.client.keys import Clock, IdentityKeys, _now, utc_now
from crypto.errors import FormatError
from crypto.public.consent import (
    CONSENT_VERSION,
    ConsentAction,
    ConsentStatement,
    GranteeType,
    consent_signed_bytes,
)
from crypto.public.wire import SIGNATURE_BYTES

__all__ = ["sign_consent"]


def _canonical_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    # A bare string is an iterable of one-letter "scopes": refuse it rather than sign that.
    if isinstance(scopes, str | bytes):
        raise FormatError("scopes must be a collection of scope names, not one string")
    items = list(scopes)
    if not all(isinstance(scope, str) for scope in items):
        raise FormatError("every scope must be a string")
    return tuple(sorted(set(items)))


def _utc(value: datetime) -> datetime:
    # Same instant in UTC; naive datetimes are refused, nothing is rounded.
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise FormatError("validity times must be timezone-aware datetimes")
    return value.astimezone(UTC)


def sign_consent(
    identity: IdentityKeys,
    *,
    action: ConsentAction,
    consent_id: uuid.UUID,
    organization_id: uuid.UUID,
    grantee_type: GranteeType,
    grantee_id: uuid.UUID,
    scopes: Iterable[str],
    purpose: str,
    valid_from: datetime,
    valid_until: datetime | None,
    clock: Clock = utc_now,
) -> ConsentStatement:
    """Sign a consent grant or revocation with ``identity``'s signing key.

    ``consent_id`` is a new id chosen by the client for a grant, and the grant's id for
    a revoke (which repeats the grant's organization, grantee, scopes, purpose and
    validity). Scopes are sorted and de-duplicated; ``valid_from`` and ``valid_until``
    are converted to UTC and must be whole seconds; ``issued_at`` is ``clock()`` to the
    second.

    Raises:
        FormatError: any field breaks a rule of :class:`ConsentStatement` (no input is
            truncated to fit), or a time or the clock is not timezone-aware.
    """
    unsigned = ConsentStatement(
        version=CONSENT_VERSION,
        action=action,
        consent_id=consent_id,
        client=identity.ref,
        organization_id=organization_id,
        grantee_type=grantee_type,
        grantee_id=grantee_id,
        scopes=_canonical_scopes(scopes),
        purpose=purpose,
        valid_from=_utc(valid_from),
        valid_until=None if valid_until is None else _utc(valid_until),
        issued_at=_now(clock),
        signature=bytes(SIGNATURE_BYTES),
    )
    signature = identity._sign(consent_signed_bytes(unsigned))
    return msgspec.structs.replace(unsigned, signature=signature)

"""Domain errors: what went wrong, in the service's own words.

Every error the service raises on purpose derives from :class:`DomainError`. Each
class carries a stable problem ``type`` slug, an HTTP status and a fixed detail
text; the HTTP layer maps them to RFC 9457 problem documents in one place
(``backend.http.problems``). Details never contain personal data or database text.

::

    DomainError
    ├── InvalidCursorError       400  a pagination cursor that is not ours
    ├── InvalidInputError        422  input well-formed but unacceptable
    │   └── WeakPasswordError    422
    ├── AuthenticationError      401  no valid credentials or session
    │   └── MfaRequiredError     401  the password was right; a second factor is needed
    ├── ForbiddenError           403  authenticated, but not allowed
    │   └── MfaEnrollmentRequiredError 403
    ├── NotFoundError            404  absent, or not the caller's to know about
    ├── ConflictError            409  clashes with current state
    ├── PreconditionFailedError  412  If-Match did not match
    ├── PreconditionRequiredError 428  a change needs If-Match
    ├── ThrottledError           429  too many attempts; carries Retry-After
    │   └── RateLimitedError     429  requests arrive faster than the rate limit
    └── UnavailableError         503  a dependency (the database) is down
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "AuthenticationError",
    "ConflictError",
    "DomainError",
    "ForbiddenError",
    "InvalidCursorError",
    "InvalidInputError",
    "MfaEnrollmentRequiredError",
    "MfaRequiredError",
    "NotFoundError",
    "PreconditionFailedError",
    "PreconditionRequiredError",
    "RateLimitedError",
    "ThrottledError",
    "UnavailableError",
    "WeakPasswordError",
]


class DomainError(Exception):
    """Root of the service's errors; never raised directly."""

    status: ClassVar[int] = 400
    slug: ClassVar[str] = "bad-request"
    title: ClassVar[str] = "Bad request"
    default_detail: ClassVar[str] = "The request cannot be processed."

    def __init__(self, detail: str | None = None, *, extra: dict[str, object] | None = None) -> None:
        self.detail = detail or self.default_detail
        self.extra = extra or {}
        super().__init__(self.detail)


class InvalidCursorError(DomainError):
    """A pagination cursor that was forged, altered, or made for another listing."""

    status = 400
    slug = "invalid-cursor"
    title = "Invalid cursor"
    default_detail = "The cursor is not valid for this listing."


class InvalidInputError(DomainError):
    """Input that parses but breaks a rule (a policy, a range, a format)."""

    status = 422
    slug = "invalid-input"
    title = "Invalid input"
    default_detail = "The request body breaks a validation rule."


class WeakPasswordError(InvalidInputError):
    """A password that the password policy refuses."""

    slug = "weak-password"
    title = "Password not accepted"
    default_detail = "The password does not meet the password policy."


class AuthenticationError(DomainError):
    """Missing, wrong, expired or revoked credentials."""

    status = 401
    slug = "unauthenticated"
    title = "Authentication required"
    default_detail = "Valid credentials are required."


class MfaRequiredError(AuthenticationError):
    """The password was accepted; a TOTP code or recovery code must accompany it."""

    slug = "mfa-required"
    title = "Second factor required"
    default_detail = "A one-time code from the authenticator app is required."


class ForbiddenError(DomainError):
    """Authenticated, but the policy does not allow this action."""

    status = 403
    slug = "forbidden"
    title = "Forbidden"
    default_detail = "This account may not perform this action."


class MfaEnrollmentRequiredError(ForbiddenError):
    """A staff session must enrol a second factor before doing anything else."""

    slug = "mfa-enrollment-required"
    title = "Second factor enrolment required"
    default_detail = "Enrol an authenticator app before using this account."


class NotFoundError(DomainError):
    """Not there, or not the caller's to know about (existence never leaks).

    Every instance answers with the same detail: a service's own wording ("No such
    consent.") for an unknown id beside the policy's for another organization's object
    would tell the two apart. The wording a raiser gives is kept as ``reason`` (for tests
    and debugging), never sent.
    """

    status = 404
    slug = "not-found"
    title = "Not found"
    default_detail = "The resource does not exist."

    def __init__(self, detail: str | None = None, *, extra: dict[str, object] | None = None) -> None:
        super().__init__(None, extra=extra)
        self.reason = detail


class ConflictError(DomainError):
    """The request clashes with the current state (a duplicate, a used invite...)."""

    status = 409
    slug = "conflict"
    title = "Conflict"
    default_detail = "The request conflicts with the current state."


class PreconditionFailedError(DomainError):
    """A compare-and-swap precondition (``If-Match``) did not hold."""

    status = 412
    slug = "precondition-failed"
    title = "Precondition failed"
    default_detail = "The resource changed since it was read."


class PreconditionRequiredError(DomainError):
    """A compare-and-swap change was sent without ``If-Match``."""

    status = 428
    slug = "precondition-required"
    title = "Precondition required"
    default_detail = "Send If-Match with the ETag of the version you read."


class ThrottledError(DomainError):
    """Too many attempts; try again after ``retry_after`` seconds."""

    status = 429
    slug = "too-many-requests"
    title = "Too many requests"
    default_detail = "Too many attempts. Try again later."

    def __init__(self, retry_after: int, detail: str | None = None) -> None:
        super().__init__(detail)
        self.retry_after = max(1, retry_after)


class RateLimitedError(ThrottledError):
    """A session (or an address without one) sends requests faster than the rate limit allows."""

    slug = "rate-limited"
    title = "Rate limit exceeded"
    default_detail = "Requests are arriving too fast. Retry after the time in Retry-After."


class UnavailableError(DomainError):
    """A dependency is down; the request was not carried out."""

    status = 503
    slug = "unavailable"
    title = "Service unavailable"
    default_detail = "The service is temporarily unavailable. Try again shortly."

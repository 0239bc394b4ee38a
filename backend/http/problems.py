"""RFC 9457 problem documents: the one place errors become HTTP responses.

Every error path (validation, authentication, authorization, not found, conflict,
rate limit, unavailable, internal) answers ``application/problem+json`` with a
stable ``type`` per error. Detail texts are fixed strings: they never echo input
values, personal data, exception text from libraries or database messages.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import asyncpg
import msgspec
import structlog
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.types import ExceptionHandlersMap

from backend.errors import DomainError, ThrottledError
from backend.http.context import current_request_id
from backend.telemetry.logs import exception_frames
from crypto.errors import (
    BackupError,
    CryptoError,
    FormatError,
    InvalidKeyError,
    KeyChainError,
    RecipientSetError,
    SignatureError,
)

__all__ = ["PROBLEM_BASE", "Problem", "exception_handlers", "problem_response"]

PROBLEM_BASE = "urn:confide:problem:"
PROBLEM_MEDIA_TYPE = "application/problem+json"

_log = structlog.get_logger("confide.http")

# Litestar's own exceptions, mapped to our stable slugs and fixed texts.
_HTTP_PROBLEMS: Mapping[int, tuple[str, str, str]] = {
    400: ("bad-request", "Bad request", "The request is malformed."),
    401: ("unauthenticated", "Authentication required", "Valid credentials are required."),
    403: ("forbidden", "Forbidden", "This account may not perform this action."),
    404: ("not-found", "Not found", "The resource does not exist."),
    405: ("method-not-allowed", "Method not allowed", "This method is not allowed here."),
    406: ("not-acceptable", "Not acceptable", "No acceptable representation."),
    409: ("conflict", "Conflict", "The request conflicts with the current state."),
    413: ("payload-too-large", "Payload too large", "The request body exceeds the size limit."),
    415: ("unsupported-media-type", "Unsupported media type", "Send application/json."),
    429: ("too-many-requests", "Too many requests", "Too many requests. Try again later."),
    503: ("unavailable", "Service unavailable", "The service is temporarily unavailable."),
}


class ProblemField(msgspec.Struct, frozen=True):
    """One validation failure: where, and what kind (never the value)."""

    field: str
    message: str


class KeyRefView(msgspec.Struct, frozen=True):
    """An (account, key version) pair named by a recipients problem."""

    account_id: str
    key_version: int


class Problem(msgspec.Struct, frozen=True, omit_defaults=True):
    """An RFC 9457 problem document."""

    type: str
    title: str
    status: int
    detail: str
    request_id: str | None = None
    errors: list[ProblemField] | None = None
    retry_after: int | None = None
    missing_keys: list[KeyRefView] | None = None
    unexpected_keys: list[KeyRefView] | None = None


def problem_response(
    status: int,
    slug: str,
    title: str,
    detail: str,
    *,
    errors: list[ProblemField] | None = None,
    headers: dict[str, str] | None = None,
    retry_after: int | None = None,
    missing_keys: list[KeyRefView] | None = None,
    unexpected_keys: list[KeyRefView] | None = None,
) -> Response[Problem]:
    """Build the response for one problem."""
    all_headers = dict(headers or {})
    if retry_after is not None:
        all_headers["Retry-After"] = str(retry_after)
    return Response(
        Problem(
            type=PROBLEM_BASE + slug,
            title=title,
            status=status,
            detail=detail,
            request_id=current_request_id(),
            errors=errors,
            retry_after=retry_after,
            missing_keys=missing_keys,
            unexpected_keys=unexpected_keys,
        ),
        status_code=status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=all_headers,
    )


def _domain_error(_: Request[Any, Any, Any], exc: DomainError) -> Response[Problem]:
    retry_after = exc.retry_after if isinstance(exc, ThrottledError) else None
    return problem_response(exc.status, exc.slug, exc.title, exc.detail, retry_after=retry_after)


def _validation_error(_: Request[Any, Any, Any], exc: ValidationException) -> Response[Problem]:
    errors = [_field_error(item) for item in (exc.extra or []) if isinstance(item, Mapping)]
    return problem_response(
        400,
        "validation",
        "Invalid request",
        "The request does not match the expected schema.",
        errors=errors or None,
    )


# msgspec quotes offending values ('x'); field names come in backticks and are kept.
_QUOTED = re.compile(r"'[^']*'")


def _field_error(item: Mapping[str, Any]) -> ProblemField:
    # Litestar passes msgspec's messages, which name the expected type and the
    # location but not the offending value. Keep them short and single-line.
    message = _QUOTED.sub("'…'", str(item.get("message", "invalid")))[:200].replace("\n", " ")
    key = str(item.get("key", "body"))[:100]
    source = str(item.get("source", "body"))
    return ProblemField(field=f"{source}.{key}" if source != "body" else key, message=message)


def _http_error(_: Request[Any, Any, Any], exc: HTTPException) -> Response[Problem]:
    status = exc.status_code
    if status >= 500:
        return _internal(status)
    slug, title, detail = _HTTP_PROBLEMS.get(
        status, ("bad-request", "Bad request", "The request is malformed.")
    )
    headers = {k: v for k, v in (exc.headers or {}).items() if k.lower() in {"allow", "retry-after"}}
    return problem_response(status, slug, title, detail, headers=headers)


# Cryptographic material that fails its checks: fixed texts per failure class,
# never the library's message.
_CRYPTO_PROBLEMS: tuple[tuple[type[CryptoError], int, str, str, str], ...] = (
    (RecipientSetError, 409, "recipients-mismatch", "Recipients do not match",
     "The envelope's recipients are not exactly the current keys of its readers."),
    (SignatureError, 422, "bad-signature", "Signature rejected", "A signature does not verify."),
    (KeyChainError, 422, "broken-key-chain", "Key chain rejected",
     "The key bundle does not follow the published chain of keys."),
    (InvalidKeyError, 422, "invalid-key", "Key rejected", "A public key is not acceptable."),
    (BackupError, 422, "invalid-backup", "Backup rejected", "The key backup is not acceptable."),
    (FormatError, 422, "invalid-format", "Format rejected", "The cryptographic object is malformed."),
)  # fmt: skip


def _refs(refs: frozenset[Any]) -> list[KeyRefView]:
    ordered = sorted(refs, key=lambda r: (str(r.account_id), r.key_version))
    return [KeyRefView(account_id=str(r.account_id), key_version=int(r.key_version)) for r in ordered]


def _crypto_error(_: Request[Any, Any, Any], exc: CryptoError) -> Response[Problem]:
    if isinstance(exc, RecipientSetError):
        # Name the stale or missing keys (ids and versions only), so the sender can refetch
        # the members' keys and re-encrypt.
        return problem_response(
            409,
            "recipients-mismatch",
            "Recipients do not match",
            "The envelope's recipients are not exactly the current keys of its readers.",
            missing_keys=_refs(exc.missing),
            unexpected_keys=_refs(exc.unexpected),
        )
    for cls, status, slug, title, detail in _CRYPTO_PROBLEMS:
        if isinstance(exc, cls):
            return problem_response(status, slug, title, detail)
    return problem_response(422, "crypto-rejected", "Rejected", "The cryptographic object was rejected.")


def _database_unavailable(_: Request[Any, Any, Any], exc: Exception) -> Response[Problem]:
    _log.warning("database_unavailable", error_type=type(exc).__name__)
    return problem_response(
        503,
        "unavailable",
        "Service unavailable",
        "The service is temporarily unavailable. Try again shortly.",
        retry_after=2,
    )


def _integrity_error(
    _: Request[Any, Any, Any], exc: asyncpg.IntegrityConstraintViolationError
) -> Response[Problem]:
    # A constraint the database enforces caught input the service let through.
    # The constraint name is logged (never the row values); the client learns only the class.
    _log.warning(
        "constraint_rejected",
        sqlstate=exc.sqlstate,
        constraint=getattr(exc, "constraint_name", None),
    )
    if isinstance(exc, asyncpg.UniqueViolationError):
        return problem_response(409, "conflict", "Conflict", "The request conflicts with the current state.")
    return problem_response(
        422, "invalid-input", "Invalid input", "The request body breaks a validation rule."
    )


def _unexpected(_: Request[Any, Any, Any], exc: Exception) -> Response[Problem]:
    _log.error("unhandled_exception", error_type=type(exc).__name__, frames=exception_frames(exc))
    return _internal(500)


def _internal(status: int) -> Response[Problem]:
    return problem_response(
        status,
        "internal",
        "Internal error",
        "The server could not complete the request. It has been logged.",
    )


def _is_database_down(exc: Exception) -> bool:
    """The database is unreachable, overloaded or timed out: transient, worth a retry (503)."""
    return isinstance(
        exc,
        asyncpg.PostgresConnectionError
        | asyncpg.InterfaceError
        | asyncpg.CannotConnectNowError
        | asyncpg.QueryCanceledError  # statement_timeout
        | asyncpg.LockNotAvailableError  # lock_timeout (55P03)
        | asyncpg.DeadlockDetectedError  # the transaction was chosen to roll back
        | asyncpg.SerializationError
        | asyncpg.TooManyConnectionsError
        | asyncpg.AdminShutdownError
        | ConnectionError
        | TimeoutError
        | OSError,
    )


def _any_exception(request: Request[Any, Any, Any], exc: Exception) -> Response[Problem]:
    if isinstance(exc, asyncpg.DataError | OverflowError):
        # A value the database (or date arithmetic) cannot represent: the input's fault.
        # Kept as a backstop; routes bound their parameters so this should not be reached.
        _log.warning("unrepresentable_input", error_type=type(exc).__name__, frames=exception_frames(exc))
        return problem_response(400, "bad-request", "Bad request", "A value in the request is out of range.")
    if isinstance(exc, UnicodeDecodeError):
        # A body that is not UTF-8 is the client's error, not ours.
        return problem_response(400, "bad-request", "Bad request", "The request body is not valid UTF-8.")
    if isinstance(exc, RecursionError):
        # msgspec refuses pathologically nested JSON by hitting its depth limit.
        return problem_response(400, "bad-request", "Bad request", "The request body is nested too deeply.")
    if _is_database_down(exc):
        return _database_unavailable(request, exc)
    return _unexpected(request, exc)


exception_handlers: ExceptionHandlersMap = {
    DomainError: _domain_error,
    CryptoError: _crypto_error,
    ValidationException: _validation_error,
    HTTPException: _http_error,
    asyncpg.IntegrityConstraintViolationError: _integrity_error,
    Exception: _any_exception,
}

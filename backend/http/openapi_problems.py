"""The error answers of every operation, documented as what they are: RFC 9457 problem documents.

Litestar documents only a generic ``400`` in its own error shape. Every route here
answers errors as ``application/problem+json`` (:mod:`backend.http.problems`), so the
OpenAPI document lists, per operation, the statuses it can answer with that body:

- every operation: ``503`` (the request deadline, the database out of reach), and ``429``
  (the general rate limit, :mod:`backend.http.rate_limit`) unless it is exempt
  (``opt={"rate_limit": False}``: the health probes);
- an operation with any input (path, query, header, body): ``400``;
- an operation with a body: ``413`` (over the size limit), ``408`` (sent too slowly);
- an authenticated operation: ``401`` and ``403`` (role, second factor), and ``404``
  when it names an object in its path (unknown, or another organization's: the same answer);
- the statuses particular to an operation (``409``, ``412``, ``415``, ``422``, ``428``,
  ``429``, a second success code) from :data:`EXTRA_STATUSES`.

Public routes (``opt={"public": True}``) declare an empty security requirement, so
clients and fuzzers know a token is neither needed nor looked at. Two more corrections
of what Litestar generates: parameter bounds it drops (``ge=0`` on an optional integer,
integer bounds written as floats) are restored from the handler's declaration, and
bodies or answers it cannot see (the raw upload of an attachment, the audit export's
formats) are declared in :data:`_RAW_BODIES` and :data:`_SUCCESS_MEDIA_TYPES`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from litestar import Litestar
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import (
    OpenAPIHeader,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    RequestBody,
    Schema,
)
from litestar.params import KwargDefinition
from litestar.response import Response

from backend.http.problems import PROBLEM_MEDIA_TYPE, Problem

__all__ = ["EXTRA_STATUSES", "document_problems", "problem_statuses"]

_DESCRIPTIONS: Mapping[int, str] = {
    400: "Malformed request: a parameter or the body does not match the schema.",
    401: "No valid session (missing, unknown, expired or revoked token).",
    403: "The account may not do this (role, second factor, separation of duties).",
    404: "No such object for this account (unknown, or not visible to it: the same answer).",
    408: "The body arrived too slowly (the request deadline passed while it was being sent).",
    409: "Conflict with the current state.",
    412: "The precondition (If-Match) does not hold.",
    413: "The body exceeds the size limit.",
    415: "Unsupported media type.",
    422: "Well-formed but refused by a rule (validation, signature, key or format checks).",
    428: "A precondition (If-Match) is required.",
    429: "Too many requests (the rate limit, or a throttle); retry after the time in Retry-After.",
    503: "Temporarily unavailable (deadline passed or database out of reach); retry later.",
}

# Statuses an operation answers beyond the general rules above, from its service's errors.
# An int below 400 is a second success code (same body as the documented one).
EXTRA_STATUSES: Mapping[str, frozenset[int]] = {
    "login": frozenset({401, 429}),
    "redeemInvite": frozenset({404, 409, 422, 429}),
    "changePassword": frozenset({422, 429}),
    "enrollTotp": frozenset({409}),
    "confirmTotp": frozenset({409, 429}),
    "createStaffAccount": frozenset({409, 422, 429}),
    "createInvite": frozenset({422}),
    "getKeyBackup": frozenset({404}),
    "putKeyBackup": frozenset({201, 412, 422, 428}),
    "publishKeyBundle": frozenset({201, 409, 422}),
    "revokeKeyBundle": frozenset({409}),
    "getAuditCheckpoint": frozenset({404, 409}),
    "getAuditInclusionProof": frozenset({404, 422}),
    "getAuditConsistencyProof": frozenset({422}),
    "getKeyLogCheckpoint": frozenset({404}),
    "getKeyLogConsistencyProof": frozenset({422}),
    "addAuditCosignature": frozenset({404, 409, 422}),
    "exportAuditTrail": frozenset({422}),
    "listAuditEvents": frozenset({422}),
    "getBreachScope": frozenset({404, 422}),
    "getBreachScopeSummary": frozenset({404, 422}),
    "grantConsent": frozenset({404, 409, 422}),
    "revokeConsent": frozenset({409, 422}),
    "openEmergencyAccess": frozenset({404, 409, 422}),
    "approveEmergencyAccess": frozenset({409}),
    "closeEmergencyAccess": frozenset({409}),
    "addEmergencyKeyWraps": frozenset({409, 422}),
    "setRetentionPolicy": frozenset({422}),
    "placeLegalHold": frozenset({404, 409, 422}),
    "releaseLegalHold": frozenset({409}),
    "fileErasureRequest": frozenset({409}),
    "decideErasureRequest": frozenset({409, 422}),
    "listErasureRequests": frozenset({422}),
    "createConversation": frozenset({200, 404, 409, 422}),
    "addConversationMember": frozenset({404, 409, 422}),
    "removeConversationMember": frozenset({409, 422}),
    "joinConversation": frozenset({409}),
    "sendMessage": frozenset({200, 409, 422}),
    "listMessages": frozenset({422}),
    "markConversationRead": frozenset({422}),
    "createNote": frozenset({200, 409, 422}),
    "amendNote": frozenset({200, 409, 422}),
    "shareNote": frozenset({409, 422}),
    "publishCustodianKey": frozenset({201, 409, 422}),
    "getCustodianKey": frozenset({404}),
    "uploadAttachment": frozenset({200, 409, 413, 415, 422}),
    "exportMyData": frozenset({429}),
}

# Request bodies a handler reads itself (so Litestar does not see them).
_RAW_BODIES: Mapping[str, RequestBody] = {
    "uploadAttachment": RequestBody(
        required=True,
        description="The encrypted attachment (crypto/SPEC.md section 6), streamed.",
        content={
            "application/octet-stream": OpenAPIMediaType(
                schema=Schema(type=OpenAPIType.STRING, content_media_type="application/octet-stream")
            )
        },
    ),
}
# Answers whose media type depends on a parameter (the audit export's ``format``).
_SUCCESS_MEDIA_TYPES: Mapping[str, Mapping[str, Schema]] = {
    "exportAuditTrail": {
        "application/jsonl": Schema(type=OpenAPIType.STRING, description="JSON Lines, verifiable offline"),
        "text/csv": Schema(type=OpenAPIType.STRING),
        "application/fhir+json": Schema(
            type=OpenAPIType.OBJECT, description="A FHIR R4 Bundle of AuditEvent"
        ),
    },
}
# Every 429 (rate limit, login throttle, busy hashing or export) says when to retry.
_RETRY_AFTER = OpenAPIHeader(
    schema=Schema(type=OpenAPIType.INTEGER, minimum=1),
    description="Seconds to wait before retrying.",
    required=True,
)
_BOUNDS = (("ge", "minimum"), ("le", "maximum"), ("gt", "exclusive_minimum"), ("lt", "exclusive_maximum"))

# Keyword arguments Litestar fills from the connection itself, not from the request's inputs.
_RESERVED = frozenset({"request", "socket", "state", "scope", "headers", "cookies", "query", "body"})


def _has_input(handler: HTTPRouteHandler) -> bool:
    dependencies = handler.resolve_dependencies()
    return any(
        name not in dependencies and name not in _RESERVED for name in handler.parsed_fn_signature.parameters
    )


def _has_body(handler: HTTPRouteHandler) -> bool:
    return "data" in handler.parsed_fn_signature.parameters or handler.operation_id == "uploadAttachment"


def problem_statuses(handler: HTTPRouteHandler, path_has_params: bool) -> frozenset[int]:
    """The error statuses (and second success codes) ``handler`` documents."""
    statuses = {503}
    if handler.opt.get("rate_limit", True) is not False:
        statuses.add(429)
    if _has_input(handler):
        statuses.add(400)
    if _has_body(handler):
        statuses |= {408, 413}
    if not handler.opt.get("public"):
        statuses |= {401, 403}
    if path_has_params:
        statuses.add(404)  # an unknown object (for a public route: an unknown receipt)
    operation_id = handler.operation_id if isinstance(handler.operation_id, str) else ""
    statuses |= EXTRA_STATUSES.get(operation_id, frozenset())
    return frozenset(statuses)


def _success_container(handler: HTTPRouteHandler) -> Any:
    annotation = handler.parsed_fn_signature.return_type
    if annotation.is_subclass_of(Response) and annotation.inner_types:
        return annotation.inner_types[0].annotation
    return annotation.annotation


def _declared_bounds(handler: HTTPRouteHandler) -> dict[str, dict[str, int | float]]:
    """Numeric bounds each parameter declares, by its name on the wire."""
    found: dict[str, dict[str, int | float]] = {}
    for name, field in handler.parsed_fn_signature.parameters.items():
        kwarg = field.kwarg_definition
        if not isinstance(kwarg, KwargDefinition):
            continue
        bounds = {key: value for attr, key in _BOUNDS if (value := getattr(kwarg, attr, None)) is not None}
        if bounds:
            found[getattr(kwarg, "query", None) or name] = bounds
    return found


def _is_null(schema: object) -> bool:
    return isinstance(schema, Schema) and schema.type == OpenAPIType.NULL


def _operation_class(handler: HTTPRouteHandler) -> type[Operation]:
    """An :class:`Operation` that corrects, for this handler, what Litestar's generator leaves out."""
    bounds = _declared_bounds(handler)
    operation_id = handler.operation_id if isinstance(handler.operation_id, str) else ""

    @dataclasses.dataclass
    class DocumentedOperation(Operation):
        def __post_init__(self) -> None:
            for parameter in self.parameters or ():
                schema = getattr(parameter, "schema", None)
                if (
                    getattr(parameter, "param_in", None) == "header"
                    and isinstance(schema, Schema)
                    and schema.one_of
                ):
                    # An optional header is one that is left out: it is never `null` (query
                    # parameters are different: Litestar reads `?x=null` as absent).
                    kept = [s for s in schema.one_of if not _is_null(s)]
                    if len(kept) == 1 and isinstance(kept[0], Schema):
                        schema.one_of = None
                        for field in dataclasses.fields(kept[0]):
                            if getattr(schema, field.name) is None:
                                setattr(schema, field.name, getattr(kept[0], field.name))
                declared = bounds.get(getattr(parameter, "name", ""))
                if isinstance(schema, Schema) and declared:
                    for key, value in declared.items():
                        setattr(schema, key, int(value) if float(value).is_integer() else value)
            too_many = (self.responses or {}).get("429")
            if isinstance(too_many, OpenAPIResponse):
                too_many.headers = {"Retry-After": _RETRY_AFTER}
            if operation_id in _RAW_BODIES:
                self.request_body = _RAW_BODIES[operation_id]
            media_types = _SUCCESS_MEDIA_TYPES.get(operation_id)
            success = (self.responses or {}).get(str(handler.status_code))
            if media_types and isinstance(success, OpenAPIResponse):
                success.content = {
                    media_type: OpenAPIMediaType(schema=schema) for media_type, schema in media_types.items()
                }

    return DocumentedOperation


def document_problems(app: Litestar) -> None:
    """Declare every route's problem answers (public routes: empty security) before the schema is built."""
    for route in app.routes:
        path_has_params = bool(getattr(route, "path_parameters", None))
        for handler in getattr(route, "route_handlers", []):
            if not isinstance(handler, HTTPRouteHandler) or route.path.startswith("/schema"):
                continue
            responses: dict[int, ResponseSpec] = {}
            for status in sorted(problem_statuses(handler, path_has_params)):
                if status < 400:
                    responses[status] = ResponseSpec(
                        data_container=_success_container(handler),
                        generate_examples=False,
                        description="Already done: the first answer, repeated (idempotent)"
                        if status == 200
                        else "Created",
                    )
                    continue
                responses[status] = ResponseSpec(
                    data_container=Problem,
                    generate_examples=False,
                    description=_DESCRIPTIONS[status],
                    media_type=PROBLEM_MEDIA_TYPE,
                )
            handler.responses = {**responses, **(handler.responses or {})}
            handler.operation_class = _operation_class(handler)
            if handler.opt.get("public"):
                handler.security = [{}]

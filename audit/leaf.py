"""The canonical leaf bytes of an audit event (format ``v`` = 1).

A leaf is the compact JSON encoding (no whitespace, fields in declaration order,
every field present, ``null`` when absent) of :class:`AuditEvent`, produced by
msgspec. Those exact bytes are hashed, stored and exported; readers keep them and
never re-serialise. :func:`decode_leaf` fails closed: it refuses leaves over
:data:`MAX_LEAF_BYTES`, unknown versions, unknown or missing fields, values outside
their patterns, and any byte sequence that is not the canonical encoding of what
it decodes to (re-encoding must give the same bytes).

The fields follow FHIR AuditEvent and carry no personal data: pseudonymous UUIDs,
codes, and a keyed digest of the network address (computed by the backend; the
key never reaches this package).
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Annotated, Final, Literal

import msgspec

from audit.errors import AuditFormatError

__all__ = [
    "LEAF_VERSION",
    "MAX_LEAF_BYTES",
    "PURPOSE_OF_USE_CODES",
    "AuditAgent",
    "AuditEntity",
    "AuditEvent",
    "decode_leaf",
    "encode_leaf",
    "format_recorded",
]

LEAF_VERSION: Final = 1
MAX_LEAF_BYTES: Final = 4096

#: HL7 v3 PurposeOfUse codes accepted in ``purpose`` (a fixed list: unknown codes fail).
PURPOSE_OF_USE_CODES: Final = frozenset(
    {
        "TREAT",  # treatment
        "ETREAT",  # emergency treatment (break-glass)
        "HOPERAT",  # healthcare operations
        "HSYSADMIN",  # system administration
        "HLEGAL",  # legal
        "HRESCH",  # healthcare research
        "HPAYMT",  # payment
        "PATRQT",  # patient (client) requested
        "HQUALIMP",  # quality improvement
        "COC",  # coordination of care
    }
)

_RECORDED_RE: Final = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z")
_Code = Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_.\-]{0,63}$")]
_Role = Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_\-]{0,31}$")]
_ResourceType = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z][A-Za-z0-9_.\-]{0,63}$")]
_Token = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}$")]
_Digest = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{64}$")]
_EntityId = Annotated[
    str,
    msgspec.Meta(pattern=r"^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{64})$"),
]
_Purpose = Literal[
    "TREAT",
    "ETREAT",
    "HOPERAT",
    "HSYSADMIN",
    "HLEGAL",
    "HRESCH",
    "HPAYMT",
    "PATRQT",
    "HQUALIMP",
    "COC",
]
_Recorded = Annotated[str, msgspec.Meta(min_length=27, max_length=27)]


class AuditAgent(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Who acted (FHIR AuditEvent.agent).

    Attributes:
        account: Pseudonymous account id, or ``None`` for an unauthenticated attempt.
        role: Role code, e.g. ``clinician``, ``admin``, ``client``, ``system``.
        org: Organization id.
        network: Keyed digest (64 lowercase hex) of the network address, never the address.
    """

    account: uuid.UUID | None
    role: _Role
    org: uuid.UUID | None
    network: _Digest | None


class AuditEntity(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What was acted on (FHIR AuditEvent.entity): a resource type and a UUID or digest."""

    type: _ResourceType
    id: _EntityId


class AuditEvent(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag_field="v", tag=1):
    """One audit event; its canonical encoding is the Merkle leaf.

    Attributes:
        id: Event id.
        recorded: RFC 3339 UTC time with microseconds, ``YYYY-MM-DDTHH:MM:SS.ffffffZ``.
        action: FHIR action code: C, R, U, D or E.
        type: Event type code, e.g. ``login``, ``message.read``.
        subtype: Finer code, e.g. ``password``, ``totp``.
        outcome: FHIR outcome: 0 success, 4 minor failure, 8 serious failure, 12 major.
        agent: Who acted.
        source: Id of the server instance that recorded the event.
        entity: What was acted on.
        subject: Pseudonymous id of the client concerned.
        purpose: HL7 v3 PurposeOfUse code.
        request: Request id.
        consent: Consent record id the access relied on.
    """

    id: uuid.UUID
    recorded: _Recorded
    action: Literal["C", "R", "U", "D", "E"]
    type: _Code
    subtype: _Code | None
    outcome: Literal[0, 4, 8, 12]
    agent: AuditAgent
    source: _Token
    entity: AuditEntity | None
    subject: uuid.UUID | None
    purpose: _Purpose | None
    request: _Token | None
    consent: uuid.UUID | None

    def __post_init__(self) -> None:
        """Check the recorded time's exact form."""
        if not _RECORDED_RE.fullmatch(self.recorded):
            raise ValueError("recorded must be YYYY-MM-DDTHH:MM:SS.ffffffZ")
        datetime.strptime(self.recorded, "%Y-%m-%dT%H:%M:%S.%fZ")  # noqa: DTZ007 - the Z suffix is matched literally; the value is UTC by format

    @property
    def recorded_at(self) -> datetime:
        """The recorded time as an aware UTC datetime."""
        return datetime.strptime(self.recorded, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def format_recorded(moment: datetime) -> str:
    """Format an aware datetime as the leaf's recorded time (UTC, microseconds, ``Z``).

    Raises:
        AuditFormatError: The datetime is naive.
    """
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise AuditFormatError("recorded time must be timezone-aware")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


_encoder: Final = msgspec.json.Encoder()
_decoder: Final = msgspec.json.Decoder(AuditEvent)


def encode_leaf(event: AuditEvent) -> bytes:
    """Return the canonical leaf bytes of ``event``.

    Raises:
        AuditFormatError: The encoding exceeds :data:`MAX_LEAF_BYTES` or a field is invalid.
    """
    try:
        checked = msgspec.convert(msgspec.to_builtins(event), AuditEvent)
    except (msgspec.ValidationError, ValueError) as exc:
        raise AuditFormatError("audit event has an invalid field") from exc
    raw = _encoder.encode(checked)
    if len(raw) > MAX_LEAF_BYTES:
        raise AuditFormatError("audit leaf exceeds the size limit")
    return raw


def decode_leaf(raw: bytes) -> AuditEvent:
    """Decode canonical leaf bytes, failing closed on anything else.

    Raises:
        AuditFormatError: Too large, unknown version, unknown or missing field, invalid
            value, or not the canonical encoding.
    """
    if len(raw) > MAX_LEAF_BYTES:
        raise AuditFormatError("audit leaf exceeds the size limit")
    try:
        event = _decoder.decode(raw)
    except (msgspec.DecodeError, ValueError) as exc:
        raise AuditFormatError("audit leaf is malformed or of an unknown version") from exc
    if _encoder.encode(event) != raw:
        raise AuditFormatError("audit leaf is not in canonical form")
    return event

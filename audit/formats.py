"""Human- and FHIR-facing export formats: CSV, FHIR R4 AuditEvent NDJSON and Bundle.

These are views for people and for FHIR tooling, not proofs: only the JSON Lines
export (:mod:`audit.export`) is verifiable. Each writer streams: it takes
:class:`~audit.export.ExportRecord` s (as read from a database cursor) and yields
text lines. Pruned leaves appear in CSV as a row with ``pruned`` set and empty
fields, and are left out of FHIR output (there is nothing to show).

The FHIR mapping follows IHE Basic Audit Log Patterns (BALP) where it applies:
``type`` / ``subtype`` codings (DICOM 110114 User Authentication with 110122 Login
or 110123 Logout for sign-in events; the FHIR restful-interaction code for C/R/U/D),
``agent.who.identifier`` for the account, ``entity.what.identifier`` for the
resource, the client as a Patient-role entity, the request id as a BALP
``XrequestId`` entity, and ``purposeOfEvent`` from HL7 v3 PurposeOfUse. Every
value is a pseudonymous id or a code; the network address is only a keyed digest,
carried in an extension.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from typing import Final, Literal

import msgspec

from audit.export import ExportRecord
from audit.leaf import AuditEvent, decode_leaf

__all__ = [
    "CSV_COLUMNS",
    "fhir_audit_event",
    "write_csv",
    "write_fhir_bundle",
    "write_fhir_ndjson",
]

CSV_COLUMNS: Final = (
    "index",
    "leaf_hash",
    "pruned",
    "v",
    "id",
    "recorded",
    "action",
    "type",
    "subtype",
    "outcome",
    "agent_account",
    "agent_role",
    "agent_org",
    "agent_network_digest",
    "source",
    "entity_type",
    "entity_id",
    "subject",
    "purpose",
    "request",
    "consent",
)

_NS: Final = "urn:confide:fhir"
_DCM: Final = "http://dicom.nema.org/resources/ontology/DCM"
_RESTFUL: Final = "http://hl7.org/fhir/restful-interaction"
_PURPOSE: Final = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
_ENTITY_TYPE: Final = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
_OBJECT_ROLE: Final = "http://terminology.hl7.org/CodeSystem/object-role"
_SOURCE_TYPE: Final = "http://terminology.hl7.org/CodeSystem/security-source-type"
_BALP_ENTITY: Final = "https://profiles.ihe.net/ITI/BALP/CodeSystem/BasicAuditEntityType"
_RESTFUL_CODES: Final = {"C": "create", "R": "read", "U": "update", "D": "delete"}
_LOGIN_SUBTYPES: Final = {"login": ("110122", "Login"), "logout": ("110123", "Logout")}

_Json = dict[str, object]
_encoder: Final = msgspec.json.Encoder()


def _text(value: object) -> str:
    return "" if value is None else str(value)


def _csv_line(values: Iterable[object]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow([_text(v) for v in values])
    return buffer.getvalue()


def write_csv(records: Iterable[ExportRecord]) -> Iterator[str]:
    """Yield a header row then one row per record (fields decoded from the leaf)."""
    yield _csv_line(CSV_COLUMNS)
    for record in records:
        head = (record.index, record.leaf_hash.hex())
        if record.leaf is None:
            yield _csv_line((*head, "true", *([""] * (len(CSV_COLUMNS) - 3))))
            continue
        e = decode_leaf(record.leaf)
        yield _csv_line(
            (
                *head,
                "false",
                1,
                e.id,
                e.recorded,
                e.action,
                e.type,
                e.subtype,
                e.outcome,
                e.agent.account,
                e.agent.role,
                e.agent.org,
                e.agent.network,
                e.source,
                e.entity.type if e.entity else None,
                e.entity.id if e.entity else None,
                e.subject,
                e.purpose,
                e.request,
                e.consent,
            )
        )


def _coding(system: str, code: str, display: str | None = None) -> _Json:
    coding: _Json = {"system": system, "code": code}
    if display is not None:
        coding["display"] = display
    return coding


def _identifier(kind: str, value: object) -> _Json:
    return {"identifier": {"system": f"{_NS}:{kind}", "value": str(value)}}


def _agent(event: AuditEvent) -> _Json:
    agent: _Json = {
        "type": {"coding": [_coding(f"{_NS}:role", event.agent.role)]},
        "requestor": True,
    }
    if event.agent.account is not None:
        agent["who"] = _identifier("account", event.agent.account)
    extensions: list[_Json] = []
    if event.agent.org is not None:
        extensions.append(
            {
                "url": f"{_NS}:organization",
                "valueIdentifier": _identifier("org", event.agent.org)["identifier"],
            }
        )
    if event.agent.network is not None:
        extensions.append({"url": f"{_NS}:network-address-digest", "valueString": event.agent.network})
    if extensions:
        agent["extension"] = extensions
    return agent


def _entities(event: AuditEvent) -> list[_Json]:
    entities: list[_Json] = []
    if event.entity is not None:
        entities.append(
            {
                "what": _identifier(event.entity.type, event.entity.id),
                "type": _coding(_ENTITY_TYPE, "2", "System Object"),
            }
        )
    if event.subject is not None:
        entities.append(
            {
                "what": _identifier("client", event.subject),
                "type": _coding(_ENTITY_TYPE, "1", "Person"),
                "role": _coding(_OBJECT_ROLE, "1", "Patient"),
            }
        )
    if event.consent is not None:
        entities.append(
            {
                "what": _identifier("consent", event.consent),
                "type": _coding(_ENTITY_TYPE, "2", "System Object"),
            }
        )
    if event.request is not None:
        entities.append(
            {
                "what": _identifier("request", event.request),
                "type": _coding(_BALP_ENTITY, "XrequestId"),
            }
        )
    return entities


def fhir_audit_event(event: AuditEvent, *, index: int, leaf_hash: bytes) -> _Json:
    """Return a FHIR R4 AuditEvent resource (as JSON-ready dicts) for one event.

    ``meta.tag`` carries the leaf index and hash so a reader can look the event up
    in the verifiable export.
    """
    own_type = _coding(f"{_NS}:event-type", event.type)
    login = _LOGIN_SUBTYPES.get(event.type)
    subtypes: list[_Json] = []
    if login is None:
        event_type = own_type
    else:
        event_type = _coding(_DCM, "110114", "User Authentication")
        subtypes += [_coding(_DCM, *login), own_type]
    if event.action in _RESTFUL_CODES:
        subtypes.append(_coding(_RESTFUL, _RESTFUL_CODES[event.action]))
    if event.subtype is not None:
        subtypes.append(_coding(f"{_NS}:event-subtype", event.subtype))
    resource: _Json = {
        "resourceType": "AuditEvent",
        "id": str(event.id),
        "meta": {"tag": [_coding(f"{_NS}:leaf", f"{index}:{leaf_hash.hex()}")]},
        "type": event_type,
        "subtype": subtypes,
        "action": event.action,
        "recorded": event.recorded,
        "outcome": str(event.outcome),
        "agent": [_agent(event)],
        "source": {
            "observer": _identifier("instance", event.source),
            "type": [_coding(_SOURCE_TYPE, "4", "Application Server")],
        },
    }
    if event.purpose is not None:
        resource["purposeOfEvent"] = [{"coding": [_coding(_PURPOSE, event.purpose)]}]
    entities = _entities(event)
    if entities:
        resource["entity"] = entities
    return resource


def _resources(records: Iterable[ExportRecord]) -> Iterator[_Json]:
    for record in records:
        if record.leaf is not None:
            event = decode_leaf(record.leaf)
            yield fhir_audit_event(event, index=record.index, leaf_hash=record.leaf_hash)


def write_fhir_ndjson(records: Iterable[ExportRecord]) -> Iterator[str]:
    """Yield one FHIR R4 AuditEvent per line (FHIR Bulk Data NDJSON)."""
    for resource in _resources(records):
        yield _encoder.encode(resource).decode() + "\n"


def write_fhir_bundle(
    records: Iterable[ExportRecord],
    *,
    bundle_type: Literal["collection", "searchset"] = "collection",
) -> Iterator[str]:
    """Yield the pieces of one FHIR R4 Bundle of AuditEvents, streamed entry by entry."""
    yield f'{{"resourceType":"Bundle","type":"{bundle_type}","entry":['
    separator = ""
    for resource in _resources(records):
        entry = {"fullUrl": f"urn:uuid:{resource['id']}", "resource": resource}
        if bundle_type == "searchset":
            entry["search"] = {"mode": "match"}
        yield separator + _encoder.encode(entry).decode()
        separator = ","
    yield "]}\n"

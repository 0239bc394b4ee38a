"""CSV and FHIR R4 AuditEvent views of an export."""

from __future__ import annotations

import csv
import io
import random

import msgspec

from audit.export import ExportRecord
from audit.formats import CSV_COLUMNS, fhir_audit_event, write_csv, write_fhir_bundle, write_fhir_ndjson
from audit.leaf import decode_leaf, encode_leaf
from audit.merkle import leaf_hash
from tests.unit.audit.conftest import Log, make_event


def _records(log: Log) -> list[ExportRecord]:
    return log.records()


def test_csv_has_one_row_per_record_with_decoded_fields(small_log: Log) -> None:
    small_log.prune(2)
    rows = list(csv.reader(io.StringIO("".join(write_csv(_records(small_log))))))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert len(rows) == 14
    first = dict(zip(CSV_COLUMNS, rows[1], strict=True))
    event = decode_leaf(small_log.leaves[0] or b"")
    assert first["id"] == str(event.id)
    assert first["leaf_hash"] == small_log.hashes[0].hex()
    assert first["pruned"] == "false"
    pruned = dict(zip(CSV_COLUMNS, rows[3], strict=True))
    assert pruned["pruned"] == "true"
    assert pruned["id"] == ""
    with_entity = dict(zip(CSV_COLUMNS, rows[2], strict=True))
    assert with_entity["entity_type"] == "Message"


def test_csv_cells_cannot_start_a_formula(small_log: Log) -> None:
    """Every decoded value starts with a letter or digit, so spreadsheets see no formula."""
    text = "".join(write_csv(_records(small_log)))
    for row in list(csv.reader(io.StringIO(text)))[1:]:
        assert all(not cell or cell[0] not in "=+-@" for cell in row)


def test_fhir_ndjson_is_one_audit_event_per_line(small_log: Log) -> None:
    small_log.prune(0)
    lines = list(write_fhir_ndjson(_records(small_log)))
    assert len(lines) == 12  # the pruned leaf has nothing to show
    resources = [msgspec.json.decode(line, type=dict[str, object]) for line in lines]
    assert {r["resourceType"] for r in resources} == {"AuditEvent"}
    assert resources[0]["id"] == str(decode_leaf(small_log.leaves[1] or b"").id)


def test_fhir_mapping_follows_balp() -> None:
    rnd = random.Random(5)
    login = make_event(rnd, 3, type="login", action="E", subtype="totp")
    resource = fhir_audit_event(login, index=7, leaf_hash=b"\x01" * 32)
    assert resource["type"] == {
        "system": "http://dicom.nema.org/resources/ontology/DCM",
        "code": "110114",
        "display": "User Authentication",
    }
    subtypes = resource["subtype"]
    assert isinstance(subtypes, list)
    assert subtypes[0]["code"] == "110122"
    assert resource["outcome"] == str(login.outcome)
    assert "entity" not in resource or isinstance(resource["entity"], list)
    read = make_event(rnd, 1, type="message.read", action="R", subtype=None)
    resource = fhir_audit_event(read, index=1, leaf_hash=b"\x02" * 32)
    assert resource["subtype"] == [{"system": "http://hl7.org/fhir/restful-interaction", "code": "read"}]
    assert resource["purposeOfEvent"] == [
        {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "TREAT"}]}
    ]
    entities = resource["entity"]
    assert isinstance(entities, list)
    systems = [e["what"]["identifier"]["system"] for e in entities]
    assert systems == [
        "urn:confide:fhir:Message",
        "urn:confide:fhir:client",
        "urn:confide:fhir:consent",
        "urn:confide:fhir:request",
    ]
    agent = resource["agent"]
    assert isinstance(agent, list)
    assert agent[0]["who"] == {
        "identifier": {"system": "urn:confide:fhir:account", "value": str(read.agent.account)}
    }
    assert [x["url"] for x in agent[0]["extension"]] == [
        "urn:confide:fhir:organization",
        "urn:confide:fhir:network-address-digest",
    ]


def test_fhir_minimal_event_has_no_optional_parts() -> None:
    event = make_event(random.Random(1), 0, agent=make_event(random.Random(2), 14).agent)
    assert event.agent.account is None
    resource = fhir_audit_event(event, index=0, leaf_hash=b"\x00" * 32)
    agent = resource["agent"]
    assert isinstance(agent, list)
    assert "who" not in agent[0]
    assert "extension" not in agent[0]
    assert "purposeOfEvent" not in resource
    assert "entity" not in resource


def test_fhir_bundles_stream_valid_json(small_log: Log) -> None:
    for bundle_type in ("collection", "searchset"):
        text = "".join(write_fhir_bundle(_records(small_log), bundle_type=bundle_type))
        bundle = msgspec.json.decode(text, type=dict[str, object])
        assert bundle["type"] == bundle_type
        entries = bundle["entry"]
        assert isinstance(entries, list)
        assert len(entries) == 13
        assert entries[0]["fullUrl"].startswith("urn:uuid:")
        assert ("search" in entries[0]) == (bundle_type == "searchset")
    empty = "".join(write_fhir_bundle([]))
    assert msgspec.json.decode(empty, type=dict[str, object])["entry"] == []


def test_single_record_round_trip() -> None:
    leaf = encode_leaf(make_event(random.Random(9), 2))
    record = ExportRecord(0, leaf_hash(leaf), leaf)
    assert len(list(write_fhir_ndjson([record]))) == 1

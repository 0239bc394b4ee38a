"""The export's format stays one thing: server records, the JSON Schema, the opener, the policy."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import typing
import uuid

import msgspec
import pytest

from backend.consent.receipts import receipt_signed_bytes as server_receipt_bytes
from backend.policy import Action, Actor, Resource, decide
from backend.subjects import repository, schemas
from crypto.public import export
from tests.conftest import ROOT

SCHEMA = json.loads((ROOT / "docs" / "export-schema.json").read_text(encoding="utf-8"))
_RECORDS: list[type[msgspec.Struct]] = [
    export.Manifest,
    export.Trailer,
    export.KeyBundleRecord,
    export.KeyBackupRecord,
    export.PeerKeyRecord,
    export.MessageRecord,
    export.NoteRecord,
    export.ConsentEventRecord,
    *(
        getattr(schemas, name)
        for name in schemas.__all__
        if name.endswith("Record")  # the nested OrganizationRef and MfaState are not lines
    ),
]


def _tag(record: type[msgspec.Struct]) -> str:
    tag = record.__struct_config__.tag
    assert isinstance(tag, str)
    return tag


def test_the_server_writes_every_section_in_the_documented_order() -> None:
    assert tuple(repository.SECTION_ORDER) == export.SECTIONS
    assert sorted(_tag(r) for r in _RECORDS) == sorted([*export.SECTIONS, "manifest", "trailer"])


@pytest.mark.parametrize("record", _RECORDS, ids=_tag)
def test_the_json_schema_names_exactly_the_fields_of_each_record(record: type[msgspec.Struct]) -> None:
    """docs/export-schema.json is written by hand: it must not drift from the Structs."""
    definition = SCHEMA["$defs"][f"record_{_tag(record)}"]
    assert set(definition["properties"]) == {"type", *record.__struct_fields__}
    assert set(definition["required"]) == {"type", *record.__struct_fields__}
    assert definition["additionalProperties"] is False
    assert {"$ref": f"#/$defs/record_{_tag(record)}"} in SCHEMA["oneOf"]


def test_receipts_are_signed_over_the_same_bytes_on_both_sides() -> None:
    """The opener (crypto) checks receipts the server (backend) signs: one encoding."""
    receipt = export.ConsentReceipt(
        version=1,
        consent_id=uuid.uuid4(),
        event_id=uuid.uuid4(),
        event="revoke",
        statement_sha256="ab" * 32,
        recorded_at=dt.datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=dt.UTC),
        server_key=bytes(32),
        signature=bytes(64),
    )
    assert export.receipt_signed_bytes(receipt) == server_receipt_bytes(
        consent_id=receipt.consent_id,
        event_id=receipt.event_id,
        event=receipt.event,
        statement_sha256=receipt.statement_sha256,
        recorded_at=receipt.recorded_at,
    )
    assert export.RECEIPT_DOMAIN.encode() in export.receipt_signed_bytes(receipt)


@pytest.mark.parametrize("role", ["client", "clinician", "compliance_officer", "admin"])
def test_every_account_may_export_only_itself(role: str) -> None:
    me, org = uuid.uuid4(), uuid.uuid4()
    actor = Actor(account_id=me, org_id=org, role=typing.cast(typing.Any, role))
    assert decide(actor, Action.EXPORT_OWN_DATA, Resource(org_id=org, owner_id=me)).allowed
    assert (
        decide(actor, Action.EXPORT_OWN_DATA, Resource(org_id=org, owner_id=uuid.uuid4())).reason
        == "not_found"
    )
    assert not decide(actor, Action.EXPORT_OWN_DATA, Resource(org_id=uuid.uuid4(), owner_id=me)).allowed


def test_the_server_never_loads_secret_key_code() -> None:
    """`confide export open` lives in the same console script; serving must not import it."""
    code = (
        "import sys, backend.app, backend.cli;"
        "backend.cli.build_parser();"
        "bad = ('crypto.client', 'crypto.hazmat', 'crypto.cli');"
        "print(','.join(m for m in sys.modules if m.startswith(bad)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert result.stdout.strip() == ""

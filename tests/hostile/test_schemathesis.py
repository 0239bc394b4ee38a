"""B-01: ``schemathesis run`` against the committed OpenAPI document, on the real server process.

Every operation is fuzzed as the role that may call it (so generated requests get past
authorization into validation and the services), in all four phases (examples, coverage,
fuzzing, stateful), with every check schemathesis has. The seed is fixed and the budget
bounded, so the run is repeatable and takes about a minute. A failure prints the
schemathesis report, with a curl command that reproduces each case.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree

import pytest

from tests.conftest import ROOT
from tests.e2e.conftest import RunningServer
from tests.hostile.access import fuzzing_role
from tests.hostile.world import World

pytestmark = pytest.mark.e2e

ST = str(Path(sys.executable).parent / "st")
SEED = 20_261_122
MAX_EXAMPLES = int(os.environ.get("CONFIDE_FUZZ_EXAMPLES", "20"))

# Operations left out, each for a reason:
SKIPPED = {
    # They end the session every other request of the run is authenticated with.
    "logout": "ends the fuzzing session (covered by tests/integration/test_auth_flow.py)",
    "logoutAll": "ends the fuzzing session (covered by tests/integration/test_auth_flow.py)",
}
# Listings whose cursor is an HMAC (backend/http/cursors.py): a well-formed cursor this
# server did not make is refused with 400 invalid-cursor on purpose (B-05), which no
# schema can express, so "a schema-valid request is accepted" does not hold for them.
HMAC_CURSOR_LISTINGS = {
    "listAuditEvents",
    "listMyDisclosures",
    "listErasureRequests",
    "listLegalHolds",
    "listRetentionRuns",
    "listNotes",
    "listMessages",
}
# Settings for single operations. The event stream never ends by itself: one event (the
# backlog's first, or nothing within a second) is its answer.
PER_OPERATION = {"streamEvents": ("request-timeout = 1", "max-stream-events = 1")}
# Checks left out: Litestar's automatic OPTIONS answer lists, in `Allow`, the methods of
# the controller that registered the path first (a path served by GET and POST handlers
# of different registrations can say `Allow: OPTIONS, POST`). Not security relevant; the
# methods themselves are checked by `unsupported_method`.
EXCLUDED_CHECKS = ("allow_header_conformance",)


def _lax_datetime_operations() -> set[str]:
    """Operations with a date-time query parameter.

    Litestar converts query parameters leniently: a number there is read as a Unix time
    (``until=0.5`` is 1970-01-01T00:00:00.5Z), which the document's ``format: date-time``
    does not say. A known leniency, not a hazard (the filter only narrows a listing the
    caller may read anyway), so "schema-violating input is refused" is not checked there.
    """
    document = json.loads((ROOT / "openapi" / "openapi.json").read_text(encoding="utf-8"))
    return {
        operation["operationId"]
        for operations in document["paths"].values()
        for operation in operations.values()
        if isinstance(operation, dict)
        and any(
            parameter.get("in") == "query" and "date-time" in json.dumps(parameter.get("schema", {}))
            for parameter in operation.get("parameters", [])
        )
    }


def _toml_string(value: str) -> str:
    return json.dumps(value)


def schemathesis_config(world: World) -> str:
    """``schemathesis.toml``: a bearer token per operation, every check, a fixed seed and budget."""
    tokens = {role: member.token for role, member in world.a.members.items()}
    org = world.a
    lines = [
        f"seed = {SEED}",
        "max-failures = 50",
        "request-timeout = 20",
        "workers = 1",  # Hypothesis' lambda descriptions are not thread-safe (flaky internal errors)
        "[generation]",
        f"max-examples = {MAX_EXAMPLES}",
        "[checks]",
        "enabled = true",
        *(f"{name}.enabled = false" for name in EXCLUDED_CHECKS),
        # Semantic refusals of well-formed input are documented answers: a signature that
        # does not verify, a key that is not acceptable (422), a state conflict (409).
        'positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "409", "422", "429"]',
        # Real objects of the first organization for the ids in paths, so generated bodies
        # reach the services behind the lookups (random ids are the matrix's business).
        "[parameters]",
        f'"path.conversation_id" = "{org.conversation_id}"',
        f'"path.client_id" = "{org.client.id}"',
        f'"path.note_id" = "{org.note_id}"',
        f'"path.consent_id" = "{org.consent_id}"',
        "[headers]",
        f"Authorization = {_toml_string('Bearer ' + tokens['clinician'])}",
    ]
    lax = _lax_datetime_operations()
    groups: dict[tuple[str, bool, bool, tuple[str, ...]], list[str]] = {}
    for operation_id, role in fuzzing_role().items():
        if operation_id not in SKIPPED:
            key = (
                role,
                operation_id in HMAC_CURSOR_LISTINGS,
                operation_id in lax,
                PER_OPERATION.get(operation_id, ()),
            )
            groups.setdefault(key, []).append(operation_id)
    for (role, hmac_cursor, lax_datetime, special), operation_ids in sorted(groups.items()):
        lines += [
            "[[operations]]",
            f"include-operation-id = {json.dumps(sorted(operation_ids))}",
            f"headers = {{ Authorization = {_toml_string('Bearer ' + tokens[role])} }}",
        ]
        if hmac_cursor:
            lines.append("checks.positive_data_acceptance.enabled = false")
        if lax_datetime:
            lines.append("checks.negative_data_rejection.enabled = false")
        lines.extend(special)
    lines += ["[[operations]]", f"include-operation-id = {json.dumps(sorted(SKIPPED))}", "enabled = false"]
    return "\n".join(lines) + "\n"


def _failures(junit: Path) -> str:
    """One line per failing case: the operation, the checks that failed and how to reproduce it."""
    if not junit.exists():
        return "(no report)"
    lines = []
    for case in ElementTree.parse(junit).iter("testcase"):  # noqa: S314 -- our own run's report
        for outcome in case:
            if outcome.tag in {"failure", "error"}:
                text = outcome.text or outcome.get("message") or ""
                codes = sorted(set(re.findall(r"- (ST\d+ [^\n]*)", text)))
                curl = re.search(r"curl [^\n]*", text)
                lines.append(f"{case.get('name')}: {codes} {curl.group(0)[:400] if curl else text[:400]}")
    return "\n".join(lines)


def test_schemathesis_finds_nothing(world: World, world_server: RunningServer, tmp_path: Path) -> None:
    """B-01: no 5xx; statuses, content types and bodies as documented; bad input refused; auth enforced."""
    config = tmp_path / "schemathesis.toml"
    config.write_text(schemathesis_config(world), encoding="utf-8")
    junit = tmp_path / "junit.xml"
    result = subprocess.run(
        [
            ST,
            "--config-file",
            str(config),
            "--no-color",
            "run",
            str(ROOT / "openapi" / "openapi.json"),
            "--url",
            world.base_url,
            "--phases",
            "examples,coverage,fuzzing,stateful",
            "--report",
            "junit",
            "--report-junit-path",
            str(junit),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=tmp_path,
        env={**os.environ, "SCHEMATHESIS_HOOKS": ""},
    )
    (tmp_path / "schemathesis.log").write_text(result.stdout + result.stderr, encoding="utf-8")
    assert result.returncode == 0, _failures(junit) + "\n\n" + result.stdout[-6_000:] + result.stderr[-3_000:]
    log = world_server.log_path.read_text(encoding="utf-8", errors="replace")
    assert "unhandled_exception" not in log, log[-5_000:]

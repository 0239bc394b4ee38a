"""D-08 and D-05: ``docs/ropa.yaml`` (GDPR Art. 30) says what the code and the schema do.

Set equality, both ways, between the record of processing activities and:

- the retention policy categories (``CATEGORIES``, and the defaults migration 0010 stores,
  periods included) and the fixed periods in code and settings;
- the consent scopes the policy function knows, the purposes of use and the audit event
  types the code writes (read from ``backend/``'s syntax tree, so a new one fails here);
- every column of every table in the migrated schema (``information_schema``): each is
  in the inventory with a category, a justification and a retention class, or listed as
  holding no personal data; raw network addresses are kept 30 days at most.

A failure names what to add to (or remove from) ``docs/ropa.yaml``.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import yaml

from backend.audit_trail.pruning import ADDRESS_RETENTION
from backend.policy.decide import SCOPE_OF
from backend.retention.schemas import CATEGORIES
from backend.retention.sweeps import PUSH_EVENT_RETENTION
from tests.conftest import ROOT, make_settings

ROPA_PATH = ROOT / "docs" / "ropa.yaml"
METADATA = {"who", "when", "size", "network_address", "user_agent"}


@pytest.fixture(scope="module")
def ropa() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(ROPA_PATH.read_text(encoding="utf-8"))
    return loaded


def _strings(node: ast.expr, where: str) -> set[str]:
    """The string values ``node`` can take: literals, both arms of ``a if c else b``, f-string templates."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value}
    if isinstance(node, ast.IfExp):
        return _strings(node.body, where) | _strings(node.orelse, where)
    if isinstance(node, ast.JoinedStr):
        parts = [
            p.value if isinstance(p, ast.Constant) else "{" + ast.unparse(p.value) + "}"  # type: ignore[attr-defined]
            for p in node.values
        ]
        return {"".join(str(p) for p in parts)}
    raise AssertionError(f"{where}: cannot read {ast.unparse(node)!r}: pass a literal (or teach this test)")


@functools.cache
def _backend_trees() -> dict[Path, ast.Module]:
    """backend/'s modules, parsed once per test session."""
    return {
        path: ast.parse(path.read_text(encoding="utf-8")) for path in sorted((ROOT / "backend").rglob("*.py"))
    }


def _takes(tree: ast.Module, name: str) -> dict[str, set[int]]:
    """Functions (and classes with fields) of one module taking ``name``: their names and its positions."""
    takes: dict[str, set[int]] = {}
    for cls in ast.walk(tree):
        if isinstance(cls, ast.ClassDef):
            fields = [
                s.target.id
                for s in cls.body
                if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)
            ]
            if name in fields:
                takes[cls.name] = {fields.index(name)}
    for fn in ast.walk(tree):
        if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            names = [a.arg for a in fn.args.posonlyargs + fn.args.args]
            names = names[1:] if names[:1] == ["self"] else names
            if name in names:
                takes.setdefault(fn.name, set()).add(names.index(name))
            elif name in [a.arg for a in fn.args.kwonlyargs]:
                takes.setdefault(fn.name, set())
    return takes


def _passed_values(
    fn: ast.FunctionDef | ast.AsyncFunctionDef, name: str, takes: dict[str, set[int]]
) -> list[ast.expr]:
    """What ``fn`` assigns to ``name`` or passes as it, except what it got from its own caller.

    From its caller means its own parameter ``name``, or the field ``name`` of one of its
    parameters (read where that object is made).
    """
    own = {a.arg for a in fn.args.posonlyargs + fn.args.args + fn.args.kwonlyargs}
    values: list[ast.expr] = []
    for node in ast.walk(fn):
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == name for t in node.targets
        ):
            values.append(node.value)
            own.add(name)
    for node in ast.walk(fn):
        if isinstance(node, ast.Call):
            func = node.func
            callee = (
                func.id
                if isinstance(func, ast.Name)
                else func.attr
                if isinstance(func, ast.Attribute)
                else ""
            )
            values += [k.value for k in node.keywords if k.arg == name]
            values += [node.args[i] for i in takes.get(callee, set()) if i < len(node.args)]
    return [
        v
        for v in values
        if not (isinstance(v, ast.Name) and v.id in own)
        and not (
            isinstance(v, ast.Attribute)
            and v.attr == name
            and isinstance(v.value, ast.Name)
            and v.value.id in own
        )
        and not (isinstance(v, ast.Constant) and v.value is None)
    ]


def values_in_code(name: str) -> set[str]:
    """Every value backend/ passes as the argument ``name`` (keyword, positional or assigned).

    Calls to any function with a parameter ``name`` count (the module's own function first,
    as several modules have their own ``_event``); a name passed through from the caller's
    own parameter, or assigned to ``name`` in the same function, is read where it is set.
    """
    trees = _backend_trees()
    local = {path: _takes(tree, name) for path, tree in trees.items()}
    shared: dict[str, set[int]] = {}
    for takes in local.values():
        for function, positions in takes.items():
            shared.setdefault(function, set()).update(positions)
    found: set[str] = set()
    for path, tree in trees.items():
        takes = {**shared, **local[path]}
        for fn in ast.walk(tree):
            if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                for value in _passed_values(fn, name, takes):
                    found |= _strings(value, f"{path.relative_to(ROOT)}:{value.lineno}")
    return found


def _same(in_code: set[str], in_ropa: set[str], what: str) -> None:
    missing, stale = sorted(in_code - in_ropa), sorted(in_ropa - in_code)
    assert not missing, f"{what} in the code but not in docs/ropa.yaml: {missing}"
    assert not stale, f"{what} in docs/ropa.yaml but not in the code: {stale}"


def test_the_reader_of_the_code_finds_what_it_looks_for() -> None:
    """The syntax-tree reader sees literals, both arms, templates, helpers and pass-throughs."""
    types = values_in_code("event_type")
    assert {"auth.login", "note.amend", "note.create", "key.rotate", "audit.export"} <= types
    assert {"retention.{category}", "erasure.{kind}"} <= types
    fields = ast.parse("class Attempt(NamedTuple):\n    refusals: object\n    event_type: str\n")
    assert _takes(fields, "event_type") == {"Attempt": {1}}, "a class's field, passed by position"
    with pytest.raises(AssertionError, match="cannot read"):
        _strings(ast.parse("EVENTS[k]", mode="eval").body, "x.py:1")


def test_purposes_scopes_and_event_types_match_the_code(ropa: dict[str, Any]) -> None:
    """D-08: consent scopes, purposes of use and audit event types: set equality with the code."""
    purposes = set(ropa["purposes"])
    _same(set(SCOPE_OF.values()), set(ropa["consent_scopes"]), "consent scopes")
    _same(values_in_code("purpose_of_use"), set(ropa["purposes_of_use"]), "purposes of use")
    named = {code for p in ropa["purposes"].values() for code in p["purpose_of_use"]}
    _same(set(ropa["purposes_of_use"]), named, "purposes of use named by a processing activity")
    _same(values_in_code("event_type"), set(ropa["audit_event_types"]), "audit event types")
    used = set(ropa["audit_event_types"].values()) | {t["purpose"] for t in ropa["tables"].values()}
    _same(purposes, used, "processing activities (each serves an event type or a table)")
    for purpose in ropa["purposes"].values():
        assert purpose["legal_basis"].strip(), "every activity states its legal basis"
        assert set(purpose["data_subjects"]) <= set(ropa["data_subjects"])
        assert set(purpose["recipients"]) <= set(ropa["recipients"])


async def test_retention_classes_match_the_policies_and_the_code(
    ropa: dict[str, Any], db: asyncpg.Connection
) -> None:
    """D-08: retention classes: the policy categories and defaults, and the fixed periods, are the same."""
    classes: dict[str, dict[str, Any]] = ropa["retention_classes"]
    policy = {name: c for name, c in classes.items() if c["kind"] == "policy"}
    _same(set(CATEGORIES), set(policy), "retention policy categories")
    defaults = await db.fetch(
        "SELECT category, period_days, counts_from, action FROM retention_policies WHERE org_id IS NULL"
    )
    stored = {
        r["category"]: {
            "period_days": r["period_days"],
            "counts_from": r["counts_from"],
            "action": r["action"],
        }
        for r in defaults
    }
    described = {
        name: {k: c[k] for k in ("period_days", "counts_from", "action")} for name, c in policy.items()
    }
    assert described == stored, "docs/ropa.yaml's policy periods differ from migration 0010's defaults"
    assert classes["audit_addresses"]["period_days"] == ADDRESS_RETENTION.days
    assert classes["push_events"]["period_days"] == PUSH_EVENT_RETENTION.days
    assert classes["login_throttle"]["period_seconds"] == make_settings().throttle_window_s
    kinds = {c["kind"] for c in classes.values()}
    assert kinds <= {"policy", "fixed", "lifecycle", "no_period"}
    used = {t["retention"] for t in ropa["tables"].values()}
    used |= {
        c["retention"] for t in ropa["tables"].values() for c in t["personal"].values() if isinstance(c, dict)
    }
    _same(set(classes), used, "retention classes (each used by a table)")


async def test_every_column_is_inventoried_or_listed_as_not_personal(
    ropa: dict[str, Any], db: asyncpg.Connection
) -> None:
    """D-05: every column of the migrated schema is justified with a category and a retention class."""
    rows = await db.fetch(
        """
        SELECT c.table_name, c.column_name, c.data_type
        FROM information_schema.columns c
        JOIN information_schema.tables t USING (table_schema, table_name)
        WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE'
        """
    )
    schema = {(r["table_name"], r["column_name"]): r["data_type"] for r in rows}
    listed: dict[tuple[str, str], str | None] = {}
    categories = set(ropa["categories"])
    for table, entry in ropa["tables"].items():
        assert entry["retention"] in ropa["retention_classes"], f"{table}: unknown retention class"
        for column, described in entry["personal"].items():
            text = described["why"] if isinstance(described, dict) else described
            category, _, why = text.partition(": ")
            assert category in categories, f"{table}.{column}: unknown category {category!r}"
            assert len(why) >= 8, f"{table}.{column}: say why it is kept"
            assert (table, column) not in listed, f"{table}.{column} is listed twice"
            listed[(table, column)] = category
        for column in entry["non_personal"]:
            assert (table, column) not in listed, f"{table}.{column} is listed twice"
            listed[(table, column)] = None
    missing = sorted(f"{t}.{c}" for t, c in schema.keys() - listed.keys())
    stale = sorted(f"{t}.{c}" for t, c in listed.keys() - schema.keys())
    assert not missing, (
        f"columns not in docs/ropa.yaml (inventory them, or list them as non_personal): {missing}"
    )
    assert not stale, f"docs/ropa.yaml lists columns the schema does not have: {stale}"
    for (table, column), data_type in schema.items():
        if data_type == "inet":  # a raw address: metadata, kept 30 days at most
            assert listed[(table, column)] == "network_address", f"{table}.{column}"
            period = ropa["retention_classes"][ropa["tables"][table]["retention"]]
            assert period["kind"] == "fixed", f"{table}.{column} has no fixed period"
            assert period["period_days"] <= 30, f"{table}.{column} outlives 30 days"
    assert "user_agent" not in set(listed.values()), "a user agent is stored: give it a short retention class"
    assert METADATA - {"user_agent"} <= set(listed.values())

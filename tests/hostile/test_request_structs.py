"""B-02: every request body Struct, at any depth, refuses unknown fields; the document says so."""

from __future__ import annotations

import json

import msgspec
from litestar.handlers import HTTPRouteHandler

from backend.app import create_app
from backend.openapi_doc import render_openapi
from tests.conftest import make_settings


def _struct_types(annotation: object) -> list[msgspec.inspect.StructType]:
    """Every Struct reachable from ``annotation`` (fields, lists, unions, tagged unions)."""
    found: dict[type, msgspec.inspect.StructType] = {}

    def walk(info: msgspec.inspect.Type) -> None:
        if isinstance(info, msgspec.inspect.StructType):
            if info.cls in found:
                return
            found[info.cls] = info
            for field in info.fields:
                walk(field.type)
        elif isinstance(info, msgspec.inspect.UnionType):
            for item in info.types:
                walk(item)
        elif isinstance(
            info,
            msgspec.inspect.ListType
            | msgspec.inspect.SetType
            | msgspec.inspect.FrozenSetType
            | msgspec.inspect.VarTupleType,
        ):
            walk(info.item_type)
        elif isinstance(info, msgspec.inspect.TupleType):
            for item in info.item_types:
                walk(item)
        elif isinstance(info, msgspec.inspect.DictType):
            walk(info.value_type)

    walk(msgspec.inspect.type_info(annotation))
    return list(found.values())


def _request_bodies() -> dict[str, object]:
    app = create_app(make_settings(), database_url="postgresql://unused")
    bodies: dict[str, object] = {}
    for route in app.routes:
        for handler in getattr(route, "route_handlers", []):
            if isinstance(handler, HTTPRouteHandler) and "data" in handler.parsed_fn_signature.parameters:
                bodies[str(handler.operation_id)] = handler.parsed_fn_signature.parameters["data"].annotation
    return bodies


def test_every_request_struct_forbids_unknown_fields() -> None:
    """B-02 (A-03 too): an extra key (owner_id, org_id, role...) is a 400, never silently ignored."""
    bodies = _request_bodies()
    assert len(bodies) >= 25, "the walk finds the request bodies"
    lenient = {
        f"{operation_id}: {info.cls.__module__}.{info.cls.__qualname__}"
        for operation_id, annotation in bodies.items()
        for info in _struct_types(annotation)
        if not info.forbid_unknown_fields
    }
    assert not lenient, f"request Structs that accept unknown fields: {sorted(lenient)}"


def test_the_document_declares_it() -> None:
    """The OpenAPI document says ``additionalProperties: false`` for every request body schema."""
    document = json.loads(render_openapi())
    schemas = document["components"]["schemas"]
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            if body is None:
                continue
            name = body["schema"]["$ref"].rsplit("/", 1)[1]
            assert schemas[name].get("additionalProperties") is False, f"{method.upper()} {path}: {name}"

"""msgspec Structs in the OpenAPI document as they behave on the wire.

Litestar's own Struct schemas leave out two facts clients (and fuzzers) need:

- a Struct declared ``forbid_unknown_fields=True`` refuses extra keys (400), and a
  Struct the server encodes has exactly its fields, so every Struct schema says
  ``additionalProperties: false`` (a response with a field the document does not list
  fails the fuzzer's schema check: B-07, response minimisation);
- msgspec writes ``bytes`` as base64 text, so a bytes field is a string with
  ``contentEncoding: base64`` whose length bounds are those of the base64 text, not of
  the raw bytes (Litestar documents them as UTF-8 text with the byte counts).
"""

from __future__ import annotations

import math
import types
import typing
from typing import Annotated, Any

import msgspec
from litestar._openapi.schema_generation.plugins.struct import StructSchemaPlugin
from litestar.openapi.spec import OpenAPIType, Reference, Schema
from litestar.typing import FieldDefinition

__all__ = ["WireStructSchemaPlugin"]


def _base64_length(raw: int) -> int:
    return 4 * math.ceil(raw / 3)


_B64 = "[A-Za-z0-9+/]"
# Canonical padded base64 (what msgspec accepts), any length.
_BASE64_PATTERN = f"^(?:{_B64}{{4}})*(?:{_B64}{{2}}==|{_B64}{{3}}=)?$"


def _exact_base64_pattern(raw: int) -> str:
    """Base64 of exactly ``raw`` bytes."""
    tail = {0: "", 1: f"{_B64}{{2}}==", 2: f"{_B64}{{3}}="}[raw % 3]
    return f"^{_B64}{{{4 * (raw // 3)}}}{tail}$"


def _is_bytes(annotation: Any) -> bool:
    """``bytes``, possibly ``Annotated`` and possibly optional."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _is_bytes(typing.get_args(annotation)[0])
    if origin in {typing.Union, types.UnionType}:
        return any(_is_bytes(arg) for arg in typing.get_args(annotation) if arg is not type(None))
    return annotation is bytes


def _as_base64(schema: Schema | Reference) -> None:
    if not isinstance(schema, Schema):
        return
    for option in schema.one_of or ():
        _as_base64(option)
    if schema.type == OpenAPIType.STRING or (schema.type is None and not schema.one_of):
        schema.type = OpenAPIType.STRING
        schema.content_encoding = "base64"
        exact = schema.min_length is not None and schema.min_length == schema.max_length
        schema.pattern = _exact_base64_pattern(schema.min_length) if exact else _BASE64_PATTERN  # type: ignore[arg-type]
        if schema.min_length is not None:
            schema.min_length = _base64_length(schema.min_length)
        if schema.max_length is not None:
            schema.max_length = _base64_length(schema.max_length)
    elif schema.one_of and (schema.min_length is not None or schema.max_length is not None):
        # Bounds hoisted beside oneOf (an optional field) belong to the string branch.
        schema.min_length = schema.max_length = None


class WireStructSchemaPlugin(StructSchemaPlugin):
    """Struct schemas: ``additionalProperties: false``; bytes as base64."""

    def to_openapi_schema(self, field_definition: FieldDefinition, schema_creator: Any) -> Schema:
        """Litestar's Struct schema, corrected for what msgspec does on the wire."""
        schema = super().to_openapi_schema(field_definition, schema_creator)
        info = msgspec.inspect.type_info(field_definition.type_)
        if not isinstance(info, msgspec.inspect.StructType):  # pragma: no cover -- only Structs reach here
            return schema
        # Requests: every request Struct refuses unknown fields (tests/hostile/test_request_structs.py).
        # Responses: msgspec writes a Struct's fields and nothing else.
        schema.additional_properties = False
        hints = typing.get_type_hints(field_definition.type_, include_extras=True)
        for field in info.fields:
            if (
                _is_bytes(hints.get(field.name))
                and schema.properties
                and field.encode_name in schema.properties
            ):
                _as_base64(schema.properties[field.encode_name])
        return schema

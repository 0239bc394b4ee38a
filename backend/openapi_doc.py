"""The OpenAPI document as committed under ``openapi/openapi.json``."""

from __future__ import annotations

import msgspec

from backend.settings import load_settings

__all__ = ["render_openapi"]


def render_openapi() -> str:
    """The app's OpenAPI 3.1 document, deterministic (sorted keys, trailing newline)."""
    from backend.app import create_app  # noqa: PLC0415 -- avoid an import cycle with the CLI

    settings = load_settings({}, secret_key="A" * 43 + "=", environment="test")
    app = create_app(settings, database_url="postgresql://unused")
    schema = app.openapi_schema.to_schema()
    return msgspec.json.format(msgspec.json.encode(schema, order="sorted"), indent=2).decode() + "\n"

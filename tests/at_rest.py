"""What the server must never hold, collected while end-to-end tests run, then searched for.

Every end-to-end test (``tests/e2e``: the real server process) runs with a
:class:`SecretRegistry` that records, without the test's help:

- every private key the crypto library generates in the test process (client devices),
- every plaintext the library seals into an envelope (message and note bodies),
- every password, passphrase and one-time code sent over HTTP, and every bearer token,
  TOTP secret and recovery code the server hands out.

When the test ends and its servers have stopped, :func:`scan` searches a ``pg_dump`` of
its database and every server log file for each of them, raw and base64/hex/UTF-16
encoded. Tokens and passwords are allowed nowhere: the database keeps digests and Argon2id
hashes, the logs keep neither.
"""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import httpx
import pytest

import crypto.client.envelope as envelope_module
import crypto.client.keys as keys_module
from backend.db.embedded import EmbeddedPostgres
from crypto.client.payload import encode_payload
from tests.conftest import ROOT

# Shorter values are too likely to occur by chance in a dump (ids, digests, base64).
MIN_SECRET_BYTES = 12
_REQUEST_FIELDS = {"password", "new_password", "current_password", "passphrase", "code", "recovery_code"}
_RESPONSE_FIELDS = {"token", "secret", "recovery_codes", "otpauth_uri"}


class SecretRegistry:
    """The secrets of one end-to-end test, by kind."""

    def __init__(self) -> None:
        self.found: dict[bytes, str] = {}

    def add(self, value: bytes | str, kind: str) -> None:
        raw = value.encode() if isinstance(value, str) else bytes(value)
        if len(raw) >= MIN_SECRET_BYTES:
            self.found.setdefault(raw, kind)

    def add_json(self, data: Any, fields: set[str], kind: str) -> None:
        if isinstance(data, dict):
            for key, value in data.items():
                if key in fields and isinstance(value, str):
                    self.add(value, f"{kind} {key}")
                elif key in fields and isinstance(value, list):
                    for item in value:
                        if isinstance(item, str):
                            self.add(item, f"{kind} {key}")
                else:
                    self.add_json(value, fields, kind)
        elif isinstance(data, list):
            for item in data:
                self.add_json(item, fields, kind)

    def observe_request(self, request: httpx.Request) -> None:
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            self.add(auth[7:], "bearer token")
        if request.headers.get("content-type", "").startswith("application/json"):
            with suppress(ValueError, httpx.RequestNotRead):
                self.add_json(json.loads(request.content), _REQUEST_FIELDS, "request")

    def observe_response_body(self, content_type: str, body: bytes) -> None:
        if content_type.startswith("application/json"):
            with suppress(ValueError):
                self.add_json(json.loads(body), _RESPONSE_FIELDS, "response")


def _forms(secret: bytes) -> list[bytes]:
    return [
        secret,
        base64.b64encode(secret),
        base64.urlsafe_b64encode(secret).rstrip(b"="),
        secret.hex().encode(),
        secret.decode("latin-1").encode("utf-16-le"),
    ]


@contextmanager
def recording(monkeypatch: pytest.MonkeyPatch) -> Iterator[SecretRegistry]:
    """Record secrets through the crypto library and httpx while the block runs."""
    registry = SecretRegistry()
    original_generate = keys_module._generate_identity
    original_encode = encode_payload

    def generate(*args: Any, **kwargs: Any) -> Any:
        identity = original_generate(*args, **kwargs)
        registry.add(identity._encryption_secret, "private encryption key")
        registry.add(identity._signing_secret[:32], "private signing key")
        return identity

    def encode(payload: Any) -> bytes:
        registry.add(payload.body, "sealed plaintext")
        return original_encode(payload)

    original_send = httpx.Client.send
    original_async_send = httpx.AsyncClient.send

    def send(self: httpx.Client, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        registry.observe_request(request)
        response = original_send(self, request, **kwargs)
        if not kwargs.get("stream"):
            registry.observe_response_body(response.headers.get("content-type", ""), response.content)
        return response

    async def async_send(self: httpx.AsyncClient, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        registry.observe_request(request)
        response = await original_async_send(self, request, **kwargs)
        if not kwargs.get("stream"):
            registry.observe_response_body(response.headers.get("content-type", ""), response.content)
        return response

    monkeypatch.setattr(keys_module, "_generate_identity", generate)
    monkeypatch.setattr(envelope_module, "encode_payload", encode)
    monkeypatch.setattr(httpx.Client, "send", send)
    monkeypatch.setattr(httpx.AsyncClient, "send", async_send)
    yield registry


def dump_database(database_url: str, path: Path) -> bytes:
    """A plain-SQL ``pg_dump`` (schema and data) of one database."""
    pg_dump = EmbeddedPostgres(ROOT / ".data" / "pg-test").binary("pg_dump")
    subprocess.run([str(pg_dump), "--no-owner", "-f", str(path), database_url], check=True, timeout=120)
    return path.read_bytes()


def scan(registry: SecretRegistry, places: Iterable[tuple[str, bytes]]) -> list[str]:
    """Every (secret kind, place) where a recorded secret occurs, in any of its forms."""
    hits = []
    for name, data in places:
        for secret, kind in registry.found.items():
            if any(form in data for form in _forms(secret)):
                hits.append(f"{kind} ({secret[:6]!r}…) in {name}")
    return hits

"""The at-rest sweep of end-to-end tests records what it should and finds it when it leaks."""

from __future__ import annotations

import base64
import uuid

import httpx
import pytest

from crypto.client import InnerPayload, generate_identity, seal_envelope
from crypto.public import EnvelopeKind
from tests.at_rest import recording, scan


def test_records_keys_plaintexts_passwords_and_tokens_and_finds_them(monkeypatch: pytest.MonkeyPatch) -> None:
    def answer(_: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, json={"token": "tok-" + "x" * 40, "recovery_codes": ["abcd-efgh-ijkl-mnop"]}
        )

    with recording(monkeypatch) as registry:
        keys = generate_identity(uuid.uuid4())
        seal_envelope(
            keys,
            kind=EnvelopeKind.MESSAGE,
            context_id=uuid.uuid4(),
            item_id=uuid.uuid4(),
            payload=InnerPayload(version=1, content_type="text/plain", body=b"a private sentence here"),
            recipients=[keys.bundle],
        )
        with httpx.Client(transport=httpx.MockTransport(answer), base_url="http://t") as http:
            http.post("/v1/auth/login", json={"password": "correct horse battery"},
                      headers={"Authorization": "Bearer bearer-token-value-1234"})  # fmt: skip
    kinds = set(registry.found.values())
    assert {"private encryption key", "private signing key", "sealed plaintext", "request password",
            "bearer token", "response token", "response recovery_codes"} <= kinds  # fmt: skip
    clean = [("dump", b"nothing to see " * 100)]
    assert scan(registry, clean) == []
    leaked = base64.b64encode(keys._encryption_secret)
    assert scan(registry, [("log", b"x" + leaked + b"y")]) == [
        f"private encryption key ({keys._encryption_secret[:6]!r}…) in log"
    ]
    assert scan(registry, [("dump", "a private sentence here".encode("utf-16-le"))])
    assert scan(registry, [("dump", b"correct horse battery")])

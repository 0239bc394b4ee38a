"""The request deadline answers with a problem document (in process; the real server: transport tests)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from backend.http.middleware import RequestContextMiddleware


async def _run(app: Any, headers: list[tuple[bytes, bytes]], body_parts: list[bytes]) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []
    parts = list(body_parts)

    async def receive() -> dict[str, Any]:
        if parts:
            chunk = parts.pop(0)
            # An announced body never completes here; without one, the request is complete.
            return {"type": "http.request", "body": chunk, "more_body": bool(headers)}
        await asyncio.sleep(3600)  # the client stalls
        raise AssertionError  # pragma: no cover

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope: Any = {"type": "http", "method": "POST", "path": "/slow", "headers": headers}
    middleware = RequestContextMiddleware(app, access_log=False, request_timeout_s=0.05)
    await middleware(scope, receive, send)  # type: ignore[arg-type]
    return sent


async def _slow_handler(scope: Any, receive: Any, send: Any) -> None:
    del scope, send
    while True:  # reads a body that never ends, or works forever
        await receive()


@pytest.mark.parametrize(
    ("headers", "parts", "status", "slug"),
    [
        ([], [b""], 503, "unavailable"),  # no body: the server was too slow
        ([(b"content-length", b"100")], [b"{", b"x"], 408, "request-timeout"),  # the body stalled
        ([(b"transfer-encoding", b"chunked")], [b"{"], 408, "request-timeout"),
    ],
)
async def test_deadline_answers_with_a_problem(
    headers: list[tuple[bytes, bytes]], parts: list[bytes], status: int, slug: str
) -> None:
    """Past the deadline the client gets 503 (retry) or, when its own body stalled, 408 and a close."""
    sent = await _run(_slow_handler, headers, parts)
    start, body = sent
    assert start["status"] == status
    names = {name for name, _ in start["headers"]}
    assert b"x-request-id" in names
    assert (b"connection" in names) == (status == 408)
    assert json.loads(body["body"])["type"] == f"urn:confide:problem:{slug}"

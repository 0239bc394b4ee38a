"""B-03, B-04, B-06 and slow-loris and flood abuse, against the real server process on 127.0.0.1.

Raw sockets, so the requests are exactly as hostile as written (no client library
fixes them up). The server runs with a 2 s head deadline and a 3 s request deadline so
the slow-client cases finish quickly; every wait below is bounded, and the bounds are
liveness bounds (generous), not performance targets.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import httpx
import psutil
import pytest

from tests.e2e.conftest import RunningServer
from tests.hostile.conftest import StartServer

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("still_live")]

HEAD_TIMEOUT_S = 2
REQUEST_TIMEOUT_S = 3
LIMIT = 1_048_576  # CONFIDE_MAX_BODY_BYTES (the default)
LIVENESS_S = 15.0  # a deadline for things that should take a second or two


@pytest.fixture(scope="module")
def server(start_module_server: StartServer) -> RunningServer:
    return start_module_server(
        CONFIDE_HEADER_TIMEOUT_S=str(HEAD_TIMEOUT_S),
        CONFIDE_REQUEST_TIMEOUT_S=str(REQUEST_TIMEOUT_S),
        CONFIDE_MAX_BODY_BYTES=str(LIMIT),
    )


def _port(server: RunningServer) -> int:
    return int(server.base_url.rsplit(":", 1)[1])


async def _connect(server: RunningServer) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", _port(server))


async def _response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response (Content-Length bodies only: every error answer here has one)."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), LIVENESS_S)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {
        k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)
    }
    body = await asyncio.wait_for(reader.readexactly(int(headers.get("content-length", "0"))), LIVENESS_S)
    return status, headers, body


def _head(method: str, path: str, *headers: str) -> bytes:
    return (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n" + "".join(h + "\r\n" for h in headers) + "\r\n"
    ).encode()


async def _post_json(server: RunningServer, path: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await _connect(server)
    try:
        writer.write(
            _head("POST", path, "Content-Type: application/json", f"Content-Length: {len(body)}") + body
        )
        await writer.drain()
        return await _response(reader)
    finally:
        writer.close()


async def _live(server: RunningServer) -> float:
    """Seconds /health/live took to answer 200 (fails past the liveness bound)."""
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=server.base_url, timeout=LIVENESS_S) as http:
        response = await http.get("/health/live")
    assert response.status_code == 200
    return time.monotonic() - started


@pytest.fixture
async def still_live(server: RunningServer) -> AsyncIterator[None]:
    """Every test here leaves the server answering."""
    yield
    await _live(server)


def _problem(status: int, body: bytes, expected: int) -> dict[str, object]:
    assert status == expected, body[:300]
    document: dict[str, object] = json.loads(body)
    assert document["status"] == expected
    assert str(document["type"]).startswith("urn:confide:problem:")
    return document


async def test_body_over_the_limit_with_its_length_is_413_before_it_is_sent(server: RunningServer) -> None:
    """B-04: Content-Length of limit + 1 is refused from the header: the body is never sent."""
    reader, writer = await _connect(server)
    try:
        writer.write(
            _head("POST", "/v1/auth/login", "Content-Type: application/json", f"Content-Length: {LIMIT + 1}")
            + b'{"organization": "'
        )
        await writer.drain()
        status, _, body = await _response(reader)
        assert _problem(status, body, 413)["type"] == "urn:confide:problem:payload-too-large"
    finally:
        writer.close()


async def test_chunked_body_over_the_limit_is_413_before_its_end(server: RunningServer) -> None:
    """B-04: a chunked body is cut off at the limit: 413 arrives while the client is still sending."""
    reader, writer = await _connect(server)
    process = psutil.Process(server.process.pid)
    rss_before = process.memory_info().rss
    chunk = b"x" * 65_536
    sent = 0
    answer: asyncio.Task[tuple[int, dict[str, str], bytes]] = asyncio.create_task(_response(reader))
    try:
        writer.write(
            _head("POST", "/v1/auth/login", "Content-Type: application/json", "Transfer-Encoding: chunked")
        )
        # Up to 64 times the limit; the answer must come long before that.
        while sent < 64 * LIMIT and not answer.done():
            writer.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            try:
                await asyncio.wait_for(writer.drain(), LIVENESS_S)
            except (ConnectionError, TimeoutError):
                break
            sent += len(chunk)
            await asyncio.sleep(0)
        status, _, body = await asyncio.wait_for(answer, LIVENESS_S)
        assert _problem(status, body, 413)
        assert sent < 8 * LIMIT, f"the server read {sent} bytes before answering"
        assert process.memory_info().rss - rss_before < 64 * LIMIT, "memory grew with the body"
    finally:
        answer.cancel()
        writer.close()


@pytest.mark.parametrize(
    ("name", "body"),
    [
        ("deep nesting", b'{"organization": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
        ("invalid UTF-8", b'{"organization": "\xff\xfe", "email": "a@b.c", "password": "p"}'),
        ("lone surrogate", b'{"organization": "\\ud800", "email": "a@b.c", "password": "p"}'),
        ("NaN", b'{"organization": NaN, "email": "a@b.c", "password": "p"}'),
        ("huge number", b'{"organization": 1' + b"0" * 5_000 + b', "email": "a@b.c", "password": "p"}'),
        ("not an object", b"[1, 2, 3]"),
        ("truncated", b'{"organization": "clinic", "email": '),
        ("empty", b""),
    ],
)
async def test_malformed_json_is_a_clear_400(server: RunningServer, name: str, body: bytes) -> None:
    """B-03/B-06: hostile JSON gets a 400 problem document (never a 5xx, never an echo of the input)."""
    del name
    status, headers, answer = await _post_json(server, "/v1/auth/login", body)
    assert headers["content-type"].startswith("application/problem+json")
    _problem(status, answer, 400)
    assert b"\\ud800" not in answer
    assert b"NaN" not in answer


async def test_duplicate_keys_are_deterministic(server: RunningServer) -> None:
    """B-06: with a key twice, the last one counts (msgspec), the same way every time."""
    unknown = b'"organization": "no-such-org", "email": "a@b.c", "password": "a password that is long"'
    for body in (
        b'{"organization": "Not A Slug!", ' + unknown + b"}",
        b"{" + unknown + b', "organization": "Bad!"}',
    ):
        outcomes = {(await _post_json(server, "/v1/auth/login", body))[0] for _ in range(2)}
        assert len(outcomes) == 1
    # The last occurrence wins: a valid slug last is checked as credentials (401), an invalid one last is 400.
    assert (await _post_json(server, "/v1/auth/login", b'{"organization": "Bad!", ' + unknown + b"}"))[
        0
    ] == 401
    assert (await _post_json(server, "/v1/auth/login", b"{" + unknown + b', "organization": "Bad!"}'))[
        0
    ] == 400


async def test_wrong_content_type_is_refused(server: RunningServer) -> None:
    """B-06: a JSON route given text/plain that is not JSON: 400, not a guess."""
    reader, writer = await _connect(server)
    try:
        writer.write(_head("POST", "/v1/auth/login", "Content-Type: text/plain", "Content-Length: 2") + b"{}")
        await writer.drain()
        status, _, body = await _response(reader)
        assert status == 400, body
    finally:
        writer.close()


async def test_slow_request_heads_are_cut_off(server: RunningServer) -> None:
    """Slow-loris: heads trickled a byte at a time, and idle connections, get 408 and are closed in time."""

    async def trickle() -> bytes:
        reader, writer = await _connect(server)
        reading = asyncio.create_task(reader.read())
        try:
            for byte in _head("GET", "/health/live", "X-Slow: " + "a" * 200):
                if reading.done():
                    break
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(0.25)
        except ConnectionError:
            pass  # the server closed while we were still sending: what it said is in `reading`
        try:
            return await asyncio.wait_for(reading, LIVENESS_S)
        except ConnectionError:
            return b"closed"
        finally:
            writer.close()

    async def idle() -> bytes:
        reader, writer = await _connect(server)
        try:
            return await asyncio.wait_for(reader.read(), LIVENESS_S)
        finally:
            writer.close()

    started = time.monotonic()
    attackers = [asyncio.create_task(trickle()) for _ in range(20)] + [
        asyncio.create_task(idle()) for _ in range(5)
    ]
    await asyncio.sleep(0.5)
    assert await _live(server) < LIVENESS_S, "the server stays responsive under the attack"
    answers = await asyncio.gather(*attackers)
    assert time.monotonic() - started < HEAD_TIMEOUT_S + LIVENESS_S
    for answer in answers:
        assert answer in {b"", b"closed"} or answer.startswith(b"HTTP/1.1 408 "), answer[:100]
    assert sum(answer.startswith(b"HTTP/1.1 408 ") for answer in answers) >= 20


async def test_slow_request_body_gets_408(server: RunningServer) -> None:
    """Slow-loris on the body: the request deadline ends it with 408 and closes the connection."""
    reader, writer = await _connect(server)
    started = time.monotonic()
    try:
        writer.write(
            _head("POST", "/v1/auth/login", "Content-Type: application/json", "Content-Length: 4096")
        )
        writer.write(b'{"organization": "')
        await writer.drain()
        answer: asyncio.Task[tuple[int, dict[str, str], bytes]] = asyncio.create_task(_response(reader))
        while not answer.done() and time.monotonic() - started < LIVENESS_S:
            writer.write(b"a")
            await writer.drain()
            await asyncio.sleep(0.2)
        status, headers, body = await asyncio.wait_for(answer, LIVENESS_S)
        assert _problem(status, body, 408)["type"] == "urn:confide:problem:request-timeout"
        assert headers.get("connection") == "close"
        assert time.monotonic() - started < REQUEST_TIMEOUT_S + LIVENESS_S
    finally:
        writer.close()


async def test_a_flood_leaves_the_server_responsive(server: RunningServer) -> None:
    """A flood (200 connections, bounded in count and time): clean answers, /health/live answers."""
    deadline = time.monotonic() + 4
    statuses: dict[int, int] = {}
    budget = [6_000]

    async def flooder() -> None:
        reader, writer = await _connect(server)
        try:
            while time.monotonic() < deadline and budget[0] > 0:
                budget[0] -= 1
                writer.write(_head("GET", "/v1/me", "Authorization: Bearer cfd_" + "F" * 43))
                await writer.drain()
                status, _, _ = await _response(reader)
                statuses[status] = statuses.get(status, 0) + 1
        except (ConnectionError, asyncio.IncompleteReadError):
            statuses[0] = statuses.get(0, 0) + 1
        finally:
            writer.close()

    flood = [asyncio.create_task(flooder()) for _ in range(200)]
    await asyncio.sleep(1)
    latencies = [await _live(server) for _ in range(3)]
    await asyncio.gather(*flood)
    assert set(statuses) <= {401, 429}, statuses
    assert max(latencies) < LIVENESS_S


def test_granian_cuts_off_slow_heads_too(start_module_server: StartServer) -> None:
    """The other supported server (``CONFIDE_SERVER=granian``) gets the same head deadline."""
    granian = start_module_server(CONFIDE_SERVER="granian", CONFIDE_HEADER_TIMEOUT_S=str(HEAD_TIMEOUT_S))

    async def slow_head() -> tuple[float, bytes]:
        reader, writer = await _connect(granian)
        try:
            writer.write(b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            await writer.drain()
            started = time.monotonic()
            answer = await asyncio.wait_for(reader.read(), LIVENESS_S)
            return time.monotonic() - started, answer
        finally:
            writer.close()

    waited, answer = asyncio.run(slow_head())
    assert waited < LIVENESS_S
    assert answer == b"" or answer.startswith(b"HTTP/1.1 408"), answer[:100]

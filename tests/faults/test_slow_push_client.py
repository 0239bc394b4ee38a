"""Push-stream clients that stop reading hold up nobody and cost the server bounded memory.

Four streams of the patient (``GET /v1/events``) are opened on sockets with a tiny receive
buffer that the test then never reads again. Meanwhile a fast stream of the same patient
and the clinician's stream keep reading. 20,000 events of ~1 KiB are queued for the
patient (straight into the outbox, as a burst of activity would), then real messages are
sent. The fast streams get everything (the burst within 60 s, each live message within
5 s); the pool (4 connections) still serves sends, since a blocked stream holds no
connection; the server's resident memory grows by far less than the 4 x 20 MiB the stalled
streams would hold if the server buffered for them (a stream holds at most one page and
the transport's high-water mark; the rest waits in the outbox). Finally one stalled client
reads again and receives every event, in order, up to the last one.
"""

from __future__ import annotations

import asyncio
import re
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress

import asyncpg
import httpx
import psutil
import pytest

from backend.realtime.outbox import CHANNEL
from tests.e2e.conftest import RunningServer
from tests.e2e.test_push_two_processes import _set_up
from tests.faults.support import Ledger, seal_many, send, until

pytestmark = pytest.mark.e2e

STALLED = 4
BURST = 20_000
PAD = "x" * 900
# Unbounded buffering would hold STALLED x BURST x ~1 KiB = ~80 MiB; the bound leaves room
# for the allocator's own growth while the fast streams are served.
RSS_GROWTH_LIMIT = 24 * 2**20
_ID = re.compile(rb"^id: (\d+)$", re.MULTILINE)

FLOOD_SQL = f"""
WITH burst AS (
    INSERT INTO account_events (account_id, kind, payload, created_at)
    SELECT $1, 'test.burst', jsonb_build_object('n', n, 'pad', $3::text), now()
    FROM generate_series(1, $2::int) AS n
    RETURNING id
)
SELECT max(id) FROM burst, pg_notify('{CHANNEL}', replace($1::text, '-', ''))
"""  # noqa: S608 -- a constant channel name; the values are parameters


class Stream:
    """A push stream read as fast as it comes; remembers ids and message ids seen."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.last_id = 0
        self.ids_in_order = True
        self.text = b""
        self.messages: set[str] = set()
        self.opened = asyncio.Event()
        self.task = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        pending = b""
        while data := await self.reader.read(262_144):
            pending += data
            cut = pending.rfind(b"\n\n")
            if cut < 0:
                continue
            done, pending = pending[: cut + 2], pending[cut + 2 :]
            if b": stream open" in done:
                self.opened.set()
            for match in _ID.finditer(done):
                number = int(match.group(1))
                self.ids_in_order &= number > self.last_id
                self.last_id = number
            self.messages.update(m.decode() for m in re.findall(rb'"message_id": "([0-9a-f-]{36})"', done))

    def close(self) -> None:
        self.task.cancel()
        self.writer.close()


def _request(base_url: str, headers: dict[str, str]) -> bytes:
    host = base_url.removeprefix("http://")
    lines = ["GET /v1/events HTTP/1.1", f"Host: {host}", "Accept: text/event-stream"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _address(base_url: str) -> tuple[str, int]:
    host, port = base_url.removeprefix("http://").split(":")
    return host, int(port)


@asynccontextmanager
async def fast_stream(base_url: str, headers: dict[str, str]) -> AsyncIterator[Stream]:
    reader, writer = await asyncio.open_connection(*_address(base_url), limit=2**20)
    writer.write(_request(base_url, headers))
    stream = Stream(reader, writer)
    try:
        async with asyncio.timeout(10):
            await stream.opened.wait()
        yield stream
    finally:
        stream.close()


def stalled_stream(base_url: str, headers: dict[str, str]) -> socket.socket:
    """A stream that reads its opening, then nothing: a tiny receive window, never drained."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(10)
    sock.connect(_address(base_url))
    sock.sendall(_request(base_url, headers))
    seen = b""
    while b": stream open" not in seen:
        chunk = sock.recv(4096)
        assert chunk, "the stream closed before it opened"
        seen += chunk
    assert seen.startswith(b"HTTP/1.1 200"), seen[:200]
    return sock


async def drain_until(sock: socket.socket, last_id: int, deadline_s: float) -> tuple[int, bool]:
    """Read a stalled socket again until event ``last_id``; returns (last id, ids in order)."""
    loop = asyncio.get_running_loop()
    sock.setblocking(False)
    pending, last, in_order = b"", 0, True
    async with asyncio.timeout(deadline_s):
        while last < last_id:
            data = await loop.sock_recv(sock, 262_144)
            assert data, "the server closed the stalled stream"
            pending += data
            cut = pending.rfind(b"\n\n")
            if cut < 0:
                continue
            done, pending = pending[: cut + 2], pending[cut + 2 :]
            for match in _ID.finditer(done):
                number = int(match.group(1))
                in_order &= number > last
                last = number
    return last, in_order


async def test_stalled_push_clients_hold_up_nobody_and_cost_bounded_memory(
    start_server: Callable[..., RunningServer], database_url: str
) -> None:
    """A slow push client neither delays other streams nor grows the server's memory without bound."""
    server = start_server(CONFIDE_DB_POOL_MAX="4", CONFIDE_LOG_LEVEL="warning")
    process = psutil.Process(server.process.pid)
    db = await asyncpg.connect(database_url)
    stalled: list[socket.socket] = []
    try:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
            parties = await _set_up(server, http)
            patient = uuid.UUID((await http.get("/v1/me", headers=parties.pat)).json()["id"])
            async with (
                fast_stream(server.base_url, parties.pat) as fast,
                fast_stream(server.base_url, parties.doc) as doctor,
            ):
                stalled = [stalled_stream(server.base_url, parties.pat) for _ in range(STALLED)]

                # Warm up: a first burst fills the stalled sockets' kernel buffers.
                warm_last = await db.fetchval(FLOOD_SQL, patient, 2_000, PAD)
                await until(lambda: _reached(fast, warm_last), "the warm-up burst reached the fast stream")
                baseline = process.memory_info().rss

                started = time.monotonic()
                last = await db.fetchval(FLOOD_SQL, patient, BURST, PAD)
                await until(lambda: _reached(fast, last), "the burst reached the fast stream", deadline_s=60)
                burst_s = time.monotonic() - started

                # Live messages still go through, quickly, to both readers; the pool is not held.
                ledger = Ledger()
                for envelope in seal_many(parties, 3, "live"):
                    sent_at = time.monotonic()
                    outcome = await send(http, parties, envelope, ledger)
                    assert outcome.status == 201, outcome
                    await until(
                        _delivered(str(envelope.item_id), fast, doctor),
                        "a live message reached both fast streams",
                        deadline_s=5,
                    )
                    live_s = time.monotonic() - sent_at
                grown = process.memory_info().rss - baseline
                assert fast.ids_in_order
                assert all(s.fileno() >= 0 for s in stalled)

            print(
                f"{STALLED} stalled streams, burst of {BURST} events (~{BURST * len(PAD) // 2**20} MiB each):"
                f" fast stream had it all in {burst_s:.1f} s, last live message in {live_s * 1000:.0f} ms;"
                f" server RSS grew {grown / 2**20:.1f} MiB (limit {RSS_GROWTH_LIMIT // 2**20} MiB)"
            )
            assert grown < RSS_GROWTH_LIMIT

            # A stalled client that reads again gets every event, in order, up to the last one.
            final = await db.fetchval("SELECT max(id) FROM account_events WHERE account_id = $1", patient)
            reached, in_order = await drain_until(stalled[0], final, deadline_s=60)
            assert reached == final
            assert in_order
    finally:
        for sock in stalled:
            with suppress(OSError):
                sock.close()
        await db.close()


async def _reached(stream: Stream, last_id: int) -> bool:
    return stream.last_id >= last_id


def _delivered(message: str, *streams: Stream) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return all(message in stream.messages for stream in streams)

    return check

"""The push stream over a real socket: events after a send, exact resumption, logout, fan-out."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest
import uvicorn
from litestar import Litestar

from backend.app import create_app
from backend.clock import FrozenClock
from backend.db.embedded import free_port
from backend.realtime.hub import Hub
from backend.realtime.outbox import publish
from backend.runtime import Runtime
from crypto.client.keys import IdentityKeys
from tests.conftest import make_settings
from tests.helpers import Clinic, audit_rows, make_clinic
from tests.messaging_helpers import as_json, consent_to, publish_keys, seal


@asynccontextmanager
async def live_server(app: Litestar) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn on a loopback port in this event loop; yields the base URL."""
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, lifespan="on", log_level="warning", ws="none",
        timeout_graceful_shutdown=5,
    )  # fmt: skip
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        assert not task.done(), "server exited"
        await asyncio.sleep(0.01)  # polling the start flag, with a deadline
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


class SseReader:
    """Reads Server-Sent Events from a streamed response (comments kept apart)."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.aiter_lines()
        self.comments: list[str] = []

    async def next(self, within_s: float = 5.0) -> dict[str, str] | None:
        """The next event (fields by name), or None when the stream ends."""
        fields: dict[str, str] = {}
        async with asyncio.timeout(within_s):
            async for line in self._lines:
                if line == "":
                    if "event" in fields or "data" in fields:
                        return fields
                    fields = {}
                elif line.startswith(":"):
                    self.comments.append(line[1:].strip())
                else:
                    name, _, value = line.partition(":")
                    fields[name] = value.removeprefix(" ")
        return None

    async def expect(self, within_s: float = 5.0) -> dict[str, str]:
        """The next event; fails if the stream ends first."""
        event = await self.next(within_s)
        assert event is not None, "the stream ended"
        return event

    async def comment(self, text: str, within_s: float = 5.0) -> None:
        """Read until a comment starting with ``text`` (events read meanwhile are dropped)."""
        async with asyncio.timeout(within_s):
            async for line in self._lines:
                if line.startswith(":") and line[1:].strip().startswith(text):
                    self.comments.append(line[1:].strip())
                    return
        pytest.fail(f"the stream ended before the comment {text!r}")


@dataclass
class Setup:
    http: httpx.AsyncClient
    app: Litestar
    clinic: Clinic
    doc_keys: IdentityKeys
    pat_keys: IdentityKeys
    conversation_id: uuid.UUID

    @property
    def runtime(self) -> Runtime:
        runtime: Runtime = self.app.state.runtime
        return runtime

    @property
    def hub(self) -> Hub:
        return self.runtime.require_hub()

    async def send(self, text: str) -> uuid.UUID:
        bundles = [self.doc_keys.bundle, self.pat_keys.bundle]
        envelope = seal(self.doc_keys, self.conversation_id, text, bundles)
        response = await self.http.post(
            f"/v1/conversations/{self.conversation_id}/messages",
            json=as_json(envelope),
            headers=self.clinic.clinician.headers,
        )
        assert response.status_code == 201, response.text
        return envelope.item_id

    @asynccontextmanager
    async def stream(self, headers: dict[str, str] | None = None, **params: Any) -> AsyncIterator[SseReader]:
        async with self.http.stream(
            "GET", "/v1/events", params=params, headers={**self.clinic.client.headers, **(headers or {})}
        ) as response:
            assert response.status_code == 200, await response.aread()
            assert response.headers["content-type"].startswith("text/event-stream")
            assert response.headers["cache-control"] == "no-store"
            yield SseReader(response)


async def _setup(app: Litestar, http: httpx.AsyncClient, db: asyncpg.Connection, clock: FrozenClock) -> Setup:
    clinic = await make_clinic(http, app, db)
    org_id = uuid.UUID((await http.get("/v1/me", headers=clinic.client.headers)).json()["organization_id"])
    doc_keys = await publish_keys(http, clinic.clinician)
    pat_keys = await publish_keys(http, clinic.client)
    await consent_to(http, clinic.client, pat_keys, org_id, clinic.clinician.id, clock)
    conversation_id = uuid.uuid4()
    created = await http.post(
        "/v1/conversations",
        json={"id": str(conversation_id), "kind": "direct", "client_id": str(clinic.client.id)},
        headers=clinic.clinician.headers,
    )
    assert created.status_code == 201, created.text
    return Setup(http, app, clinic, doc_keys, pat_keys, conversation_id)


@asynccontextmanager
async def running(
    database_url: str, db: asyncpg.Connection, clock: FrozenClock, **settings: Any
) -> AsyncIterator[Setup]:
    app = create_app(make_settings(**settings), clock=clock, database_url=database_url)
    async with live_server(app) as base_url, httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        yield await _setup(app, http, db, clock)


@pytest.fixture
async def setup(database_url: str, db: asyncpg.Connection, clock: FrozenClock) -> AsyncIterator[Setup]:
    async with running(database_url, db, clock) as s:
        # Prove the NOTIFY path: no stream polls the outbox on its own during these tests.
        s.hub.poll_s = 60
        yield s


async def _opened(reader: SseReader) -> None:
    """Wait for the opening comment (the stream is subscribed once it arrives)."""
    await reader.comment("stream open")


async def test_event_arrives_after_a_send(setup: Setup, db: asyncpg.Connection) -> None:
    async with setup.stream() as reader:
        await _opened(reader)
        started = time.monotonic()
        message_id = await setup.send("hello")
        event = await reader.next(within_s=2)
        elapsed = time.monotonic() - started
    assert event is not None
    assert event["event"] == "message.created"
    data = json.loads(event["data"])
    assert data == {
        "conversation_id": str(setup.conversation_id),
        "message_id": str(message_id),
        "kind": "message",
    }, "ids and codes only"
    outbox_id = await db.fetchval(
        "SELECT max(id) FROM account_events WHERE account_id = $1", setup.clinic.client.id
    )
    assert event["id"] == str(outbox_id)
    assert elapsed < 1.0, "woken by NOTIFY, not by a poll"
    subscribed = await audit_rows(db, "events.subscribe")
    assert [r["agent_account_id"] for r in subscribed] == [setup.clinic.client.id]


async def test_resume_from_last_event_id_delivers_exactly_the_missed_events(setup: Setup) -> None:
    async with setup.stream() as reader:
        await _opened(reader)
        await setup.send("seen")
        seen = await reader.expect()
    missed = [await setup.send("missed one"), await setup.send("missed two")]
    async with setup.stream(headers={"Last-Event-ID": seen["id"]}) as reader:
        got = [await reader.expect(), await reader.expect()]
        marker = await setup.send("after reconnecting")
        after = await reader.expect()
    assert [json.loads(e["data"])["message_id"] for e in got] == [str(m) for m in missed]
    assert int(seen["id"]) < int(got[0]["id"]) < int(got[1]["id"])
    assert json.loads(after["data"])["message_id"] == str(marker), "nothing else came between"
    # ?after= is the same cursor for clients that cannot set headers; the header wins over it.
    async with setup.stream(after=seen["id"]) as reader:
        first = await reader.expect()
    assert first["id"] == got[0]["id"]
    async with setup.stream(headers={"Last-Event-ID": got[1]["id"]}, after=seen["id"]) as reader:
        first = await reader.expect()
    assert json.loads(first["data"])["message_id"] == str(marker)


async def test_without_a_cursor_the_stream_starts_with_new_events(setup: Setup) -> None:
    await setup.send("before subscribing")
    async with setup.stream() as reader:
        await _opened(reader)
        later = await setup.send("after subscribing")
        event = await reader.next()
    assert event is not None
    assert json.loads(event["data"])["message_id"] == str(later)


async def test_a_bad_last_event_id_is_refused(setup: Setup) -> None:
    response = await setup.http.get(
        "/v1/events", headers={**setup.clinic.client.headers, "Last-Event-ID": "12; drop"}
    )
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_logout_ends_the_stream_and_nothing_is_served_after_it(
    database_url: str, db: asyncpg.Connection, clock: FrozenClock
) -> None:
    """R-01: once the session is revoked the stream closes without serving later events."""
    async with running(database_url, db, clock, events_keepalive_s=0.2) as s:
        async with s.stream() as reader:
            await _opened(reader)
            first = await s.send("before logout")
            assert (await reader.next()) is not None
            out = await s.http.post("/v1/auth/logout", headers=s.clinic.client.headers)
            assert out.status_code in {200, 204}, out.text
            await s.send("after logout")
            events = []
            while (event := await reader.next(within_s=5)) is not None:
                events.append(event)
        assert [e["event"] for e in events] == ["session.ended"], "no event after logout"
        assert s.hub.stream_count == 0
        assert first


async def test_keepalive_comments_and_idle_expiry_end_the_stream(
    database_url: str, db: asyncpg.Connection, clock: FrozenClock
) -> None:
    """An open stream is not activity: the idle timeout still logs the device off."""
    async with running(database_url, db, clock, events_keepalive_s=0.05) as s, s.stream() as reader:
        await _opened(reader)
        await reader.comment("keep-alive", within_s=5)
        clock.advance(s.runtime.settings.session_idle_timeout_s + 1)
        ended = await reader.next(within_s=5)
        assert ended is not None
        assert ended["event"] == "session.ended"
        assert await reader.next(within_s=5) is None


async def test_out_of_order_commits_are_delivered_in_id_order(setup: Setup, database_url: str) -> None:
    """An id drawn first but committed last is neither skipped nor delivered out of order."""
    account = setup.clinic.client.id
    now = setup.runtime.clock.now()
    slow = await asyncpg.connect(database_url)
    fast = await asyncpg.connect(database_url)
    try:
        async with setup.stream() as reader:
            await _opened(reader)
            tx = slow.transaction()
            await tx.start()
            await publish(slow, [account], "test.first", {"n": "1"}, now)
            async with fast.transaction():
                await publish(fast, [account], "test.second", {"n": "2"}, now)
            # The stream was woken by the second commit; it must wait for the first.
            await tx.commit()
            got = [await reader.next(), await reader.next()]
    finally:
        await slow.close()
        await fast.close()
    assert [e["event"] for e in got if e] == ["test.first", "test.second"]
    assert int(got[0]["id"]) < int(got[1]["id"])  # type: ignore[index]


async def test_the_listen_connection_reconnects_after_it_drops(setup: Setup, db: asyncpg.Connection) -> None:
    hub = setup.hub
    pid = hub.listener_pid
    assert pid is not None
    assert hub.connections == 1
    async with setup.stream() as reader:
        await _opened(reader)
        assert await db.fetchval("SELECT pg_terminate_backend($1)", pid)
        deadline = time.monotonic() + 10
        while hub.connections < 2 or not hub.connected.is_set():
            assert time.monotonic() < deadline, "the hub did not reconnect"
            await asyncio.sleep(0.01)  # polling a flag with a deadline
        assert hub.listener_pid not in {None, pid}
        started = time.monotonic()
        message_id = await setup.send("after the reconnection")
        event = await reader.next(within_s=2)
        assert time.monotonic() - started < 1.0, "woken by NOTIFY on the new connection"
    assert event is not None
    assert json.loads(event["data"])["message_id"] == str(message_id)


async def test_a_burst_larger_than_a_page_arrives_complete_and_in_order(
    setup: Setup, database_url: str
) -> None:
    """Many pages behind one wake-up flag (no per-event queue): every event, in order."""
    account = setup.clinic.client.id
    conn = await asyncpg.connect(database_url)
    try:
        async with setup.stream() as reader:
            await _opened(reader)
            for n in range(12):
                async with conn.transaction():
                    for m in range(100):
                        payload = {"n": str(n * 100 + m)}
                        await publish(conn, [account], "test.bulk", payload, setup.runtime.clock.now())
            got = [await reader.next() for _ in range(1200)]
    finally:
        await conn.close()
    assert [json.loads(e["data"])["n"] for e in got if e] == [str(i) for i in range(1200)]


async def test_a_database_failure_ends_the_stream_for_a_resuming_client(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stream closes (the client resumes with Last-Event-ID) rather than hang or serve a partial page."""
    from backend.realtime import repository  # noqa: PLC0415

    async def unreachable(*_args: Any, **_kwargs: Any) -> None:
        raise asyncpg.InterfaceError("connection lost")

    async with setup.stream() as reader:
        await _opened(reader)
        monkeypatch.setattr(repository, "read_page", unreachable)
        await setup.send("while the database is away")
        assert await reader.next() is None
    assert setup.hub.stream_count == 0


def test_hub_wakes_the_accounts_named_and_all_on_star() -> None:
    hub = Hub("postgresql://unused")
    a, b, c = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    with hub.subscribe(a) as sa, hub.subscribe(b) as sb, hub.subscribe(b) as sb2:
        assert hub.stream_count == 3
        hub.notify(f"{c.hex},{a.hex}")
        assert sa.wake.is_set()
        assert not sb.wake.is_set()
        sa.wake.clear()
        hub.notify("*")
        assert sa.wake.is_set()
        assert sb.wake.is_set()
        assert sb2.wake.is_set()
    assert hub.stream_count == 0


async def test_hub_stop_ends_streams_and_reconnects_with_backoff() -> None:
    hub = Hub("postgresql://127.0.0.1:1/none", backoff_min_s=0.01, backoff_max_s=0.02)
    hub.start()
    with hub.subscribe(uuid.uuid4()) as subscription:
        await hub.stop()
        assert subscription.closed
        assert subscription.wake.is_set()
    assert hub.connections == 0

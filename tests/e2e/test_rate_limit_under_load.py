"""L-03: the rate limiter under legitimate load, against the real server process.

Legitimate clients (a clinician sending and fetching, three patient devices fetching new
messages) each run at a busy front end's pace; one abusive session on the same address
sends 20 times that rate. The server runs the production default limits. Bounded: a few
seconds and a fixed number of requests per client.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx

from backend.settings import load_settings
from tests.e2e.conftest import RunningServer
from tests.e2e.test_push_two_processes import Parties, _set_up
from tests.messaging_helpers import as_json, seal

#: Each legitimate client's rate: a front end polling every 100 ms (busier than a person).
LEGIT_RPS = 10.0
ABUSE_RPS = 20 * LEGIT_RPS
RUN_S = 3.0
#: The checklist's target: the abusive client is refused within a second of starting.
FIRST_429_WITHIN_S = 1.0
RATE_LIMITED = "urn:confide:problem:rate-limited"


@dataclass
class Tally:
    """What one client saw: statuses, and when (since its start) answers came back."""

    statuses: list[int] = field(default_factory=list)
    first_429_s: float | None = None
    last_answer_s: float = 0.0
    problem_types: set[str] = field(default_factory=set)
    retry_after: set[str] = field(default_factory=set)
    transport_errors: int = 0

    def record(self, response: httpx.Response, since_start_s: float) -> None:
        self.statuses.append(response.status_code)
        self.last_answer_s = max(self.last_answer_s, since_start_s)
        if response.status_code == 429:
            if self.first_429_s is None:
                self.first_429_s = since_start_s
            self.problem_types.add(response.json()["type"])
            self.retry_after.add(response.headers.get("retry-after", "missing"))


async def _paced(
    rate: float, duration_s: float, one: Callable[[int], Awaitable[None]], *, in_flight: int
) -> None:
    """Start ``one(i)`` at ``i / rate`` seconds (open loop), at most ``in_flight`` at a time."""
    gate = asyncio.Semaphore(in_flight)
    start = time.monotonic()
    tasks: list[asyncio.Task[None]] = []

    async def run(i: int) -> None:
        try:
            await one(i)
        finally:
            gate.release()

    for i in range(int(rate * duration_s)):
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        await gate.acquire()
        tasks.append(asyncio.create_task(run(i)))
    await asyncio.gather(*tasks)


async def _legit_reader(
    http: httpx.AsyncClient, parties: Parties, headers: dict[str, str], tally: Tally
) -> None:
    """Fetch new messages since the last cursor, as a patient's device does."""
    path = f"/v1/conversations/{parties.conversation_id}/messages"
    cursor: str | None = None
    start = time.monotonic()

    async def one(_: int) -> None:
        nonlocal cursor
        params = {"after": cursor} if cursor else {}
        response = await http.get(path, params=params, headers=headers)
        tally.record(response, time.monotonic() - start)
        if response.status_code == 200:
            cursor = response.json()["next_cursor"] or cursor

    await _paced(LEGIT_RPS, RUN_S, one, in_flight=1)


async def _legit_sender(http: httpx.AsyncClient, parties: Parties, tally: Tally) -> None:
    """The clinician: every fifth request sends a sealed message, the others list messages."""
    recipients = [parties.doc_keys.bundle, parties.pat_keys.bundle]
    path = f"/v1/conversations/{parties.conversation_id}/messages"
    start = time.monotonic()

    async def one(i: int) -> None:
        if i % 5 == 0:
            envelope = seal(parties.doc_keys, parties.conversation_id, f"l03 {i}", recipients)
            response = await http.post(path, json=as_json(envelope), headers=parties.doc)
        else:
            response = await http.get(path, params={"limit": 20}, headers=parties.doc)
        tally.record(response, time.monotonic() - start)

    await _paced(LEGIT_RPS, RUN_S, one, in_flight=1)


async def _abuser(http: httpx.AsyncClient, headers: dict[str, str], tally: Tally) -> None:
    start = time.monotonic()

    async def one(_: int) -> None:
        try:
            response = await http.get("/v1/me", headers=headers)
        except httpx.TransportError:
            tally.transport_errors += 1
            return
        tally.record(response, time.monotonic() - start)

    await _paced(ABUSE_RPS, RUN_S, one, in_flight=32)


async def _prober(http: httpx.AsyncClient, tally: Tally) -> None:
    start = time.monotonic()

    async def one(_: int) -> None:
        try:
            response = await http.get("/health/live", timeout=2.0)
        except httpx.TransportError:
            tally.transport_errors += 1
            return
        tally.record(response, time.monotonic() - start)

    await _paced(LEGIT_RPS, RUN_S, one, in_flight=1)


async def _patient_device(http: httpx.AsyncClient) -> dict[str, str]:
    body = {"organization": "push-e2e", "email": "pat@push.example", "password": "patient passphrase 1"}
    response = await http.post("/v1/auth/login", json=body)
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['token']}"}


async def test_abusive_client_is_limited_while_legitimate_clients_are_not(
    start_server: Callable[..., RunningServer],
) -> None:
    """L-03: the 20x client gets 429 within 1 s; legitimate clients see none; health stays up."""
    defaults = load_settings({})
    server = start_server(
        CONFIDE_RATE_LIMIT_RPS=str(defaults.rate_limit_rps),
        CONFIDE_RATE_LIMIT_BURST=str(defaults.rate_limit_burst),
        CONFIDE_RATE_LIMIT_ADDRESS_RPS=str(defaults.rate_limit_address_rps),
        CONFIDE_RATE_LIMIT_ADDRESS_BURST=str(defaults.rate_limit_address_burst),
    )
    assert LEGIT_RPS < defaults.rate_limit_rps < ABUSE_RPS  # what the test is about
    limits = httpx.Limits(max_connections=40, max_keepalive_connections=40)
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10, limits=limits) as http:
        parties = await _set_up(server, http)
        devices = [parties.pat, await _patient_device(http), await _patient_device(http)]
        readers = [Tally() for _ in devices]
        sender, abuse, health = Tally(), Tally(), Tally()
        await asyncio.wait_for(
            asyncio.gather(
                *(_legit_reader(http, parties, d, t) for d, t in zip(devices, readers, strict=True)),
                _legit_sender(http, parties, sender),
                _abuser(http, parties.admin, abuse),
                _prober(http, health),
            ),
            timeout=RUN_S + 20,
        )

    for tally in (*readers, sender):
        assert 429 not in tally.statuses, "a legitimate client was rate limited"
        assert set(tally.statuses) <= {200, 201}, tally.statuses
        assert len(tally.statuses) == int(LEGIT_RPS * RUN_S)
    assert sender.statuses.count(201) == int(LEGIT_RPS * RUN_S) // 5

    assert abuse.first_429_s is not None, "the abusive client was never limited"
    assert abuse.first_429_s < FIRST_429_WITHIN_S, f"first 429 after {abuse.first_429_s:.2f} s"
    assert abuse.problem_types == {RATE_LIMITED}
    assert "missing" not in abuse.retry_after
    assert set(abuse.statuses) <= {200, 429}
    admitted = abuse.statuses.count(200)
    # A token bucket lets through at most its burst plus the rate times the time elapsed (the
    # server saw every request between the client's start and its last answer).
    assert admitted <= defaults.rate_limit_burst + defaults.rate_limit_rps * abuse.last_answer_s + 1
    assert abuse.statuses.count(429) > admitted, "most of the flood was refused"
    assert abuse.transport_errors == 0

    assert health.statuses == [200] * int(LEGIT_RPS * RUN_S), "the health probe stayed responsive"
    assert health.transport_errors == 0

"""What the fault tests share: server processes, a care team, sends with recorded outcomes, checks.

A send's outcome is what its client saw: a status (201 stored, 200 an idempotent repeat
of a stored send, 503 refused), or ``None`` when the connection failed before an answer
(the send may or may not have been stored). The checks then compare those outcomes with
the database: acknowledged sends are stored, every stored message has exactly its audit
event and its recipients (nothing half-written), and the audit log is dense and verifies.
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import time
import urllib.parse
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
import msgspec

from crypto.public import Envelope
from tests.conftest import ROOT
from tests.e2e.conftest import CONFIDE, RunningServer, server_env, wait_until_ready
from tests.e2e.test_push_two_processes import Parties
from tests.messaging_helpers import as_json, seal

UNAVAILABLE = "urn:confide:problem:unavailable"
PG_SOCKET = ".s.PGSQL.5432"
READY_S = 30.0


# -- server processes ----------------------------------------------------------------------


class Servers:
    """Server processes started by one test, stopped (or reaped) at its end."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.started: list[RunningServer] = []

    def start(self, database_url: str, **extra: str) -> RunningServer:
        """``confide serve`` on a free loopback port against ``database_url``; waits for ready."""
        from backend.db.embedded import free_port  # noqa: PLC0415 -- keep module import light

        port = free_port()
        env = server_env(database_url, CONFIDE_PORT=str(port), **extra)
        log_path = self.log_dir / f"server-{port}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [CONFIDE, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT
            )
        server = RunningServer(f"http://127.0.0.1:{port}", env, log_path, process)
        self.started.append(server)
        wait_until_ready(server.base_url, process, deadline_s=READY_S)
        return server

    def stop_all(self) -> None:
        for server in self.started:
            if server.process.poll() is not None:
                continue
            server.process.terminate()
            try:
                server.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.process.kill()
                server.process.wait(timeout=5)


# -- database addresses --------------------------------------------------------------------


def upstream_of(database_url: str) -> str | tuple[str, int]:
    """Where ``database_url`` connects: a Unix socket path or a ``(host, port)``."""
    parts = urllib.parse.urlsplit(database_url)
    query = urllib.parse.parse_qs(parts.query)
    if "host" in query and query["host"][0].startswith("/"):
        return str(Path(query["host"][0]) / PG_SOCKET)
    if parts.hostname and parts.hostname.startswith("/"):
        return str(Path(parts.hostname) / PG_SOCKET)
    return (parts.hostname or "127.0.0.1", parts.port or 5432)


def via(database_url: str, address: tuple[str, int]) -> str:
    """``database_url`` rewritten to connect over TCP to ``address`` (a proxy), without TLS."""
    parts = urllib.parse.urlsplit(database_url)
    user = parts.username or "postgres"
    credentials = f"{user}:{parts.password}@" if parts.password else f"{user}@"
    query = {k: v for k, v in urllib.parse.parse_qs(parts.query).items() if k != "host"}
    query["sslmode"] = ["disable"]
    netloc = f"{credentials}{address[0]}:{address[1]}"
    return urllib.parse.urlunsplit(
        parts._replace(netloc=netloc, query=urllib.parse.urlencode(query, doseq=True))
    )


# -- waiting -------------------------------------------------------------------------------


async def until(check: Callable[[], Awaitable[bool]], what: str, deadline_s: float = 20.0) -> float:
    """Poll ``check`` until it holds; returns the seconds it took. Fails after ``deadline_s``."""
    started = time.monotonic()
    while not await check():
        if time.monotonic() - started > deadline_s:
            raise TimeoutError(f"not within {deadline_s} s: {what}")
        await asyncio.sleep(0.05)
    return time.monotonic() - started


# -- sends ---------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What the client of one send saw."""

    message_id: uuid.UUID
    request_id: str
    status: int | None = None
    problem_type: str | None = None
    started: float = 0.0
    elapsed_s: float = 0.0
    error: str | None = None

    @property
    def acknowledged(self) -> bool:
        return self.status in {200, 201}


@dataclass
class Ledger:
    """Every send attempt of a test, by message id (a retry replaces the entry)."""

    envelopes: dict[uuid.UUID, Envelope] = field(default_factory=dict)
    outcomes: dict[uuid.UUID, list[Outcome]] = field(default_factory=dict)

    def add(self, outcome: Outcome) -> None:
        self.outcomes.setdefault(outcome.message_id, []).append(outcome)

    def all(self) -> list[Outcome]:
        return [o for attempts in self.outcomes.values() for o in attempts]

    def acknowledged(self) -> set[uuid.UUID]:
        return {m for m, attempts in self.outcomes.items() if any(o.acknowledged for o in attempts)}

    def unresolved(self) -> list[uuid.UUID]:
        """Attempted, never acknowledged (refused or unanswered): a client would retry these."""
        return [m for m, attempts in self.outcomes.items() if not any(o.acknowledged for o in attempts)]

    def statuses(self) -> dict[int | None, int]:
        counts: dict[int | None, int] = {}
        for outcome in self.all():
            counts[outcome.status] = counts.get(outcome.status, 0) + 1
        return counts


NO_MESSAGE = uuid.UUID(int=0)


async def request(
    http: httpx.AsyncClient,
    method: str,
    path: str,
    *,
    label: str,
    headers: dict[str, str] | None = None,
    body: object = None,
    params: dict[str, str | int] | None = None,
) -> Outcome:
    """Any request, with what its client saw (``label`` names it in ``request_id``)."""
    outcome = Outcome(NO_MESSAGE, label, started=time.monotonic())
    try:
        response = await http.request(method, path, headers=headers, json=body, params=params)
    except httpx.TransportError as exc:
        outcome.error = type(exc).__name__
    else:
        outcome.status = response.status_code
        if response.headers.get("content-type", "").startswith("application/problem+json"):
            outcome.problem_type = msgspec.json.decode(response.content).get("type")
    outcome.elapsed_s = time.monotonic() - outcome.started
    return outcome


def seal_many(parties: Parties, count: int, label: str = "storm") -> list[Envelope]:
    """``count`` messages from the clinician to the care team, sealed as a real client does."""
    recipients = [parties.doc_keys.bundle, parties.pat_keys.bundle]
    return [seal(parties.doc_keys, parties.conversation_id, f"{label} {n}", recipients) for n in range(count)]


async def send(http: httpx.AsyncClient, parties: Parties, envelope: Envelope, ledger: Ledger) -> Outcome:
    """POST one envelope; record what came back (or that nothing did)."""
    ledger.envelopes[envelope.item_id] = envelope
    outcome = Outcome(envelope.item_id, f"fault-{uuid.uuid4().hex}", started=time.monotonic())
    try:
        response = await http.post(
            f"/v1/conversations/{parties.conversation_id}/messages",
            json=as_json(envelope),
            headers={**parties.doc, "X-Request-ID": outcome.request_id},
        )
    except httpx.TransportError as exc:
        outcome.error = type(exc).__name__
    else:
        outcome.status = response.status_code
        if response.headers.get("content-type", "").startswith("application/problem+json"):
            outcome.problem_type = msgspec.json.decode(response.content).get("type")
    outcome.elapsed_s = time.monotonic() - outcome.started
    ledger.add(outcome)
    return outcome


async def storm(
    http: httpx.AsyncClient,
    parties: Parties,
    envelopes: Iterable[Envelope],
    ledger: Ledger,
    *,
    workers: int,
    duration_s: float,
    stop: asyncio.Event | None = None,
    stop_on_transport_error: bool = False,
    backoff_s: float = 0.0,
    pace_s: float = 0.0,
) -> None:
    """``workers`` concurrent senders draining ``envelopes``; bounded by count and by time.

    Each worker pauses ``pace_s`` between sends, and ``backoff_s`` after a send that was not
    acknowledged (as a client would).
    """
    queue = iter(envelopes)
    deadline = time.monotonic() + duration_s
    halt = stop or asyncio.Event()

    async def worker() -> None:
        for envelope in queue:
            if halt.is_set() or time.monotonic() > deadline:
                return
            outcome = await send(http, parties, envelope, ledger)
            if outcome.status is None and stop_on_transport_error:
                return
            pause = pace_s + (0.0 if outcome.acknowledged else backoff_s)
            if pause:
                await asyncio.sleep(pause)

    await asyncio.gather(*(worker() for _ in range(workers)))


async def retry_unresolved(
    http: httpx.AsyncClient, parties: Parties, ledger: Ledger, *, deadline_s: float = 20.0
) -> None:
    """Resend every unacknowledged envelope (same id, same bytes) until each is acknowledged."""
    end = time.monotonic() + deadline_s
    while pending := ledger.unresolved():
        if time.monotonic() > end:
            raise TimeoutError(f"{len(pending)} sends still unacknowledged after retries")
        for message_id in pending:
            await send(http, parties, ledger.envelopes[message_id], ledger)


# -- checks --------------------------------------------------------------------------------


async def assert_nothing_half_written(db: asyncpg.Connection, ledger: Ledger) -> int:
    """Every attempted message is stored whole (row, recipients, one audit event) or not at all.

    Also: every acknowledged send is stored. Returns how many of the attempted messages are stored.
    """
    ids = list(ledger.outcomes)
    rows = await db.fetch(
        """
        SELECT m.id,
               (SELECT count(*) FROM message_recipients r WHERE r.message_seq = m.seq) AS recipients,
               (SELECT count(*) FROM audit_events e
                 WHERE e.event_type = 'message.create' AND e.entity_id = m.id) AS events
        FROM messages m WHERE m.id = ANY($1::uuid[])
        """,
        ids,
    )
    stored = {row["id"]: row for row in rows}
    lost = ledger.acknowledged() - stored.keys()
    assert not lost, f"{len(lost)} acknowledged sends are not in the database"
    for row in rows:
        assert row["recipients"] == 2, f"message {row['id']} has {row['recipients']} recipient rows"
        assert row["events"] == 1, f"message {row['id']} has {row['events']} audit events"
    orphans = await db.fetchval(
        """
        SELECT count(*) FROM audit_events e
        WHERE e.event_type = 'message.create' AND e.entity_id = ANY($1::uuid[])
          AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.id = e.entity_id)
        """,
        ids,
    )
    assert orphans == 0, f"{orphans} audit events of messages that were not stored"
    return len(stored)


async def assert_log_dense(db: asyncpg.Connection) -> int:
    """Every audit event has exactly one index, 0..size-1, nothing queued; returns the size."""
    log = await db.fetchrow(
        "SELECT count(*) AS n, count(DISTINCT event_seq) AS events, min(idx) AS lo, max(idx) AS hi"
        " FROM audit_log"
    )
    assert log is not None
    size = await db.fetchval("SELECT size FROM audit_tree_state")
    assert await db.fetchval("SELECT count(*) FROM audit_pending") == 0
    assert (log["n"], log["events"]) == (size, size)
    assert (log["lo"], log["hi"]) == (0, size - 1)
    assert await db.fetchval("SELECT count(*) FROM audit_events") == size
    assert await db.fetchval("SELECT max(size) FROM audit_checkpoints") == size
    return int(size)


async def integrated(http: httpx.AsyncClient, officer: dict[str, str]) -> bool:
    """Whether the integrator has caught up (nothing pending, the checkpoint covers the tree)."""
    response = await http.get("/v1/audit/status", headers=officer)
    if response.status_code != 200:
        return False
    status = response.json()
    return bool(status["pending_events"] == 0 and status["checkpoint_size"] == status["tree_size"])


async def export_and_verify(
    http: httpx.AsyncClient, officer: dict[str, str], server: RunningServer, tmp_path: Path
) -> None:
    """Export the whole log over HTTP and verify it offline with ``confide audit verify``."""
    key_file = tmp_path / "log.vkey"
    key_file.write_text((await http.get("/v1/audit/log-key")).json()["vkey"], encoding="ascii")
    export = tmp_path / "export.jsonl"
    async with http.stream("GET", "/v1/audit/export", headers=officer) as response:
        assert response.status_code == 200
        with export.open("wb") as out:
            async for chunk in response.aiter_bytes():
                out.write(chunk)
    verified = server.run_cli(
        "audit", "verify", str(export), "--log-key", f"@{key_file}", "--require-complete"
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "complete" in verified.stdout


def summary(outcomes: Iterable[Outcome]) -> str:
    """Counts by status and the median and worst latency, for the test's printed record."""
    items = list(outcomes)
    if not items:
        return "no requests"
    counts: dict[str, int] = {}
    for outcome in items:
        key = str(outcome.status) if outcome.status is not None else (outcome.error or "none")
        counts[key] = counts.get(key, 0) + 1
    times = [o.elapsed_s for o in items]
    return f"{counts} median {statistics.median(times):.2f} s max {max(times):.2f} s"

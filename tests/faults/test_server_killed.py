"""The server process SIGKILLed during a send storm: nothing acknowledged is lost, nothing half-written.

A care team's clinician sends sealed messages from 8 concurrent connections; once enough
have been acknowledged the server process gets SIGKILL (no shutdown hook runs; requests
in flight lose their connection; the in-process audit integrator may be mid-batch). A new
process is started on the same database. Then:

- every send that got 201 is stored, with its recipients and its one audit event;
- every message stored is whole: a send cut off by the kill committed all of it or none;
- after the new process's integrator catches up, every audit event (of the acknowledged
  requests and all others) has exactly one index in a dense log, and the exported log
  verifies offline with ``confide audit verify --require-complete``;
- a client retrying its unanswered sends with the same envelope gets 201 (it was lost)
  or 200 with the first answer (it was stored), never a duplicate (F-03's client side).

F-05 in the test checklist. Loopback only; every wait has a deadline.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import signal
from collections.abc import Callable
from pathlib import Path

import asyncpg
import httpx
import pytest

from audit.note import generate_signer
from tests.e2e.conftest import RunningServer
from tests.e2e.test_multi_instance import _officer
from tests.e2e.test_push_two_processes import _set_up
from tests.faults.support import (
    Ledger,
    assert_log_dense,
    assert_nothing_half_written,
    export_and_verify,
    integrated,
    retry_unresolved,
    seal_many,
    send,
    summary,
    until,
)

pytestmark = pytest.mark.e2e

STORM_MESSAGES = 400
KILL_AFTER_ACKS = 60
STORM_S = 20.0


async def test_sigkill_during_a_send_storm_loses_nothing_acknowledged(
    start_server: Callable[..., RunningServer], database_url: str, tmp_path: Path
) -> None:
    """F-05: every 201 survives a SIGKILL of the server; every audit event reaches a log that verifies."""
    env = {
        "CONFIDE_SECRET_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
        "CONFIDE_AUDIT_LOG_KEY": str(generate_signer("faults.confide.example/audit/v1")),
        "CONFIDE_AUDIT_INTEGRATOR": "true",
        "CONFIDE_AUDIT_INTEGRATE_INTERVAL_S": "0.05",
        "CONFIDE_LOG_LEVEL": "warning",
    }
    first = start_server(**env)
    async with httpx.AsyncClient(base_url=first.base_url, timeout=10) as http:
        parties = await _set_up(first, http)
        officer = await _officer(http, parties.admin)
        envelopes = seal_many(parties, STORM_MESSAGES)
        ledger = Ledger()
        acks = 0
        killed = asyncio.Event()

        async def worker(queue: list[object]) -> None:
            nonlocal acks
            while queue and not killed.is_set():
                envelope = queue.pop()
                outcome = await send(http, parties, envelope, ledger)  # type: ignore[arg-type]
                if outcome.status is None:
                    return  # the connection died with the server
                assert outcome.status == 201, outcome
                acks += 1
                if acks >= KILL_AFTER_ACKS and not killed.is_set():
                    first.process.send_signal(signal.SIGKILL)
                    killed.set()

        queue: list[object] = list(envelopes)
        async with asyncio.timeout(STORM_S):
            await asyncio.gather(*(worker(queue) for _ in range(8)))
        assert killed.is_set(), "the storm ended before the kill"
        assert first.process.wait(timeout=10) == -signal.SIGKILL
    print(f"storm until SIGKILL: {summary(ledger.all())}")

    db = await asyncpg.connect(database_url)
    try:
        before_retry = await assert_nothing_half_written(db, ledger)
        assert before_retry >= KILL_AFTER_ACKS

        second = start_server(**env)
        async with httpx.AsyncClient(base_url=second.base_url, timeout=10) as http:
            # The client side of F-03: unanswered sends are retried with the same bytes.
            in_doubt = ledger.unresolved()
            await retry_unresolved(http, parties, ledger)
            retried = [ledger.outcomes[m][-1] for m in in_doubt]
            assert all(o.status in {200, 201} for o in retried), summary(retried)
            stored_before_retry = {o.message_id for o in retried if o.status == 200}
            print(
                f"in doubt at the kill: {len(in_doubt)} (stored anyway: {len(stored_before_retry)}); "
                f"acknowledged before the kill: {KILL_AFTER_ACKS}+"
            )
            assert await assert_nothing_half_written(db, ledger) == len(ledger.outcomes)

            # Every event of the acknowledged requests is in the log once the new integrator caught up.
            await until(lambda: integrated(http, officer), "the new process integrated the queue")
            # (A 200 is an idempotent repeat: it changes nothing and records nothing.)
            created = {o.request_id for o in ledger.all() if o.status == 201}
            rows = await db.fetch(
                "SELECT e.request_id, l.idx FROM audit_events e LEFT JOIN audit_log l ON l.event_seq = e.seq"
                " WHERE e.request_id = ANY($1::text[])",
                [o.request_id for o in ledger.all()],
            )
            assert created <= {r["request_id"] for r in rows}, "an acknowledged send left no audit event"
            assert all(r["idx"] is not None for r in rows), "an event of a storm request is not in the log"
            size = await assert_log_dense(db)
            await export_and_verify(http, officer, second, tmp_path)
            print(f"audit log after the kill and catch-up: {size} leaves, dense, verified")
    finally:
        await db.close()

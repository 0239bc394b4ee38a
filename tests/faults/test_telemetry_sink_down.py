"""F-07: the OpenTelemetry collector is down: requests do not notice.

Traces go over OTLP/HTTP, every span sampled, to a loopback address where the fault proxy
stands in for a dead collector: ``reset`` answers every connection with an RST (as a
closed port does), ``stall`` accepts and never answers (a black hole, the exporter waits
out its 2 s timeout each time). Meanwhile the care team sends and reads. Every request
succeeds, the proxy saw the exporter try, and the span queue (2,048) drops rather than
grows: the server's memory stays flat after a warm-up while far more spans are made.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import psutil
import pytest

from backend.db.embedded import free_port
from tests.e2e.conftest import RunningServer
from tests.e2e.test_push_two_processes import Parties, _set_up
from tests.faultproxy import Fault, FaultProxy, Mode
from tests.faults.support import Ledger, Outcome, request, seal_many, storm, summary

pytestmark = pytest.mark.e2e

ROUNDS = 2  # a warm-up round, then a measured one
READS = 240
SENDS = 30
RSS_GROWTH_LIMIT = 16 * 2**20


async def _round(http: httpx.AsyncClient, parties: Parties, ledger: Ledger, reads: list[Outcome]) -> None:
    messages = f"/v1/conversations/{parties.conversation_id}/messages"

    async def reader() -> None:
        for _ in range(READS // 4):
            reads.append(await request(http, "GET", messages, label="read", headers=parties.pat))  # noqa: PERF401

    await asyncio.gather(
        storm(http, parties, seal_many(parties, SENDS), ledger, workers=2, duration_s=60),
        *(reader() for _ in range(4)),
    )


@pytest.mark.parametrize("mode", [Mode.RESET, Mode.STALL], ids=["refused", "black-hole"])
async def test_a_dead_collector_costs_no_request(
    start_server: Callable[..., RunningServer], mode: Mode
) -> None:
    with FaultProxy(("127.0.0.1", free_port())) as collector:  # upstream: a port nobody listens on
        collector.set(Fault(mode))
        server = start_server(
            CONFIDE_OTEL_EXPORTER="otlp",
            CONFIDE_OTEL_ENDPOINT=f"http://127.0.0.1:{collector.port}/v1/traces",
            CONFIDE_OTEL_SAMPLE_RATIO="1.0",
            CONFIDE_LOG_LEVEL="warning",
        )
        process = psutil.Process(server.process.pid)
        ledger, reads = Ledger(), list[Outcome]()
        async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
            parties = await _set_up(server, http)
            await _round(http, parties, ledger, reads)
            baseline = process.memory_info().rss
            await _round(http, parties, ledger, reads)
            grown = process.memory_info().rss - baseline
        attempts = collector.stats().accepted
    print(
        f"collector {mode.value}: sends {summary(ledger.all())}; reads {summary(reads)};"
        f" exporter connections {attempts}; RSS grew {grown / 2**20:.1f} MiB after warm-up"
    )
    assert [o.status for o in ledger.all()] == [201] * SENDS * ROUNDS
    assert [o.status for o in reads] == [200] * READS * ROUNDS
    assert attempts > 0, "the exporter tried the collector"
    assert grown < RSS_GROWTH_LIMIT

"""Audit log over the real server: integration throughput, and export of 1,000,000 events.

The server (one worker, pinned to core 0) runs the integrator in its lifespan; writers
(64 asyncpg connections, each event in its own transaction through the real
``backend.audit_trail.record``) and the HTTP client run in this process on core 1,
beside PostgreSQL. Ceilings measured in the same run:

* raw insert ceiling: the same 64 writers with no integrator running;
* raw SHA-256: hashlib over the same leaf bytes (one core), for integration and for the
  offline verification of the export;
* the export is compared with SHA-256 of its own bytes (reading them once).

Targets (issue 6): integration >= 10,000 events/s with 64 writers; export >= 100,000
events/s with peak server memory < 150 MB; offline verification of the 1,000,000-event
export < 5 s. ``BENCH_AUDIT_EXPORT_EVENTS`` and ``BENCH_PHASE_S`` scale it down.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import os
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil

from audit.cli import ExportFile
from audit.leaf import AuditAgent, AuditEntity, encode_leaf, format_recorded
from audit.leaf import AuditEvent as LeafEvent
from audit.note import generate_signer
from audit.verify import verify_export
from backend.audit_trail import Action, AuditContext, AuditEvent, record
from tests.bench.server import CONFIDE, bench_database, pin_loadgen, running_server
from tests.helpers import totp_code

PHASE_S = float(os.environ.get("BENCH_PHASE_S", "10"))
EXPORT_EVENTS = int(os.environ.get("BENCH_AUDIT_EXPORT_EVENTS", "1000000"))
WRITERS = 64
ADMIN_PW = "bench-admin-passphrase-1"
OFFICER_PW = "bench-officer-passphrase-2"


async def _writers(database_url: str, duration_s: float, per_transaction: int = 1) -> tuple[int, float]:
    """64 connections writing ``per_transaction`` events per transaction for ``duration_s``."""
    conns = [await asyncpg.connect(database_url) for _ in range(WRITERS)]
    ctx = AuditContext(
        source_instance="bench-writer", request_id="bench-request-1", address_digest=b"\x01" * 32
    )
    org, agent = uuid.uuid4(), uuid.uuid4()
    counts = [0] * WRITERS
    deadline = time.perf_counter() + duration_s

    async def one(n: int) -> None:
        conn = conns[n]
        while time.perf_counter() < deadline:
            event = AuditEvent(
                action=Action.READ,
                event_type="note.read",
                org_id=org,
                agent_account_id=agent,
                agent_role="clinician",
                entity_type="note",
                entity_id=uuid.uuid4(),
                subject_id=uuid.uuid4(),
                purpose_of_use="TREAT",
            )
            async with conn.transaction():
                for _ in range(per_transaction):
                    await record(conn, event, ctx, dt.datetime.now(dt.UTC))
            counts[n] += per_transaction

    started = time.perf_counter()
    await asyncio.gather(*(one(n) for n in range(WRITERS)))
    elapsed = time.perf_counter() - started
    for conn in conns:
        await conn.close()
    return sum(counts), elapsed


async def _bulk_writers(database_url: str, duration_s: float, per_transaction: int = 50) -> tuple[int, float]:
    """64 connections inserting pre-encoded events, ``per_transaction`` per transaction (executemany)."""
    conns = [await asyncpg.connect(database_url) for _ in range(WRITERS)]
    org = uuid.uuid4()
    leaves, ids, recorded = _leaves(org, 1)
    template, marker = leaves[0], str(ids[0]).encode()
    at = dt.datetime.strptime(recorded, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC)
    sql = (
        "INSERT INTO audit_events (event_id, recorded_at, org_id, action, event_type, outcome,"
        " source_instance, leaf) VALUES ($1, $2, $3, 'R', 'note.read', 0, 'bench-writer', $4)"
    )
    counts = [0] * WRITERS
    deadline = time.perf_counter() + duration_s

    async def one(n: int) -> None:
        conn = conns[n]
        while time.perf_counter() < deadline:
            batch = [uuid.uuid4() for _ in range(per_transaction)]
            rows = [(i, at, org, template.replace(marker, str(i).encode())) for i in batch]
            async with conn.transaction():
                await conn.executemany(sql, rows)
            counts[n] += per_transaction

    started = time.perf_counter()
    await asyncio.gather(*(one(n) for n in range(WRITERS)))
    elapsed = time.perf_counter() - started
    for conn in conns:
        await conn.close()
    return sum(counts), elapsed


async def _count(database_url: str, sql: str) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        value: int = await conn.fetchval(sql)
        return value
    finally:
        await conn.close()


def _wait_drained(database_url: str, timeout_s: float = 600) -> float:
    """Seconds until the pending queue is empty (and signed)."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout_s:
        pending = asyncio.run(_count(database_url, "SELECT count(*) FROM audit_pending"))
        if pending == 0:
            size = asyncio.run(_count(database_url, "SELECT coalesce(max(size), 0) FROM audit_checkpoints"))
            if size == asyncio.run(_count(database_url, "SELECT count(*) FROM audit_log")):
                return time.perf_counter() - started
        time.sleep(0.05)
    raise TimeoutError("integrator did not drain the queue")


def _raw_sha256_rate(leaves: list[bytes]) -> float:
    sha = hashlib.sha256
    started = time.perf_counter()
    for leaf in leaves:
        sha(b"\x00" + leaf).digest()
    return len(leaves) / (time.perf_counter() - started)


def _leaves(org: uuid.UUID, count: int) -> tuple[list[bytes], list[uuid.UUID], str]:
    recorded = format_recorded(dt.datetime.now(dt.UTC))
    template = LeafEvent(
        id=uuid.UUID(int=0),
        recorded=recorded,
        action="R",
        type="note.read",
        subtype=None,
        outcome=0,
        agent=AuditAgent(account=uuid.uuid4(), role="clinician", org=org, network="ab" * 32),
        source="bench-writer",
        entity=AuditEntity(type="note", id=str(uuid.uuid4())),
        subject=uuid.uuid4(),
        purpose="TREAT",
        request="bench-request-1",
        consent=None,
    )
    raw = encode_leaf(template)
    marker = str(template.id).encode()
    ids = [uuid.uuid4() for _ in range(count)]
    return [raw.replace(marker, str(i).encode()) for i in ids], ids, recorded


async def _bulk_insert(database_url: str, org: uuid.UUID, count: int) -> list[bytes]:
    """COPY ``count`` events of one organization (the enqueue trigger fires per row)."""
    leaves, ids, recorded = _leaves(org, count)
    at = dt.datetime.strptime(recorded, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC)
    conn = await asyncpg.connect(database_url)
    try:
        step = 100_000
        for lo in range(0, count, step):
            rows = [
                (ids[i], at, org, "R", "note.read", 0, "bench-writer", leaves[i])
                for i in range(lo, min(count, lo + step))
            ]
            await conn.copy_records_to_table(
                "audit_events",
                records=rows,
                columns=[
                    "event_id", "recorded_at", "org_id", "action", "event_type", "outcome",
                    "source_instance", "leaf",
                ],
            )  # fmt: skip
    finally:
        await conn.close()
    return leaves


def _officer(base_url: str, database_url: str) -> tuple[str, uuid.UUID]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONFIDE_")}
    env.update({"CONFIDE_DATABASE_URL": database_url, "CONFIDE_ENVIRONMENT": "test"})
    env["CONFIDE_AUDIT_LOG_KEY"] = str(generate_signer("cli.bench/confide-audit/v1"))
    created = subprocess.run(
        [CONFIDE, "admin", "create", "--organization", "bench", "--email", "admin@bench.example",
         "--name", "Admin", "--password-stdin"],
        input=ADMIN_PW + "\n", env=env, check=False, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    if created.returncode != 0:
        raise RuntimeError(f"admin create failed: {created.stderr[-2000:]}")
    with httpx.Client(base_url=base_url, timeout=30) as http:

        def login(email: str, password: str) -> dict[str, str]:
            r = http.post(
                "/v1/auth/login", json={"organization": "bench", "email": email, "password": password}
            )
            r.raise_for_status()
            headers = {"Authorization": f"Bearer {r.json()['token']}"}
            secret = http.post("/v1/auth/mfa/totp", headers=headers).json()["secret"]
            code = totp_code(secret, dt.datetime.now(dt.UTC))
            http.post("/v1/auth/mfa/totp/confirm", json={"code": code}, headers=headers).raise_for_status()
            return headers

        admin = login("admin@bench.example", ADMIN_PW)
        made = http.post(
            "/v1/accounts",
            json={"email": "co@bench.example", "display_name": "CO", "role": "compliance_officer",
                  "password": OFFICER_PW},
            headers=admin,
        )  # fmt: skip
        made.raise_for_status()
        officer = login("co@bench.example", OFFICER_PW)
        org = uuid.UUID(made.json()["organization_id"])
        return officer["Authorization"], org


def _server_pid(port: int) -> int:
    for conn in psutil.net_connections(kind="tcp"):
        if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN and conn.pid:
            pid: int = conn.pid
            return pid
    raise RuntimeError("server process not found")


class _RssSampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.process = psutil.Process(pid)
        self.peak = self.process.memory_info().rss
        self.stop_flag = threading.Event()

    def run(self) -> None:
        while not self.stop_flag.wait(0.02):
            self.peak = max(self.peak, self.process.memory_info().rss)


def _export(base_url: str, auth: str, path: Path, pid: int) -> dict[str, float]:
    sampler = _RssSampler(pid)
    before = sampler.peak
    sampler.start()
    started = time.perf_counter()
    size = 0
    with (
        httpx.Client(base_url=base_url, timeout=600) as http,
        http.stream("GET", "/v1/audit/export", headers={"Authorization": auth}) as response,
        path.open("wb") as out,
    ):
        response.raise_for_status()
        for chunk in response.iter_raw():
            out.write(chunk)
            size += len(chunk)
    elapsed = time.perf_counter() - started
    sampler.stop_flag.set()
    sampler.join()
    return {
        "seconds": elapsed,
        "bytes": size,
        "rss_before_mb": before / 1e6,
        "rss_peak_mb": sampler.peak / 1e6,
    }


def run() -> dict[str, Any]:
    pin_loadgen()
    figures: dict[str, Any] = {"writers": WRITERS, "phase_s": PHASE_S}
    sample_leaves, _, _ = _leaves(uuid.uuid4(), 200_000)
    figures["raw_sha256_leaves_per_s"] = round(_raw_sha256_rate(sample_leaves))

    database = bench_database()
    key = str(generate_signer("bench.confide.example/audit/v1"))
    settings = {"CONFIDE_AUDIT_LOG_KEY": key, "CONFIDE_AUDIT_INTEGRATE_INTERVAL_S": "0.05"}
    # Raw insert ceiling: the writers alone (the server is not running yet).
    written, elapsed = asyncio.run(_writers(database, PHASE_S))
    figures["raw_insert_events_per_s"] = round(written / elapsed)
    with running_server(database, **settings) as (host, port):
        base_url = f"http://{host}:{port}"
        drain_s = _wait_drained(database)
        figures["backlog_events"] = written
        figures["backlog_drain_events_per_s"] = round(written / drain_s)
        # Integration while the 64 writers keep writing.
        start_size = asyncio.run(_count(database, "SELECT count(*) FROM audit_log"))
        started = time.perf_counter()
        written, write_s = asyncio.run(_writers(database, PHASE_S))
        mid_size = asyncio.run(_count(database, "SELECT count(*) FROM audit_log"))
        tail_s = _wait_drained(database)
        total_s = time.perf_counter() - started
        figures["concurrent_written_events_per_s"] = round(written / write_s)
        figures["concurrent_integrated_during_writes_per_s"] = round((mid_size - start_size) / write_s)
        figures["concurrent_integration_events_per_s"] = round(written / total_s)
        figures["concurrent_drain_after_writers_s"] = round(tail_s, 2)

        # Writers that outrun one commit per event (an import: 50 pre-encoded events per
        # transaction), so that the integrator, not the writers, is what is measured.
        start_size = asyncio.run(_count(database, "SELECT count(*) FROM audit_log"))
        started = time.perf_counter()
        written, write_s = asyncio.run(_bulk_writers(database, PHASE_S))
        mid_size = asyncio.run(_count(database, "SELECT count(*) FROM audit_log"))
        tail_s = _wait_drained(database)
        total_s = time.perf_counter() - started
        figures["batched_written_events_per_s"] = round(written / write_s)
        figures["batched_integrated_during_writes_per_s"] = round((mid_size - start_size) / write_s)
        figures["batched_integration_events_per_s"] = round(written / total_s)
        figures["batched_drain_after_writers_s"] = round(tail_s, 2)

        auth, org = _officer(base_url, database)
        have = asyncio.run(_count(database, "SELECT count(*) FROM audit_events"))
        leaves = asyncio.run(_bulk_insert(database, org, max(0, EXPORT_EVENTS - have)))
        bulk = len(leaves)
        drain_s = _wait_drained(database)
        figures["bulk_events"] = bulk
        figures["bulk_drain_events_per_s"] = round(bulk / drain_s) if bulk else 0
        events = asyncio.run(_count(database, "SELECT count(*) FROM audit_log"))
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "export.jsonl"
            exported = _export(base_url, auth, path, _server_pid(port))
            data = path.read_bytes()
            started = time.perf_counter()
            hashlib.sha256(data).digest()
            raw_export_hash_s = time.perf_counter() - started
            del data
            started = time.perf_counter()
            summary = verify_export(ExportFile(path), [_vkey(key)])
            verify_s = time.perf_counter() - started
        figures["export"] = {
            "events": events,
            "mb": round(exported["bytes"] / 1e6, 1),
            "seconds": round(exported["seconds"], 2),
            "events_per_s": round(events / exported["seconds"]),
            "raw_sha256_of_export_s": round(raw_export_hash_s, 3),
            "server_rss_before_mb": round(exported["rss_before_mb"], 1),
            "server_rss_peak_mb": round(exported["rss_peak_mb"], 1),
            "verify_s": round(verify_s, 2),
            "verify_events_per_s": round(summary.count / verify_s),
            "raw_sha256_of_leaves_s": round(events / figures["raw_sha256_leaves_per_s"], 2),
        }
    return figures


def _vkey(secret: str) -> Any:
    from audit.note import NoteSigner  # noqa: PLC0415

    return NoteSigner.parse(secret).verifier()


def markdown(figures: dict[str, Any]) -> str:
    raw_sha = figures["raw_sha256_leaves_per_s"]
    e = figures["export"]
    lines = [
        "## Audit log over the real server (issue 6)",
        "",
        f"Server pinned to core 0 with the integrator in its lifespan (batches of up to 5,000 events, one "
        f"transaction and one signed checkpoint each); {figures['writers']} writer connections (one event "
        f"per transaction through `record()`) on core 1, PostgreSQL free on both cores; phases of "
        f"{figures['phase_s']:.0f} s. Raw SHA-256 of the same leaf bytes (one core): "
        f"**{raw_sha:,.0f} leaves/s**.",
        "",
        "| measurement | events/s | ceiling or target |",
        "|---|---|---|",
        f"| raw insert ceiling: 64 writers, no integrator | {figures['raw_insert_events_per_s']:,} | — |",
        f"| integrator draining a backlog of {figures['backlog_events']:,} | "
        f"{figures['backlog_drain_events_per_s']:,} | ≥ 10,000; raw SHA-256 {raw_sha:,} |",
        f"| 64 writers while integrating: written | {figures['concurrent_written_events_per_s']:,} | "
        f"raw insert ceiling {figures['raw_insert_events_per_s']:,} |",
        f"| 64 writers while integrating: integrated during the writes | "
        f"{figures['concurrent_integrated_during_writes_per_s']:,} | ≥ 10,000 |",
        f"| 64 writers while integrating: all written events integrated, end to end | "
        f"{figures['concurrent_integration_events_per_s']:,} | (queue empty "
        f"{figures['concurrent_drain_after_writers_s']} s after the writers stopped) |",
        f"| 64 bulk writers (50 pre-encoded events per transaction): written | "
        f"{figures['batched_written_events_per_s']:,} | — |",
        f"| 64 bulk writers: integrated during the writes | "
        f"{figures['batched_integrated_during_writes_per_s']:,} | ≥ 10,000 |",
        f"| 64 bulk writers: all integrated, end to end | "
        f"{figures['batched_integration_events_per_s']:,} | (queue empty "
        f"{figures['batched_drain_after_writers_s']} s after the writers stopped) |",
        f"| integrator draining {figures['bulk_events']:,} bulk-loaded events | "
        f"{figures['bulk_drain_events_per_s']:,} | ≥ 10,000 |",
        "",
        f"Export of **{e['events']:,} events** over HTTP (complete JSON Lines, {e['mb']} MB):",
        "",
        "| measurement | value | target or ceiling |",
        "|---|---|---|",
        f"| export | {e['events_per_s']:,} events/s ({e['seconds']} s) | ≥ 100,000 events/s |",
        f"| raw SHA-256 of the same export bytes | {e['raw_sha256_of_export_s']} s | ceiling |",
        f"| server peak RSS during the export | {e['server_rss_peak_mb']} MB "
        f"(before: {e['server_rss_before_mb']} MB) | < 150 MB |",
        f"| offline verification (`audit.verify_export`) | {e['verify_s']} s "
        f"({e['verify_events_per_s']:,} events/s) | < 5 s; raw SHA-256 of the leaves "
        f"{e['raw_sha256_of_leaves_s']} s |",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    began = time.perf_counter()
    result = run()
    print(markdown(result))
    print(f"took {time.perf_counter() - began:.0f} s")

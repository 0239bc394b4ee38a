"""Retention benchmark: delete 1,000,000 expired messages while clients keep sending.

The messaging benchmark's care team (a client and two clinicians, real keys and consent)
sends real 2 KB envelopes at a steady pace; the same conversation holds N messages past
their retention period (inserted straight into PostgreSQL with ``generate_series``,
256-byte envelopes, three recipient rows each). Phases:

1. idle: sends alone, for ``BENCH_PHASE_S`` seconds;
2. concurrent: the same sends while ``confide retention run`` (a separate process, batches
   of 5,000 threads) deletes the N messages and their recipient rows;
3. ceiling: the same N rows inserted again and removed by one raw ``DELETE`` per table
   in one transaction (same triggers and foreign keys, no batching, no audit), under the
   same sends.

Targets (issue 7): the job deletes >= 20,000 message rows/s, and the p99 of concurrent
sends is at most twice the idle p99.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from typing import Any

import asyncpg

from tests.bench.bench_messaging import _envelopes, _setup
from tests.bench.loadgen import Result, build_request, run_phase
from tests.bench.server import CONFIDE, LOADGEN_CPUS, bench_database, pin_loadgen, running_server

ROWS = int(os.environ.get("BENCH_RETENTION_ROWS", "1000000"))
PHASE_S = float(os.environ.get("BENCH_PHASE_S", "10"))
CONNECTIONS = int(os.environ.get("BENCH_RETENTION_CONNS", "8"))
PAUSE_S = 0.005  # a steady pace rather than saturation: latency is what is compared
BATCH = 5_000
ENVELOPE_BYTES = 256
_CHUNK = 100_000


async def _seed(database_url: str, ctx: dict[str, Any], rows: int) -> float:
    """Insert ``rows`` messages 2,000 days old with their recipient rows; returns seconds."""
    conn = await asyncpg.connect(database_url)
    try:
        org = await conn.fetchval("SELECT org_id FROM conversations WHERE id = $1", ctx["conversation"])
        columns = {
            r["attname"]
            for r in await conn.fetch(
                "SELECT attname FROM pg_attribute"
                " WHERE attrelid = 'message_recipients'::regclass AND attnum > 0"
            )
        }
        started = time.perf_counter()
        for first in range(0, rows, _CHUNK):
            count = min(_CHUNK, rows - first)
            async with conn.transaction():
                seqs = await conn.fetchrow(
                    """
                    WITH ins AS (
                        INSERT INTO messages (id, conversation_id, org_id, sender_id, sender_key_version,
                                              kind, envelope, envelope_sha256, created_at)
                        SELECT gen_random_uuid(), $1, $2, $3, 1, 'message', b.e, sha256(b.e || int4send(g)),
                               now() - interval '2000 days' - make_interval(secs => g + $4)
                        FROM generate_series(1, $5) AS g, (SELECT decode(repeat('ab', $6), 'hex') AS e) AS b
                        RETURNING seq
                    )
                    SELECT min(seq) AS lo, max(seq) AS hi FROM ins
                    """,
                    ctx["conversation"],
                    org,
                    ctx["sender"],
                    first,
                    count,
                    ENVELOPE_BYTES,
                )
                if seqs is None:
                    raise RuntimeError("no rows inserted")
                extra = ", conversation_id" if "conversation_id" in columns else ""
                value = ", $4" if extra else ""
                await conn.execute(
                    f"""
                    INSERT INTO message_recipients (message_seq, account_id{extra})
                    SELECT m.seq, a{value} FROM generate_series($1::bigint, $2::bigint) AS m(seq)
                    CROSS JOIN unnest($3::uuid[]) AS a
                    """,  # noqa: S608 -- fixed fragments
                    *(seqs["lo"], seqs["hi"], ctx["members"]),
                    *([ctx["conversation"]] if extra else []),
                )
        elapsed = time.perf_counter() - started
        await conn.execute("ANALYZE messages; ANALYZE message_recipients")
        return elapsed
    finally:
        await conn.close()


async def _sends_until(host: str, port: int, make: Any, running: Any, name: str) -> Result:
    """Sends in one-second slices for as long as ``running()`` says."""
    merged = Result(name, 0.0)
    while running():
        part = await run_phase(
            "slice", host, port, make, connections=CONNECTIONS, duration_s=1.0, pause_s=PAUSE_S
        )
        merged.latencies_ms.extend(part.latencies_ms)
        merged.errors += part.errors
        merged.duration_s += part.duration_s
        for status, n in part.statuses.items():
            merged.statuses[status] = merged.statuses.get(status, 0) + n
    return merged


async def _job_rate(database_url: str) -> dict[str, float]:
    """Message rows per second over the run's message batches (commit times of the batches)."""
    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow(
            """
            SELECT sum(b.deleted) AS deleted, count(*) AS batches,
                   extract(epoch FROM max(b.committed_at) - min(b.committed_at)) AS span_s,
                   extract(epoch FROM r.finished_at - r.started_at) AS run_s
            FROM retention_batches b JOIN retention_runs r ON r.id = b.run_id
            WHERE b.category = 'messages'
              AND r.id = (SELECT id FROM retention_runs ORDER BY seq DESC LIMIT 1)
            GROUP BY r.finished_at, r.started_at
            """
        )
    finally:
        await conn.close()
    if row is None:
        raise RuntimeError("the retention run deleted no messages")
    batches = int(row["batches"])
    # The span runs from the first batch's commit to the last's: one batch short.
    elapsed = float(row["span_s"]) * batches / max(batches - 1, 1)
    return {
        "deleted": int(row["deleted"]),
        "batches": batches,
        "delete_s": round(elapsed, 2),
        "run_s": round(float(row["run_s"]), 2),
        "rows_per_s": round(int(row["deleted"]) / elapsed) if elapsed else 0,
    }


async def _raw_delete(
    database_url: str, ctx: dict[str, Any], rows: int, host: str, port: int, make: Any
) -> tuple[dict[str, float], Result]:
    """The ceiling: the same rows inserted again, then one DELETE per table in one transaction."""
    insert_s = await _seed(database_url, ctx, rows)
    conn = await asyncpg.connect(database_url)
    try:

        async def delete() -> tuple[str, float]:
            started = time.perf_counter()
            async with conn.transaction():
                await conn.execute(
                    """
                    DELETE FROM message_recipients WHERE message_seq IN (
                        SELECT seq FROM messages WHERE created_at < now() - interval '1095 days')
                    """
                )
                status = await conn.execute(
                    "DELETE FROM messages WHERE created_at < now() - interval '1095 days'"
                )
            return status, time.perf_counter() - started

        task = asyncio.create_task(delete())
        during = await _sends_until(
            host, port, make, lambda: not task.done(), "POST messages during the raw DELETE"
        )
        status, elapsed = await task
    finally:
        await conn.close()
    deleted = int(status.split()[-1])
    figures = {
        "deleted": deleted,
        "delete_s": round(elapsed, 2),
        "rows_per_s": round(deleted / elapsed),
        "insert_rows_per_s": round(rows / insert_s),
    }
    return figures, during


def _cli_env(database_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONFIDE_")}
    env.update(
        {"CONFIDE_DATABASE_URL": database_url, "CONFIDE_ENVIRONMENT": "test", "CONFIDE_LOG_LEVEL": "warning"}
    )
    return env


def run() -> dict[str, Any]:
    pin_loadgen()
    database = bench_database()
    with running_server(database, CONFIDE_AUDIT_INTEGRATOR="true") as (host, port):
        ctx = _setup(f"http://{host}:{port}", database)
        bodies = iter(_envelopes(ctx, int(os.environ.get("BENCH_RETENTION_ENVELOPES", "60000"))))
        hostport = f"{host}:{port}"
        path = f"/v1/conversations/{ctx['conversation']}/messages"
        auth = ctx["doc"]["Authorization"]

        def send(_: int) -> bytes:
            headers = {"Authorization": auth, "Content-Type": "application/json"}
            return build_request("POST", path, hostport, headers, next(bodies))

        seed_s = asyncio.run(_seed(database, ctx, ROWS))
        asyncio.run(
            run_phase("warmup", host, port, send, connections=CONNECTIONS, duration_s=1.0, pause_s=PAUSE_S)
        )
        idle = asyncio.run(
            run_phase(
                "POST messages, idle",
                host,
                port,
                send,
                connections=CONNECTIONS,
                duration_s=PHASE_S,
                pause_s=PAUSE_S,
            )
        )
        process = subprocess.Popen(
            [CONFIDE, "retention", "run", "--quiet", "--batch-size", str(BATCH)],
            env=_cli_env(database),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            preexec_fn=lambda: os.sched_setaffinity(0, LOADGEN_CPUS),  # noqa: PLW1509 -- only sets CPU affinity
        )
        during = asyncio.run(
            _sends_until(
                host, port, send, lambda: process.poll() is None, "POST messages during the retention run"
            )
        )
        out, err = process.communicate()
        if process.returncode != 0:
            raise RuntimeError(f"retention run failed: {err.decode(errors='replace')[-2000:]}")
        job = asyncio.run(_job_rate(database))
        raw, during_raw = asyncio.run(_raw_delete(database, ctx, ROWS, host, port, send))
    figures: dict[str, Any] = {
        "rows": ROWS,
        "seed_s": round(seed_s, 1),
        "idle": idle.summary(),
        "during": during.summary(),
        "during_raw": during_raw.summary(),
        "job": job,
        "raw": raw,
        "summary_table": out.decode(),
    }
    figures["p99_ratio"] = round(during.pct(99) / idle.pct(99), 2)
    figures["raw_p99_ratio"] = round(during_raw.pct(99) / idle.pct(99), 2)
    figures["job_over_raw"] = round(job["rows_per_s"] / raw["rows_per_s"], 3)
    return figures


def markdown(figures: dict[str, Any]) -> str:
    job, raw, idle, during = figures["job"], figures["raw"], figures["idle"], figures["during"]
    lines = [
        "## Retention (issue 7)",
        "",
        f"{figures['rows']:,} messages past their period (256-byte envelopes, 3 recipient rows each, "
        f"inserted in {figures['seed_s']} s) deleted by `confide retention run` (a separate process, "
        f"batches of {BATCH:,} message threads, each committed with its audit event) while the care team "
        f"keeps sending real 2 KB envelopes ({CONNECTIONS} connections, {PAUSE_S * 1000:.0f} ms pause "
        "between requests). Ceiling: the same rows inserted again and removed by one raw DELETE per "
        "table in one transaction, under the same sends.",
        "",
        "| measurement | value |",
        "|---|---|",
        f"| job: message rows deleted | {job['deleted']:,} in {job['batches']} batches |",
        f"| job: message rows/s (target ≥ 20,000) | **{job['rows_per_s']:,}** ({job['delete_s']} s deleting, "
        f"{job['run_s']} s whole run) |",
        f"| raw one-statement DELETE rows/s (ceiling) | {raw['rows_per_s']:,} ({raw['delete_s']} s) |",
        f"| job ÷ ceiling | {figures['job_over_raw']} |",
        f"| raw INSERT rows/s (for scale) | {raw['insert_rows_per_s']:,} |",
        "",
        "| phase | req/s | p50 ms | p99 ms | errors | statuses |",
        "|---|---|---|---|---|---|",
    ]
    lines.extend(
        f"| {s['name']} | {s['rate']} | {s['p50_ms']} | {s['p99_ms']} | {s['errors']} | {s['statuses']} |"
        for s in (idle, during, figures["during_raw"])
    )
    lines += [
        "",
        f"Concurrent p99 ÷ idle p99: **{figures['p99_ratio']}** (target ≤ 2); during the one-statement "
        f"DELETE: {figures['raw_p99_ratio']}.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown(run()))

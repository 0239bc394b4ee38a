"""Large history pagination (checklist L-05): a page costs the same after 100,000 messages.

One care team conversation holds 100,000 messages; a recipient pages through all of
it with ``after`` cursors (pages of 100), then walks 100 pages back from the end with
``before`` cursors. Checked on the way: every page has at most 100 items, and the
pages neither overlap nor leave gaps (the ids come back exactly as stored, in send
order). Ceiling: the same server, the same recipient, a page of 100 from a
conversation that holds only 100 messages, in the same run. Requests are sequential
on one connection, so the figures are per-page latencies without queueing.

The history is written with SQL rather than sent over HTTP (100,000 sends would take
minutes): one real envelope sealed by the crypto library, stored under fresh ids, with
a recipient row for each member, then ``VACUUM ANALYZE`` as on a long-lived table.
Pages pass stored envelopes through unopened, so the copies do not change the work.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import statistics
import time
import uuid
from typing import Any

import asyncpg
import httpx

from tests.bench import bench_messaging
from tests.bench.server import bench_database, pin_loadgen, running_server

HISTORY = int(os.environ.get("BENCH_HISTORY_MESSAGES", "100000"))
PAGE = 100
BACK_PAGES = 100
CEILING_FETCHES = 300


async def _seed(
    database: str, conversation: uuid.UUID, members: list[uuid.UUID], envelope: bytes, n: int
) -> None:
    conn = await asyncpg.connect(database)
    try:
        org = await conn.fetchval("SELECT org_id FROM conversations WHERE id = $1", conversation)
        async with conn.transaction():
            await conn.execute(
                """
                WITH inserted AS (
                    INSERT INTO messages (id, conversation_id, org_id, sender_id, sender_key_version, kind,
                                          envelope, envelope_sha256, created_at)
                    SELECT gen_random_uuid(), $1, $2, $3, 1, 'message', $4, $5,
                           now() - interval '1 second' * ($6 - g)
                    FROM generate_series(1, $6) AS g
                    RETURNING seq
                )
                INSERT INTO message_recipients (message_seq, conversation_id, account_id)
                SELECT i.seq, $1, a FROM inserted i, unnest($7::uuid[]) AS a
                """,
                conversation,
                org,
                members[0],
                envelope,
                hashlib.sha256(envelope).digest(),
                n,
                members,
            )
        await conn.execute("VACUUM ANALYZE messages")
        await conn.execute("VACUUM ANALYZE message_recipients")
    finally:
        await conn.close()


async def _stored_ids(database: str, conversation: uuid.UUID) -> list[str]:
    conn = await asyncpg.connect(database)
    try:
        rows = await conn.fetch(
            "SELECT id FROM messages WHERE conversation_id = $1 ORDER BY seq", conversation
        )
        return [str(r["id"]) for r in rows]
    finally:
        await conn.close()


def _new_conversation(http: httpx.Client, ctx: dict[str, Any]) -> uuid.UUID:
    conversation = uuid.uuid4()
    http.post(
        "/v1/conversations",
        json={
            "id": str(conversation),
            "kind": "care_team",
            "client_id": str(ctx["members"][2]),
            "clinicians": [str(ctx["members"][1])],
        },
        headers=ctx["doc"],
    ).raise_for_status()
    return conversation


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def _stats(latencies: list[float]) -> dict[str, float]:
    return {
        "pages": len(latencies),
        "p50_ms": round(statistics.median(latencies), 2),
        "p95_ms": round(_pct(latencies, 95), 2),
        "p99_ms": round(_pct(latencies, 99), 2),
        "max_ms": round(max(latencies), 2),
    }


class Walk:
    """What one walk through the pages saw."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.latencies_ms: list[float] = []
        self.largest_page = 0
        self.last_item_cursor: str | None = None


def _walk(
    http: httpx.Client, path: str, headers: dict[str, str], *, cursor: str | None, direction: str, pages: int
) -> Walk:
    """Up to ``pages`` pages from ``cursor`` (``after``: forwards; ``before``: backwards)."""
    walk = Walk()
    for _ in range(pages):
        params = {"limit": str(PAGE), **({direction: cursor} if cursor else {})}
        started = time.perf_counter()
        answer = http.get(path, params=params, headers=headers)
        walk.latencies_ms.append((time.perf_counter() - started) * 1000)
        answer.raise_for_status()
        body = answer.json()
        items = body["items"]
        page_ids = [item["id"] for item in items]
        walk.largest_page = max(walk.largest_page, len(page_ids))
        if items:
            walk.last_item_cursor = items[-1]["cursor"]
        walk.ids = page_ids + walk.ids if direction == "before" else walk.ids + page_ids
        cursor = body["next_cursor"] if direction == "after" else body["prev_cursor"]
        if cursor is None or not page_ids:
            break
    return walk


def run() -> dict[str, Any]:
    pin_loadgen()
    database = bench_database()
    with running_server(database) as (host, port):
        base_url = f"http://{host}:{port}"
        ctx = bench_messaging._setup(base_url, database)
        envelope = bench_messaging._envelopes(ctx, 1)[0]
        members = list(ctx["members"])
        with httpx.Client(base_url=base_url, timeout=30) as http:
            small = _new_conversation(http, ctx)
        started = time.perf_counter()
        asyncio.run(_seed(database, ctx["conversation"], members, envelope, HISTORY))
        asyncio.run(_seed(database, small, members, envelope, PAGE))
        seed_s = time.perf_counter() - started
        stored = asyncio.run(_stored_ids(database, ctx["conversation"]))
        reader = ctx["member_auth"][2]  # the client
        with httpx.Client(base_url=base_url, timeout=30) as http:
            small_path = f"/v1/conversations/{small}/messages"
            ceiling: list[float] = []
            for _ in range(CEILING_FETCHES):
                t0 = time.perf_counter()
                http.get(small_path, params={"limit": str(PAGE)}, headers=reader).raise_for_status()
                ceiling.append((time.perf_counter() - t0) * 1000)
            path = f"/v1/conversations/{ctx['conversation']}/messages"
            forward = _walk(http, path, reader, cursor=None, direction="after", pages=HISTORY // PAGE + 2)
            # Backwards from the newest message (``before`` leaves the cursor's own message out).
            backward = _walk(
                http, path, reader, cursor=forward.last_item_cursor, direction="before", pages=BACK_PAGES
            )
    return {
        "history": HISTORY,
        "seed_s": round(seed_s, 1),
        "ceiling": _stats(ceiling),
        "forward": {**_stats(forward.latencies_ms), "largest_page": forward.largest_page},
        "backward": {**_stats(backward.latencies_ms), "largest_page": backward.largest_page},
        # Exactly the stored ids in send order: no page overlaps another, none leaves a gap.
        "forward_exact": forward.ids == stored,
        "backward_exact": backward.ids == stored[-1 - BACK_PAGES * PAGE : -1],
        "p95_over_ceiling": round(_pct(forward.latencies_ms, 95) / _pct(ceiling, 95), 2),
    }


def markdown(figures: dict[str, Any]) -> str:
    c, f, b = figures["ceiling"], figures["forward"], figures["backward"]
    rows = [
        ("page of 100, conversation of 100 messages (ceiling)", c, "—"),
        (f"forward through {figures['history']:,} messages (`after`)", f, figures["forward_exact"]),
        (f"backward {BACK_PAGES} pages from the newest (`before`)", b, figures["backward_exact"]),
    ]
    lines = [
        "## Large history pagination (checklist L-05)",
        "",
        f"One conversation of {figures['history']:,} messages (written by SQL in {figures['seed_s']} s: one "
        "real sealed envelope under fresh ids, a recipient row per member, then VACUUM ANALYZE); the client "
        "pages through it, 100 per page, one request at a time on one connection. Ceiling: the same server "
        "and reader fetching a page of 100 from a conversation of 100 messages, in the same run.",
        "",
        "| walk | pages | p50 ms | p95 ms | p99 ms | max ms | exact ids, no overlap or gap |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, s, exact in rows:
        lines.append(
            f"| {name} | {s['pages']} | {s['p50_ms']} | {s['p95_ms']} | {s['p99_ms']} | {s['max_ms']} "
            f"| {exact} |"
        )
    lines += [
        "",
        f"Largest page: {max(f['largest_page'], b['largest_page'])} items (limit 100). Forward p95 ÷ ceiling "
        f"p95: **{figures['p95_over_ceiling']}** (1.0 means the history's length costs nothing; target p95 "
        "< 50 ms).",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown(run()))

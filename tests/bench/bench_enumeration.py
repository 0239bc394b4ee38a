"""No account enumeration by login timing (checklist A-05b).

The same server answers logins with a wrong password for an account that exists and
for emails that name nobody, alternately, one at a time on one connection, at the
production Argon2id parameters (an unknown account costs a real verification against a
dummy hash). Reported: both kinds' answers (status and body must be identical apart
from the request id), medians and spreads, their ratio, and a Mann-Whitney U test of
the two samples (a small p-value would mean the timings can be told apart). Throttling
is raised out of the way for the run: it is tested on its own (test_throttling.py).

Both kinds use one email each, so each failure updates that email's throttle row. A
first failure for any email, known or not, inserts the row instead, a few milliseconds
slower (a run with a fresh unknown email every round measured p = 0.002 for that
reason alone): it tells whether an email failed recently, not whether it has an account.
"""

from __future__ import annotations

import math
import os
import statistics
import subprocess
import time
from typing import Any

import httpx

from tests.bench.server import CONFIDE, bench_database, pin_loadgen, running_server

ROUNDS = int(os.environ.get("BENCH_ENUMERATION_ROUNDS", "40"))
PASSWORD = "enumeration bench admin passphrase"
NO_THROTTLE = {
    "CONFIDE_THROTTLE_ACCOUNT_FREE_FAILURES": "100",
    "CONFIDE_THROTTLE_ADDRESS_FREE_FAILURES": "10000",
}


def _mann_whitney_p(a: list[float], b: list[float]) -> float:
    """Two-sided p-value of the Mann-Whitney U test (normal approximation, ties averaged)."""
    pooled = sorted([(v, 0) for v in a] + [(v, 1) for v in b])
    ranks = [0.0] * len(pooled)
    i = 0
    while i < len(pooled):
        j = i
        while j + 1 < len(pooled) and pooled[j + 1][0] == pooled[i][0]:
            j += 1
        for k in range(i, j + 1):
            ranks[k] = (i + j) / 2 + 1
        i = j + 1
    n1, n2 = len(a), len(b)
    r1 = sum(r for r, (_, group) in zip(ranks, pooled, strict=True) if group == 0)
    u = r1 - n1 * (n1 + 1) / 2
    mean, sd = n1 * n2 / 2, math.sqrt(n1 * n2 * (n1 + n2 + 1) / 12)
    z = (u - mean) / sd if sd else 0.0
    return math.erfc(abs(z) / math.sqrt(2))


def _without_request_id(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != "request_id"}


def run() -> dict[str, Any]:
    pin_loadgen()
    database = bench_database()
    with running_server(database, **NO_THROTTLE) as (host, port):
        env = {**os.environ, "CONFIDE_DATABASE_URL": database, "CONFIDE_ENVIRONMENT": "test"}
        subprocess.run(
            [CONFIDE, "admin", "create", "--organization", "enum", "--email", "admin@enum.example",
             "--name", "A", "--password-stdin"],
            input=PASSWORD + "\n", env=env, check=True, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        timings: dict[str, list[float]] = {"known": [], "unknown": []}
        answers: dict[str, set[tuple[int, str]]] = {"known": set(), "unknown": set()}
        with httpx.Client(base_url=f"http://{host}:{port}", timeout=30) as http:
            for n in range(ROUNDS):
                order = ("known", "unknown") if n % 2 == 0 else ("unknown", "known")
                for kind in order:
                    email = "admin@enum.example" if kind == "known" else "nobody@enum.example"
                    body = {"organization": "enum", "email": email, "password": "not the passphrase"}
                    started = time.perf_counter()
                    answer = http.post("/v1/auth/login", json=body)
                    timings[kind].append((time.perf_counter() - started) * 1000)
                    answers[kind].add(
                        (answer.status_code, str(sorted(_without_request_id(answer.json()).items())))
                    )
    known, unknown = timings["known"], timings["unknown"]
    return {
        "rounds": ROUNDS,
        "known": {
            "median_ms": round(statistics.median(known), 1),
            "stdev_ms": round(statistics.stdev(known), 1),
        },
        "unknown": {
            "median_ms": round(statistics.median(unknown), 1),
            "stdev_ms": round(statistics.stdev(unknown), 1),
        },
        "median_ratio": round(statistics.median(known) / statistics.median(unknown), 3),
        "p_value": round(_mann_whitney_p(known, unknown), 3),
        "identical_answers": answers["known"] == answers["unknown"] and len(answers["known"]) == 1,
        "statuses": sorted({status for status, _ in answers["known"] | answers["unknown"]}),
    }


def markdown(figures: dict[str, Any]) -> str:
    k, u, n = figures["known"], figures["unknown"], figures["rounds"]
    return "\n".join(
        [
            "## Login timing, known and unknown accounts (checklist A-05b)",
            "",
            f"{n} wrong-password logins for an existing account and {n} for an email that names nobody, "
            "alternated on one connection, production Argon2id. Ceiling: each kind is the other's "
            "reference, in the same run.",
            "",
            "| login for | median ms | stdev ms |",
            "|---|---|---|",
            f"| existing account, wrong password | {k['median_ms']} | {k['stdev_ms']} |",
            f"| unknown account | {u['median_ms']} | {u['stdev_ms']} |",
            "",
            f"Median ratio: **{figures['median_ratio']}**; Mann-Whitney U two-sided "
            f"p = **{figures['p_value']}** (a small p, say below 0.01, would mean the two can be told "
            "apart by timing). Identical answers (status and body but the request id): "
            f"**{figures['identical_answers']}** (statuses {figures['statuses']}).",
            "",
        ]
    )


if __name__ == "__main__":
    print(markdown(run()))

"""HTTP benchmark of the foundation: /health/live, authenticated GET /v1/me, login.

One run, same server settings, server pinned to core 0 and this load generator to
core 1. Ceilings measured in the same run: /health/live for /v1/me, the raw
Argon2id hash rate on the server's core for login.

Targets (issue 2): /v1/me >= 50 % of /health/live at 64 connections; logins >= 80 %
of the raw hash rate of the hashing cores; /health/live p99 < 50 ms during a storm
of 40 concurrent logins.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import subprocess
import sys
import time
from typing import Any

import httpx

from backend.settings import load_settings
from tests.bench.loadgen import Result, build_request, run_phase
from tests.bench.server import (
    CONFIDE,
    SERVER_CPUS,
    bench_database,
    pin_loadgen,
    running_server,
    server_process,
)
from tests.helpers import totp_code

ADMIN_PW = "bench-admin-passphrase-1"
DOC_PW = "bench-doctor-passphrase-2"
CLIENT_PW = "bench client passphrase number 3"
PHASE_S = float(os.environ.get("BENCH_PHASE_S", "10"))


def _raw_hash_rate(seconds: float = 5.0) -> float:
    """Argon2id hashes per second on the server's core(s), with the server's parameters."""
    s = load_settings({})
    code = (
        "import os,time\n"
        "from argon2 import PasswordHasher, Type\n"
        f"os.sched_setaffinity(0, {SERVER_CPUS!r})\n"
        f"h = PasswordHasher(time_cost={s.argon2_time_cost}, memory_cost={s.argon2_memory_kib}, "
        f"parallelism={s.argon2_parallelism}, hash_len=32, salt_len=16, type=Type.ID)\n"
        "n = 0; t = time.perf_counter()\n"
        f"while time.perf_counter() - t < {seconds}:\n"
        "    h.hash('a benchmark password'); n += 1\n"
        "print(n / (time.perf_counter() - t))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    return float(out.stdout.strip()) * 1  # one hashing thread per server core


def _setup_accounts(base_url: str, env_db: str) -> str:
    env = {**os.environ, "CONFIDE_DATABASE_URL": env_db, "CONFIDE_ENVIRONMENT": "test"}
    subprocess.run(
        [CONFIDE, "admin", "create", "--organization", "bench", "--email", "admin@bench.example",
         "--name", "Admin", "--password-stdin"],
        input=ADMIN_PW + "\n", env=env, check=True, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    with httpx.Client(base_url=base_url, timeout=10) as http:

        def login(email: str, password: str) -> dict[str, str]:
            r = http.post(
                "/v1/auth/login", json={"organization": "bench", "email": email, "password": password}
            )
            r.raise_for_status()
            return {"Authorization": f"Bearer {r.json()['token']}"}

        def enrol(headers: dict[str, str]) -> None:
            secret = http.post("/v1/auth/mfa/totp", headers=headers).json()["secret"]
            code = totp_code(secret, dt.datetime.now(dt.UTC))
            http.post("/v1/auth/mfa/totp/confirm", json={"code": code}, headers=headers).raise_for_status()

        admin = login("admin@bench.example", ADMIN_PW)
        enrol(admin)
        http.post(
            "/v1/accounts",
            json={
                "email": "doc@bench.example",
                "display_name": "Doc",
                "role": "clinician",
                "password": DOC_PW,
            },
            headers=admin,
        ).raise_for_status()
        doc = login("doc@bench.example", DOC_PW)
        enrol(doc)
        code = http.post("/v1/invites", json={}, headers=doc).json()["code"]
        http.post(
            f"/v1/invites/{code}/redeem",
            json={"email": "client@bench.example", "display_name": "C", "password": CLIENT_PW},
        ).raise_for_status()
        return login("client@bench.example", CLIENT_PW)["Authorization"]


async def _phases(host: str, port: int, auth: str) -> tuple[dict[str, Result], dict[str, float]]:
    hostport = f"{host}:{port}"
    live = build_request("GET", "/health/live", hostport)
    me = build_request("GET", "/v1/me", hostport, {"Authorization": auth})
    login_body = json.dumps(
        {"organization": "bench", "email": "client@bench.example", "password": CLIENT_PW}
    ).encode()
    login = build_request(
        "POST", "/v1/auth/login", hostport, {"Content-Type": "application/json"}, login_body
    )
    results: dict[str, Result] = {}
    await run_phase("warmup", host, port, lambda _: live, connections=8, duration_s=1.0)
    results["live"] = await run_phase(
        "GET /health/live", host, port, lambda _: live, connections=64, duration_s=PHASE_S
    )
    results["me"] = await run_phase(
        "GET /v1/me", host, port, lambda _: me, connections=64, duration_s=PHASE_S
    )
    results["login"] = await run_phase(
        "POST /v1/auth/login", host, port, lambda _: login, connections=4, duration_s=PHASE_S
    )
    server = server_process(port)
    rss_before = server.memory_info().rss
    # Forty people logging in at once: each waits for its answer and, when told 429, for the
    # Retry-After second (the server's answer is at least 1 s) before trying again, as front
    # ends do. A flood that ignores Retry-After is the rate limiter's to refuse per address
    # (tests/e2e/test_rate_limit_under_load.py); the benchmark server runs without limits.
    storm = asyncio.create_task(
        run_phase(
            "login storm (40 conns)",
            host,
            port,
            lambda _: login,
            connections=40,
            duration_s=PHASE_S,
            pause_on_429_s=1.0,
        )
    )
    peak = [rss_before]

    async def watch_memory() -> None:
        while not storm.done():
            peak[0] = max(peak[0], server.memory_info().rss)
            await asyncio.sleep(0.05)

    watcher = asyncio.create_task(watch_memory())
    await asyncio.sleep(0.5)
    results["live_during_storm"] = await run_phase(
        "GET /health/live during storm",
        host,
        port,
        lambda _: live,
        connections=1,
        duration_s=PHASE_S - 1,
        pause_s=0.02,
    )
    results["storm"] = await storm
    await watcher
    return results, {"rss_before_mb": rss_before / 2**20, "rss_peak_mb": peak[0] / 2**20}


def run() -> dict[str, Any]:
    pin_loadgen()
    raw_hash = _raw_hash_rate()
    figures: dict[str, Any] = {"raw_argon2id_per_s": round(raw_hash, 2), "servers": {}}
    for server in os.environ.get("BENCH_SERVERS", "uvicorn,granian").split(","):
        database = bench_database()
        with running_server(database, server=server) as (host, port):
            auth = _setup_accounts(f"http://{host}:{port}", database)
            results, memory = asyncio.run(_phases(host, port, auth))
        figures["servers"][server] = {k: v.summary() for k, v in results.items()}
        r = results
        figures["servers"][server]["ratios"] = {
            "me_over_live": round(r["me"].rate / r["live"].rate, 3),
            "login_over_raw_hash": round(r["login"].rate / raw_hash, 3),
            "live_p99_during_storm_ms": round(r["live_during_storm"].pct(99), 2),
            "storm_rss_before_mb": round(memory["rss_before_mb"], 1),
            "storm_rss_peak_mb": round(memory["rss_peak_mb"], 1),
        }
    return figures


def markdown(figures: dict[str, Any]) -> str:
    lines = [
        "## Foundation: HTTP (issue 2)",
        "",
        "Server pinned to core 0 (one worker, one Argon2id thread, production Argon2id parameters "
        "m=64 MiB, t=3, p=1); the asyncio load generator pinned to core 1. In the login storm each of the "
        "40 clients waits 1 s after a 429 (Retry-After), as front ends do. "
        f"Each phase {PHASE_S:.0f} s. Raw Argon2id on core 0: **{figures['raw_argon2id_per_s']} hashes/s**.",
        "",
        "| server | phase | conns | req/s | p50 ms | p99 ms | errors | statuses |",
        "|---|---|---|---|---|---|---|---|",
    ]
    conns = {"live": 64, "me": 64, "login": 4, "storm": 40, "live_during_storm": 1}
    for server, data in figures["servers"].items():
        for key in ("live", "me", "login", "storm", "live_during_storm"):
            s = data[key]
            lines.append(
                f"| {server} | {s['name']} | {conns[key]} | {s['rate']} | {s['p50_ms']} | {s['p99_ms']} "
                f"| {s['errors']} | {s['statuses']} |"
            )
    lines += ["", "| server | /v1/me ÷ /health/live (target ≥ 0.50) | logins ÷ raw hash rate (target ≥ 0.80) "
              "| /health/live p99 during 40-login storm (target < 50 ms) |", "|---|---|---|---|"]  # fmt: skip
    for server, data in figures["servers"].items():
        r = data["ratios"]
        storm_p99 = r["live_p99_during_storm_ms"]
        lines.append(f"| {server} | {r['me_over_live']} | {r['login_over_raw_hash']} | {storm_p99} ms |")
    lines += [
        "",
        "Memory during the 40-login storm (checklist L-02: below the hashing workers times 64 MiB plus the "
        "resident size before the storm):",
        "",
        "| server | RSS before storm | peak RSS during storm | budget |",
        "|---|---|---|---|",
    ]
    for server, data in figures["servers"].items():
        r = data["ratios"]
        budget = r["storm_rss_before_mb"] + 64 * len(SERVER_CPUS)
        lines.append(
            f"| {server} | {r['storm_rss_before_mb']} MiB | {r['storm_rss_peak_mb']} MiB | {budget:.1f} MiB |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    started = time.perf_counter()
    result = run()
    print(markdown(result))
    print(f"took {time.perf_counter() - started:.0f} s")

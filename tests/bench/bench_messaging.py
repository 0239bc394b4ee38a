"""Messaging benchmark: send and page fetch against the real server, ceiling in the same run.

Sends are real 2 KB envelopes to 3 recipients (a care team: the client and two
clinicians), sealed beforehand with the crypto library, so the server does all its
work per request: signature check, policy decision with facts, recipient check,
insert, audit event, push outbox and NOTIFY. Ceiling: the same server answering a
bare POST of a 2 KB JSON body decoded into a Struct with 201 (no database).

Targets (issue 5): sending >= 25 % of the ceiling's requests/s with p99 < 50 ms;
a 50-message page fetch >= 25 % of it.

Two more ceilings, reported beside the issue's: the same echo with a body as large as
one real envelope (a 2 KB body is padded to 4 KiB, then base64 in JSON), and the same
server answering a GET with a prepared body as large as the 50-message page. They
tell how much of the gap is moving bytes rather than our work per request.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import os
import secrets
import subprocess
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx

from crypto.client import InnerPayload, generate_identity, seal_envelope, sign_consent
from crypto.public import ConsentAction, EnvelopeKind, encode
from tests.bench.loadgen import Result, build_request, run_phase
from tests.bench.server import (
    CONFIDE,
    bench_database,
    cpu_seconds,
    cpu_spent,
    pin_loadgen,
    postgres_processes,
    running_server,
    server_process,
)
from tests.helpers import totp_code

PHASE_S = float(os.environ.get("BENCH_PHASE_S", "10"))
BODY = secrets.token_bytes(2048)


def _setup(base_url: str, database_url: str) -> dict[str, Any]:
    env = {**os.environ, "CONFIDE_DATABASE_URL": database_url, "CONFIDE_ENVIRONMENT": "test"}
    subprocess.run(
        [
            CONFIDE,
            "admin",
            "create",
            "--organization",
            "msgbench",
            "--email",
            "admin@m.example",
            "--name",
            "A",
            "--password-stdin",
        ],
        input="bench admin passphrase\n",
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    with httpx.Client(base_url=base_url, timeout=30) as http:

        def login(email: str, password: str) -> dict[str, str]:
            r = http.post(
                "/v1/auth/login", json={"organization": "msgbench", "email": email, "password": password}
            )
            r.raise_for_status()
            return {"Authorization": f"Bearer {r.json()['token']}"}

        def enrol(headers: dict[str, str]) -> None:
            secret = http.post("/v1/auth/mfa/totp", headers=headers).json()["secret"]
            code = totp_code(secret, dt.datetime.now(dt.UTC))
            http.post("/v1/auth/mfa/totp/confirm", json={"code": code}, headers=headers).raise_for_status()

        admin = login("admin@m.example", "bench admin passphrase")
        enrol(admin)
        docs = []
        for n in (1, 2):
            body = {
                "email": f"doc{n}@m.example",
                "display_name": "D",
                "role": "clinician",
                "password": "doc pass 123",
            }
            http.post("/v1/accounts", json=body, headers=admin).raise_for_status()
            headers = login(f"doc{n}@m.example", "doc pass 123")
            enrol(headers)
            docs.append(headers)
        code = http.post("/v1/invites", json={}, headers=docs[0]).json()["code"]
        redeemed = http.post(
            f"/v1/invites/{code}/redeem",
            json={"email": "c@m.example", "display_name": "C", "password": "client passphrase 1"},
        )
        redeemed.raise_for_status()
        patient = login("c@m.example", "client passphrase 1")
        ids = [uuid.UUID(http.get("/v1/me", headers=h).json()["id"]) for h in (*docs, patient)]
        org = uuid.UUID(http.get("/v1/me", headers=patient).json()["organization_id"])
        keys = {account: generate_identity(account) for account in ids}
        for headers, account in zip((*docs, patient), ids, strict=True):
            http.put(
                "/v1/me/keys",
                content=encode(keys[account].bundle),
                headers={**headers, "Content-Type": "application/json"},
            ).raise_for_status()
        start = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(minutes=1)
        for clinician in ids[:2]:  # the client consents to messaging with both clinicians
            consent = sign_consent(
                keys[ids[2]],
                action=ConsentAction.GRANT,
                consent_id=uuid.uuid4(),
                organization_id=org,
                grantee_type="clinician",
                grantee_id=clinician,
                scopes=("messaging", "records.read"),
                purpose="TREAT",
                valid_from=start,
                valid_until=start + dt.timedelta(days=1),
            )
            http.post(
                "/v1/consents",
                content=encode(consent),
                headers={**patient, "Content-Type": "application/json"},
            ).raise_for_status()
        conversation = uuid.uuid4()
        created = http.post(
            "/v1/conversations",
            json={
                "id": str(conversation),
                "kind": "care_team",
                "client_id": str(ids[2]),
                "clinicians": [str(ids[1])],
            },
            headers=docs[0],
        )
        created.raise_for_status()
        return {
            "doc": docs[0],
            # The members' sessions, in the order of "members" (both clinicians, then the client).
            "member_auth": [*docs, patient],
            "keys": keys,
            "sender": ids[0],
            "ids": ids,
            "conversation": conversation,
            "members": ids,
        }


def _envelopes(ctx: dict[str, Any], count: int) -> list[bytes]:
    keys = ctx["keys"]
    sender = keys[ctx["sender"]]
    recipients = [keys[a].bundle for a in ctx["members"]]
    payload = InnerPayload(version=1, content_type="application/octet-stream", body=BODY)
    return [
        encode(
            seal_envelope(
                sender,
                kind=EnvelopeKind.MESSAGE,
                context_id=ctx["conversation"],
                item_id=uuid.uuid4(),
                payload=payload,
                recipients=recipients,
            )
        )
        for _ in range(count)
    ]


async def _phases(
    host: str, port: int, ctx: dict[str, Any], bodies: list[bytes]
) -> tuple[dict[str, Result], dict[str, Any]]:
    hostport = f"{host}:{port}"
    auth = ctx["doc"]["Authorization"]
    path = f"/v1/conversations/{ctx['conversation']}/messages"
    echo_body = json.dumps(
        {
            "id": str(uuid.uuid4()),
            "context": str(uuid.uuid4()),
            "blob": base64.b64encode(BODY[:1500]).decode(),
        }
    ).encode()
    echo = build_request("POST", "/_bench/echo", hostport, {"Content-Type": "application/json"}, echo_body)
    queue = iter(bodies)

    def send(_: int) -> bytes:
        return build_request(
            "POST", path, hostport, {"Authorization": auth, "Content-Type": "application/json"}, next(queue)
        )

    page = build_request("GET", path + "?limit=50", hostport, {"Authorization": auth})
    # The echo again with a blob that makes the body as large as one real envelope.
    blob = base64.b64encode(secrets.token_bytes(len(bodies[0]) * 3 // 4)).decode()[: len(bodies[0]) - 100]
    echo_sized = {"id": str(uuid.uuid4()), "context": str(uuid.uuid4()), "blob": blob}
    json_type = {"Content-Type": "application/json"}
    sized_body = json.dumps(echo_sized).encode()
    echo_envelope = build_request("POST", "/_bench/echo", hostport, json_type, sized_body)
    results: dict[str, Result] = {}
    cpu: dict[str, dict[str, float]] = {}
    server = server_process(port)

    async def phase(key: str, name: str, request: Callable[[int], bytes], **options: Any) -> None:
        # The CPU the server and PostgreSQL spent per answered request: where the time goes.
        # (Backends the pool opens during the phase count whole.)
        before = cpu_seconds([server]), cpu_seconds(postgres_processes())
        results[key] = result = await run_phase(name, host, port, request, connections=64, **options)
        after = cpu_seconds([server]), cpu_seconds(postgres_processes())
        answered = max(result.requests, 1)
        cpu[key] = {
            "server_ms": round(cpu_spent(before[0], after[0]) * 1000 / answered, 3),
            "postgres_ms": round(cpu_spent(before[1], after[1]) * 1000 / answered, 3),
        }

    await run_phase("warmup", host, port, lambda _: echo, connections=8, duration_s=1.0)
    await phase("echo", "POST /_bench/echo (ceiling)", lambda _: echo, duration_s=PHASE_S)
    await phase(
        "send", "POST messages (2 KB, 3 recipients)", send, duration_s=PHASE_S, max_requests=len(bodies)
    )
    await phase("page", "GET 50-message page", lambda _: page, duration_s=PHASE_S)
    async with httpx.AsyncClient(base_url=f"http://{hostport}", headers={"Authorization": auth}) as one:
        page_bytes = len((await one.get(f"{path}?limit=50")).content)
    sized = build_request("GET", f"/_bench/bytes?size={page_bytes}", hostport)
    await phase(
        "echo_envelope",
        f"POST /_bench/echo, {len(echo_sized['blob']) + 100:,} B body (envelope-sized ceiling)",
        lambda _: echo_envelope,
        duration_s=PHASE_S,
    )
    await phase(
        "bytes",
        f"GET /_bench/bytes, {page_bytes:,} B answer (page-sized ceiling)",
        lambda _: sized,
        duration_s=PHASE_S,
    )
    return results, {"page_bytes": page_bytes, "envelope_bytes": len(bodies[0]), "cpu": cpu}


def run() -> dict[str, Any]:
    pin_loadgen()
    database = bench_database()
    with running_server(database, CONFIDE_BENCH_ROUTES="true", CONFIDE_AUDIT_INTEGRATOR="true") as (
        host,
        port,
    ):
        ctx = _setup(f"http://{host}:{port}", database)
        started = time.perf_counter()
        bodies = _envelopes(ctx, int(os.environ.get("BENCH_ENVELOPES", "15000")))
        seal_s = time.perf_counter() - started
        results, sizes = asyncio.run(_phases(host, port, ctx, bodies))
    figures: dict[str, Any] = {k: v.summary() for k, v in results.items()}
    figures["recipients"] = len(ctx["members"])
    figures["sealed_per_s_client_side"] = round(len(bodies) / seal_s)
    figures["send_over_ceiling"] = round(results["send"].rate / results["echo"].rate, 3)
    figures["page_over_ceiling"] = round(results["page"].rate / results["echo"].rate, 3)
    figures["send_over_sized"] = round(results["send"].rate / results["echo_envelope"].rate, 3)
    figures["page_over_sized"] = round(results["page"].rate / results["bytes"].rate, 3)
    figures.update(sizes)
    return figures


def _budget(figures: dict[str, Any], key: str, what: str) -> str:
    """The CPU one request may take at the target rate, against what it took."""
    target = 0.25 * float(figures["echo"]["rate"])
    cpu = figures["cpu"][key]
    cores = target * (cpu["server_ms"] + cpu["postgres_ms"]) / 1000
    return (
        f"At the target rate ({target:,.0f} {what}s/s, a quarter of the ceiling) the server's one core "
        f"allows **{1000 / target:.2f} ms** of CPU per {what}; it took **{cpu['server_ms']} ms**, and "
        f"PostgreSQL {cpu['postgres_ms']} ms: that rate would need **{cores:.1f} cores** for the two "
        "alone, on a machine of 2."
    )


def markdown(figures: dict[str, Any]) -> str:
    lines = [
        "## Messaging (issue 5)",
        "",
        f"Real envelopes of a 2 KB body to {figures['recipients']} recipients (sealed beforehand, "
        f"{figures['sealed_per_s_client_side']:,}/s client-side), sent at 64 connections; page fetch of 50 "
        "messages; ceiling: the same server decoding a 2 KB JSON body into a Struct and answering 201. "
        "Server on core 0, load generator on core 1, PostgreSQL free on both cores.",
        "",
        "| phase | req/s | p50 ms | p99 ms | errors | statuses | load generator CPU "
        "| server CPU ms/request | PostgreSQL CPU ms/request |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    cpu = figures["cpu"]
    for key in ("echo", "send", "page", "echo_envelope", "bytes"):
        s = figures[key]
        lines.append(
            f"| {s['name']} | {s['rate']} | {s['p50_ms']} | {s['p99_ms']} | {s['errors']} | {s['statuses']} "
            f"| {s['loadgen_cpu_pct']} % | {cpu[key]['server_ms']} | {cpu[key]['postgres_ms']} |"
        )
    lines += [
        "",
        f"Send ÷ ceiling: **{figures['send_over_ceiling']}** (target ≥ 0.25, p99 < 50 ms); "
        f"page ÷ ceiling: **{figures['page_over_ceiling']}** (target ≥ 0.25).",
        "",
        f"Beside the same bytes: one envelope is {figures['envelope_bytes']:,} B on the wire and a "
        f"50-message page {figures['page_bytes']:,} B. "
        f"Send ÷ envelope-sized echo: **{figures['send_over_sized']}**; "
        f"page ÷ page-sized prepared answer: **{figures['page_over_sized']}**.",
        "",
        _budget(figures, "send", "send"),
        _budget(figures, "page", "page"),
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown(run()))

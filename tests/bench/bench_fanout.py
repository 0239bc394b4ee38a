"""Group fan-out (checklist L-04): a send to a support group of 200 members.

Keys are per person (DESIGN.md), not per device, so 200 recipients are 200 members: a
clinician and 199 clients who joined under pseudonyms, each with a published key
bundle. The clinician sends real envelopes (a 2 KB body sealed to all 200 current keys)
one at a time on one connection: the figure is the latency of one send, p50 and p95,
against the checklist's 1 s. Ceiling: the same clinician's sends to a care team of 3 on
the same server in the same run; the ratio shows what the 197 extra recipients cost
(wrapped keys to check, recipient rows, push events).

Also checked, as Signal's multi-device test does: a send that leaves out members is
refused with 409 naming exactly the missing keys, and stores nothing.

Accounts are made with the cheapest Argon2id parameters the server accepts (this
benchmark measures sends, not the 400 password hashes of its set-up).
"""

from __future__ import annotations

import os
import statistics
import time
import uuid
from typing import Any

import httpx

from crypto.client import IdentityKeys, InnerPayload, generate_identity, seal_envelope
from crypto.public import EnvelopeKind, encode
from tests.bench import bench_messaging
from tests.bench.server import bench_database, pin_loadgen, running_server

MEMBERS = int(os.environ.get("BENCH_FANOUT_MEMBERS", "200"))
SENDS = int(os.environ.get("BENCH_FANOUT_SENDS", "100"))
CHEAP_HASHING = {"CONFIDE_ARGON2_MEMORY_KIB": "19456", "CONFIDE_ARGON2_TIME_COST": "2"}


def _group(
    http: httpx.Client, ctx: dict[str, Any], clients: int
) -> tuple[uuid.UUID, dict[uuid.UUID, IdentityKeys]]:
    """A support group of the first clinician and ``clients`` clients (the care team's client first)."""
    doc = ctx["doc"]
    keys: dict[uuid.UUID, IdentityKeys] = {ctx["sender"]: ctx["keys"][ctx["sender"]]}
    group = uuid.uuid4()
    http.post(
        "/v1/conversations", json={"id": str(group), "kind": "support_group"}, headers=doc
    ).raise_for_status()
    sessions: list[tuple[uuid.UUID, dict[str, str]]] = [(ctx["members"][2], ctx["member_auth"][2])]
    keys[ctx["members"][2]] = ctx["keys"][ctx["members"][2]]
    for n in range(clients - 1):
        code = http.post("/v1/invites", json={}, headers=doc).json()["code"]
        email = f"member{n}@m.example"
        redeemed = http.post(
            f"/v1/invites/{code}/redeem",
            json={"email": email, "display_name": "M", "password": "member passphrase 1"},
        )
        redeemed.raise_for_status()
        account = uuid.UUID(redeemed.json()["id"])
        token = http.post(
            "/v1/auth/login",
            json={"organization": "msgbench", "email": email, "password": "member passphrase 1"},
        ).json()["token"]
        headers = {"Authorization": f"Bearer {token}"}
        keys[account] = generate_identity(account)
        http.put(
            "/v1/me/keys",
            content=encode(keys[account].bundle),
            headers={**headers, "Content-Type": "application/json"},
        ).raise_for_status()
        sessions.append((account, headers))
    for n, (account, headers) in enumerate(sessions):
        http.post(
            f"/v1/conversations/{group}/members", json={"account_id": str(account)}, headers=doc
        ).raise_for_status()
        http.post(
            f"/v1/conversations/{group}/join", json={"pseudonym": f"Member {n}"}, headers=headers
        ).raise_for_status()
    return group, keys


def _seal(
    sender: IdentityKeys, conversation: uuid.UUID, recipients: list[IdentityKeys]
) -> tuple[uuid.UUID, bytes]:
    item = uuid.uuid4()
    payload = InnerPayload(version=1, content_type="application/octet-stream", body=bench_messaging.BODY)
    envelope = seal_envelope(
        sender,
        kind=EnvelopeKind.MESSAGE,
        context_id=conversation,
        item_id=item,
        payload=payload,
        recipients=[r.bundle for r in recipients],
    )
    return item, encode(envelope)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def _timed_sends(
    http: httpx.Client, path: str, headers: dict[str, str], bodies: list[bytes]
) -> dict[str, Any]:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    for body in bodies:
        started = time.perf_counter()
        answer = http.post(path, content=body, headers={**headers, "Content-Type": "application/json"})
        latencies.append((time.perf_counter() - started) * 1000)
        statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1
    return {
        "sends": len(bodies),
        "p50_ms": round(statistics.median(latencies), 2),
        "p95_ms": round(_pct(latencies, 95), 2),
        "max_ms": round(max(latencies), 2),
        "statuses": statuses,
    }


def run() -> dict[str, Any]:
    pin_loadgen()
    database = bench_database()
    with running_server(database, **CHEAP_HASHING) as (host, port):
        base_url = f"http://{host}:{port}"
        ctx = bench_messaging._setup(base_url, database)
        with httpx.Client(base_url=base_url, timeout=60) as http:
            started = time.perf_counter()
            group, keys = _group(http, ctx, MEMBERS - 1)
            setup_s = time.perf_counter() - started
            sender = ctx["keys"][ctx["sender"]]
            everyone = list(keys.values())
            team = [ctx["keys"][a] for a in ctx["members"]]
            group_bodies = [_seal(sender, group, everyone)[1] for _ in range(SENDS)]
            team_bodies = [_seal(sender, ctx["conversation"], team)[1] for _ in range(SENDS)]
            doc = ctx["doc"]
            ceiling = _timed_sends(
                http, f"/v1/conversations/{ctx['conversation']}/messages", doc, team_bodies
            )
            fanout = _timed_sends(http, f"/v1/conversations/{group}/messages", doc, group_bodies)
            # Leave five members out: 409 naming exactly their keys, nothing stored.
            left_out = everyone[-5:]
            item, partial = _seal(sender, group, everyone[:-5])
            refused = http.post(
                f"/v1/conversations/{group}/messages",
                content=partial,
                headers={**doc, "Content-Type": "application/json"},
            )
            named = (
                {(m["account_id"], m["key_version"]) for m in refused.json().get("missing_keys", [])}
                if refused.status_code == 409
                else set()
            )
            expected = {(str(k.bundle.account_id), k.bundle.key_version) for k in left_out}
            stored = http.get(
                f"/v1/conversations/{group}/messages", params={"limit": "100"}, headers=doc
            ).json()["items"]
    return {
        "members": MEMBERS,
        "setup_s": round(setup_s, 1),
        "ceiling": ceiling,
        "fanout": fanout,
        "p95_over_ceiling": round(fanout["p95_ms"] / ceiling["p95_ms"], 2),
        "missing_refused": refused.status_code,
        "missing_named_exactly": named == expected,
        "refused_not_stored": all(i["id"] != str(item) for i in stored),
    }


def markdown(figures: dict[str, Any]) -> str:
    c, f = figures["ceiling"], figures["fanout"]
    return "\n".join(
        [
            "## Group fan-out (checklist L-04)",
            "",
            f"A support group of {figures['members']} members (a clinician and {figures['members'] - 1} "
            "clients under pseudonyms, each with a published key bundle; keys are per person, so 200 "
            "recipients are 200 members). The clinician sends 2 KB envelopes sealed to every member, "
            "one at a time on one connection. Ceiling: the same sender's sends to a care team of 3 on the "
            "same server, same run. "
            f"Set-up of the group took {figures['setup_s']} s (cheapest accepted Argon2id for its accounts).",
            "",
            "| send to | sends | p50 ms | p95 ms | max ms | statuses |",
            "|---|---|---|---|---|---|",
            f"| care team of 3 (ceiling) | {c['sends']} | {c['p50_ms']} | {c['p95_ms']} | {c['max_ms']} "
            f"| {c['statuses']} |",
            f"| support group of {figures['members']} | {f['sends']} | {f['p50_ms']} | {f['p95_ms']} | "
            f"{f['max_ms']} | {f['statuses']} |",
            "",
            f"p95 to {figures['members']} ÷ p95 to 3: **{figures['p95_over_ceiling']}** (target: p95 < 1 s). "
            f"A send leaving 5 members out: status {figures['missing_refused']}, missing keys named exactly: "
            f"{figures['missing_named_exactly']}, nothing stored: {figures['refused_not_stored']}.",
            "",
        ]
    )


if __name__ == "__main__":
    print(markdown(run()))

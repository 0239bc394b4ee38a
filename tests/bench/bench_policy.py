"""Cost of the one policy function: decisions per second with facts loaded, and p50 per decision.

Ceiling: a bare Python function call doing the same attribute reads (the floor of
any in-process check), measured in the same run.
"""

from __future__ import annotations

import datetime as dt
import statistics
import time
import uuid
from typing import Any

from backend.policy import Action, Actor, ConsentFact, EmergencyFact, Facts, Resource, decide

NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)


def _facts(consents: int) -> tuple[Actor, Resource, Facts]:
    org, doc, client = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    items = tuple(
        ConsentFact(
            consent_id=uuid.uuid4(),
            grantee_type="clinician",
            grantee_id=doc if i == consents - 1 else uuid.uuid4(),
            scopes=frozenset({"messaging", "records.read"}),
            valid_from=NOW - dt.timedelta(days=1),
            valid_until=NOW + dt.timedelta(days=1),
            status="active",
        )
        for i in range(consents)
    )
    opening = EmergencyFact(access_id=uuid.uuid4(), clinician_id=uuid.uuid4(), expires_at=NOW, closed=False)
    facts = Facts(now=NOW, treats=True, consents=items, emergencies=(opening,))
    return Actor(account_id=doc, org_id=org, role="clinician"), Resource(org_id=org, client_id=client), facts


def run(iterations: int = 200_000) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    for consents in (1, 5, 20):
        actor, resource, facts = _facts(consents)
        assert decide(actor, Action.READ_CLIENT_RECORD, resource, facts).allowed
        start = time.perf_counter()
        for _ in range(iterations):
            decide(actor, Action.READ_CLIENT_RECORD, resource, facts)
        elapsed = time.perf_counter() - start
        samples = []
        for _ in range(2_000):
            t0 = time.perf_counter_ns()
            decide(actor, Action.READ_CLIENT_RECORD, resource, facts)
            samples.append(time.perf_counter_ns() - t0)
        figures[f"consents_{consents}"] = {
            "decisions_per_s": round(iterations / elapsed),
            "p50_us": round(statistics.median(samples) / 1000, 2),
            "p99_us": round(sorted(samples)[int(len(samples) * 0.99)] / 1000, 2),
        }

    def floor(a: Actor, r: Resource, f: Facts) -> bool:
        return a.org_id == r.org_id and bool(f.consents)

    actor, resource, facts = _facts(1)
    start = time.perf_counter()
    for _ in range(iterations):
        floor(actor, resource, facts)
    figures["floor_calls_per_s"] = round(iterations / (time.perf_counter() - start))
    return figures


def markdown(figures: dict[str, Any]) -> str:
    lines = [
        "## Policy decisions (issue 4)",
        "",
        "`decide(actor, READ_CLIENT_RECORD, resource, facts)` for a clinician, facts already loaded "
        f"(consents of the client, one break-glass opening). Floor: a bare function call reading the same "
        f"attributes, {figures['floor_calls_per_s']:,}/s in the same run.",
        "",
        "| consents on the client | decisions/s | p50 µs (target < 200) | p99 µs |",
        "|---|---|---|---|",
    ]
    for n in (1, 5, 20):
        f = figures[f"consents_{n}"]
        lines.append(f"| {n} | {f['decisions_per_s']:,} | {f['p50_us']} | {f['p99_us']} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown(run()))

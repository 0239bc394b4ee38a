"""Recorded histories of concurrent operations, and a check that they have a serial order.

Each operation is recorded as its client saw it: when it was invoked, when its answer
came back (a logical clock shared by every task of one event loop, so "A completed
before B was invoked" is exact), its status and its request id (which names its audit
event). :func:`linearize` then looks for a serial order of *all* the operations (refused
ones included: a refusal is a result too) that respects real time, in which each
operation's observed result is what a model gives at its place, and whose final state is
the database's (the Wing-Gong search Knossos and Porcupine use, with a cache of visited
configurations). None when there is none: the history is not strictly serializable.

Litestar's ``AsyncTestClient`` runs the app on an event loop of its own (a portal
thread) and hands each request over *synchronously*: requests gathered on the test's loop
run one after another there. :func:`on_app_loop` runs a whole concurrent workload on the
app's loop instead, each task with its own ``httpx.AsyncClient`` calling the app directly,
so requests really do interleave, with the database pool the app started.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
from litestar import Litestar
from litestar.testing import AsyncTestClient

T = TypeVar("T")


async def on_app_loop(
    client: AsyncTestClient[Litestar],
    clients: int,
    workload: Callable[[list[httpx.AsyncClient]], Awaitable[T]],
    *,
    timeout_s: float = 60.0,
) -> T:
    """Run ``workload`` on the app's event loop with ``clients`` HTTP clients of its own."""

    async def run() -> T:
        https = [
            httpx.AsyncClient(transport=httpx.ASGITransport(app=client.app), base_url="http://127.0.0.1")
            for _ in range(clients)
        ]
        try:
            return await asyncio.wait_for(workload(https), timeout=timeout_s)
        finally:
            for http in https:
                await http.aclose()

    # The test's loop waits in a thread meanwhile, so nothing else touches the app.
    return await asyncio.to_thread(client.blocking_portal.call, run)


@dataclass
class Op:
    """One operation of a history."""

    task: int
    kind: str
    args: dict[str, Any]
    request_id: str
    invoke: int
    complete: int = -1
    status: int | None = None
    body: Any = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    def __repr__(self) -> str:
        shown = {k: (str(v)[:8] if isinstance(v, uuid.UUID) else v) for k, v in self.args.items()}
        return f"<{self.kind} {shown} -> {self.status} t{self.task} [{self.invoke},{self.complete}]>"


@dataclass
class History:
    """Operations of concurrent tasks on one event loop, with a shared logical clock."""

    label: str
    ops: list[Op] = field(default_factory=list)
    _clock: itertools.count[int] = field(default_factory=itertools.count)

    async def run(
        self,
        http: httpx.AsyncClient,
        task: int,
        kind: str,
        args: dict[str, Any],
        method: str,
        path: str,
        *,
        headers: dict[str, str],
        body: object = None,
    ) -> Op:
        """Send one request and record it (its request id is chosen here, to find its audit event)."""
        request_id = f"{self.label}-{task}-{len(self.ops)}-{uuid.uuid4().hex[:8]}"
        op = Op(task, kind, args, request_id, invoke=next(self._clock))
        self.ops.append(op)
        response = await http.request(
            method, path, headers={**headers, "X-Request-ID": request_id}, json=body
        )
        op.complete = next(self._clock)
        op.status = response.status_code
        op.body = response.json() if response.content else None
        return op


#: A model step: the state after ``op`` when its observed result is possible in ``state``, else None.
Step = Callable[[Any, Op], Any]


def linearize(
    ops: list[Op],
    initial: Hashable,
    step: Step,
    *,
    final: Callable[[Any], bool],
    hint: Callable[[Op], tuple[int, int]] | None = None,
    budget: int = 200_000,
) -> list[Op] | None:
    """A serial order of ``ops`` consistent with real time and the model, ending in an accepted state.

    ``hint`` orders the candidates tried first at each step (for example by audit sequence
    number), which finds an order at once when the hint is right. Raises when the search
    exceeds ``budget`` configurations rather than running unbounded.
    """
    n = len(ops)
    by_hint = sorted(range(n), key=(lambda i: hint(ops[i])) if hint else (lambda i: (ops[i].invoke, 0)))
    full = (1 << n) - 1
    seen: set[tuple[int, Hashable]] = set()
    stack: list[tuple[int, Hashable, tuple[int, ...]]] = [(0, initial, ())]
    while stack:
        done, state, path = stack.pop()
        if done == full:
            if final(state):
                return [ops[i] for i in path]
            continue
        if (done, state) in seen:
            continue
        seen.add((done, state))
        if len(seen) > budget:
            raise RuntimeError(f"linearizability search exceeded {budget} configurations")
        horizon = min(ops[i].complete for i in range(n) if not done >> i & 1)
        nexts = []
        for i in by_hint:
            if done >> i & 1 or ops[i].invoke > horizon:
                continue
            after = step(state, ops[i])
            if after is not None:
                nexts.append((done | 1 << i, after, (*path, i)))
        stack.extend(reversed(nexts))  # the first hinted candidate is tried first
    return None


def real_time_violations(ops: list[Op], seq_of: dict[str, int]) -> list[tuple[Op, Op]]:
    """Acknowledged operations the audit log orders against real time.

    Pairs (A, B) where A completed before B was invoked, yet B's audit event comes first.
    """
    done = sorted((op for op in ops if op.request_id in seq_of), key=lambda op: op.complete)
    started = sorted((op for op in ops if op.request_id in seq_of), key=lambda op: op.invoke)
    bad: list[tuple[Op, Op]] = []
    highest: Op | None = None
    j = 0
    for b in started:
        while j < len(done) and done[j].complete < b.invoke:
            if highest is None or seq_of[done[j].request_id] > seq_of[highest.request_id]:
                highest = done[j]
            j += 1
        if highest is not None and seq_of[highest.request_id] > seq_of[b.request_id]:
            bad.append((highest, b))
    return bad

"""A small HTTP/1.1 load generator on raw asyncio streams (keep-alive, no parsing library).

It is light enough to run on one core while the server under test runs on the
other (both pinned with ``os.sched_setaffinity``), so the generator does not starve
the server on a 2-core machine. Latencies are measured per request, end to end.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Result:
    """Counts and latencies of one phase."""

    name: str
    duration_s: float
    latencies_ms: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0
    #: CPU seconds the load generator itself used during the phase (its own process).
    loadgen_cpu_s: float = 0.0

    @property
    def requests(self) -> int:
        return len(self.latencies_ms)

    @property
    def rate(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0

    def pct(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))
        return ordered[index]

    def summary(self) -> dict[str, float | int | str]:
        return {
            "name": self.name,
            "requests": self.requests,
            "rate": round(self.rate, 1),
            "p50_ms": round(self.pct(50), 2),
            "p99_ms": round(self.pct(99), 2),
            "mean_ms": round(statistics.fmean(self.latencies_ms), 2) if self.latencies_ms else float("nan"),
            "errors": self.errors,
            "statuses": str(dict(sorted(self.statuses.items()))),
            # Share of its one pinned core the generator used: well under 100 % means it kept
            # up and was not the bottleneck (it runs on its own core, so it takes none of the
            # server's).
            "loadgen_cpu_pct": round(100 * self.loadgen_cpu_s / self.duration_s) if self.duration_s else 0,
        }


def build_request(
    method: str, path: str, host: str, headers: dict[str, str] | None = None, body: bytes = b""
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", "Connection: keep-alive"]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    if body or method in {"POST", "PUT", "PATCH"}:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    chunked = False
    for line in head.split(b"\r\n")[1:]:
        lower = line.lower()
        if lower.startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
        elif lower.startswith(b"transfer-encoding:") and b"chunked" in lower:
            chunked = True
    if chunked:
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.strip(), 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif length:
        await reader.readexactly(length)
    return status


async def run_phase(
    name: str,
    host: str,
    port: int,
    make_request: Callable[[int], bytes],
    *,
    connections: int,
    duration_s: float,
    max_requests: int = 10_000_000,
    pause_s: float = 0.0,
    pause_on_429_s: float = 0.0,
) -> Result:
    """``connections`` loops send requests back to back for ``duration_s`` (bounded in count too).

    ``pause_on_429_s``: after a 429 a loop waits this long, as a client honouring
    ``Retry-After`` does (0: it retries at once, as a flood would).
    """
    result = Result(name, duration_s)
    deadline = time.perf_counter() + duration_s
    budget = [max_requests]

    async def worker(index: int) -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while time.perf_counter() < deadline and budget[0] > 0:
                budget[0] -= 1
                payload = make_request(index)
                started = time.perf_counter()
                try:
                    writer.write(payload)
                    status = await _read_response(reader)
                except (OSError, asyncio.IncompleteReadError, ValueError):
                    result.errors += 1
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, port)
                    continue
                result.latencies_ms.append((time.perf_counter() - started) * 1000)
                result.statuses[status] = result.statuses.get(status, 0) + 1
                if pause_s:
                    await asyncio.sleep(pause_s)
                if status == 429 and pause_on_429_s:
                    await asyncio.sleep(pause_on_429_s)
        finally:
            writer.close()

    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker(i) for i in range(connections)))
    result.duration_s = time.perf_counter() - started
    result.loadgen_cpu_s = time.process_time() - cpu
    return result


async def run_mix(
    name: str,
    host: str,
    port: int,
    kinds: dict[str, tuple[float, Callable[[int], bytes]]],
    *,
    connections: int,
    duration_s: float,
    seed: int = 7,
    observe: Callable[[str, bytes, int], None] | None = None,
) -> dict[str, Result]:
    """Like :func:`run_phase`, each request drawn from ``kinds`` with a seeded generator.

    ``kinds`` maps a name to (weight, request factory); the answer has one
    :class:`Result` per kind and one for all of them under ``name``. ``observe``, if
    given, sees each answered request as (kind, request bytes, status).
    """
    import random  # noqa: PLC0415 -- only the mixed workload draws

    draw = random.Random(seed)
    names = list(kinds)
    weights = [kinds[k][0] for k in names]
    results = {k: Result(k, duration_s) for k in names}
    total = Result(name, duration_s)
    deadline = time.perf_counter() + duration_s

    async def worker(index: int) -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while time.perf_counter() < deadline:
                kind = draw.choices(names, weights)[0]
                payload = kinds[kind][1](index)
                started = time.perf_counter()
                try:
                    writer.write(payload)
                    status = await _read_response(reader)
                except (OSError, asyncio.IncompleteReadError, ValueError):
                    results[kind].errors += 1
                    total.errors += 1
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, port)
                    continue
                elapsed = (time.perf_counter() - started) * 1000
                if observe is not None:
                    observe(kind, payload, status)
                for r in (results[kind], total):
                    r.latencies_ms.append(elapsed)
                    r.statuses[status] = r.statuses.get(status, 0) + 1
        finally:
            writer.close()

    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker(i) for i in range(connections)))
    elapsed_s = time.perf_counter() - started
    total.loadgen_cpu_s = time.process_time() - cpu
    for r in (*results.values(), total):
        r.duration_s = elapsed_s
    return {**results, name: total}

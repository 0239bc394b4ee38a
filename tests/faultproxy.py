"""A fault-injecting TCP proxy on loopback, for tests (toxiproxy is not installable here).

It listens on ``127.0.0.1`` and forwards each connection to one upstream: a TCP address
or a Unix socket (the embedded PostgreSQL listens on a Unix socket only, so the proxy is
also how a test puts a TCP hop between the server and the database). It runs its own
event loop in a daemon thread, so the test's loop may block (``subprocess.run``, a
synchronous readiness poll) without freezing the network it controls.

Faults (:class:`Mode`), switched at any time with :meth:`FaultProxy.set` or the shortcuts:

``PASS``
    Forward bytes both ways.
``LATENCY``
    Delay every chunk coming *from the upstream* by ``latency_s`` ± ``jitter_s`` (uniform),
    keeping order; each request/response round trip gains the delay once, as with
    toxiproxy's downstream latency toxic.
``STALL``
    Forward nothing, either way. The kernel still accepts what the peers send (their
    writes succeed until its buffers fill); new connections are accepted but not joined
    to the upstream. Bytes flow again when the connection leaves ``STALL``. A connection
    that never does is a black hole, like a flow whose firewall or NAT state was lost.
``RESET``
    Each *selected* connection (probability ``fraction``, drawn per connection when the
    fault is applied to it) is reset (TCP RST: ``SO_LINGER`` 0, then close) both ways
    when it next carries data, so mid-request or mid-response; a selected *new*
    connection is reset as soon as it is accepted.
``DROP``
    As ``RESET``, but closed with an orderly FIN instead.

``existing=True`` (the default) applies a fault to the open connections as well as to
new ones; ``existing=False`` only to connections accepted from now on, so that, for
example, ``stall()`` then ``pass_through(existing=False)`` leaves the old connections
black-holed while new ones work.

Every wait inside is bounded by the peers' own behaviour or by :meth:`FaultProxy.close`;
the proxy holds at most one chunk (64 KiB) per direction per connection in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import random
import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import TypeVar

__all__ = ["Fault", "FaultProxy", "Mode", "ProxyStats"]

_CHUNK = 65_536
_QUEUED_CHUNKS = 16
_CONTROL_TIMEOUT_S = 10.0
_T = TypeVar("_T")


class Mode(enum.Enum):
    """What the proxy does to the bytes of a connection."""

    PASS = "pass"
    LATENCY = "latency"
    STALL = "stall"
    RESET = "reset"
    DROP = "drop"


@dataclass(frozen=True, slots=True)
class Fault:
    """A mode and its parameters."""

    mode: Mode = Mode.PASS
    latency_s: float = 0.0
    jitter_s: float = 0.0
    fraction: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.fraction <= 1.0:
            raise ValueError("fraction must be within [0, 1]")
        if self.latency_s < 0 or self.jitter_s < 0 or self.jitter_s > self.latency_s:
            raise ValueError("need 0 <= jitter_s <= latency_s")


@dataclass(frozen=True, slots=True)
class ProxyStats:
    """Counters since the proxy started (a consistent snapshot)."""

    accepted: int
    active: int
    resets: int
    drops: int
    upstream_failures: int
    bytes_up: int
    bytes_down: int


_EOF = b""


class _Link:
    """One proxied connection: the client side, the upstream side, its current fault."""

    def __init__(self, client: asyncio.StreamWriter) -> None:
        self.client = client
        self.upstream: asyncio.StreamWriter | None = None
        self.fault = Fault()
        self.selected = False
        self.changed = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []
        self.closed = False

    def apply(self, fault: Fault, rng: random.Random) -> None:
        self.fault = fault
        self.selected = fault.mode in {Mode.RESET, Mode.DROP} and rng.random() < fault.fraction
        changed, self.changed = self.changed, asyncio.Event()
        changed.set()

    async def until_not_stalled(self) -> None:
        while self.fault.mode is Mode.STALL and not self.closed:
            await self.changed.wait()

    @property
    def doomed(self) -> bool:
        """Whether the next data on this connection kills it."""
        return self.selected and self.fault.mode in {Mode.RESET, Mode.DROP}

    def kill(self, *, rst: bool) -> None:
        """Close both sides (with RST where the side is TCP) and stop the pumps."""
        if self.closed:
            return
        self.closed = True
        for writer in (self.client, self.upstream):
            if writer is None:
                continue
            if rst:
                _abort_with_rst(writer)
            else:
                with contextlib.suppress(OSError, RuntimeError):
                    writer.close()
        current = asyncio.current_task()
        for task in self.tasks:
            if task is not current:
                task.cancel()
        self.changed.set()


def _abort_with_rst(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None and sock.family in {socket.AF_INET, socket.AF_INET6}:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class FaultProxy:
    """A TCP proxy from ``127.0.0.1:<port>`` to ``upstream`` that injects :class:`Fault` s.

    Use it as a context manager (or :meth:`start`/:meth:`close`). All control methods are
    thread-safe and return once the change applies to every connection concerned.
    """

    def __init__(self, upstream: str | tuple[str, int], *, seed: int = 0) -> None:
        """Proxy to ``upstream``: a Unix socket path, or a ``(host, port)`` pair."""
        self.upstream = upstream
        self._rng = random.Random(seed)
        self._fault = Fault()
        self._links: set[_Link] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._accepted = self._resets = self._drops = self._upstream_failures = 0
        self._bytes_up = self._bytes_down = 0
        self.port = 0

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> FaultProxy:
        """Start listening (in a background thread); returns once the port is bound."""
        if self._thread is not None:
            raise RuntimeError("the proxy is already started")
        self._thread = threading.Thread(target=self._run, name="faultproxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(_CONTROL_TIMEOUT_S):
            raise TimeoutError("the proxy did not start")
        if self._error is not None:
            raise RuntimeError("the proxy did not start") from self._error
        return self

    def close(self) -> None:
        """Close the listener and every connection (with RST), then end the thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or self._stop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop already ended
            loop.call_soon_threadsafe(self._stop.set)
        thread.join(_CONTROL_TIMEOUT_S)
        self._thread = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def address(self) -> tuple[str, int]:
        """Where clients connect."""
        return ("127.0.0.1", self.port)

    # -- faults --------------------------------------------------------------------------

    @property
    def fault(self) -> Fault:
        """The fault new connections get."""
        return self._fault

    def set(self, fault: Fault, *, existing: bool = True) -> None:
        """Apply ``fault`` to new connections and, with ``existing``, to the open ones."""

        def apply() -> None:
            self._fault = fault
            if existing:
                for link in list(self._links):
                    link.apply(fault, self._rng)

        self._call(apply)

    def pass_through(self, *, existing: bool = True) -> None:
        """Forward everything."""
        self.set(Fault(Mode.PASS), existing=existing)

    def latency(self, latency_s: float, jitter_s: float = 0.0, *, existing: bool = True) -> None:
        """Delay data from the upstream by ``latency_s`` ± ``jitter_s``."""
        self.set(Fault(Mode.LATENCY, latency_s=latency_s, jitter_s=jitter_s), existing=existing)

    def stall(self, *, existing: bool = True) -> None:
        """Forward nothing (the kernel still accepts bytes)."""
        self.set(Fault(Mode.STALL), existing=existing)

    def reset(self, fraction: float = 1.0, *, existing: bool = True) -> None:
        """Reset a ``fraction`` of connections (at their next data; new ones on accept)."""
        self.set(Fault(Mode.RESET, fraction=fraction), existing=existing)

    def drop(self, fraction: float = 1.0, *, existing: bool = True) -> None:
        """Close a ``fraction`` of connections with FIN (at their next data; new ones on accept)."""
        self.set(Fault(Mode.DROP, fraction=fraction), existing=existing)

    def stats(self) -> ProxyStats:
        """Counters, read inside the proxy's loop."""
        return self._call(
            lambda: ProxyStats(
                accepted=self._accepted,
                active=len(self._links),
                resets=self._resets,
                drops=self._drops,
                upstream_failures=self._upstream_failures,
                bytes_up=self._bytes_up,
                bytes_down=self._bytes_down,
            )
        )

    def _call(self, fn: Callable[[], _T]) -> _T:
        loop = self._loop
        if loop is None or self._thread is None:
            raise RuntimeError("the proxy is not running")

        async def run() -> _T:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), loop).result(_CONTROL_TIMEOUT_S)

    # -- the proxy's loop ----------------------------------------------------------------

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        except BaseException as exc:  # noqa: BLE001 -- reported to start() or lost with the thread
            self._error = exc
            self._ready.set()
        finally:
            loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0, limit=_CHUNK)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            server.close()
            for link in list(self._links):
                link.kill(rst=True)
            tasks = [t for link in list(self._links) for t in link.tasks]
            if tasks:
                await asyncio.wait(tasks, timeout=_CONTROL_TIMEOUT_S)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_CONTROL_TIMEOUT_S):
                    await server.wait_closed()

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        self._accepted += 1
        link = _Link(client_writer)
        link.apply(self._fault, self._rng)
        if self._kill_if_doomed(link):
            return
        self._links.add(link)
        try:
            await link.until_not_stalled()
            if link.closed or self._kill_if_doomed(link):
                return
            try:
                upstream_reader, upstream_writer = await self._connect_upstream()
            except OSError:
                self._upstream_failures += 1
                link.kill(rst=True)
                return
            link.upstream = upstream_writer
            link.tasks = [
                asyncio.create_task(self._pump(link, client_reader, upstream_writer, up=True)),
                asyncio.create_task(self._pump(link, upstream_reader, client_writer, up=False)),
            ]
            await asyncio.gather(*link.tasks, return_exceptions=True)
        finally:
            self._links.discard(link)
            link.kill(rst=False)

    async def _connect_upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        async with asyncio.timeout(_CONTROL_TIMEOUT_S):
            if isinstance(self.upstream, str):
                return await asyncio.open_unix_connection(self.upstream, limit=_CHUNK)
            host, port = self.upstream
            return await asyncio.open_connection(host, port, limit=_CHUNK)

    def _kill_if_doomed(self, link: _Link) -> bool:
        """Reset or drop ``link`` if its fault selected it; whether it did."""
        if not link.doomed:
            return False
        if link.fault.mode is Mode.RESET:
            self._resets += 1
        else:
            self._drops += 1
        link.kill(rst=link.fault.mode is Mode.RESET)
        return True

    async def _pump(
        self, link: _Link, source: asyncio.StreamReader, sink: asyncio.StreamWriter, *, up: bool
    ) -> None:
        """Copy ``source`` to ``sink`` under the link's fault, through a bounded queue."""
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(_QUEUED_CHUNKS)
        writer = asyncio.create_task(self._deliver(link, queue, sink, up=up))
        loop = asyncio.get_running_loop()
        try:
            while not link.closed:
                await link.until_not_stalled()
                try:
                    data = await source.read(_CHUNK)
                except OSError:
                    data = _EOF
                fault = link.fault
                delay = 0.0
                if fault.mode is Mode.LATENCY and not up:
                    delay = fault.latency_s + self._rng.uniform(-fault.jitter_s, fault.jitter_s)
                await queue.put((loop.time() + delay, data))
                if not data:
                    break
            await writer
        finally:
            writer.cancel()

    async def _deliver(
        self, link: _Link, queue: asyncio.Queue[tuple[float, bytes]], sink: asyncio.StreamWriter, *, up: bool
    ) -> None:
        loop = asyncio.get_running_loop()
        last_due = 0.0
        while True:
            due, data = await queue.get()
            # Keep order: a chunk never overtakes the one before it.
            last_due = max(last_due, due)
            if (wait := last_due - loop.time()) > 0:
                await asyncio.sleep(wait)
            await link.until_not_stalled()
            if link.closed or self._kill_if_doomed(link):
                return
            try:
                if not data:
                    if sink.can_write_eof():
                        sink.write_eof()
                    else:
                        sink.close()
                    return
                sink.write(data)
                await sink.drain()
            except (OSError, RuntimeError):
                link.kill(rst=True)
                return
            if up:
                self._bytes_up += len(data)
            else:
                self._bytes_down += len(data)

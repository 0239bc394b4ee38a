"""One LISTEN connection per process, waking the push streams of the accounts notified.

The hub holds a dedicated asyncpg connection (not from the pool) listening on
:data:`~backend.realtime.outbox.CHANNEL`. A notification names accounts (hex ids,
comma-separated) or ``*``; the hub sets the wake flag of every stream of those
accounts. A flag is a single :class:`asyncio.Event`, so a slow stream costs no memory
however many notifications arrive: it reads the outbox itself, in pages, when it
gets to it.

The connection is supervised: when it drops (or stops answering a periodic ping) the
hub reconnects with exponential backoff and then wakes every stream, since
notifications sent meanwhile are lost. Streams also poll on their own every few
seconds, so a missed notification delays an event, never loses it.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Iterator

import asyncpg
import structlog

from backend.realtime.outbox import CHANNEL, WAKE_ALL

__all__ = ["Hub", "Subscription"]

_log = structlog.get_logger("confide.realtime")


class Subscription:
    """One stream's wake flag and the hub's state as the stream needs it."""

    __slots__ = ("_hub", "account_hex", "wake")

    def __init__(self, hub: Hub, account_id: uuid.UUID) -> None:
        self._hub = hub
        self.account_hex = account_id.hex
        self.wake = asyncio.Event()

    @property
    def closed(self) -> bool:
        """The hub is shutting down: the stream should end."""
        return self._hub.closing

    async def wait(self, seconds: float) -> bool:
        """Wait until woken or ``seconds`` pass; True if woken. Clears the flag."""
        try:
            async with asyncio.timeout(seconds):
                await self.wake.wait()
        except TimeoutError:
            return False
        finally:
            self.wake.clear()
        return True


class Hub:
    """Fan-out of outbox notifications to this process's streams."""

    def __init__(
        self,
        dsn: str,
        *,
        poll_s: float = 5.0,
        ping_s: float = 10.0,
        backoff_min_s: float = 0.1,
        backoff_max_s: float = 5.0,
    ) -> None:
        self._dsn = dsn
        self.poll_s = poll_s
        """How often a stream reads the outbox without being woken (safety net)."""
        self._ping_s = ping_s
        self._backoff = (backoff_min_s, backoff_max_s)
        self._subscriptions: dict[str, set[Subscription]] = {}
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self.closing = False
        self.connected = asyncio.Event()
        """Set while the LISTEN connection is up."""
        self.connections = 0
        """How many times the LISTEN connection was established (reconnections included)."""
        self.listener_pid: int | None = None
        """Backend process id of the LISTEN connection (for operators and tests)."""

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        """Start supervising the LISTEN connection (in the app's lifespan)."""
        if self._task is None:
            self._task = asyncio.create_task(self._supervise(), name="confide-realtime-hub")

    async def stop(self) -> None:
        """Stop listening and end every stream."""
        self.closing = True
        self._stop.set()
        self._wake_all()
        if self._task is not None:
            await self._task
            self._task = None

    # -- streams ------------------------------------------------------------------------

    @contextlib.contextmanager
    def subscribe(self, account_id: uuid.UUID) -> Iterator[Subscription]:
        """Register a stream for ``account_id`` for the duration of the block."""
        subscription = Subscription(self, account_id)
        self._subscriptions.setdefault(subscription.account_hex, set()).add(subscription)
        try:
            yield subscription
        finally:
            streams = self._subscriptions.get(subscription.account_hex)
            if streams is not None:
                streams.discard(subscription)
                if not streams:
                    del self._subscriptions[subscription.account_hex]

    @property
    def stream_count(self) -> int:
        """Streams currently subscribed in this process."""
        return sum(len(s) for s in self._subscriptions.values())

    def notify(self, payload: str) -> None:
        """Wake the streams named by a notification payload (``*`` wakes all)."""
        if payload == WAKE_ALL:
            self._wake_all()
            return
        for name in payload.split(","):
            for subscription in self._subscriptions.get(name, ()):
                subscription.wake.set()

    def _wake_all(self) -> None:
        for streams in self._subscriptions.values():
            for subscription in streams:
                subscription.wake.set()

    def _on_notification(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        self.notify(payload if isinstance(payload, str) else WAKE_ALL)

    # -- the LISTEN connection ----------------------------------------------------------

    async def _supervise(self) -> None:
        delay = self._backoff[0]
        while not self._stop.is_set():
            try:
                await self._listen_once()
                delay = self._backoff[0]
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                _log.warning("realtime_listen_failed", error_type=type(exc).__name__, retry_in_s=delay)
            if self._stop.is_set():
                break
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._stop.wait()
            delay = min(delay * 2, self._backoff[1])

    async def _listen_once(self) -> None:
        """Connect, listen until the connection is lost or the hub stops."""
        conn: asyncpg.Connection = await asyncpg.connect(
            self._dsn, timeout=10, server_settings={"application_name": "confide-listen"}
        )
        lost = asyncio.Event()
        try:
            conn.add_termination_listener(lambda _c: lost.set())
            await conn.add_listener(CHANNEL, self._on_notification)
            self.listener_pid = conn.get_server_pid()
            self.connections += 1
            self.connected.set()
            _log.info("realtime_listening", connections=self.connections)
            # Notifications sent while nobody listened are lost: let every stream look.
            self._wake_all()
            while not self._stop.is_set() and not lost.is_set():
                if not await _wait_any(self._stop, lost, self._ping_s):
                    # A silent network failure shows only when we speak.
                    async with asyncio.timeout(self._ping_s):
                        await conn.execute("SELECT 1")
        finally:
            self.connected.clear()
            self.listener_pid = None
            if not conn.is_closed():
                try:
                    async with asyncio.timeout(2):
                        await conn.close()
                except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
                    conn.terminate()
        if lost.is_set() and not self._stop.is_set():
            _log.warning("realtime_listen_lost")
            self._wake_all()


async def _wait_any(first: asyncio.Event, second: asyncio.Event, seconds: float) -> bool:
    """Wait for either event up to ``seconds``; True if one is set."""
    waiters = [asyncio.ensure_future(first.wait()), asyncio.ensure_future(second.wait())]
    try:
        done, _ = await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
    return bool(done)

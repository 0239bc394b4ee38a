"""The retention job on a schedule, inside the server (off by default: ``CONFIDE_RETENTION_SCHEDULER``).

Every instance may run a scheduler; the run lock (a PostgreSQL advisory lock) lets one
run at a time, and a run starts only when the last one that changed data started at
least ``CONFIDE_RETENTION_INTERVAL_S`` ago, so instances take turns rather than repeat
each other. A run uses its own connection (never one of the pool) and survives neither
a restart nor a kill: the next run marks it abandoned and finishes its work.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt

import asyncpg
import structlog

from backend.retention import repository as repo
from backend.retention.job import RUN_LOCK_KEY, RetentionBusyError, RunReport, run_retention
from backend.runtime import Runtime

__all__ = ["RetentionScheduler"]

_log = structlog.get_logger("confide.retention")


class RetentionScheduler:
    """A background task that runs the retention job when it is due."""

    def __init__(self, rt: Runtime, dsn: str, *, poll_s: float | None = None) -> None:
        self._rt = rt
        self._dsn = dsn
        self._interval = dt.timedelta(seconds=rt.settings.retention_interval_s)
        self._poll_s = poll_s if poll_s is not None else min(float(rt.settings.retention_interval_s), 60.0)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the loop."""
        self._task = asyncio.create_task(self._loop(), name="confide-retention")

    async def stop(self) -> None:
        """Stop the loop (a run in progress is cancelled; its committed batches stay)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception as exc:  # noqa: BLE001 -- the schedule outlives a failed run; the next one resumes
                _log.warning("retention_scheduler_error", error_type=type(exc).__name__)
            await asyncio.sleep(self._poll_s)

    async def tick(self) -> RunReport | None:
        """Run the job if it is due and no other instance is running it."""
        conn = await asyncpg.connect(self._dsn, server_settings={"application_name": "confide-retention"})
        try:
            # Hold the run lock while deciding, so two instances never both find the job due
            # (session advisory locks nest: run_retention takes it once more).
            if not await repo.try_run_lock(conn, RUN_LOCK_KEY):
                return None
            last = await repo.last_scheduled_start(conn)
            if last is not None and self._rt.clock.now() - last < self._interval:
                return None
            try:
                report = await run_retention(self._rt, conn, dry_run=False, trigger="scheduler")
            except RetentionBusyError:  # pragma: no cover -- the lock is ours already
                return None
            _log.info(
                "retention_run", status=report.status, count=sum(c.deleted for c in report.counts.values())
            )
            return report
        finally:
            await conn.close()  # releases the lock with the session

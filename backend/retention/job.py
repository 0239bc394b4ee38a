"""The retention job: every category in bounded batches that commit one by one.

One run at a time across all instances: the run holds a session-level PostgreSQL
advisory lock on its own connection, so a process that dies (even by SIGKILL) releases
it with its connection, and the next run marks the dead run ``abandoned`` and carries
on. A run counts each category first (rows past their period, rows held), then deletes
in batches: each batch is one short transaction holding the deletion, the batch's row in
``retention_batches``, the run's counters and one audit event per organization (counts
and ids, never content). Stopped at any point, a run has committed whole batches only;
the next run finds what is left and finishes it, so a run after a complete one finds
nothing. A dry run counts and walks the same batches without deleting.

Besides the policy categories, the job expires consents past their validity, cleans
stale throttling rows, the push outbox and raw client addresses, and executes approved
erasure requests (:mod:`backend.erasure.executor`).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import asyncpg
import structlog

from backend.audit_trail import Action, AuditContext, AuditEvent, Outcome, record
from backend.audit_trail.pruning import ADDRESS_RETENTION, prune_addresses
from backend.consent.service import expire_due
from backend.erasure import executor as erasure
from backend.errors import ConflictError
from backend.retention import repository as repo
from backend.retention import sweeps
from backend.retention.schemas import CATEGORIES, CategoryCounts
from backend.runtime import Runtime

__all__ = ["RUN_LOCK_KEY", "STEPS", "Progress", "RetentionBusyError", "RunReport", "run_retention"]

#: The advisory lock a run holds ("ConfRet" and a version byte).
RUN_LOCK_KEY = 0x436F_6E66_5265_7401
#: How often a batch is retried when live traffic holds a lock it needs.
_LOCK_RETRIES = 5
_log = structlog.get_logger("confide.retention")

#: Everything a run reports on, in the order it does it.
STEPS: tuple[str, ...] = (
    "consent_expiry",
    *CATEGORIES,
    *sweeps.HOUSEKEEPING,
    "audit_addresses",
    "erasure_requests",
)
#: Called after every batch and at the end of each category: (category, counts so far, done).
Progress = Callable[[str, CategoryCounts, bool], None]


class RetentionBusyError(ConflictError):
    """Another retention run holds the lock."""

    slug = "retention-busy"
    title = "Retention run in progress"
    default_detail = "Another retention run is in progress."


@dataclass(slots=True)
class RunReport:
    """What a run did, in total over all organizations."""

    run_id: uuid.UUID
    dry_run: bool
    status: str
    counts: dict[str, CategoryCounts] = field(default_factory=dict)


def _noop(_: str, __: CategoryCounts, ___: bool) -> None:
    return None


async def run_retention(
    rt: Runtime,
    conn: asyncpg.Connection,
    *,
    dry_run: bool,
    trigger: Literal["cli", "scheduler"],
    batch_size: int | None = None,
    progress: Progress | None = None,
) -> RunReport:
    """Run the job on ``conn`` (a dedicated connection, never a pooled one).

    Raises:
        RetentionBusyError: Another run holds the lock.
    """
    if not await repo.try_run_lock(conn, RUN_LOCK_KEY):
        raise RetentionBusyError
    try:
        # Batches wait briefly for rows live traffic holds, then retry; no query runs away.
        # The job works across organizations: row-level security's system scope for this
        # session (backend.db.tenancy), which is why the connection must be a dedicated one.
        await conn.execute(
            "SET lock_timeout = '2s'; SET statement_timeout = '10min'; SET confide.scope = 'system'"
        )
        job = _Job(rt, conn, dry_run, batch_size or rt.settings.retention_batch_size, progress or _noop)
        return await job.run(trigger)
    finally:
        if not conn.is_closed():
            await conn.execute(
                "SELECT set_config('confide.scope', '', false), pg_advisory_unlock($1)", RUN_LOCK_KEY
            )


class _Job:
    def __init__(
        self, rt: Runtime, conn: asyncpg.Connection, dry_run: bool, batch: int, progress: Progress
    ) -> None:
        self.rt = rt
        self.conn = conn
        self.dry_run = dry_run
        self.batch = batch
        self.progress = progress
        self.run_id = uuid.uuid4()
        self.ctx = AuditContext(source_instance=rt.instance_id)
        self.as_of = rt.clock.now()

    async def run(self, trigger: str) -> RunReport:
        conn, now = self.conn, self.rt.clock.now()
        async with conn.transaction():
            abandoned = await repo.abandon_running(conn, now)
            await repo.insert_run(
                conn,
                run_id=self.run_id,
                now=now,
                as_of=self.as_of,
                dry_run=self.dry_run,
                trigger=trigger,
                instance=self.rt.instance_id,
            )
            await self._event("retention.run_start", "dry_run" if self.dry_run else None)
        if abandoned:
            _log.warning("retention_abandoned_runs", count=abandoned)
        status = "failed"
        try:
            await self._consent_expiry()
            for category in CATEGORIES:
                await self._category(category)
            for chore in sweeps.HOUSEKEEPING:
                await self._housekeeping(chore)
            await self._addresses()
            await self._erasures()
            status = "completed"
        finally:
            async with conn.transaction():
                await repo.finish_run(conn, self.run_id, status, self.rt.clock.now())
                await self._event(
                    "retention.run_finish",
                    None if status == "completed" else status,
                    Outcome.SUCCESS if status == "completed" else Outcome.SERIOUS_FAILURE,
                )
        counts = {category: CategoryCounts() for category in STEPS}
        for r in await repo.run_counts(conn, [self.run_id], all_orgs=True):
            counts[r.category] = CategoryCounts(
                candidates=r.candidates, held=r.held, deleted=r.deleted, skipped=r.skipped
            )
        return RunReport(run_id=self.run_id, dry_run=self.dry_run, status=status, counts=counts)

    async def _event(
        self,
        event_type: str,
        reason: str | None,
        outcome: Outcome = Outcome.SUCCESS,
        *,
        org_id: uuid.UUID | None = None,
        entity_type: str = "retention_run",
        entity_id: uuid.UUID | None = None,
    ) -> None:
        await record(
            self.conn,
            AuditEvent(
                action=Action.DELETE if entity_type == "retention_batch" else Action.EXECUTE,
                event_type=event_type,
                outcome=outcome,
                outcome_reason=reason,
                org_id=org_id,
                entity_type=entity_type,
                entity_id=entity_id or self.run_id,
            ),
            self.ctx,
            self.rt.clock.now(),
        )

    async def _record_batch(self, category: str, affected: dict[uuid.UUID | None, int]) -> None:
        """Inside the batch's transaction: its rows, the counters, one audit event per organization."""
        now = self.rt.clock.now()
        for org_id, count in affected.items():
            batch_id = uuid.uuid4()
            await repo.insert_batch(
                self.conn,
                batch_id=batch_id,
                run_id=self.run_id,
                erasure_id=None,
                org_id=org_id,
                category=category,
                deleted=count,
                now=now,
            )
            await self._event(
                f"retention.{category}",
                None,
                org_id=org_id,
                entity_type="retention_batch",
                entity_id=batch_id,
            )
        await repo.add_counts(
            self.conn, self.run_id, category, {o: {"deleted": n} for o, n in affected.items()}
        )

    async def _category(self, category: str) -> None:
        conn = self.conn
        counted = await sweeps.count_candidates(conn, category, self.as_of)
        candidates = sum(c.candidates for c in counted.values())
        held = sum(c.held for c in counted.values())
        async with conn.transaction():
            await repo.add_counts(
                conn,
                self.run_id,
                category,
                {o: {"candidates": c.candidates, "held": c.held} for o, c in counted.items()},
            )
        deleted = 0
        would: dict[uuid.UUID | None, int] = {}
        after: int | uuid.UUID | None = None
        retries = 0
        while True:
            try:
                async with conn.transaction():
                    batch = await sweeps.sweep(
                        conn,
                        category,
                        as_of=self.as_of,
                        after=after,
                        limit=self.batch,
                        dry_run=self.dry_run,
                        now=self.rt.clock.now(),
                    )
                    if batch.affected and not self.dry_run:
                        await self._record_batch(category, batch.affected)
            except asyncpg.LockNotAvailableError:
                retries += 1
                if retries > _LOCK_RETRIES:
                    _log.warning("retention_category_locked", reason=category)
                    break  # what is left is counted as skipped and taken by the next run
                continue
            retries = 0
            for org_id, count in batch.affected.items():
                would[org_id] = would.get(org_id, 0) + count
            deleted += sum(batch.affected.values())
            after = batch.last_key
            self.progress(category, CategoryCounts(candidates=candidates, held=held, deleted=deleted), False)
            if batch.picked < self.batch:
                break
        async with conn.transaction():
            if self.dry_run:
                await repo.add_counts(
                    conn, self.run_id, category, {o: {"deleted": n} for o, n in would.items()}
                )
            await repo.set_counts(conn, self.run_id, category)
        skipped = max(candidates - held - deleted, 0)
        self.progress(
            category, CategoryCounts(candidates=candidates, held=held, deleted=deleted, skipped=skipped), True
        )

    async def _tally(self, category: str, candidates: int, deleted: int) -> None:
        """Counters of a step without holds or organizations (housekeeping)."""
        async with self.conn.transaction():
            await repo.add_counts(
                self.conn, self.run_id, category, {None: {"candidates": candidates, "deleted": deleted}}
            )
            await repo.set_counts(self.conn, self.run_id, category)
        self.progress(
            category,
            CategoryCounts(candidates=candidates, deleted=deleted, skipped=max(candidates - deleted, 0)),
            True,
        )

    async def _consent_expiry(self) -> None:
        """Consents whose validity ended get their expiry event (consent.service.expire_due)."""
        due = await sweeps.count_due_elsewhere(self.conn, "consent_expiry", self.as_of, 0)
        expired = 0
        if not self.dry_run:
            while True:
                done = await expire_due(self.rt, self.conn, self.ctx, batch=min(self.batch, 500))
                expired += done
                if done < min(self.batch, 500):
                    break
        await self._tally("consent_expiry", due, due if self.dry_run else expired)

    async def _housekeeping(self, category: str) -> None:
        conn, window = self.conn, self.rt.settings.throttle_window_s
        due = await sweeps.count_housekeeping(conn, category, self.as_of, window)
        deleted = 0
        while not self.dry_run:
            async with conn.transaction():
                count = await sweeps.sweep_housekeeping(conn, category, self.as_of, window, self.batch)
                if count:
                    await self._record_batch(category, {None: count})
            deleted += count
            if count < self.batch:
                break
        # _record_batch counted the deletions already; only the candidates remain to add.
        async with conn.transaction():
            await repo.add_counts(
                conn,
                self.run_id,
                category,
                {None: {"candidates": due, "deleted": due if self.dry_run else 0}},
            )
            await repo.set_counts(conn, self.run_id, category)
        self.progress(
            category,
            CategoryCounts(
                candidates=due, deleted=due if self.dry_run else deleted, skipped=max(due - deleted, 0)
            ),
            True,
        )

    async def _addresses(self) -> None:
        """Raw client addresses past their 30 days (audit_trail.pruning.prune_addresses)."""
        window = ADDRESS_RETENTION.total_seconds()
        due = await sweeps.count_due_elsewhere(self.conn, "audit_addresses", self.as_of, window)
        deleted = due if self.dry_run else await prune_addresses(self.conn, self.rt.clock, ctx=self.ctx)
        await self._tally("audit_addresses", due, deleted)

    async def _erasures(self) -> None:
        """Approved erasure requests not yet carried out (or waiting on a released hold)."""
        tally = await erasure.execute_due(
            self.rt, self.conn, self.ctx, batch=self.batch, dry_run=self.dry_run
        )
        async with self.conn.transaction():
            await repo.add_counts(
                self.conn,
                self.run_id,
                "erasure_requests",
                {None: {"candidates": tally.open, "held": tally.held, "deleted": tally.completed}},
            )
            await repo.set_counts(self.conn, self.run_id, "erasure_requests")
        self.progress(
            "erasure_requests",
            CategoryCounts(
                candidates=tally.open,
                held=tally.held,
                deleted=tally.completed,
                skipped=max(tally.open - tally.held - tally.completed, 0),
            ),
            True,
        )

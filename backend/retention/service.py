"""Retention policies and the record of runs: who may read and change them, within which floors."""

from __future__ import annotations

import uuid

import asyncpg

from backend.audit_trail import Action, AuditContext, AuditEvent, record
from backend.auth.principal import Principal
from backend.db.tenancy import tenant_transaction
from backend.errors import InvalidInputError, NotFoundError
from backend.http.cursors import encode_cursor, page_before
from backend.policy import Action as PolicyAction
from backend.policy import Resource, require
from backend.retention import repository as repo
from backend.retention.schemas import (
    CATEGORIES,
    CategoryCounts,
    PolicyList,
    PolicyUpdate,
    PolicyView,
    RunList,
    RunView,
)
from backend.runtime import Runtime
from backend.settings import Settings

__all__ = ["AUDIT_LEGAL_FLOOR_DAYS", "MAX_PAGE", "floor_days", "list_policies", "list_runs", "set_policy"]

#: HIPAA 45 CFR 164.316(b)(2)(i): six years (with leap days); the database refuses less too.
AUDIT_LEGAL_FLOOR_DAYS = 2_192
#: Clinical records and consent records take the records floor of the settings.
RECORD_CATEGORIES = frozenset({"notes", "consent_events"})
MAX_PAGE = 100


def floor_days(settings: Settings, category: str) -> int:
    """The shortest period the deployment accepts for ``category``."""
    floor = settings.retention_floor_days
    if category == "audit_events":
        return max(floor, settings.retention_audit_floor_days, AUDIT_LEGAL_FLOOR_DAYS)
    if category in RECORD_CATEGORIES:
        return max(floor, settings.retention_records_floor_days)
    return floor


def _view(row: repo.PolicyRow, settings: Settings) -> PolicyView:
    return PolicyView(
        category=row.category,  # type: ignore[arg-type]
        period_days=row.period_days,
        counts_from=row.counts_from,  # type: ignore[arg-type]
        action=row.action,  # type: ignore[arg-type]
        legal_basis=row.legal_basis,
        floor_days=floor_days(settings, row.category),
        is_default=row.is_default,
        updated_at=row.updated_at,
        updated_by=row.updated_by,
    )


async def list_policies(rt: Runtime, conn: asyncpg.Connection, principal: Principal) -> PolicyList:
    """The policy of every category for the caller's organization."""
    require(principal.actor, PolicyAction.READ_RETENTION_POLICIES, Resource(org_id=principal.org_id))
    async with tenant_transaction(conn, principal.org_id, readonly=True):
        rows = {row.category: row for row in await repo.list_policies(conn, principal.org_id)}
    return PolicyList(items=[_view(rows[c], rt.settings) for c in CATEGORIES if c in rows])


async def set_policy(
    rt: Runtime,
    conn: asyncpg.Connection,
    principal: Principal,
    category: str,
    body: PolicyUpdate,
    ctx: AuditContext,
) -> PolicyView:
    """An admin sets a category's period and basis, never under the floor; audited with old and new."""
    require(principal.actor, PolicyAction.SET_RETENTION_POLICY, Resource(org_id=principal.org_id))
    if category not in CATEGORIES:
        raise NotFoundError("There is no such data category.")
    floor = floor_days(rt.settings, category)
    if body.period_days < floor:
        raise InvalidInputError(f"The retention period of {category} may not be shorter than {floor} days.")
    now = rt.clock.now()
    async with tenant_transaction(conn, principal.org_id):
        old = await repo.get_policy(conn, principal.org_id, category, lock=True)
        if old is None:  # pragma: no cover -- the migration ships a default for every category
            raise NotFoundError("There is no such data category.")
        change_id = uuid.uuid4()
        await repo.insert_policy_change(
            conn,
            change_id=change_id,
            org_id=principal.org_id,
            old=old,
            period_days=body.period_days,
            legal_basis=body.legal_basis,
            by=principal.account_id,
            now=now,
        )
        await repo.upsert_policy(
            conn,
            org_id=principal.org_id,
            default=old,
            period_days=body.period_days,
            legal_basis=body.legal_basis,
            now=now,
            by=principal.account_id,
        )
        direction = (
            "period_shortened"
            if body.period_days < old.period_days
            else "period_extended"
            if body.period_days > old.period_days
            else "basis_changed"
        )
        await record(
            conn,
            AuditEvent(
                action=Action.UPDATE,
                event_type="retention.policy_update",
                outcome_reason=direction,
                org_id=principal.org_id,
                agent_account_id=principal.account_id,
                agent_role=principal.role,  # type: ignore[arg-type]
                entity_type="retention_policy_change",
                entity_id=change_id,
            ),
            ctx,
            now,
        )
        row = await repo.get_policy(conn, principal.org_id, category)
    if row is None:  # pragma: no cover -- written just above
        raise NotFoundError
    return _view(row, rt.settings)


_RUNS_SCOPE = "retention-runs"


def _counts(rows: list[repo.CountsRow]) -> dict[uuid.UUID, dict[str, CategoryCounts]]:
    found: dict[uuid.UUID, dict[str, CategoryCounts]] = {}
    for row in rows:
        found.setdefault(row.run_id, {})[row.category] = CategoryCounts(
            candidates=row.candidates, held=row.held, deleted=row.deleted, skipped=row.skipped
        )
    return found


def run_view(row: repo.RunRow, counts: dict[str, CategoryCounts]) -> RunView:
    """A run as the API shows it."""
    return RunView(
        id=row.id,
        started_at=row.started_at,
        as_of=row.as_of,
        finished_at=row.finished_at,
        dry_run=row.dry_run,
        status=row.status,  # type: ignore[arg-type]
        trigger=row.trigger,  # type: ignore[arg-type]
        counts=counts,
    )


async def list_runs(
    rt: Runtime, conn: asyncpg.Connection, principal: Principal, *, cursor: str | None, limit: int
) -> RunList:
    """Runs, newest first, with the counts of the caller's organization only."""
    require(principal.actor, PolicyAction.READ_RETENTION_RUNS, Resource(org_id=principal.org_id))
    before = page_before(rt.keys, _RUNS_SCOPE, cursor, limit, MAX_PAGE)
    rows = await repo.list_runs(conn, before_seq=before, limit=limit + 1)
    page = rows[:limit]
    counts = _counts(await repo.run_counts(conn, [r.id for r in page], principal.org_id, all_orgs=False))
    return RunList(
        items=[run_view(r, counts.get(r.id, {})) for r in page],
        next_cursor=encode_cursor(rt.keys, _RUNS_SCOPE, page[-1].seq) if len(rows) > limit else None,
    )

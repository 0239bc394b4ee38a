"""Carrying out an approved erasure: bounded batches, resumable, stopped by any legal hold.

Order of work, each step its own short transaction(s), each audited:

1. Start: unless a legal hold covers the client (the request then waits as ``held``),
   the account is closed for good (status ``erased``: login and every authenticated
   route refuse it from this commit on) and its sessions are revoked.
2. Messages and attachments in the client's conversations, and the client's own
   messages and uploads elsewhere, in batches through the ``erasure_sweep_*``
   functions (never in a held conversation).
3. The rest in one transaction: memberships, delivery rows, the push outbox, access
   to notes, care relationships, recovery codes, sessions, used invites, throttling
   rows, the key backup, raw addresses; active consents expire; the public key bundles
   are revoked and kept if records signed with them are kept (consent statements, held
   messages), else deleted; the account is pseudonymized (an opaque email, no name, no
   password hash, no second factor); what is kept is listed with its legal basis.

Run twice or stopped anywhere, it picks up where it was: every step deletes what is
left. The decision route starts it in the background; the retention job runs whatever
is still open.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg
import structlog

from backend.audit_trail import Action, AuditContext, AuditEvent, Outcome, record
from backend.consent import repository as consent_repo
from backend.db.pool import connection
from backend.db.tenancy import system_transaction
from backend.erasure import repository as repo
from backend.retention import repository as retention_repo
from backend.runtime import Runtime

__all__ = ["ErasureTally", "execute", "execute_due", "execute_in_background"]

_log = structlog.get_logger("confide.erasure")
#: Threads per batch when the decision route starts the erasure in the server process.
BACKGROUND_BATCH = 500


@dataclass(frozen=True, slots=True)
class ErasureTally:
    """Open requests a run looked at, how many completed, how many wait on a hold."""

    open: int
    completed: int
    held: int


def _event(
    request: repo.RequestRow,
    event_type: str,
    *,
    action: Action = Action.DELETE,
    outcome: Outcome = Outcome.SUCCESS,
    reason: str | None = None,
) -> AuditEvent:
    return AuditEvent(
        action=action,
        event_type=event_type,
        outcome=outcome,
        outcome_reason=reason,
        org_id=request.org_id,
        entity_type="erasure_request",
        entity_id=request.id,
        subject_id=request.client_id,
    )


async def execute_due(
    rt: Runtime, conn: asyncpg.Connection, ctx: AuditContext, *, batch: int, dry_run: bool
) -> ErasureTally:
    """Carry out every approved request not yet done (a dry run only counts them)."""
    ids = await repo.open_request_ids(conn)
    completed = held = 0
    for request_id in ids:
        if dry_run:
            request = await repo.get_request(conn, request_id)
            held += int(request is not None and await repo.client_held(conn, request.client_id))
            continue
        status = await execute(rt, conn, request_id, ctx, batch=batch)
        completed += status == "completed"
        held += status == "held"
    return ErasureTally(open=len(ids), completed=completed, held=held)


async def execute_in_background(rt: Runtime, request_id: uuid.UUID, ctx: AuditContext) -> None:
    """Start an approved erasure right after the decision (the retention job finishes it otherwise)."""
    try:
        async with connection(rt.require_pool(), rt.settings.db_acquire_timeout_s) as conn:
            await execute(
                rt, conn, request_id, ctx, batch=min(BACKGROUND_BATCH, rt.settings.retention_batch_size)
            )
    except Exception as exc:  # noqa: BLE001 -- the job retries; the decision is already committed
        _log.warning("erasure_deferred", error_type=type(exc).__name__)


async def execute(
    rt: Runtime, conn: asyncpg.Connection, request_id: uuid.UUID, ctx: AuditContext, *, batch: int
) -> str:
    """Carry out one approved request as far as possible; returns its status afterwards.

    ``busy`` means another process is working on it right now.
    """
    status = await _start(rt, conn, request_id, ctx)
    if status != "approved":
        return status
    for kind in ("messages", "attachments"):
        status = await _sweep(rt, conn, request_id, ctx, kind, batch)
        if status != "approved":
            return status
    return await _finish(rt, conn, request_id, ctx)


async def _start(rt: Runtime, conn: asyncpg.Connection, request_id: uuid.UUID, ctx: AuditContext) -> str:
    now = rt.clock.now()
    async with system_transaction(conn):
        request = await repo.lock_request(conn, request_id, skip_locked=True)
        if request is None:
            return "busy"
        if request.status not in {"approved", "held"}:
            return request.status
        if await repo.client_held(conn, request.client_id):
            if request.status != "held":
                await repo.set_status(conn, request.id, "held")
                event = _event(
                    request,
                    "erasure.held",
                    action=Action.EXECUTE,
                    outcome=Outcome.MINOR_FAILURE,
                    reason="legal_hold",
                )
                await record(conn, event, ctx, now)
            return "held"
        if request.status == "held":
            await repo.set_status(conn, request.id, "approved")
            await record(conn, _event(request, "erasure.resume", action=Action.EXECUTE), ctx, now)
        if request.started_at is None:
            await repo.start(conn, request, now)
            await record(conn, _event(request, "erasure.start", action=Action.EXECUTE), ctx, now)
    return "approved"


async def _sweep(
    rt: Runtime, conn: asyncpg.Connection, request_id: uuid.UUID, ctx: AuditContext, kind: str, batch: int
) -> str:
    after = 0
    while True:
        async with system_transaction(conn):
            request = await repo.lock_request(conn, request_id, skip_locked=True)
            if request is None:
                return "busy"
            if request.status != "approved" or await repo.client_held(conn, request.client_id):
                return request.status  # a hold placed meanwhile: the next run records it
            if kind == "messages":
                deleted, picked, after = await repo.sweep_messages(conn, request.id, after, batch)
            else:
                deleted, picked = await repo.sweep_attachments(conn, request.id, batch)
            if deleted:
                now = rt.clock.now()
                await repo.add_deleted(conn, request.id, {kind: deleted})
                batch_id = uuid.uuid4()
                await retention_repo.insert_batch(
                    conn,
                    batch_id=batch_id,
                    run_id=None,
                    erasure_id=request.id,
                    org_id=request.org_id,
                    category=kind,
                    deleted=deleted,
                    now=now,
                )
                event = AuditEvent(
                    action=Action.DELETE,
                    event_type=f"erasure.{kind}",
                    org_id=request.org_id,
                    entity_type="retention_batch",
                    entity_id=batch_id,
                    subject_id=request.client_id,
                )
                await record(conn, event, ctx, now)
        if picked < batch:
            return "approved"


# Why each kind of record outlives an erasure (GDPR Art. 17(3)); {period} is the policy's.
_BASIS: dict[str, str] = {
    "notes": (
        "Clinical records, kept under medical-record retention law (GDPR Art. 9(2)(h), Art. 17(3)(b) "
        "and (c)); deleted {period} days after their last amendment."
    ),
    "consent_events": (
        "Your signed consents and the server's receipts, the proof of what you authorized (GDPR "
        "Art. 7(1), Art. 17(3)(b) and (e); HIPAA 45 CFR 164.508(b)(6)); deleted {period} days after "
        "each consent ended. Active consents were ended by this erasure."
    ),
    "audit_events": (
        "The audit log, which names you only by a pseudonymous account id (HIPAA 45 CFR 164.312(b) "
        "and 164.316(b)(2)(i); GDPR Art. 17(3)(b)); entries are reduced to their hashes after "
        "{period} days."
    ),
    "emergency_access": (
        "Records of emergency (break-glass) access to your records: part of the accounting of "
        "disclosures owed to you (HIPAA 45 CFR 164.528; GDPR Art. 17(3)(b))."
    ),
    "held_messages": (
        "Messages under a legal hold (GDPR Art. 17(3)(e): legal claims); deleted once every hold on "
        "them is released and their retention period is over."
    ),
    "held_attachments": (
        "Attachments under a legal hold (GDPR Art. 17(3)(e): legal claims); deleted once every hold on "
        "them is released and their retention period is over."
    ),
    "key_bundles": (
        "Your public keys only, revoked (no private key is kept): needed to verify your signatures "
        "on the records kept above (GDPR Art. 17(3)(e))."
    ),
    "account": (
        "A pseudonymous account id, without email, name or credentials, so that the records above "
        "stay linked to one person without naming them (GDPR Art. 17(3)(b))."
    ),
}


async def _finish(rt: Runtime, conn: asyncpg.Connection, request_id: uuid.UUID, ctx: AuditContext) -> str:
    now = rt.clock.now()
    async with system_transaction(conn):
        request = await repo.lock_request(conn, request_id, skip_locked=True)
        if request is None:
            return "busy"
        if request.status != "approved" or await repo.client_held(conn, request.client_id):
            return request.status
        client = request.client_id
        if await repo.remaining(conn, client):
            return "approved"  # rows locked by live traffic were skipped: the next run finishes
        held = await repo.held_conversations(conn)
        slug, email = await repo.login_identity(conn, client)
        throttle_keys = [
            rt.keys.digest("login-account", f"{slug}\0{email.casefold()}"),
            rt.keys.digest("password-change", str(client)),
        ]
        deleted = await repo.delete_remaining(conn, client, held, throttle_keys)
        deleted["consents_ended"] = await _end_consents(conn, request, ctx, now)
        kept_counts = await repo.kept_counts(conn, client, held)
        keep_keys = kept_counts["consent_events"] > 0 or kept_counts["signed_messages"] > 0
        bundles = await repo.key_bundles(conn, client, keep=keep_keys, now=now)
        if not keep_keys:
            deleted["key_bundles"] = bundles
        await repo.add_deleted(conn, request.id, {k: v for k, v in deleted.items() if v})
        await repo.pseudonymize(conn, client, f"erased-{secrets.token_hex(12)}@erased.invalid", now)
        kept = await _kept(conn, request, kept_counts, bundles if keep_keys else 0)
        await repo.complete(conn, request.id, kept, now)
        await record(conn, _event(request, "erasure.complete"), ctx, now)
    return "completed"


async def _end_consents(
    conn: asyncpg.Connection, request: repo.RequestRow, ctx: AuditContext, now: Any
) -> int:
    """Active consents of the client end (an expiry event each): nothing may rest on them any more."""
    consent_ids = await repo.lock_active_consents(conn, request.client_id)
    for consent_id in consent_ids:
        await consent_repo.insert_event(
            conn,
            event_id=uuid.uuid4(),
            consent_id=consent_id,
            org_id=request.org_id,
            client_id=request.client_id,
            kind="expire",
            statement=None,
            receipt=None,
            now=now,
        )
        await consent_repo.end_consent(conn, consent_id, "expired", now)
        event = AuditEvent(
            action=Action.UPDATE,
            event_type="consent.expire",
            outcome_reason="erasure",
            org_id=request.org_id,
            entity_type="consent",
            entity_id=consent_id,
            subject_id=request.client_id,
        )
        await record(conn, event, ctx, now)
    return len(consent_ids)


async def _kept(
    conn: asyncpg.Connection, request: repo.RequestRow, counts: dict[str, int], bundles: int
) -> list[dict[str, Any]]:
    periods = {p.category: p.period_days for p in await retention_repo.list_policies(conn, request.org_id)}
    found = {
        "notes": counts["notes"],
        "consent_events": counts["consent_events"],
        "audit_events": counts["audit_events"],
        "emergency_access": counts["emergency_access"],
        "held_messages": counts["held_messages"],
        "held_attachments": counts["held_attachments"],
        "key_bundles": bundles,
        "account": 1,
    }
    return [
        {"category": kind, "count": count, "basis": _BASIS[kind].format(period=periods.get(kind, "?"))}
        for kind, count in found.items()
        if count
    ]

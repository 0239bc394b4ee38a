"""The retention job: each category just inside and just outside its period, holds, dry runs, reruns."""

from __future__ import annotations

import datetime as dt
import uuid

import asyncpg
import pytest
from litestar import Litestar

from backend.clock import FrozenClock
from backend.retention import RetentionBusyError, run_retention
from backend.retention.cli import format_summary
from backend.retention.schemas import CategoryCounts
from tests import retention_helpers as seed
from tests.audit_helpers import integrate_all
from tests.helpers import runtime_of
from tests.retention_helpers import days

HOUR = dt.timedelta(hours=1)


@pytest.fixture
def clock() -> FrozenClock:
    # Retention never runs ahead of the database's clock: the test's "now" is a day ago.
    return FrozenClock(seed.real_now() - days(1))


async def _hold(db: asyncpg.Connection, org: seed.SeedOrg, *, client: uuid.UUID | None = None,
                conversation: uuid.UUID | None = None) -> uuid.UUID:  # fmt: skip
    hold_id = uuid.uuid4()
    await db.execute(
        """
        INSERT INTO legal_holds (id, org_id, scope, client_id, conversation_id, reason, placed_by, placed_at)
        VALUES ($1, $2, $3, $4, $5, 'litigation notice received', $6, now())
        """,
        hold_id,
        org.id,
        "client" if client else "conversation",
        client,
        conversation,
        org.officer,
    )
    return hold_id


class World:
    """One organization with rows on both sides of every period, some of them held."""

    def __init__(self) -> None:
        self.gone: dict[str, set[uuid.UUID]] = {}
        self.kept: dict[str, set[uuid.UUID]] = {}

    def expect(self, table: str, row: uuid.UUID, *, gone: bool) -> None:
        (self.gone if gone else self.kept).setdefault(table, set()).add(row)


async def _world(app: Litestar, db: asyncpg.Connection, clock: FrozenClock) -> tuple[World, seed.SeedOrg]:
    now = clock.now()
    w = World()
    org = await seed.seed_org(db, "ret", now - days(6000), clients=3)
    client, held_client, closing = org.clients
    doc = org.clinician
    conv = await seed.conversation(db, org, now - days(6000), client=client, members=[client, doc])
    held_conv = await seed.conversation(db, org, now - days(6000), client=closing, members=[closing, doc])
    client_held_conv = await seed.conversation(
        db, org, now - days(6000), client=held_client, members=[held_client, doc]
    )
    await _hold(db, org, conversation=held_conv)
    await _hold(db, org, client=held_client)
    # messages: 1095 days after the newest version of a message
    cut = now - days(1095)
    w.expect("messages", await seed.message(db, org, conv, doc, cut - HOUR, [client, doc]), gone=True)
    w.expect("messages", await seed.message(db, org, conv, doc, cut + HOUR, [client, doc]), gone=False)
    root = await seed.message(db, org, conv, doc, now - days(2000), [client, doc])
    w.expect("messages", root, gone=False)  # its edit is recent: the thread stays whole
    w.expect(
        "messages",
        await seed.message(db, org, conv, doc, now - days(100), [client, doc], references=root),
        gone=False,
    )
    old_root = await seed.message(db, org, conv, doc, now - days(2000), [client, doc])
    w.expect("messages", old_root, gone=True)
    w.expect(
        "messages",
        await seed.message(db, org, conv, doc, now - days(1500), [client, doc], references=old_root),
        gone=True,
    )
    w.expect(
        "messages", await seed.message(db, org, held_conv, doc, now - days(2000), [closing, doc]), gone=False
    )
    w.expect(
        "messages",
        await seed.message(db, org, client_held_conv, doc, now - days(2000), [held_client]),
        gone=False,
    )
    # attachments: 1095 days after upload
    w.expect("attachments", await seed.attachment(db, org, conv, doc, cut - HOUR), gone=True)
    w.expect("attachments", await seed.attachment(db, org, conv, doc, cut + HOUR), gone=False)
    w.expect("attachments", await seed.attachment(db, org, held_conv, doc, now - days(2000)), gone=False)
    # notes: 3650 days after the last amendment
    cut = now - days(3650)
    w.expect("notes", await seed.note(db, org, client, cut - HOUR), gone=True)
    w.expect("notes", await seed.note(db, org, client, cut + HOUR), gone=False)
    amended = await seed.note(db, org, client, now - days(4000))
    w.expect("notes", amended, gone=False)
    w.expect("notes", await seed.note(db, org, client, now - days(3000), amends=amended), gone=False)
    old_note = await seed.note(db, org, client, now - days(5000))
    w.expect("notes", old_note, gone=True)
    w.expect("notes", await seed.note(db, org, client, now - days(4500), amends=old_note), gone=True)
    w.expect("notes", await seed.note(db, org, held_client, now - days(5000)), gone=False)
    # consent records: 2192 days after the consent ended
    cut = now - days(2192)
    w.expect(
        "consents",
        await seed.consent(db, org, client, now - days(5000), ended_at=cut - HOUR, status="revoked"),
        gone=True,
    )
    w.expect(
        "consents",
        await seed.consent(db, org, client, now - days(5000), ended_at=cut + HOUR, status="expired"),
        gone=False,
    )
    w.expect("consents", await seed.consent(db, org, client, now - days(5000)), gone=False)  # still active
    w.expect(
        "consents",
        await seed.consent(
            db, org, held_client, now - days(5000), ended_at=now - days(4000), status="revoked"
        ),
        gone=False,
    )
    # sessions: 30 days after last use or revocation, once ended
    w.expect("sessions", await seed.session(db, org, client, now - days(30) - HOUR, revoked=True), gone=True)
    w.expect(
        "sessions", await seed.session(db, org, client, now - days(30) - HOUR), gone=True
    )  # idle-expired
    w.expect("sessions", await seed.session(db, org, client, now - days(30) + HOUR, revoked=True), gone=False)
    w.expect("sessions", await seed.session(db, org, client, now - HOUR, live=True), gone=False)
    # invites: 30 days after redemption or expiry
    w.expect(
        "invites", await seed.invite(db, org, now - days(37) - HOUR), gone=True
    )  # expired 30 days + 1 h ago
    w.expect("invites", await seed.invite(db, org, now - days(37) + HOUR), gone=False)
    w.expect(
        "invites",
        await seed.invite(db, org, now - days(40), redeemed_by=client, redeemed_at=now - days(30) - HOUR),
        gone=True,
    )
    w.expect("invites", await seed.invite(db, org, now - days(2)), gone=False)  # still usable
    # key backups: 30 days after the account closed
    await seed.key_backup(db, org, closing, now - days(400))
    await seed.close_account(db, closing, now - days(30) - HOUR)
    w.expect("key_backups", closing, gone=True)
    late = await seed.account(db, org.id, "client", "late@ret.example", now - days(400))
    await seed.key_backup(db, org, late, now - days(400))
    await seed.close_account(db, late, now - days(30) + HOUR)
    w.expect("key_backups", late, gone=False)
    await seed.key_backup(db, org, client, now - days(400))
    w.expect("key_backups", client, gone=False)  # open account
    await seed.key_backup(db, org, held_client, now - days(400))
    await seed.close_account(db, held_client, now - days(300))
    w.expect("key_backups", held_client, gone=False)  # held
    # audit events: leaf bytes pruned 3650 days after they were recorded
    cut = now - days(3650)
    w.expect("audit", await seed.audit_event(db, org, cut - HOUR), gone=True)
    w.expect("audit", await seed.audit_event(db, org, cut + HOUR), gone=False)
    w.expect("audit", await seed.audit_event(db, org, now - days(4000), subject=held_client), gone=False)
    w.expect("audit", await seed.audit_event(db, None, cut - HOUR), gone=True)  # no organization: the default
    await integrate_all(app, db)
    return w, org


_PRESENT = {
    "messages": "SELECT id FROM messages",
    "attachments": "SELECT id FROM attachments",
    "notes": "SELECT id FROM notes",
    "consents": "SELECT consent_id FROM consents",
    "sessions": "SELECT id FROM sessions",
    "invites": "SELECT id FROM invites",
    "key_backups": "SELECT account_id FROM key_backups",
    "audit": "SELECT event_id FROM audit_events WHERE leaf IS NOT NULL",
}


async def _check(db: asyncpg.Connection, w: World) -> None:
    for table, sql in _PRESENT.items():
        present = {r[0] for r in await db.fetch(sql)}
        assert not (w.gone.get(table, set()) & present), f"{table}: rows past their period remain"
        assert w.kept.get(table, set()) <= present, (
            f"{table}: rows inside their period (or held) were removed"
        )


EXPECTED = {
    "messages": CategoryCounts(candidates=6, held=2, deleted=3, skipped=1),
    "attachments": CategoryCounts(candidates=2, held=1, deleted=1, skipped=0),
    "notes": CategoryCounts(candidates=5, held=1, deleted=3, skipped=1),
    "consent_events": CategoryCounts(candidates=4, held=2, deleted=2, skipped=0),
    "sessions": CategoryCounts(candidates=2, held=0, deleted=2, skipped=0),
    "invites": CategoryCounts(candidates=2, held=0, deleted=2, skipped=0),
    "key_backups": CategoryCounts(candidates=2, held=1, deleted=1, skipped=0),
    "audit_events": CategoryCounts(candidates=3, held=1, deleted=2, skipped=0),
}


async def test_each_category_just_inside_and_just_outside_its_period(
    app: Litestar, db: asyncpg.Connection, clock: FrozenClock
) -> None:
    """A dry run reports exact counts and changes nothing; the run deletes exactly that; a rerun nothing."""
    w, _ = await _world(app, db, clock)
    rt = runtime_of(app)
    before = await seed.snapshot(db)

    dry = await run_retention(rt, db, dry_run=True, trigger="cli", batch_size=2)
    assert dry.status == "completed"
    assert await seed.snapshot(db) == before, "a dry run changes nothing"
    for category, counts in EXPECTED.items():
        assert dry.counts[category] == counts, category
    assert "would delete" in format_summary(dry)

    real = await run_retention(rt, db, dry_run=False, trigger="cli", batch_size=2)
    assert real.status == "completed"
    for category, counts in EXPECTED.items():
        assert real.counts[category] == counts, category
    await _check(db, w)
    after = await seed.snapshot(db)

    again = await run_retention(rt, db, dry_run=False, trigger="cli", batch_size=2)
    assert await seed.snapshot(db) == after, "a second run does nothing"
    for category in EXPECTED:
        assert again.counts[category].deleted == 0, category
    # Each batch wrote one audit event per organization, naming its batch row; no duplicates.
    batches = await db.fetch(
        "SELECT id, category, deleted FROM retention_batches WHERE run_id = $1", real.run_id
    )
    events = await db.fetch(
        "SELECT entity_id FROM audit_events"
        " WHERE entity_type = 'retention_batch' AND event_type LIKE 'retention.%'"
    )
    assert sorted(r["id"] for r in batches) == sorted(r["entity_id"] for r in events)
    assert sum(r["deleted"] for r in batches if r["category"] == "messages") == 3
    runs = await db.fetch("SELECT status, dry_run, counts FROM retention_runs ORDER BY seq")
    assert [(r["status"], r["dry_run"]) for r in runs] == [
        ("completed", True),
        ("completed", False),
        ("completed", False),
    ]


async def test_a_released_hold_lets_the_next_run_delete(
    app: Litestar, db: asyncpg.Connection, clock: FrozenClock
) -> None:
    now = clock.now()
    org = await seed.seed_org(db, "rel", now - days(5000), clients=1)
    conv = await seed.conversation(db, org, now - days(5000), client=org.clients[0], members=[org.clients[0]])
    message = await seed.message(db, org, conv, org.clinician, now - days(2000), [org.clients[0]])
    hold = await _hold(db, org, client=org.clients[0])
    rt = runtime_of(app)
    first = await run_retention(rt, db, dry_run=False, trigger="cli")
    assert first.counts["messages"] == CategoryCounts(candidates=1, held=1, deleted=0, skipped=0)
    await db.execute(
        "UPDATE legal_holds SET released_at = now(), released_by = $2,"
        " release_reason = 'matter settled, hold lifted'"
        " WHERE id = $1",
        hold,
        org.officer,
    )
    second = await run_retention(rt, db, dry_run=False, trigger="cli")
    assert second.counts["messages"].deleted == 1
    assert await db.fetchval("SELECT count(*) FROM messages WHERE id = $1", message) == 0


@pytest.mark.parametrize(
    "statement",
    [
        "DELETE FROM messages m WHERE NOT EXISTS"
        " (SELECT 1 FROM message_recipients r WHERE r.message_seq = m.seq)",
        "DELETE FROM message_recipients",
        "DELETE FROM attachment_chunks",
        "DELETE FROM note_envelopes",
        "DELETE FROM consent_events",
        "DELETE FROM key_backups",
        "UPDATE accounts SET status = 'erased' WHERE role = 'client'",
    ],
)
async def test_the_database_refuses_to_remove_held_rows(
    db: asyncpg.Connection, clock: FrozenClock, statement: str
) -> None:
    """Backstop: whatever the code does, a statement touching held rows fails as a whole."""
    now = clock.now()
    org = await seed.seed_org(db, "bs", now - days(5000), clients=1)
    held = org.clients[0]
    conv = await seed.conversation(db, org, now, client=held, members=[held, org.clinician])
    await seed.message(db, org, conv, org.clinician, now - days(4000), [held])
    await seed.message(db, org, conv, org.clinician, now - days(4000), [])
    await seed.attachment(db, org, conv, held, now - days(4000))
    root = await seed.note(db, org, held, now - days(4000))
    await seed.note(db, org, held, now - days(3999), amends=root)
    await seed.key_backup(db, org, held, now)
    await seed.consent(db, org, held, now - days(5000), ended_at=now - days(4000), status="revoked")
    await _hold(db, org, client=held)
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="legal hold"):
        await db.execute(statement)


async def test_only_one_run_at_a_time(app: Litestar, db: asyncpg.Connection, database_url: str) -> None:
    other = await asyncpg.connect(database_url)
    try:
        from backend.retention import RUN_LOCK_KEY  # noqa: PLC0415

        assert await other.fetchval("SELECT pg_try_advisory_lock($1)", RUN_LOCK_KEY)
        with pytest.raises(RetentionBusyError):
            await run_retention(runtime_of(app), db, dry_run=False, trigger="cli")
    finally:
        await other.close()  # the lock goes with the session, as after a crash
    report = await run_retention(runtime_of(app), db, dry_run=False, trigger="cli")
    assert report.status == "completed"


async def test_retention_never_runs_ahead_of_the_database_clock(db: asyncpg.Connection) -> None:
    future = seed.real_now() + days(4000)
    with pytest.raises(asyncpg.InvalidParameterValueError):
        await db.fetch("SELECT * FROM retention_sweep_messages($1, 0, 10, false)", future)


async def test_consent_records_are_deleted_only_after_their_period(
    db: asyncpg.Connection, clock: FrozenClock
) -> None:
    """Even with its triggers on, the owner cannot delete a consent record inside its period."""
    now = clock.now()
    org = await seed.seed_org(db, "cons", now - days(5000), clients=1)
    recent = await seed.consent(
        db, org, org.clients[0], now - days(400), ended_at=now - days(300), status="revoked"
    )
    old = await seed.consent(
        db, org, org.clients[0], now - days(5000), ended_at=now - days(3000), status="revoked"
    )
    active = await seed.consent(db, org, org.clients[0], now - days(5000))
    for consent_id in (recent, active):
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await db.execute("DELETE FROM consent_events WHERE consent_id = $1", consent_id)
    assert await db.execute("DELETE FROM consent_events WHERE consent_id = $1", old) == "DELETE 2"

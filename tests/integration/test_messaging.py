"""Messaging through the real app with real keys: the server stores, orders and checks; never reads."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import asyncpg
import httpx
import msgspec
import pytest
import structlog
from litestar import Litestar
from litestar.testing import AsyncTestClient

from backend.audit_trail.writer import EVENT_PARAMETERS
from backend.clock import FrozenClock
from crypto.client.keys import IdentityKeys
from crypto.errors import RecipientSetError
from crypto.public import EnvelopeKind
from tests.helpers import Account, Clinic, audit_rows, make_clinic, make_staff, problem
from tests.messaging_helpers import as_json, consent_to, publish_keys, read, seal


@dataclass
class Chat:
    clinic: Clinic
    org_id: uuid.UUID
    doc_keys: IdentityKeys
    pat_keys: IdentityKeys
    conversation_id: uuid.UUID


@pytest.fixture
async def chat(
    client: AsyncTestClient[Litestar], app: Litestar, db: asyncpg.Connection, clock: FrozenClock
) -> Chat:
    clinic = await make_clinic(client, app, db)
    org_id = uuid.UUID((await client.get("/v1/me", headers=clinic.client.headers)).json()["organization_id"])
    doc_keys = await publish_keys(client, clinic.clinician)
    pat_keys = await publish_keys(client, clinic.client)
    conversation_id = uuid.uuid4()
    denied = await client.post(
        "/v1/conversations",
        json={"id": str(conversation_id), "kind": "direct", "client_id": str(clinic.client.id)},
        headers=clinic.clinician.headers,
    )
    assert denied.status_code == 403, "no conversation without the client's messaging consent"
    await consent_to(client, clinic.client, pat_keys, org_id, clinic.clinician.id, clock)
    created = await client.post(
        "/v1/conversations",
        json={"id": str(conversation_id), "kind": "direct", "client_id": str(clinic.client.id)},
        headers=clinic.clinician.headers,
    )
    assert created.status_code == 201, created.text
    return Chat(clinic, org_id, doc_keys, pat_keys, conversation_id)


async def _send(
    client: AsyncTestClient[Litestar], account: Account, conversation_id: uuid.UUID, envelope: object
) -> httpx.Response:
    return await client.post(
        f"/v1/conversations/{conversation_id}/messages", json=as_json(envelope), headers=account.headers
    )


async def test_send_fetch_and_decrypt(
    client: AsyncTestClient[Litestar], chat: Chat, db: asyncpg.Connection
) -> None:
    doc, pat = chat.clinic.clinician, chat.clinic.client
    bundles = [chat.doc_keys.bundle, chat.pat_keys.bundle]
    envelope = seal(chat.doc_keys, chat.conversation_id, "How are you feeling today?", bundles)
    sent = await _send(client, doc, chat.conversation_id, envelope)
    assert sent.status_code == 201, sent.text
    again = await _send(client, doc, chat.conversation_id, envelope)
    assert again.status_code == 200, "the same id with the same bytes is idempotent"
    assert again.json() == sent.json()
    reply = seal(chat.pat_keys, chat.conversation_id, "Better, thank you.", bundles)
    assert (await _send(client, pat, chat.conversation_id, reply)).status_code == 201

    page = await client.get(f"/v1/conversations/{chat.conversation_id}/messages", headers=pat.headers)
    assert page.status_code == 200
    items = page.json()["items"]
    assert [i["id"] for i in items] == [str(envelope.item_id), str(reply.item_id)]
    assert read(items[0]["envelope"], chat.pat_keys, chat.doc_keys.bundle, chat.conversation_id) == (
        "How are you feeling today?"
    )
    assert (
        read(items[1]["envelope"], chat.doc_keys, chat.pat_keys.bundle, chat.conversation_id)
        == "Better, thank you."
    )
    delivered = await db.fetchval("SELECT count(*) FROM message_recipients WHERE delivered_at IS NOT NULL")
    assert delivered == 3, "senders at send time, the patient on fetch; the clinician has not fetched yet"
    assert len(await audit_rows(db, "message.create")) == 2
    assert len(await audit_rows(db, "message.read")) == 1


async def test_same_id_other_bytes_is_a_conflict(client: AsyncTestClient[Litestar], chat: Chat) -> None:
    bundles = [chat.doc_keys.bundle, chat.pat_keys.bundle]
    item = uuid.uuid4()
    first = seal(chat.doc_keys, chat.conversation_id, "one", bundles, item_id=item)
    second = seal(chat.doc_keys, chat.conversation_id, "two", bundles, item_id=item)
    assert (await _send(client, chat.clinic.clinician, chat.conversation_id, first)).status_code == 201
    clash = await _send(client, chat.clinic.clinician, chat.conversation_id, second)
    assert clash.status_code == 409


async def test_recipients_must_be_exactly_the_members_current_keys(
    client: AsyncTestClient[Litestar], app: Litestar, chat: Chat, db: asyncpg.Connection
) -> None:
    """The server refuses an envelope that leaves out a member or adds an outsider, naming the keys."""
    doc = chat.clinic.clinician
    outsider = await make_staff(client, app, chat.clinic.admin, "clinician", "outsider@clinic.example")
    outsider_keys = await publish_keys(client, outsider)
    missing = seal(chat.doc_keys, chat.conversation_id, "only me", [chat.doc_keys.bundle])
    response = await _send(client, doc, chat.conversation_id, missing)
    assert response.status_code == 409
    body = problem(response)
    assert body["type"].endswith("recipients-mismatch")
    assert body["missing_keys"] == [{"account_id": str(chat.clinic.client.id), "key_version": 1}]
    extra = seal(
        chat.doc_keys,
        chat.conversation_id,
        "to three",
        [chat.doc_keys.bundle, chat.pat_keys.bundle, outsider_keys.bundle],
    )
    response = await _send(client, doc, chat.conversation_id, extra)
    assert response.status_code == 409
    assert problem(response)["unexpected_keys"] == [{"account_id": str(outsider.id), "key_version": 1}]
    assert await db.fetchval("SELECT count(*) FROM messages") == 0


async def test_envelopes_bound_elsewhere_are_refused(client: AsyncTestClient[Litestar], chat: Chat) -> None:
    bundles = [chat.doc_keys.bundle, chat.pat_keys.bundle]
    doc = chat.clinic.clinician
    other_context = seal(chat.doc_keys, uuid.uuid4(), "replayed", bundles)
    assert (await _send(client, doc, chat.conversation_id, other_context)).status_code == 422
    by_other_sender = seal(chat.pat_keys, chat.conversation_id, "impersonation", bundles)
    assert (await _send(client, doc, chat.conversation_id, by_other_sender)).status_code == 422
    tampered = as_json(seal(chat.doc_keys, chat.conversation_id, "flip", bundles))
    tampered["ciphertext"] = (
        tampered["ciphertext"][:10]
        + ("A" if tampered["ciphertext"][10] != "A" else "B")
        + (tampered["ciphertext"][11:])
    )
    response = await client.post(
        f"/v1/conversations/{chat.conversation_id}/messages", json=tampered, headers=doc.headers
    )
    assert response.status_code == 422
    assert problem(response)["type"].endswith("bad-signature")


async def test_edit_and_delete_reference_the_original(
    client: AsyncTestClient[Litestar], chat: Chat, db: asyncpg.Connection
) -> None:
    doc, pat = chat.clinic.clinician, chat.clinic.client
    bundles = [chat.doc_keys.bundle, chat.pat_keys.bundle]
    original = seal(chat.doc_keys, chat.conversation_id, "see you at 3", bundles)
    await _send(client, doc, chat.conversation_id, original)
    edit = seal(
        chat.doc_keys,
        chat.conversation_id,
        "see you at 4",
        bundles,
        kind=EnvelopeKind.MESSAGE_EDIT,
        references=original.item_id,
    )
    assert (await _send(client, doc, chat.conversation_id, edit)).status_code == 201
    foreign_edit = seal(
        chat.pat_keys,
        chat.conversation_id,
        "hijack",
        bundles,
        kind=EnvelopeKind.MESSAGE_EDIT,
        references=original.item_id,
    )
    assert (await _send(client, pat, chat.conversation_id, foreign_edit)).status_code == 422
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await db.execute("UPDATE messages SET kind = 'message'")
    items = (
        await client.get(f"/v1/conversations/{chat.conversation_id}/messages", headers=pat.headers)
    ).json()["items"]
    assert [(i["kind"], i["references"]) for i in items] == [
        ("message", None),
        ("message_edit", str(original.item_id)),
    ]


async def test_keyset_pagination_both_ways(client: AsyncTestClient[Litestar], chat: Chat) -> None:
    doc = chat.clinic.clinician
    bundles = [chat.doc_keys.bundle, chat.pat_keys.bundle]
    ids = []
    for n in range(7):
        envelope = seal(chat.doc_keys, chat.conversation_id, f"message {n}", bundles)
        ids.append(str(envelope.item_id))
        assert (await _send(client, doc, chat.conversation_id, envelope)).status_code == 201
    url = f"/v1/conversations/{chat.conversation_id}/messages"
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 3} | ({"after": cursor} if cursor else {})
        page = (await client.get(url, params=params, headers=doc.headers)).json()
        seen += [i["id"] for i in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == ids, "pages neither overlap nor leave gaps"
    last = await client.get(url, params={"after": cursor or "", "limit": 3}, headers=doc.headers)
    assert last.status_code in {200, 400}
    backwards = (
        await client.get(url, params={"before": page["prev_cursor"], "limit": 3}, headers=doc.headers)
    ).json()
    assert [i["id"] for i in backwards["items"]] == ids[3:6]
    forged = await client.get(url, params={"after": "A" * 32}, headers=doc.headers)
    assert forged.status_code == 400
    assert problem(forged)["type"].endswith("invalid-cursor")
    assert (await client.get(url, params={"limit": 10**9}, headers=doc.headers)).status_code == 400
    assert (await client.get(url, params={"limit": -1}, headers=doc.headers)).status_code == 400


async def test_non_members_and_revoked_consent(
    client: AsyncTestClient[Litestar], app: Litestar, db: asyncpg.Connection, chat: Chat, clock: FrozenClock
) -> None:
    other = await make_clinic(client, app, db, slug="otherorg")
    url = f"/v1/conversations/{chat.conversation_id}"
    start = await db.fetchval("SELECT max(seq) FROM audit_events")
    for outsider in (chat.clinic.admin, other.clinician, other.client):
        assert (await client.get(url, headers=outsider.headers)).status_code == 404
        assert (await client.get(url + "/messages", headers=outsider.headers)).status_code == 404

    async def refusals() -> list[tuple[str, uuid.UUID, str]]:
        rows = await db.fetch(
            "SELECT event_type, agent_account_id, outcome_reason, subject_id, consent_id, purpose_of_use "
            "FROM audit_events WHERE outcome = 4 AND seq > $1 ORDER BY seq",
            start,
        )
        assert all(r["subject_id"] == chat.clinic.client.id for r in rows), "in the client's accounting"
        assert all(r["consent_id"] is None and r["purpose_of_use"] is None for r in rows), "nothing granted"
        return [(r["event_type"], r["agent_account_id"], r["outcome_reason"]) for r in rows]

    # The admin's attempts (same organization, the conversation exists) are audited as refused;
    # another organization's name nothing here, and write nothing.
    admin = chat.clinic.admin.id
    assert await refusals() == [
        ("conversation.read", admin, "not_found"),
        ("message.read", admin, "not_found"),
    ]
    # The client revokes messaging consent: the clinician is refused on the next request.
    consents = (await client.get("/v1/consents", headers=chat.clinic.client.headers)).json()["items"]
    grant_id = uuid.UUID(consents[0]["consent_id"])
    from crypto.client import sign_consent  # noqa: PLC0415
    from crypto.public import ConsentAction  # noqa: PLC0415

    history = await client.get(f"/v1/consents/{grant_id}/history", headers=chat.clinic.client.headers)
    grant = history.json()["events"][0]["statement"]
    import datetime as dt  # noqa: PLC0415

    revoke = sign_consent(
        chat.pat_keys,
        action=ConsentAction.REVOKE,
        consent_id=grant_id,
        organization_id=chat.org_id,
        grantee_type="clinician",
        grantee_id=chat.clinic.clinician.id,
        scopes=grant["scopes"],
        purpose="TREAT",
        valid_from=dt.datetime.fromisoformat(grant["valid_from"]),
        valid_until=dt.datetime.fromisoformat(grant["valid_until"]),
        clock=clock.now,
    )
    revoked = await client.post(
        f"/v1/consents/{grant_id}/revoke", json=as_json(revoke), headers=chat.clinic.client.headers
    )
    assert revoked.status_code == 200, revoked.text
    assert (await client.get(url + "/messages", headers=chat.clinic.clinician.headers)).status_code == 403
    assert (await client.get(url + "/messages", headers=chat.clinic.client.headers)).status_code == 200
    refused = (await refusals())[-1]
    assert refused[:2] == ("message.read", chat.clinic.clinician.id), "the refused read is audited"


async def test_support_group_pseudonyms_and_removal(
    client: AsyncTestClient[Litestar], app: Litestar, db: asyncpg.Connection
) -> None:
    clinic = await make_clinic(client, app, db)
    doc = clinic.clinician
    from tests.helpers import make_client  # noqa: PLC0415

    members = [
        clinic.client,
        await make_client(client, doc, "b@clinic.example"),
        await make_client(client, doc, "c@clinic.example"),
    ]
    keys = {m.id: await publish_keys(client, m) for m in members}
    doc_keys = await publish_keys(client, doc)
    group = uuid.uuid4()
    created = await client.post(
        "/v1/conversations", json={"id": str(group), "kind": "support_group"}, headers=doc.headers
    )
    assert created.status_code == 201
    for m in members:
        invited = await client.post(
            f"/v1/conversations/{group}/members", json={"account_id": str(m.id)}, headers=doc.headers
        )
        assert invited.status_code == 200, invited.text
    # Invited is not joined: a client consents by joining, under a pseudonym.
    for n, m in enumerate(members):
        joined = await client.post(
            f"/v1/conversations/{group}/join", json={"pseudonym": f"Member {n}"}, headers=m.headers
        )
        assert joined.status_code == 200, joined.text
    view = (await client.get(f"/v1/conversations/{group}", headers=members[1].headers)).json()
    names = {item["account_id"]: item["name"] for item in view["members"]}
    assert names[str(members[0].id)] == "Member 0", "other clients see a pseudonym"
    assert names[str(members[1].id)] == "Client", "a client sees their own name"
    assert "clinic.example" not in msgspec.json.encode(view).decode(), "no email is ever shown"

    everyone = [doc_keys.bundle, *(k.bundle for k in keys.values())]
    hello = seal(keys[members[0].id], group, "hello all", everyone)
    assert (await _send(client, members[0], group, hello)).status_code == 201
    # Remove member 2: new messages must leave their key out, and they cannot fetch them.
    removed = await client.delete(f"/v1/conversations/{group}/members/{members[2].id}", headers=doc.headers)
    assert removed.status_code == 200
    stale = seal(doc_keys, group, "after removal", everyone)
    assert (await _send(client, doc, group, stale)).status_code == 409
    fresh_bundles = [doc_keys.bundle, keys[members[0].id].bundle, keys[members[1].id].bundle]
    after = seal(doc_keys, group, "after removal", fresh_bundles)
    assert (await _send(client, doc, group, after)).status_code == 201
    assert (
        await client.get(f"/v1/conversations/{group}/messages", headers=members[2].headers)
    ).status_code == 404
    page = (await client.get(f"/v1/conversations/{group}/messages", headers=members[1].headers)).json()[
        "items"
    ]
    assert read(page[1]["envelope"], keys[members[1].id], doc_keys.bundle, group) == "after removal"
    with pytest.raises(RecipientSetError):
        read(page[1]["envelope"], keys[members[2].id], doc_keys.bundle, group)


async def test_revoked_clinician_is_no_longer_a_recipient(
    client: AsyncTestClient[Litestar], app: Litestar, db: asyncpg.Connection, chat: Chat, clock: FrozenClock
) -> None:
    """After the client revokes a care-team clinician's consent, new messages must leave their key out."""
    import datetime as dt  # noqa: PLC0415

    from crypto.client import sign_consent  # noqa: PLC0415
    from crypto.public import ConsentAction  # noqa: PLC0415

    pat = chat.clinic.client
    doc2 = await make_staff(client, app, chat.clinic.admin, "clinician", "doc2@clinic.example")
    doc2_keys = await publish_keys(client, doc2)
    grant = await consent_to(client, pat, chat.pat_keys, chat.org_id, doc2.id, clock, scopes=("messaging",))
    team = uuid.uuid4()
    created = await client.post(
        "/v1/conversations",
        json={"id": str(team), "kind": "care_team", "client_id": str(pat.id), "clinicians": [str(doc2.id)]},
        headers=chat.clinic.clinician.headers,
    )
    assert created.status_code == 201, created.text
    revoke = sign_consent(
        chat.pat_keys,
        action=ConsentAction.REVOKE,
        consent_id=uuid.UUID(grant["consent_id"]),
        organization_id=chat.org_id,
        grantee_type="clinician",
        grantee_id=doc2.id,
        scopes=("messaging",),
        purpose="TREAT",
        valid_from=dt.datetime.fromisoformat(grant["valid_from"]),
        valid_until=dt.datetime.fromisoformat(grant["valid_until"]),
        clock=clock.now,
    )
    revoked = await client.post(
        f"/v1/consents/{grant['consent_id']}/revoke", json=as_json(revoke), headers=pat.headers
    )
    assert revoked.status_code == 200, revoked.text
    with_doc2 = seal(
        chat.pat_keys, team, "still to you?", [chat.doc_keys.bundle, chat.pat_keys.bundle, doc2_keys.bundle]
    )
    refused = await _send(client, pat, team, with_doc2)
    assert refused.status_code == 409
    assert problem(refused)["unexpected_keys"] == [{"account_id": str(doc2.id), "key_version": 1}]
    without = seal(chat.pat_keys, team, "only to my clinician", [chat.doc_keys.bundle, chat.pat_keys.bundle])
    assert (await _send(client, pat, team, without)).status_code == 201
    events = await db.fetch(
        "SELECT kind FROM account_events WHERE account_id = $1 AND kind = 'message.created'", doc2.id
    )
    assert events == [], "no push event reaches the revoked clinician"
    assert (await client.get(f"/v1/conversations/{team}/messages", headers=doc2.headers)).status_code == 403
    removal = await client.delete(
        f"/v1/conversations/{team}/members/{chat.clinic.clinician.id}", headers=doc2.headers
    )
    assert removal.status_code == 403, "nor may they manage the members"


async def test_a_page_reads_one_ordered_index_range_even_with_a_generic_plan(
    client: AsyncTestClient[Litestar], chat: Chat, db: asyncpg.Connection
) -> None:
    """L-05: a prepared statement's generic plan must not scan the whole conversation and sort.

    The page query is run exactly as the repository runs it, with the plan PostgreSQL
    would cache after five executions forced from the start; it must walk the
    recipient's (account, conversation, seq) key in order and stop at the limit.
    """
    from backend.messaging import repository  # noqa: PLC0415 -- the statements under test

    bundles = [chat.doc_keys.bundle, chat.pat_keys.bundle]
    for n in range(3):
        envelope = seal(chat.doc_keys, chat.conversation_id, f"note {n}", bundles)
        assert (await _send(client, chat.clinic.clinician, chat.conversation_id, envelope)).status_code == 201
    await db.execute("SET plan_cache_mode = force_generic_plan")
    for name, statement in (("after", repository._READ_AFTER), ("before", repository._READ_BEFORE)):
        await db.execute(f"PREPARE page_{name} AS {statement}")
        arguments = ", ".join(["NULL"] * EVENT_PARAMETERS)  # EXPLAIN plans the audit insert, runs nothing
        plan = "\n".join(
            r[0]
            for r in await db.fetch(
                f"EXPLAIN (COSTS OFF) EXECUTE page_{name} "
                f"('{chat.conversation_id}', '{chat.clinic.client.id}', 1, 50, now(), {arguments})"
            )
        )
        lines = [line.strip(" ->") for line in plan.splitlines()]
        sections = {line: i for i, line in enumerate(lines) if line.startswith("CTE ") and "Scan" not in line}
        # The page's positions: one range of the recipient's key, limited.
        page = lines[sections["CTE page"] : sections["CTE delivered"]]
        assert page[1].startswith("Limit"), plan
        assert page[2].startswith("Index Only Scan"), plan
        assert "message_recipients_pkey" in page[2], plan
        assert "message_seq" in page[3], plan
        # First delivery touches the page's rows by key, not every row of the conversation.
        delivered = lines[sections["CTE delivered"] : sections["CTE audit_event"]]
        assert any("message_seq = ANY" in line for line in delivered), plan
        # Then at most that many messages are looked up by key, in a nested loop over the page (a
        # merge join would walk messages from the first one: 260 ms at page 500 of 100,000,
        # tests/bench/bench_history.py).
        assert [line for line in lines if "Join" in line or "Nested Loop" in line] == ["Nested Loop"], plan
        assert lines[-3:-1] == ["CTE Scan on page", "Index Scan using messages_pkey on messages m"], plan
        assert "Sort" not in lines[1:], plan  # (a Sort of the page's rows at the top at most)
        assert "Bitmap" not in plan, plan
        assert "Seq Scan" not in plan, plan


async def test_a_message_its_recipients_audit_event_and_push_events_commit_together(
    client: AsyncTestClient[Litestar], chat: Chat, db: asyncpg.Connection
) -> None:
    """One statement stores them all: a send that fails at the end leaves none of them."""
    doc = chat.clinic.clinician
    bundles = [chat.doc_keys.bundle, chat.pat_keys.bundle]

    async def counts() -> tuple[int, ...]:
        row = await db.fetchrow(
            """
            SELECT (SELECT count(*) FROM messages), (SELECT count(*) FROM message_recipients),
                   (SELECT count(*) FROM audit_events WHERE event_type = 'message.create'),
                   (SELECT count(*) FROM account_events WHERE kind = 'message.created')
            """
        )
        assert row is not None
        return tuple(row)

    kept = seal(chat.doc_keys, chat.conversation_id, "kept", bundles)
    assert (await _send(client, doc, chat.conversation_id, kept)).status_code == 201
    assert await counts() == (1, 2, 1, 2)
    # The last insert of the statement fails (an account-events trigger raises): nothing stays.
    await db.execute(
        """
        CREATE FUNCTION refuse_events() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'refused for the test' USING ERRCODE = 'internal_error'; END $$;
        CREATE TRIGGER refuse_events BEFORE INSERT ON account_events
            FOR EACH ROW EXECUTE FUNCTION refuse_events();
        """
    )
    lost = seal(chat.doc_keys, chat.conversation_id, "lost", bundles)
    with structlog.testing.capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        failed = await _send(client, doc, chat.conversation_id, lost)
    # An internal failure (B-09): a generic 500 problem document, nothing of the cause in it.
    assert failed.status_code == 500, failed.text
    assert failed.headers["content-type"].startswith("application/problem+json")
    assert "refused for the test" not in failed.text
    assert "account_events" not in failed.text
    assert await counts() == (1, 2, 1, 2)
    # Logged once, under the request id the caller was given, with the cause's type and frames
    # but not its message (the database's text can quote values).
    request_id = failed.headers["x-request-id"]
    assert problem(failed)["request_id"] == request_id
    errors = [e for e in logs if e["log_level"] in {"error", "critical", "exception"}]
    assert len(errors) == 1, errors
    assert errors[0]["event"] == "unhandled_exception"
    assert errors[0]["request_id"] == request_id
    assert "refused for the test" not in repr(errors[0])


async def test_concurrent_sends_of_one_id_store_it_once(
    client: AsyncTestClient[Litestar], chat: Chat, db: asyncpg.Connection
) -> None:
    import asyncio  # noqa: PLC0415

    from tests.histories import on_app_loop  # noqa: PLC0415

    bundles = [chat.doc_keys.bundle, chat.pat_keys.bundle]
    envelope = seal(chat.doc_keys, chat.conversation_id, "once", bundles)

    async def at_once(https: list[httpx.AsyncClient]) -> list[httpx.Response]:
        # Four clients on the app's own loop: the test client would run them one by one.
        path = f"/v1/conversations/{chat.conversation_id}/messages"
        body, headers = as_json(envelope), chat.clinic.clinician.headers
        return list(await asyncio.gather(*(http.post(path, json=body, headers=headers) for http in https)))

    answers = await on_app_loop(client, 4, at_once)
    statuses = sorted(a.status_code for a in answers)
    assert statuses.count(201) == 1, statuses
    assert set(statuses) <= {200, 201, 409}, statuses
    assert await db.fetchval("SELECT count(*) FROM messages WHERE id = $1", envelope.item_id) == 1
    assert len(await audit_rows(db, "message.create")) == 1


async def test_a_conversation_holds_at_most_as_many_members_as_an_envelope_has_recipients(
    client: AsyncTestClient[Litestar], app: Litestar, db: asyncpg.Connection
) -> None:
    """256 members (invited or active): the 257th is refused by the service and by the database."""
    from crypto.public import limits  # noqa: PLC0415
    from tests.helpers import make_client  # noqa: PLC0415

    clinic = await make_clinic(client, app, db)
    doc = clinic.clinician
    group = uuid.uuid4()
    created = await client.post(
        "/v1/conversations", json={"id": str(group), "kind": "support_group"}, headers=doc.headers
    )
    assert created.status_code == 201, created.text
    # Fill the group to one below the limit with invited clients written directly (the
    # limit, not the invitation flow, is under test here).
    org = await db.fetchval("SELECT org_id FROM conversations WHERE id = $1", group)
    filler = [uuid.uuid4() for _ in range(limits.MAX_RECIPIENTS - 2)]
    await db.executemany(
        """
        INSERT INTO accounts (id, org_id, email, display_name, role, password_hash, password_changed_at,
                              created_at)
        VALUES ($1, $2, $3, 'F', 'client', '$argon2id$unused', now(), now())
        """,
        [(a, org, f"{a}@filler.example") for a in filler],
    )
    await db.executemany(
        """
        INSERT INTO conversation_members (conversation_id, org_id, account_id, status, added_by, added_at)
        VALUES ($1, $2, $3, 'invited', $4, now())
        """,
        [(group, org, a, doc.id) for a in filler],
    )
    members = f"/v1/conversations/{group}/members"
    last = await client.post(members, json={"account_id": str(clinic.client.id)}, headers=doc.headers)
    assert last.status_code == 200, last.text  # the 256th
    extra = await make_client(client, doc, "extra@clinic.example")
    refused = await client.post(members, json={"account_id": str(extra.id)}, headers=doc.headers)
    assert refused.status_code == 422, refused.text
    assert "256" in problem(refused)["detail"]
    count = "SELECT count(*) FROM conversation_members WHERE conversation_id = $1 AND status <> 'removed'"
    assert await db.fetchval(count, group) == limits.MAX_RECIPIENTS
    # The database holds the same line whatever the service does.
    with pytest.raises(asyncpg.CheckViolationError, match="at most 256"):
        await db.execute(
            "INSERT INTO conversation_members (conversation_id, org_id, account_id, status, added_by, "
            "added_at) VALUES ($1, $2, $3, 'invited', $4, now())",
            group, org, extra.id, doc.id,
        )  # fmt: skip
    # A removed member frees a place.
    removed = await client.delete(f"{members}/{filler[0]}", headers=doc.headers)
    assert removed.status_code == 200, removed.text
    admitted = await client.post(members, json={"account_id": str(extra.id)}, headers=doc.headers)
    assert admitted.status_code == 200, admitted.text

"""F-09: the backup and restore drill, as ``docs/OPERATIONS.md`` tells an operator to run it.

A client and a clinician exchange messages and a note through the real app (real keys,
real crypto); the audit integrator checkpoints the log. The database is dumped with
``pg_dump --format=custom``; a *fresh* cluster (initdb in a temporary directory, on a
free loopback port where every role logs in with a password) gets the roles and the
database from ``deploy/postgres/roles.sql``, then ``pg_restore`` loads the dump as the
migration owner, ``migrate`` runs (a no-op) and the application role is granted.

Then: every table's row count and checksum (md5 of its rows in order) equal the source's;
a server started on the restored database exports an audit log that ``confide audit
verify`` accepts, at the source's checkpoint; a client fetches a message and the note from
that server and decrypts them. The time from initdb to a granted database is printed and
recorded as a test property, against the 72-hour restore target (no assertion on it).
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import asyncpg
import httpx
import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from backend.clock import FrozenClock
from backend.db.embedded import EmbeddedPostgres, free_port
from backend.db.migrate import migrate
from backend.settings import Settings
from crypto.client import InnerPayload, generate_identity, open_envelope, seal_envelope
from crypto.public import Envelope, EnvelopeKind
from tests.audit_helpers import integrate_all, make_officer
from tests.conftest import ROOT
from tests.faults.support import Servers, export_and_verify
from tests.helpers import make_clinic
from tests.messaging_helpers import as_json, consent_to, publish_keys, read, seal

pytestmark = pytest.mark.e2e

ROLES_SQL = ROOT / "deploy" / "postgres" / "roles.sql"
BINARIES = EmbeddedPostgres(ROOT / ".data" / "pg-test")
DATABASE, OWNER, APP = "confide", "confide_owner", "confide_app"
MESSAGES = ("drill: how are you feeling today?", "drill: better, thank you", "drill: see you Tuesday")
NOTE = b"drill: session note, plan unchanged"
RESTORE_TARGET_S = 72 * 3600


def _run(*argv: str | Path) -> None:
    result = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, f"{Path(str(argv[0])).name} failed: {result.stderr.strip()}"


async def table_digests(conn: asyncpg.Connection) -> dict[str, tuple[int, str]]:
    """Row count and md5 of the rows in text order, for every table of the public schema."""
    tables = await conn.fetch(
        "SELECT table_name FROM information_schema.tables"
        " WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY table_name"
    )
    digests = {}
    for row in tables:
        name = row["table_name"]
        found = await conn.fetchrow(
            f"SELECT count(*) AS n, md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), ''))"  # noqa: S608 -- names from the catalog
            f' AS digest FROM "{name}" t'
        )
        assert found is not None
        digests[name] = (found["n"], found["digest"])
    return digests


async def test_a_dump_restores_on_a_fresh_cluster_verifies_and_decrypts(
    client: AsyncTestClient[Litestar],
    app: Litestar,
    db: asyncpg.Connection,
    database_url: str,
    settings: Settings,
    clock: FrozenClock,
    tmp_path: Path,
    servers: Servers,
    record_property: Callable[[str, object], None],
) -> None:
    """F-09: restore succeeds; counts and checksums match; the audit log verifies; a client decrypts."""
    clinic = await make_clinic(client, app, db, slug="drill")
    officer = await make_officer(client, app, clinic)
    doc, pat = clinic.clinician, clinic.client
    org_id = uuid.UUID((await client.get("/v1/me", headers=pat.headers)).json()["organization_id"])
    doc_keys, pat_keys = await publish_keys(client, doc), await publish_keys(client, pat)
    custodian = generate_identity(org_id)
    published = await client.put(
        "/v1/organization/custodian-key", json=as_json(custodian.bundle), headers=clinic.admin.headers
    )
    assert published.status_code == 201, published.text
    await consent_to(client, pat, pat_keys, org_id, doc.id, clock)
    conversation = uuid.uuid4()
    body = {"id": str(conversation), "kind": "direct", "client_id": str(pat.id)}
    assert (await client.post("/v1/conversations", json=body, headers=doc.headers)).status_code == 201
    for n, text in enumerate(MESSAGES):
        sender, who = (doc_keys, doc) if n % 2 == 0 else (pat_keys, pat)
        envelope = seal(sender, conversation, text, [doc_keys.bundle, pat_keys.bundle])
        sent = await client.post(
            f"/v1/conversations/{conversation}/messages", json=as_json(envelope), headers=who.headers
        )
        assert sent.status_code == 201, sent.text
    note = seal_envelope(
        doc_keys,
        kind=EnvelopeKind.NOTE,
        context_id=pat.id,
        item_id=uuid.uuid4(),
        payload=InnerPayload(version=1, content_type="text/plain", body=NOTE),
        recipients=[doc_keys.bundle, custodian.bundle, pat_keys.bundle],
    )
    stored = await client.post(f"/v1/clients/{pat.id}/notes", json=as_json(note), headers=doc.headers)
    assert stored.status_code == 201, stored.text
    tree_size = await integrate_all(app, db)
    assert tree_size > 0
    assert await db.fetchval("SELECT max(size) FROM audit_checkpoints") == tree_size

    dump = tmp_path / "confide.dump"
    await asyncio.to_thread(_run, BINARIES.binary("pg_dump"), "--format=custom", "--file", dump, database_url)
    source = await table_digests(db)
    assert source["messages"][0] == len(MESSAGES)
    assert source["notes"][0] == 1

    # Not under pytest's temporary root: a pytest started meanwhile (by anyone) takes the
    # "other" bits off that root, which locks out the cluster's own system user.
    data_dir = Path(tempfile.mkdtemp(prefix="confide-restore-"))
    fresh = EmbeddedPostgres(data_dir, port=free_port())
    owner_pw, app_pw = secrets.token_urlsafe(18), secrets.token_urlsafe(18)
    try:
        started = time.monotonic()
        await asyncio.to_thread(fresh.ensure_running)
        await asyncio.to_thread(
            _run, fresh.binary("psql"), "-X", "-q", "-d", fresh.dsn(), "-v", f"owner_password={owner_pw}",
            "-v", f"app_password={app_pw}", "-f", ROLES_SQL,
        )  # fmt: skip
        await asyncio.to_thread(
            _run, fresh.binary("pg_restore"), "--exit-on-error", "--no-owner", "--no-privileges",
            f"--role={OWNER}", "--dbname", fresh.dsn(DATABASE), dump,
        )  # fmt: skip
        owner_url = fresh.tcp_dsn(DATABASE, OWNER, owner_pw)
        assert await migrate(owner_url) == [], "the restored schema is current: nothing to apply"
        owner = await asyncpg.connect(owner_url)
        try:
            await owner.execute("SELECT confide_grant_app_role($1)", APP)
        finally:
            await owner.close()
        restore_s = time.monotonic() - started
        print(f"F-09 restore drill: initdb to a granted database in {restore_s:.2f} s (target 72 h)")
        record_property("restore_seconds", round(restore_s, 3))
        record_property("restore_target_seconds", RESTORE_TARGET_S)

        restored = await asyncpg.connect(fresh.dsn(DATABASE))
        try:
            assert await table_digests(restored) == source
            owners = await restored.fetch(
                "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'"
            )
            assert [r["tableowner"] for r in owners] == [OWNER]
        finally:
            await restored.close()

        server = servers.start(
            fresh.tcp_dsn(DATABASE, APP, app_pw),
            CONFIDE_SECRET_KEY=str(settings.secret_key),
            CONFIDE_AUDIT_LOG_KEY=str(settings.audit_log_key),
            CONFIDE_AUDIT_INTEGRATOR="false",
            CONFIDE_LOG_LEVEL="warning",
        )
        async with httpx.AsyncClient(base_url=server.base_url, timeout=15) as http:
            status = (await http.get("/v1/audit/status", headers=officer.headers)).json()
            assert (status["tree_size"], status["checkpoint_size"]) == (tree_size, tree_size)
            await export_and_verify(http, officer.headers, server, tmp_path)

            page = await http.get(f"/v1/conversations/{conversation}/messages", headers=pat.headers)
            assert page.status_code == 200, page.text
            bundles = {doc.id: doc_keys.bundle, pat.id: pat_keys.bundle}
            texts = [
                read(item["envelope"], pat_keys, bundles[uuid.UUID(item["sender_id"])], conversation)
                for item in page.json()["items"]
            ]
            assert sorted(texts) == sorted(MESSAGES)
            notes = await http.get(f"/v1/clients/{pat.id}/notes", headers=pat.headers)
            assert notes.status_code == 200, notes.text
            envelope = msgspec.convert(notes.json()["items"][0]["envelope"], Envelope, strict=False)
            opened = open_envelope(
                envelope,
                reader=pat_keys,
                sender_bundle=doc_keys.bundle,
                context_id=pat.id,
                kinds={EnvelopeKind.NOTE},
            )
            assert opened.payload.body == NOTE
    finally:
        servers.stop_all()
        await asyncio.to_thread(fresh.stop, "immediate")
        shutil.rmtree(data_dir, ignore_errors=True)

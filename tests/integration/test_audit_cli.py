"""``confide audit ...`` in-process, and the witness's decisions against a scripted server."""

from __future__ import annotations

import base64
import io
import json
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from audit.checkpoint import Checkpoint, sign_checkpoint
from audit.merkle import leaf_hash
from audit.note import COSIGNATURE_V1, NoteSigner, generate_signer
from audit.proofs import MemoryTree
from backend.audit_trail import Action, AuditContext, AuditEvent, record
from backend.audit_trail.witness import HttpClient, WitnessError, witness_once
from backend.cli import main
from backend.clock import SystemClock
from tests.conftest import make_settings

ORIGIN = "cli.confide.example/audit/v1"


async def test_keygen_integrate_and_verify_commands(
    database_url: str,
    db: asyncpg.Connection,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    key_file = tmp_path / "log.key"
    assert main(["audit", "keygen", "--name", ORIGIN, "--out", str(key_file)]) == 0
    vkey = capsys.readouterr().out.strip()
    assert vkey.startswith(ORIGIN + "+")
    async with db.transaction():
        for _ in range(5):
            await record(
                db,
                AuditEvent(action=Action.READ, event_type="note.read", org_id=uuid.uuid4()),
                AuditContext(source_instance="cli-test"),
                SystemClock().now(),
            )
    settings = make_settings()
    monkeypatch.setenv("CONFIDE_DATABASE_URL", database_url)
    monkeypatch.setenv("CONFIDE_SECRET_KEY", settings.secret_key or "")
    monkeypatch.setenv("CONFIDE_AUDIT_LOG_KEY_FILE", str(key_file))
    # asyncio.run inside a running loop is refused: run the command in a worker thread.
    import asyncio  # noqa: PLC0415

    assert await asyncio.to_thread(main, ["audit", "integrate", "--batch", "2"]) == 0
    assert "integrated 5 events; tree size 5" in capsys.readouterr().out
    note = await db.fetchval("SELECT note FROM audit_checkpoints WHERE size = 5")
    rows = await db.fetch(
        "SELECT e.leaf FROM audit_log l JOIN audit_events e ON e.seq = l.event_seq ORDER BY l.idx"
    )
    export = tmp_path / "export.jsonl"
    header = {
        "t": "header",
        "format": "confide-audit-export/v1",
        "checkpoint": note,
        "filters": {},
        "proofs": False,
    }
    lines = [json.dumps(header)]
    for i, row in enumerate(rows):
        leaf = row["leaf"]
        lines.append(
            json.dumps(
                {
                    "t": "leaf",
                    "i": i,
                    "h": base64.b64encode(leaf_hash(leaf)).decode(),
                    "leaf": base64.b64encode(leaf).decode(),
                }
            )
        )
    lines.append(json.dumps({"t": "end", "count": len(rows)}))
    export.write_text("\n".join(lines) + "\n")
    (tmp_path / "log.vkey").write_text(vkey)
    assert main(["audit", "verify", str(export), "--log-key", f"@{tmp_path / 'log.vkey'}"]) == 0
    assert "OK: 5 events" in capsys.readouterr().out
    old = await db.fetchval("SELECT note FROM audit_checkpoints WHERE size = 2")
    (tmp_path / "old").write_text(old)
    (tmp_path / "new").write_text(note)
    hashes = [leaf_hash(r["leaf"]) for r in rows]
    proof = MemoryTree(hashes).consistency_proof(2, 5)
    (tmp_path / "proof").write_text("".join(base64.b64encode(p).decode() + "\n" for p in proof))
    argv = [
        "audit",
        "consistency",
        str(tmp_path / "old"),
        str(tmp_path / "new"),
        "--proof",
        str(tmp_path / "proof"),
    ]
    assert main([*argv, "--log-key", vkey]) == 0
    assert "extends size 2" in capsys.readouterr().out
    monkeypatch.setenv("CONFIDE_AUDIT_LOG_KEY_FILE", str(tmp_path / "missing.key"))
    assert await asyncio.to_thread(main, ["audit", "integrate"]) == 2


class ScriptedServer(HttpClient):
    """Answers the witness from in-memory trees instead of the network."""

    def __init__(self, notes: dict[int, str], tree: MemoryTree) -> None:
        super().__init__("http://scripted.invalid", "token")
        self.notes, self.tree, self.latest = notes, tree, max(notes)
        self.posted: list[dict[str, Any]] = []
        self.fail_post = False

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        if method == "POST":
            if self.fail_post:
                raise WitnessError("the server answered 500")
            assert body is not None
            self.posted.append(body)
            return {}
        if path == "/v1/audit/checkpoint":
            return {"note": self.notes[self.latest]}
        query = dict(part.split("=") for part in path.split("?", 1)[1].split("&"))
        proof = self.tree.consistency_proof(int(query["old"]), int(query["new"]))
        return {"proof": [base64.b64encode(p).decode() for p in proof]}


def _log(signer: NoteSigner, hashes: list[bytes], sizes: list[int]) -> dict[int, str]:
    tree = MemoryTree(hashes)
    return {
        n: sign_checkpoint(
            Checkpoint(signer.name, n, MemoryTree(hashes[:n]).root() if n else tree.root()), signer
        )
        for n in sizes
    }


def test_witness_accepts_extensions_and_refuses_rollback_and_fork(tmp_path: Path) -> None:
    log = generate_signer(ORIGIN)
    witness = generate_signer("witness.example/w", COSIGNATURE_V1)
    hashes = [leaf_hash(bytes([i])) for i in range(12)]
    state = tmp_path / "state.json"
    server = ScriptedServer(_log(log, hashes, [5]), MemoryTree(hashes))
    out = io.StringIO()

    def once(http: HttpClient, *, signer: NoteSigner = witness, state_path: Path = state) -> int:
        return witness_once(http, log_key=log.verifier(), witness=signer, state_path=state_path, out=out)

    assert once(server) == 0
    assert "cosigned" in out.getvalue()
    assert once(server) == 0, "same checkpoint: nothing to do"
    assert "unchanged" in out.getvalue()
    server.notes = _log(log, hashes, [12])
    server.latest = 12
    assert once(server) == 0
    accepted = json.loads(state.read_text())["checkpoint"]
    server.notes, server.latest = _log(log, hashes, [7]), 7
    assert once(server) == 1
    assert "rollback" in out.getvalue()
    forked = [*hashes[:11], leaf_hash(b"other")]
    server.notes, server.latest = _log(log, forked, [12]), 12
    assert once(server) == 1
    assert "fork" in out.getvalue()
    longer = [*forked, leaf_hash(b"more")]
    server.notes, server.latest, server.tree = _log(log, longer, [13]), 13, MemoryTree(longer)
    assert once(server) == 1
    assert json.loads(state.read_text())["checkpoint"] == accepted, "refused checkpoints are not kept"
    impostor = generate_signer(ORIGIN)
    server.notes = _log(impostor, longer, [13])
    assert once(server) == 1
    server.notes = _log(log, [*hashes, leaf_hash(b"x")], [13])
    server.tree = MemoryTree([*hashes, leaf_hash(b"x")])
    server.fail_post = True
    assert once(server) == 2, "accepted but not stored on the server"
    assert len(server.posted) == 2
    assert once(server, signer=generate_signer("w.example/log")) == 2
    with pytest.raises(WitnessError):
        HttpClient("file:///etc/passwd", "token")
    assert once(HttpClient("http://127.0.0.1:9", "t"), state_path=tmp_path / "n.json") == 2

"""The readable copy (JSON, Markdown) and ``confide export open`` on the device."""

from __future__ import annotations

import base64
import io
import uuid
from pathlib import Path

import msgspec
import pytest

from crypto.cli_export import EXIT_FAILED, EXIT_OK, EXIT_USAGE, open_command
from crypto.client import (
    AttachmentKey,
    IdentityKeys,
    create_key_backup,
    generate_identity,
    open_export,
    read_archive,
    sign_consent,
)
from crypto.client.export_render import render_json, render_markdown
from crypto.public import ConsentAction, EnvelopeKind, encode, limits
from tests.unit.crypto.export_fixtures import NOW, SERVER_KEY, ArchiveBuilder, sealed, text

PASSPHRASE = "a passphrase long enough"


@pytest.fixture(scope="module")
def alice() -> IdentityKeys:
    return generate_identity(uuid.uuid4())


@pytest.fixture(scope="module")
def bob() -> IdentityKeys:
    return generate_identity(uuid.uuid4())


def _archive(alice: IdentityKeys, bob: IdentityKeys, *, with_backup: bool = True) -> list[bytes]:
    me, conversation, empty = alice.ref.account_id, uuid.uuid4(), uuid.uuid4()
    pair = [bob.bundle, alice.bundle]
    attachment = AttachmentKey(
        version=1,
        attachment_id=uuid.uuid4(),
        key=bytes(32),
        ciphertext_hash=bytes(32),
        size=3,
        media_type="a/b",
    )
    first = sealed(bob, conversation, b"MARK-hello\n```\nnot code <script>x</script>", pair)
    reply = sealed(alice, conversation, b"", pair, payload=text(b"\x00\x01", "application/octet-stream"))
    edit = sealed(
        bob, conversation, b"MARK-edited", pair, kind=EnvelopeKind.MESSAGE_EDIT, references=first.item_id
    )
    forged = msgspec.structs.replace(sealed(bob, conversation, b"forged", pair), signature=first.signature)
    attached = sealed(bob, conversation, b"", pair, payload=text(b"see file", attachments=(attachment,)))
    note = sealed(bob, me, b"MARK-note", pair, kind=EnvelopeKind.NOTE)
    statement = sign_consent(
        alice,
        action=ConsentAction.GRANT,
        consent_id=uuid.uuid4(),
        organization_id=uuid.uuid4(),
        grantee_type="clinician",
        grantee_id=bob.ref.account_id,
        scopes=("messaging",),
        purpose="TREAT",
        valid_from=NOW,
        valid_until=None,
        clock=lambda: NOW,
    )
    builder = ArchiveBuilder(me)
    builder.add("account", {"id": str(me), "display_name": "Alice *star*"})
    builder.add("session", {"id": "s1", "created_at": "2025-03-01T12:00:00Z"})
    builder.bundle(alice).peer(bob.bundle)
    builder.peer(msgspec.structs.replace(bob.bundle, key_version=2, rotation_signature=None))
    if with_backup:
        builder.backup(
            create_key_backup(
                alice, PASSPHRASE, opslimit=limits.BACKUP_OPSLIMIT_MIN, memlimit=limits.BACKUP_MEMLIMIT_MIN
            )
        )
    builder.add("conversation", {"id": str(conversation), "kind": "direct"})
    builder.add("conversation", {"id": str(empty), "kind": "care_team"})
    builder.add(
        "member",
        {"conversation_id": str(conversation), "account_id": str(bob.ref.account_id), "name": "Dr Bob"},
    )
    builder.message(first).message(reply).message(edit).message(attached).message(forged)
    builder.note(note)
    builder.consent(statement).consent(None, kind="expire")
    builder.add("disclosure", {"agent_name": "Dr Bob", "event_type": "note.read"})
    return builder.build()


def test_markdown_copy_escapes_and_fences_untrusted_text(alice: IdentityKeys, bob: IdentityKeys) -> None:
    opened = open_export(read_archive(_archive(alice, bob, with_backup=False)), [alice])
    markdown = render_markdown(opened)
    assert "MARK-hello" in markdown
    assert "MARK-note" in markdown
    assert "````text" in markdown, "a fence longer than the backticks in the message"
    assert "Alice \\*star\\*" in markdown
    assert "Dr Bob" in markdown
    assert "not opened: signature\\_invalid" in markdown
    assert "application/octet-stream, 2 bytes" in markdown
    assert f"key {base64.b64encode(bytes(32)).decode()}" in markdown
    assert "refers to" in markdown
    assert "your signature valid, server receipt valid" in markdown
    assert "until revoked" in markdown
    assert "INVALID" in markdown, "a peer bundle that does not verify is flagged"
    assert "## Erasure requests\n\nNone." in markdown
    assert "note\\.read" not in markdown
    assert "note.read" in markdown
    assert "key backup" not in markdown
    as_json = msgspec.json.decode(render_json(opened))
    assert as_json["messages"][0]["text"].startswith("MARK-hello")
    assert as_json["messages"][1]["body"] == base64.b64encode(b"\x00\x01").decode()


def test_markdown_copy_of_an_empty_archive(alice: IdentityKeys) -> None:
    opened = open_export(read_archive(ArchiveBuilder(alice.ref.account_id).bundle(alice).build()), [alice])
    markdown = render_markdown(opened)
    assert "## Conversations\n\nNone." in markdown


@pytest.fixture
def files(tmp_path: Path, alice: IdentityKeys, bob: IdentityKeys) -> dict[str, Path]:
    archive = tmp_path / "export.jsonl"
    archive.write_bytes(b"".join(_archive(alice, bob)))
    passphrase = tmp_path / "passphrase"
    passphrase.write_text(PASSPHRASE + "\r\n", encoding="utf-8")
    return {"archive": archive, "passphrase": passphrase, "dir": tmp_path}


def _run(files: dict[str, Path], out: str = "copy.md", **overrides: object) -> tuple[int, str, str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    arguments: dict[str, object] = {
        "fmt": "markdown",
        "passphrase_file": files["passphrase"],
        "key_backups": [],
        "server_key": None,
        "out": stdout,
        "err": stderr,
    }
    arguments.update(overrides)
    code = open_command(files["archive"], files["dir"] / out, **arguments)  # type: ignore[arg-type]
    return code, stdout.getvalue(), stderr.getvalue()


def test_cli_writes_a_private_readable_copy(files: dict[str, Path]) -> None:
    code, out, err = _run(files, server_key=base64.b64encode(SERVER_KEY).decode())
    assert (code, err) == (EXIT_OK, "")
    copy = files["dir"] / "copy.md"
    assert "MARK-hello" in copy.read_text(encoding="utf-8")
    assert copy.stat().st_mode & 0o777 == 0o600
    assert "messages opened 4" in out
    code, _, err = _run(files)
    assert code == EXIT_USAGE, "never overwrites"
    assert "must not exist" in err
    code, _, _ = _run(files, out="copy.json", fmt="json", passphrase_file=None, prompt=lambda _: PASSPHRASE)
    assert code == EXIT_OK
    assert msgspec.json.decode((files["dir"] / "copy.json").read_bytes())["format"] == "confide-export-opened"


def test_cli_fails_cleanly(files: dict[str, Path]) -> None:
    wrong = files["dir"] / "wrong"
    wrong.write_text("not the passphrase at all", encoding="utf-8")
    assert _run(files, passphrase_file=wrong)[0] == EXIT_FAILED
    assert "wrong passphrase" in _run(files, passphrase_file=wrong)[2]
    latin1 = files["dir"] / "latin1"
    latin1.write_bytes(b"\xff\xfe")
    assert _run(files, passphrase_file=latin1)[0] == EXIT_USAGE
    assert _run(files, passphrase_file=files["dir"] / "absent")[0] == EXIT_USAGE
    assert _run(files, server_key="not base64!")[0] == EXIT_USAGE
    code, _, err = _run(files, server_key=base64.b64encode(bytes(32)).decode())
    assert (code, "refused" in err) == (EXIT_FAILED, True)
    stranger = files["dir"] / "stranger.json"
    stranger.write_bytes(
        encode(
            create_key_backup(
                generate_identity(uuid.uuid4()),
                PASSPHRASE,
                opslimit=limits.BACKUP_OPSLIMIT_MIN,
                memlimit=limits.BACKUP_MEMLIMIT_MIN,
            )
        )
    )
    code, _, err = _run(files, key_backups=[stranger])
    assert (code, "cannot use the keys" in err) == (EXIT_FAILED, True)
    lines = files["archive"].read_bytes().splitlines(keepends=True)
    files["archive"].write_bytes(b"".join([*lines[:3], *lines[4:]]))
    code, _, err = _run(files)
    assert code == EXIT_FAILED
    assert "refused" in err
    assert not (files["dir"] / "copy.md").exists()

"""The export opener: the archive's seal, the key backup, every way an item opens or stays closed."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from dataclasses import dataclass

import msgspec
import pytest
from nacl.signing import SigningKey

from crypto.client import (
    AttachmentKey,
    IdentityKeys,
    create_key_backup,
    generate_identity,
    open_export,
    read_archive,
    rotate_identity,
    sign_consent,
    unlock_keys,
)
from crypto.client.export import OPENED_FORMAT
from crypto.errors import ArchiveError, BackupError, DecryptionError, KeyChainError, SignatureError
from crypto.public import ConsentAction, EnvelopeKind, encode, limits
from crypto.public.consent import ConsentStatement
from crypto.public.export import (
    ConsentReceipt,
    Manifest,
    Trailer,
    receipt_signed_bytes,
    verify_receipt,
)
from crypto.public.wire import KeyBackup
from tests.unit.crypto.export_fixtures import (
    NOW,
    SERVER,
    SERVER_KEY,
    ArchiveBuilder,
    encode_receipt,
    line,
    make_receipt,
    sealed,
    text,
    with_garbage_key_for,
)

PASSPHRASE = "a passphrase long enough"


@dataclass(frozen=True)
class People:
    alice_v1: IdentityKeys
    alice: IdentityKeys  # version 2, rotated from v1
    bob: IdentityKeys
    carol: IdentityKeys
    conversation: uuid.UUID


@pytest.fixture(scope="module")
def people() -> People:
    alice_v1 = generate_identity(uuid.uuid4())
    return People(
        alice_v1=alice_v1,
        alice=rotate_identity(alice_v1),
        bob=generate_identity(uuid.uuid4()),
        carol=generate_identity(uuid.uuid4()),
        conversation=uuid.uuid4(),
    )


def _backup(identity: IdentityKeys) -> KeyBackup:
    return create_key_backup(
        identity, PASSPHRASE, opslimit=limits.BACKUP_OPSLIMIT_MIN, memlimit=limits.BACKUP_MEMLIMIT_MIN
    )


@pytest.fixture(scope="module")
def backups(people: People) -> dict[int, KeyBackup]:
    return {1: _backup(people.alice_v1), 2: _backup(people.alice)}


def _statement(identity: IdentityKeys, grantee: uuid.UUID, **changes: object) -> ConsentStatement:
    statement = sign_consent(
        identity,
        action=ConsentAction.GRANT,
        consent_id=uuid.uuid4(),
        organization_id=uuid.uuid4(),
        grantee_type="clinician",
        grantee_id=grantee,
        scopes=("messaging",),
        purpose="TREAT",
        valid_from=NOW,
        valid_until=NOW + dt.timedelta(days=30),
        clock=lambda: NOW,
    )
    return msgspec.structs.replace(statement, **changes) if changes else statement


def _base(people: People) -> ArchiveBuilder:
    builder = ArchiveBuilder(people.alice.ref.account_id)
    builder.add("account", {"id": str(people.alice.ref.account_id), "display_name": "Alice"})
    return builder.bundle(people.alice_v1).bundle(people.alice).peer(people.bob.bundle)


# --- the seal --------------------------------------------------------------------------


def test_a_sealed_archive_reads_back(people: People) -> None:
    builder = _base(people).add("session", {"id": "s1"})
    archive = read_archive(builder.build(), server_key=SERVER_KEY)
    assert archive.manifest.account_id == people.alice.ref.account_id
    assert archive.records == {
        "account": ({"id": str(people.alice.ref.account_id), "display_name": "Alice"},),
        "session": ({"id": "s1"},),
    }
    assert [b.key_version for b in archive.key_bundles] == [1, 2]
    assert archive.key_backup is None
    assert archive.trailer.counts["key_bundle"] == 2


@pytest.mark.parametrize(
    "damage",
    [
        "flip",
        "drop",
        "add",
        "swap",
        "truncate",
        "counts",
        "lines",
        "export_id",
        "no_trailer",
        "after_trailer",
    ],
)
def test_any_change_to_the_archive_is_refused(people: People, damage: str) -> None:
    """Altered, dropped, added or reordered lines, a cut download, a forged count: refused."""
    builder = _base(people).add("session", {"id": "s1"}).add("session", {"id": "s2"})
    lines = builder.build()
    if damage == "flip":
        lines[2] = lines[2].replace(b'"key_version":1', b'"key_version":3')
    elif damage == "drop":
        del lines[3]
    elif damage == "add":
        lines.insert(3, line({"type": "session", "id": "s3"}))
    elif damage == "swap":
        lines[4], lines[5] = lines[5], lines[4]
    elif damage == "truncate":
        lines[-1] = lines[-1][:-20]
    elif damage == "counts":
        lines = builder.build(counts={**dict.fromkeys(builder.manifest.sections, 0), "session": 3})
    elif damage == "lines":
        lines = builder.build(lines=99)
    elif damage == "export_id":
        trailer = msgspec.json.decode(lines[-1], type=Trailer)
        lines[-1] = line(msgspec.structs.replace(trailer, export_id=uuid.uuid4()))
    elif damage == "no_trailer":
        lines = lines[:-1]
    else:
        lines.append(line({"type": "session", "id": "late"}))
    with pytest.raises(ArchiveError):
        read_archive(lines)


def test_a_signature_by_another_key_is_refused(people: People) -> None:
    other = SigningKey(hashlib.sha256(b"another server").digest())
    lines = _base(people).build()
    forged = ArchiveBuilder(people.alice.ref.account_id, server=other)
    forged.manifest = msgspec.structs.replace(forged.manifest, server_key=SERVER_KEY)
    with pytest.raises(SignatureError):
        read_archive(forged.build())
    with pytest.raises(SignatureError):
        read_archive(lines, server_key=bytes(other.verify_key))


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ([], "empty"),
        ([b"not json\n"], "malformed"),
        ([b'{"type":"manifest"}'], "incomplete"),
        ([b"x" * (4 * 2**20 + 1)], "size limit"),
    ],
)
def test_malformed_input_is_refused(lines: list[bytes], message: str) -> None:
    with pytest.raises(ArchiveError, match=message):
        read_archive(lines)


def test_manifest_and_trailer_rules(people: People) -> None:
    base = ArchiveBuilder(people.alice.ref.account_id).manifest
    fields = msgspec.structs.asdict(base)
    for change in (
        {"format": "other"},
        {"version": 2},
        {"sections": ("account", "bogus")},
        {"sections": ("account", "account")},
        {"server_key": b"short"},
    ):
        with pytest.raises(ArchiveError):
            Manifest(**{**fields, **change})
    with pytest.raises(ArchiveError):
        Trailer(export_id=uuid.uuid4(), lines=0, blake2b=bytes(32), counts={}, signature=bytes(64))


@pytest.mark.parametrize(
    "record",
    [
        b"[1, 2]\n",
        b'{"type": "nosuch"}\n',
        b'{"type": "key_bundle", "key_version": "one"}\n',
        b'{"type": "trailer", "export_id": 1}\n',
    ],
)
def test_records_that_do_not_belong_are_refused(people: People, record: bytes) -> None:
    lines = ArchiveBuilder(people.alice.ref.account_id, sections=("account", "key_bundle")).build()
    with pytest.raises(ArchiveError):
        read_archive([lines[0], record, lines[-1]])


def test_a_section_missing_from_the_manifest_is_refused(people: People) -> None:
    builder = ArchiveBuilder(people.alice.ref.account_id, sections=("account",))
    builder.add("session", {"id": "s1"})
    with pytest.raises(ArchiveError, match="does not list"):
        read_archive(builder.build())


def test_two_key_backups_are_refused(people: People, backups: dict[int, KeyBackup]) -> None:
    builder = _base(people).backup(backups[2]).backup(backups[1])
    with pytest.raises(ArchiveError, match="more than one"):
        read_archive(builder.build())


# --- the keys --------------------------------------------------------------------------


def test_keys_unlock_from_the_archive_and_from_older_backups(
    people: People, backups: dict[int, KeyBackup]
) -> None:
    archive = read_archive(_base(people).backup(backups[2]).build())
    (latest,) = unlock_keys(archive, PASSPHRASE)
    assert latest.ref == people.alice.ref
    both = unlock_keys(archive, PASSPHRASE, backups=[backups[1], backups[2]])
    assert sorted(k.ref.key_version for k in both) == [1, 2]
    with pytest.raises(DecryptionError):
        unlock_keys(archive, "the wrong passphrase, surely")


def test_key_backups_that_cannot_be_used_are_refused(people: People, backups: dict[int, KeyBackup]) -> None:
    bare = read_archive(_base(people).build())
    with pytest.raises(BackupError, match="no key backup"):
        unlock_keys(bare, PASSPHRASE)
    (only_old,) = unlock_keys(bare, PASSPHRASE, backups=[backups[1]])
    assert only_old.ref.key_version == 1
    stranger = _backup(people.bob)
    with pytest.raises(BackupError, match="another account"):
        unlock_keys(bare, PASSPHRASE, backups=[stranger])
    v1_only = read_archive(ArchiveBuilder(people.alice.ref.account_id).bundle(people.alice_v1).build())
    with pytest.raises(BackupError, match="no key bundle"):
        unlock_keys(v1_only, PASSPHRASE, backups=[backups[2]])


def test_own_bundles_of_another_account_are_refused(people: People) -> None:
    builder = ArchiveBuilder(people.alice.ref.account_id).bundle(people.bob)
    archive = read_archive(builder.build())
    with pytest.raises(ArchiveError):
        open_export(archive, [])


def test_keys_that_do_not_match_the_archive_are_refused(people: People) -> None:
    archive = read_archive(_base(people).build())
    with pytest.raises(KeyChainError, match="another account"):
        open_export(archive, [people.bob])
    substituted = read_archive(
        ArchiveBuilder(people.alice.ref.account_id)
        .bundle(generate_identity(people.alice.ref.account_id))
        .build()
    )
    with pytest.raises(KeyChainError, match="differs"):
        open_export(substituted, [people.alice_v1])


def test_the_key_chain_is_reported(people: People) -> None:
    reset = generate_identity(people.alice.ref.account_id, key_version=3)
    broken = rotate_identity(rotate_identity(people.alice))  # version 4, its predecessor is absent
    forged = msgspec.structs.replace(
        rotate_identity(reset).bundle, rotation_signature=people.alice.bundle.self_signature
    )  # version 4 claims to follow version 3, with a signature that is not version 3's
    archive = read_archive(
        ArchiveBuilder(people.alice.ref.account_id)
        .bundle(people.alice_v1)
        .bundle(people.alice)
        .bundle(reset)
        .build()
    )
    opened = open_export(archive, [people.alice])
    assert [(k.key_version, k.chain, k.private_key) for k in opened.own_keys] == [
        (1, "first", False),
        (2, "rotation", True),
        (3, "reset", False),
    ]
    gap = read_archive(ArchiveBuilder(people.alice.ref.account_id).bundle(broken).build())
    assert [k.chain for k in open_export(gap, []).own_keys] == ["broken"]
    bad = read_archive(ArchiveBuilder(people.alice.ref.account_id).bundle(reset).bundle(forged).build())
    assert [k.chain for k in open_export(bad, []).own_keys] == ["reset", "broken"]
    bad_self = msgspec.structs.replace(
        people.alice_v1.bundle, self_signature=people.alice.bundle.self_signature
    )
    unsigned = read_archive(ArchiveBuilder(people.alice.ref.account_id).bundle(bad_self).build())
    assert [k.chain for k in open_export(unsigned, []).own_keys] == ["broken"]


# --- the items -------------------------------------------------------------------------


def test_every_item_opens_or_says_why_not(people: People) -> None:
    alice, bob, carol, c = people.alice, people.bob, people.carol, people.conversation
    me = alice.ref.account_id
    pair = [bob.bundle, alice.bundle]
    attachment = AttachmentKey(
        version=1,
        attachment_id=uuid.uuid4(),
        key=bytes(range(32)),
        ciphertext_hash=bytes(32),
        size=10,
        media_type="image/png",
    )
    hello = sealed(bob, c, b"hello Alice", pair)
    mine = sealed(alice, c, b"hello Bob", [bob.bundle])
    binary = sealed(bob, c, b"", pair, payload=text(b"\x89PNG", "image/png", attachments=(attachment,)))
    not_utf8 = sealed(bob, c, b"\xff\xfe", pair)
    from_carol = sealed(carol, c, b"who?", pair)
    tampered = encode(sealed(bob, c, b"original", pair)).replace(
        b'"kind":"message"', b'"kind":"attachment_key"'
    )
    to_carol = sealed(bob, c, b"not for Alice", [carol.bundle])
    to_old_key = sealed(bob, c, b"for v1", [people.alice_v1.bundle])
    garbage = with_garbage_key_for(sealed(bob, c, b"x", pair), me, bob)
    other_context = sealed(bob, uuid.uuid4(), b"elsewhere", pair)
    signed_badly = sealed(bob, c, b"forged", pair)
    signed_badly = msgspec.structs.replace(signed_badly, signature=hello.signature)
    builder = (
        _base(people)
        .message(hello)
        .message(mine)
        .message(binary)
        .message(not_utf8)
        .message(from_carol)
        .message(hello, raw=tampered)
        .message(hello, raw=b'{"version":1}')
        .message(to_carol)
        .message(to_old_key)
        .message(garbage)
        .message(hello, record_id=uuid.uuid4())
        .message(hello, kind="bogus")
        .message(hello, kind="message_edit")
        .message(other_context)
        .message(signed_badly)
    )
    builder.records[-2] = (
        "message",
        builder.records[-2][1].replace(str(other_context.context_id).encode(), str(c).encode(), 1),
    )
    opened = open_export(read_archive(builder.build()), [alice])
    got = [(m.status, m.reason, m.text) for m in opened.messages]
    assert got == [
        ("opened", None, "hello Alice"),
        ("opened", None, "hello Bob"),
        ("opened", None, None),
        ("opened", None, None),
        ("unreadable", "unknown_sender_key", None),
        ("unreadable", "metadata_mismatch", None),
        ("unreadable", "malformed", None),
        ("unreadable", "not_a_recipient", None),
        ("unreadable", "no_private_key", None),
        ("unreadable", "decryption_failed", None),
        ("unreadable", "metadata_mismatch", None),
        ("unreadable", "metadata_mismatch", None),
        ("unreadable", "metadata_mismatch", None),
        ("unreadable", "metadata_mismatch", None),
        ("unreadable", "signature_invalid", None),
    ]
    assert opened.messages[2].body == b"\x89PNG"
    assert opened.messages[2].attachments == (attachment,)
    assert opened.messages[3].body == b"\xff\xfe"
    assert opened.messages[0].delivered_at == NOW
    assert "hello" not in repr(opened.messages[0])
    assert opened.summary == {
        "messages_opened": 4,
        "messages_unreadable": 11,
        "notes_opened": 0,
        "notes_unreadable": 0,
    }
    assert opened.format == OPENED_FORMAT
    assert opened.key_backup is None


def test_notes_open_in_their_client_context(people: People, backups: dict[int, KeyBackup]) -> None:
    alice, bob = people.alice, people.bob
    me = alice.ref.account_id
    note = sealed(bob, me, b"# Session 1", [bob.bundle, alice.bundle], kind=EnvelopeKind.NOTE)
    elsewhere = sealed(bob, uuid.uuid4(), b"someone else", [bob.bundle, alice.bundle], kind=EnvelopeKind.NOTE)
    archive = read_archive(_base(people).backup(backups[2]).note(note).note(elsewhere).build())
    opened = open_export(archive, unlock_keys(archive, PASSPHRASE))
    assert [(n.status, n.text, n.access) for n in opened.notes] == [
        ("opened", "# Session 1", "share"),
        ("opened", "someone else", "share"),
    ], "a note is read in the context it was signed for"
    assert opened.key_backup == {"revision": 1, "key_version": 2, "updated_at": NOW}


def test_peer_keys_are_checked(people: People) -> None:
    bad_signature = msgspec.structs.replace(
        people.carol.bundle, self_signature=people.bob.bundle.self_signature
    )
    archive = read_archive(
        _base(people).peer(bad_signature).peer(people.carol.bundle, raw=encode(people.bob.bundle)).build()
    )
    opened = open_export(archive, [])
    assert [(k.account_id, k.valid) for k in opened.peer_keys] == [
        (people.bob.ref.account_id, True),
        (people.carol.ref.account_id, False),
        (people.carol.ref.account_id, False),
    ]


# --- consent ---------------------------------------------------------------------------


def test_consent_statements_and_receipts_are_verified(people: People) -> None:
    alice, bob = people.alice, people.bob
    good = _statement(alice, bob.ref.account_id)
    old_key = _statement(people.alice_v1, bob.ref.account_id)
    unknown_key = _statement(rotate_identity(alice), bob.ref.account_id)
    not_mine = _statement(bob, bob.ref.account_id)
    forged = msgspec.structs.replace(good, purpose="HRESCH")
    other_server = SigningKey(hashlib.sha256(b"an older server key").digest())
    builder = (
        _base(people)
        .consent(good)
        .consent(old_key, signer=other_server)
        .consent(unknown_key)
        .consent(not_mine)
        .consent(forged)
        .consent(None, kind="expire")
        .consent(good, raw_statement=b'{"version": 1}', receipt=b"null")
        .consent(good, receipt=b'{"version": 1}')
        .consent(good, receipt_for=(uuid.uuid4(), uuid.uuid4()))
        .consent(good, receipt=encode_receipt(make_receipt(b"{}", good.consent_id, uuid.uuid4(), SERVER)))
    )
    builder.consent(good, consent_id=uuid.uuid4())  # filed under another consent's id
    opened = open_export(read_archive(builder.build()), [])
    got = [(e.statement_check, e.receipt_check, e.receipt_by_archive_key) for e in opened.consent_events]
    assert got == [
        ("valid", "valid", True),
        ("valid", "valid", False),
        ("unknown_key", "valid", True),
        ("invalid", "valid", True),
        ("invalid", "valid", True),
        ("absent", "absent", None),
        ("malformed", "absent", None),
        ("valid", "malformed", None),
        ("valid", "invalid", True),
        ("valid", "invalid", True),
        ("invalid", "valid", True),
    ]
    assert opened.consent_events[0].statement == good


def test_receipts_verify_against_the_exact_statement() -> None:
    statement = b'{"a":1}'
    receipt = make_receipt(statement, uuid.uuid4(), uuid.uuid4(), SERVER)
    verify_receipt(receipt, statement)
    with pytest.raises(SignatureError, match="another statement"):
        verify_receipt(receipt, b'{"a": 1}')
    for change in ({"version": 2}, {"statement_sha256": "ab"}, {"statement_sha256": "zz" * 32}):
        with pytest.raises(SignatureError, match="unsupported"):
            verify_receipt(msgspec.structs.replace(receipt, **change), statement)
    with pytest.raises(SignatureError):
        verify_receipt(msgspec.structs.replace(receipt, recorded_at=NOW + dt.timedelta(seconds=1)), statement)
    assert receipt_signed_bytes(receipt).startswith(b"\x00\x00\x00\x1aconfide/v1/consent-receipt")
    assert isinstance(json.loads(encode_receipt(receipt)), dict)
    assert isinstance(receipt, ConsentReceipt)

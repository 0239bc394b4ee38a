"""C2SP signed notes and vkeys against published examples.

Provenance of the known answers:

* ``GO_*``: golang.org/x/mod ``sumdb/note`` package documentation and note_test.go
  (the PeterNeumann signer key, the note it signs, and the EnochRoot co-signature).
* ``SPEC_*``: the example of c2sp.org/signed-note (C2SP/C2SP signed-note.md at
  d4c16da5e7687a016619074e78dad84b2c7238cc).
* ``PLUS_VKEY`` / ``COSIG_VKEY`` / ``COSIG_SIG``: transparency-dev/formats
  ``note/note_cosigv1_test.go`` (a 0x01 key whose base64 contains '+', a 0x04
  witness key, and a cosignature whose timestamp is 1727964367).
"""

from __future__ import annotations

import base64

import pytest

from audit.errors import AuditFormatError, SignatureError
from audit.note import (
    COSIGNATURE_V1,
    ED25519,
    EM_DASH,
    MAX_NOTE_BYTES,
    MAX_SIGNATURES,
    NoteSignature,
    NoteSigner,
    SignedNote,
    VerifierKey,
    add_signature,
    format_note,
    generate_signer,
    key_id,
    parse_note,
    verify_note,
)

GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
)
GO_SIG = (
    f"{EM_DASH} PeterNeumann "
    "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
ENOCH_SIG = (
    f"{EM_DASH} EnochRoot "
    "rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n"
)
GO_NOTE = GO_TEXT + "\n" + GO_SIG
SPEC_VKEY = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
SPEC_NOTE = (
    "This is an example message.\n\n"
    f"{EM_DASH} example.com/foo "
    "Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n"
)
PLUS_VKEY = "TEST+7997405c+AQcC+FTVKf0jlTdHDY3rbevmnKxxPjigCXlVtGe6RIr6"
COSIG_VKEY = "remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2"
COSIG_SIG = (
    "ZGhGuQAAAABm/qTPeyKXD+R2rzyQsxPiP8mXum7qq/iF0u4vanlqJyocWODBt97w9uL+8qT7S5gxEHWWOworDcFiEBYJXORmnFBOBA=="
)


def test_go_signer_reproduces_the_published_note() -> None:
    signer = NoteSigner.parse(GO_SKEY)
    assert str(signer) == GO_SKEY
    assert str(signer.verifier()) == GO_VKEY
    assert format_note(SignedNote(GO_TEXT, (signer.sign(GO_TEXT),))) == GO_NOTE
    assert "AYEKFALV" not in repr(signer)


def test_published_notes_verify() -> None:
    peter, enoch = VerifierKey.parse(GO_VKEY), VerifierKey.parse(ENOCH_VKEY)
    parsed, verified = verify_note(GO_NOTE + ENOCH_SIG, [peter, enoch])
    assert parsed.text == GO_TEXT
    assert verified == {peter: None, enoch: None}
    spec = VerifierKey.parse(SPEC_VKEY)
    assert verify_note(SPEC_NOTE.encode(), [spec])[0].text == "This is an example message.\n"


@pytest.mark.parametrize("vkey", [GO_VKEY, ENOCH_VKEY, SPEC_VKEY, PLUS_VKEY, COSIG_VKEY])
def test_published_vkeys_round_trip_with_matching_key_ids(vkey: str) -> None:
    key = VerifierKey.parse(vkey)
    assert str(key) == vkey
    assert key.key_id == key_id(key.name, key.sig_type, key.public_key)


def test_witness_vkey_has_cosignature_type_and_timestamped_signature() -> None:
    key = VerifierKey.parse(COSIG_VKEY)
    assert key.sig_type == COSIGNATURE_V1
    raw = base64.b64decode(COSIG_SIG)
    assert int.from_bytes(raw[4:12], "big") == 1727964367
    assert len(raw) == 4 + 8 + 64


def test_tampered_note_fails_and_unknown_keys_are_ignored() -> None:
    peter = VerifierKey.parse(GO_VKEY)
    with pytest.raises(SignatureError):
        verify_note(GO_NOTE.replace("cryptography", "cryptographY"), [peter])
    # A signature from a key we do not know (Enoch) is ignored per the spec ...
    assert verify_note(GO_NOTE + ENOCH_SIG, [peter])[1] == {peter: None}
    # ... unless unknown signers are refused.
    with pytest.raises(SignatureError):
        verify_note(GO_NOTE + ENOCH_SIG, [peter], unsafe_allow_unknown=False)
    # Only unknown signers: no trusted signature.
    with pytest.raises(SignatureError):
        verify_note(GO_NOTE, [VerifierKey.parse(ENOCH_VKEY)])


def test_same_name_different_key_is_unknown_not_failing() -> None:
    """An attacker's key under the trusted name is ignored, not trusted."""
    impostor = NoteSigner("PeterNeumann", bytes(32))
    forged = add_signature(GO_NOTE, impostor)
    peter = VerifierKey.parse(GO_VKEY)
    assert verify_note(forged, [peter])[1] == {peter: None}
    with pytest.raises(SignatureError):
        verify_note(format_note(SignedNote(GO_TEXT, (impostor.sign(GO_TEXT),))), [peter])


def test_duplicate_signature_from_a_known_key_is_malformed() -> None:
    with pytest.raises(AuditFormatError):
        verify_note(GO_NOTE + GO_SIG, [VerifierKey.parse(GO_VKEY)])


def test_cosigner_round_trip_and_refusals() -> None:
    witness = NoteSigner("w.example/1", bytes(range(32)), COSIGNATURE_V1)
    note = add_signature(GO_NOTE, witness, timestamp=1_700_000_000)
    _, verified = verify_note(note, [witness.verifier()])
    assert verified == {witness.verifier(): 1_700_000_000}
    # The same key as a plain 0x01 key has another key ID: unknown, so no trusted signature.
    plain = VerifierKey("w.example/1", ED25519, witness.public_key)
    with pytest.raises(SignatureError):
        verify_note(note, [plain])
    for bad_time in (None, -1, 1 << 63):
        with pytest.raises(AuditFormatError):
            witness.sign(GO_TEXT, timestamp=bad_time)
    with pytest.raises(AuditFormatError):
        NoteSigner.parse(GO_SKEY).sign(GO_TEXT, timestamp=1)


def _cosig_line(witness: NoteSigner, payload: bytes) -> str:
    return NoteSignature(witness.name, witness.verifier().key_id, payload).line()


def test_cosignature_with_bad_length_or_time_is_refused() -> None:
    witness = NoteSigner("w.example/1", bytes(range(32)), COSIGNATURE_V1)
    good = witness.sign(GO_TEXT, timestamp=5).signature
    for payload in (good[:-1], (1 << 63).to_bytes(8, "big") + good[8:], good[:8] + bytes(64)):
        with pytest.raises(SignatureError):
            verify_note(GO_NOTE + _cosig_line(witness, payload), [witness.verifier()])


def test_generated_signers_are_distinct() -> None:
    a, b = generate_signer("log.example/a"), generate_signer("log.example/a", COSIGNATURE_V1)
    assert a.public_key != b.public_key
    assert NoteSigner.parse(str(a)).public_key == a.public_key
    assert NoteSigner.parse(str(b), COSIGNATURE_V1).verifier() == b.verifier()


@pytest.mark.parametrize(
    "vkey",
    [
        "PeterNeumann+c74f20a3",
        "PeterNeumann+C74F20A3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+c74f20zz+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+00000000+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10T",
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW==",
        "PeterNeumann+c74f20a3+AhpcXXX",
        "PeterNeumann+c74f20a3+Ahpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10T\u00e9",
    ],
)
def test_malformed_vkeys_are_refused(vkey: str) -> None:
    with pytest.raises(AuditFormatError):
        VerifierKey.parse(vkey)


@pytest.mark.parametrize(
    "skey",
    [
        "PRIVATE+KEY+PeterNeumann+c74f20a3",
        "PUBLIC+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz",
        "PRIVATE+KEY+PeterNeumann+00000000+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz",
        "PRIVATE+KEY+PeterNeumann+c74f20a3+AoEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz",
    ],
)
def test_malformed_skeys_are_refused(skey: str) -> None:
    with pytest.raises(AuditFormatError):
        NoteSigner.parse(skey)


def test_key_material_lengths_are_checked() -> None:
    with pytest.raises(AuditFormatError):
        NoteSigner("a", bytes(31))
    with pytest.raises(AuditFormatError):
        VerifierKey("a", ED25519, bytes(31))


@pytest.mark.parametrize(
    "note",
    [
        pytest.param(GO_TEXT + GO_SIG, id="no-blank-line"),
        pytest.param(GO_NOTE[:-1], id="missing-final-newline"),
        pytest.param(GO_TEXT + "\n", id="no-signature"),
        pytest.param(GO_TEXT + "\n" + GO_SIG + "\n", id="trailing-blank-line"),
        pytest.param(GO_NOTE.replace(EM_DASH, "-"), id="hyphen-not-em-dash"),
        pytest.param(GO_NOTE.replace("PeterNeumann x08", "PeterNeumann  x08"), id="double-space"),
        pytest.param(GO_NOTE.replace("AM=\n", "AM= extra\n"), id="extra-field"),
        pytest.param(GO_NOTE.replace("x08go/", "x08go!"), id="bad-base64"),
        pytest.param(GO_NOTE.replace("AM=\n", "AM\n"), id="unpadded-base64"),
        pytest.param(GO_TEXT + f"\n{EM_DASH} PeterNeumann AAAA\n", id="short-signature"),
        pytest.param(GO_NOTE.replace("you think", "you\tthink"), id="control-char"),
        pytest.param(GO_NOTE.replace("PeterNeumann x", "Peter+Neumann x"), id="plus-in-name"),
        pytest.param(GO_NOTE + GO_SIG * MAX_SIGNATURES, id="too-many-signatures"),
        pytest.param("x" * MAX_NOTE_BYTES + GO_NOTE, id="too-large"),
    ],
)
def test_malformed_notes_are_refused(note: str) -> None:
    with pytest.raises(AuditFormatError):
        parse_note(note)


def test_byte_notes_must_be_utf8_and_bounded() -> None:
    with pytest.raises(AuditFormatError):
        parse_note(b"\xff" + GO_NOTE.encode())
    with pytest.raises(AuditFormatError):
        parse_note(b"x" * (MAX_NOTE_BYTES + 1))
    assert parse_note(GO_NOTE.encode()).text == GO_TEXT


def test_format_note_requires_text_and_signature() -> None:
    sig = NoteSigner.parse(GO_SKEY).sign(GO_TEXT)
    with pytest.raises(AuditFormatError):
        format_note(SignedNote(GO_TEXT, ()))
    with pytest.raises(AuditFormatError):
        format_note(SignedNote(GO_TEXT[:-1], (sig,)))
    with pytest.raises(AuditFormatError):
        format_note(SignedNote("bell\a\n", (sig,)))


def test_note_text_may_contain_blank_lines() -> None:
    signer = NoteSigner.parse(GO_SKEY)
    text = "first\n\nsecond\n"
    note = format_note(SignedNote(text, (signer.sign(text),)))
    assert verify_note(note, [signer.verifier()])[0].text == text

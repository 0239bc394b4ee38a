"""Checkpoints (tlog-checkpoint v1.0.0), cosignatures (tlog-cosignature v1.0) and consistency."""

from __future__ import annotations

import base64

import pytest

from audit.checkpoint import (
    Checkpoint,
    format_checkpoint,
    parse_checkpoint,
    sign_checkpoint,
    verify_checkpoint,
)
from audit.cosignature import cosign_checkpoint, verify_cosignatures, witness_checkpoint
from audit.errors import AuditFormatError, ProofError, SignatureError
from audit.merkle import EMPTY_ROOT, leaf_hash
from audit.note import COSIGNATURE_V1, NoteSigner, SignedNote, format_note
from audit.proofs import MemoryTree
from audit.verify import verify_checkpoint_consistency
from tests.unit.audit.conftest import ORIGIN, make_leaves

# The example of c2sp.org/tlog-checkpoint (C2SP/C2SP tlog-checkpoint.md).
SPEC_TEXT = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
ROOT_B64 = base64.b64encode(EMPTY_ROOT).decode()


def test_spec_example_parses_and_formats_back() -> None:
    checkpoint = parse_checkpoint(SPEC_TEXT)
    assert checkpoint.origin == "example.com/behind-the-sofa"
    assert checkpoint.size == 20852163
    assert format_checkpoint(checkpoint) == SPEC_TEXT


def test_extension_lines_round_trip() -> None:
    text = f"{ORIGIN}\n0\n{ROOT_B64}\nextra one\nextra two\n"
    checkpoint = parse_checkpoint(text)
    assert checkpoint.extensions == ("extra one", "extra two")
    assert format_checkpoint(checkpoint) == text


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(f"{ORIGIN}\n0\n{ROOT_B64}", id="missing-newline"),
        pytest.param(f"{ORIGIN}\n0\n", id="two-lines"),
        pytest.param(f"\n0\n{ROOT_B64}\n", id="empty-origin"),
        pytest.param(f"{ORIGIN}\n0\n{ROOT_B64}\n\n", id="empty-extension"),
        pytest.param(f"{ORIGIN}\n007\n{ROOT_B64}\n", id="leading-zeros"),
        pytest.param(f"{ORIGIN}\n-1\n{ROOT_B64}\n", id="negative"),
        pytest.param(f"{ORIGIN}\n+1\n{ROOT_B64}\n", id="plus-sign"),
        pytest.param(f"{ORIGIN}\n\u0661\n{ROOT_B64}\n", id="non-ascii-digit"),
        pytest.param(f"{ORIGIN}\n{1 << 63}\n{ROOT_B64}\n", id="too-large"),
        pytest.param(f"{ORIGIN}\n0\n{ROOT_B64[:-1]}\n", id="bad-base64"),
        pytest.param(f"{ORIGIN}\n0\nAAAA\n", id="short-root"),
    ],
)
def test_malformed_checkpoints_are_refused(text: str) -> None:
    with pytest.raises(AuditFormatError):
        parse_checkpoint(text)


@pytest.mark.parametrize(
    "fields",
    [("bad\norigin", 0, EMPTY_ROOT, ()), (ORIGIN, 0, EMPTY_ROOT, ("bad\x01",))],
)
def test_checkpoint_fields_are_validated(fields: tuple[str, int, bytes, tuple[str, ...]]) -> None:
    with pytest.raises(AuditFormatError):
        Checkpoint(*fields)


def test_sign_and_verify(log_signer: NoteSigner, other_signer: NoteSigner) -> None:
    checkpoint = Checkpoint(ORIGIN, 0, EMPTY_ROOT)
    note = sign_checkpoint(checkpoint, log_signer)
    verified = verify_checkpoint(note, [log_signer.verifier()], origin=ORIGIN)
    assert verified.checkpoint == checkpoint
    assert verified.note == note
    assert verify_checkpoint(note.encode(), [log_signer.verifier()]).checkpoint == checkpoint
    with pytest.raises(SignatureError):
        verify_checkpoint(note, [other_signer.verifier()])


def test_log_key_must_be_named_after_the_origin(log_signer: NoteSigner) -> None:
    with pytest.raises(AuditFormatError):
        sign_checkpoint(Checkpoint("other.example/log", 0, EMPTY_ROOT), log_signer)
    witness = NoteSigner(ORIGIN, bytes(32), COSIGNATURE_V1)
    with pytest.raises(AuditFormatError):
        sign_checkpoint(Checkpoint(ORIGIN, 0, EMPTY_ROOT), witness)


def test_wrong_origin_is_refused(log_signer: NoteSigner) -> None:
    """A validly signed checkpoint of another log (or under another name) is refused."""
    note = sign_checkpoint(Checkpoint(ORIGIN, 0, EMPTY_ROOT), log_signer)
    with pytest.raises(SignatureError):
        verify_checkpoint(note, [log_signer.verifier()], origin="confide.example/audit/test")
    other_name = NoteSigner("elsewhere.example/log", bytes(range(32)))

    text = format_checkpoint(Checkpoint(ORIGIN, 0, EMPTY_ROOT))
    forged = format_note(SignedNote(text, (other_name.sign(text),)))
    with pytest.raises(SignatureError):
        verify_checkpoint(forged, [other_name.verifier()])


def test_key_types_are_checked(log_signer: NoteSigner, witness_signer: NoteSigner) -> None:
    note = sign_checkpoint(Checkpoint(ORIGIN, 0, EMPTY_ROOT), log_signer)
    with pytest.raises(AuditFormatError):
        verify_checkpoint(note, [witness_signer.verifier()])
    with pytest.raises(AuditFormatError):
        verify_checkpoint(note, [log_signer.verifier()], witness_keys=[log_signer.verifier()])
    # A witness key alone verifies its cosignature but is no log signature.
    cosigned = cosign_checkpoint(note, [log_signer.verifier()], witness_signer, timestamp=9)
    with pytest.raises(SignatureError):
        verify_checkpoint(cosigned, [], witness_keys=[witness_signer.verifier()])


def test_cosignature_round_trip_and_refusal(log_signer: NoteSigner, witness_signer: NoteSigner) -> None:
    note = sign_checkpoint(Checkpoint(ORIGIN, 0, EMPTY_ROOT), log_signer)
    log, witness = [log_signer.verifier()], [witness_signer.verifier()]
    with pytest.raises(SignatureError):
        verify_cosignatures(note, log, witness)
    cosigned = cosign_checkpoint(note, log, witness_signer, timestamp=1_700_000_000)
    verified = verify_cosignatures(cosigned, log, witness)
    assert verified.cosignatures == {"witness.example/w1": 1_700_000_000}
    # Verifiers that do not ask for the witness ignore the cosignature.
    assert verify_checkpoint(cosigned, log).cosignatures == {}
    tampered = cosigned.replace("\n0\n", "\n1\n")
    with pytest.raises(SignatureError):
        verify_cosignatures(tampered, log, witness)
    with pytest.raises(AuditFormatError):
        cosign_checkpoint(note, log, log_signer, timestamp=1)


def _trees() -> tuple[MemoryTree, MemoryTree]:
    hashes = [leaf_hash(leaf) for leaf in make_leaves(9)]
    return MemoryTree(hashes[:3]), MemoryTree(hashes)


def test_witness_accepts_only_consistent_growth(log_signer: NoteSigner, witness_signer: NoteSigner) -> None:
    old_tree, tree = _trees()
    old_cp = Checkpoint(ORIGIN, 3, old_tree.root())
    new_note = sign_checkpoint(Checkpoint(ORIGIN, 9, tree.root()), log_signer)
    log = [log_signer.verifier()]
    accepted, cosigned = witness_checkpoint(
        new_note, log, witness_signer, timestamp=5, previous=None, proof=[]
    )
    assert accepted.size == 9
    assert verify_cosignatures(cosigned, log, [witness_signer.verifier()]).cosignatures
    proof = tree.consistency_proof(3, 9)
    accepted, _ = witness_checkpoint(new_note, log, witness_signer, timestamp=5, previous=old_cp, proof=proof)
    assert accepted.root == tree.root()
    forked = Checkpoint(ORIGIN, 3, EMPTY_ROOT)
    with pytest.raises(ProofError):
        witness_checkpoint(new_note, log, witness_signer, timestamp=5, previous=forked, proof=proof)
    other_log = Checkpoint("other.example/log", 3, old_tree.root())
    with pytest.raises(ProofError):
        witness_checkpoint(new_note, log, witness_signer, timestamp=5, previous=other_log, proof=proof)


def test_kept_checkpoint_consistency(log_signer: NoteSigner) -> None:
    """Rollback and fork detection between a kept checkpoint and a newer one."""
    old_tree, tree = _trees()
    log = [log_signer.verifier()]
    old_note = sign_checkpoint(Checkpoint(ORIGIN, 3, old_tree.root()), log_signer)
    new_note = sign_checkpoint(Checkpoint(ORIGIN, 9, tree.root()), log_signer)
    proof = tree.consistency_proof(3, 9)
    old, new = verify_checkpoint_consistency(old_note, new_note, proof, log)
    assert (old.size, new.size) == (3, 9)
    with pytest.raises(ProofError, match="rollback"):
        verify_checkpoint_consistency(new_note, old_note, proof, log)
    fork_note = sign_checkpoint(Checkpoint(ORIGIN, 9, EMPTY_ROOT), log_signer)
    with pytest.raises(ProofError):
        verify_checkpoint_consistency(old_note, fork_note, proof, log)
    other = NoteSigner("other.example/log", bytes(range(32)))
    other_note = sign_checkpoint(Checkpoint("other.example/log", 9, tree.root()), other)
    with pytest.raises(ProofError):
        verify_checkpoint_consistency(old_note, other_note, proof, [*log, other.verifier()])

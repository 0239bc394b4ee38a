"""The functions behind ``confide audit verify / consistency / keygen``."""

from __future__ import annotations

import base64
import io
import stat
from pathlib import Path

import pytest

from audit.checkpoint import Checkpoint, sign_checkpoint
from audit.cli import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    ExportFile,
    consistency_command,
    keygen_command,
    read_proof_file,
    verify_command,
)
from audit.cosignature import cosign_checkpoint
from audit.errors import AuditFormatError
from audit.note import NoteSigner, VerifierKey
from audit.proofs import MemoryTree
from tests.unit.audit.conftest import ORIGIN, Log


def _write(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"".join(lines))
    return path


def test_verify_ok_and_failure_names_the_index(
    tmp_path: Path, small_log: Log, log_signer: NoteSigner
) -> None:
    key = str(log_signer.verifier())
    lines = small_log.export()
    good = _write(tmp_path / "good.jsonl", lines)
    out = io.StringIO()
    assert verify_command(good, [key], out=out) == EXIT_OK
    assert out.getvalue().startswith("OK: 13 events (0 pruned, complete)")
    assert list(ExportFile(good)) == lines

    bad = _write(tmp_path / "bad.jsonl", lines[:4] + lines[5:])
    out = io.StringIO()
    assert verify_command(bad, [key], out=out) == EXIT_FAILED
    assert "(index 3)" in out.getvalue()


def test_verify_with_witness(
    tmp_path: Path, small_log: Log, log_signer: NoteSigner, witness_signer: NoteSigner
) -> None:
    keys = [log_signer.verifier()]
    small_log.note = cosign_checkpoint(small_log.note, keys, witness_signer, timestamp=7)
    path = _write(tmp_path / "w.jsonl", small_log.export())
    out = io.StringIO()
    code = verify_command(path, [str(keys[0])], out=out, witness_keys=[str(witness_signer.verifier())])
    assert code == EXIT_OK
    assert "cosigned by witness.example/w1 at 7" in out.getvalue()


def test_verify_usage_errors(tmp_path: Path, log_signer: NoteSigner) -> None:
    out = io.StringIO()
    assert verify_command(tmp_path / "missing", [str(log_signer.verifier())], out=out) == EXIT_USAGE
    assert verify_command(tmp_path / "missing", ["not-a-key"], out=out) == EXIT_USAGE
    assert "bad key" in out.getvalue()


def _checkpoints(tmp_path: Path, log_signer: NoteSigner) -> tuple[Path, Path, Path]:
    hashes = [bytes([i]) * 32 for i in range(10)]
    old_tree, tree = MemoryTree(hashes[:4]), MemoryTree(hashes)
    old = tmp_path / "old.note"
    new = tmp_path / "new.note"
    old.write_text(sign_checkpoint(Checkpoint(ORIGIN, 4, old_tree.root()), log_signer))
    new.write_text(sign_checkpoint(Checkpoint(ORIGIN, 10, tree.root()), log_signer))
    proof = tmp_path / "proof.txt"
    proof.write_text("".join(base64.b64encode(h).decode() + "\n" for h in tree.consistency_proof(4)))
    return old, new, proof


def test_consistency_command(tmp_path: Path, log_signer: NoteSigner) -> None:
    old, new, proof = _checkpoints(tmp_path, log_signer)
    key = [str(log_signer.verifier())]
    out = io.StringIO()
    assert consistency_command(old, new, proof, key, out=out) == EXIT_OK
    assert out.getvalue() == f"OK: {ORIGIN} size 10 extends size 4\n"
    out = io.StringIO()
    assert consistency_command(new, old, proof, key, out=out) == EXIT_FAILED
    assert "rollback" in out.getvalue()
    assert consistency_command(old, new, tmp_path / "none", key, out=out) == EXIT_USAGE
    assert consistency_command(old, new, proof, ["bad"], out=out) == EXIT_USAGE
    (tmp_path / "latin.note").write_bytes(b"\xff\n")
    assert consistency_command(tmp_path / "latin.note", new, proof, key, out=out) == EXIT_USAGE


@pytest.mark.parametrize("content", ["AAAA\n", "!!!!\n", "AAAA\n" * 200])
def test_proof_file_is_strict(tmp_path: Path, content: str) -> None:
    path = tmp_path / "proof.txt"
    path.write_text(content)
    with pytest.raises(AuditFormatError):
        read_proof_file(path)


def test_keygen_writes_a_private_secret_and_prints_the_vkey(tmp_path: Path) -> None:
    secret = tmp_path / "log.key"
    out = io.StringIO()
    assert keygen_command(ORIGIN, secret, out=out) == EXIT_OK
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    signer = NoteSigner.parse(secret.read_text())
    vkey = VerifierKey.parse(out.getvalue().strip())
    assert signer.verifier() == vkey
    assert keygen_command(ORIGIN, secret, out=out) == EXIT_USAGE  # never overwritten
    witness_secret = tmp_path / "witness.key"
    out = io.StringIO()
    assert keygen_command("w.example/1", witness_secret, out=out, witness=True) == EXIT_OK
    assert VerifierKey.parse(out.getvalue().strip()).sig_type == 0x04
    assert keygen_command("bad name", tmp_path / "x.key", out=out) == EXIT_USAGE

"""crypto/SPEC.md is implementable elsewhere: libsodium.js checks the same vectors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from crypto.vectors import VECTOR_DIR

INTEROP = VECTOR_DIR.parent / "interop"
RUN = INTEROP / "run.sh"

needs_node = pytest.mark.skipif(
    shutil.which("node") is None and not os.environ.get("CI"),
    reason="node is not installed (set CI to make this a failure)",
)


@needs_node
def test_javascript_implementation_accepts_every_vector_and_refuses_every_negative() -> None:
    result = subprocess.run([str(RUN)], capture_output=True, text=True, check=False, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert ", 0 failed" in result.stdout


@needs_node
def test_javascript_check_fails_on_a_tampered_vector(tmp_path: Path) -> None:
    """The interop check can fail: one changed signed-bytes value makes it exit 1."""
    subprocess.run([str(RUN)], capture_output=True, check=True, timeout=300)  # npm ci
    for name in VECTOR_DIR.glob("*.json"):
        shutil.copy(name, tmp_path / name.name)
    keys = json.loads((tmp_path / "keys.json").read_text(encoding="utf-8"))
    signed = keys["identities"][0]["bundle_signed_bytes"]
    keys["identities"][0]["bundle_signed_bytes"] = signed[:-2] + ("00" if signed[-2:] != "00" else "01")
    (tmp_path / "keys.json").write_text(json.dumps(keys), encoding="utf-8")
    result = subprocess.run(
        ["node", str(INTEROP / "verify_vectors.mjs")],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "CONFIDE_VECTOR_DIR": str(tmp_path)},
        timeout=120,
    )
    assert result.returncode == 1
    assert "FAIL bundle alice-v1" in result.stderr


def test_run_script_skips_without_node_unless_ci(tmp_path: Path) -> None:
    """Without node: exit 0 with a reason; with CI set: exit 1."""
    env = {"PATH": str(tmp_path)}  # an empty directory: no node, no npm
    sh = shutil.which("sh") or "/bin/sh"
    skipped = subprocess.run([sh, str(RUN)], capture_output=True, text=True, env=env, check=False)
    assert skipped.returncode == 0
    assert "skipped" in skipped.stdout
    failed = subprocess.run(
        [sh, str(RUN)], capture_output=True, text=True, env={**env, "CI": "1"}, check=False
    )
    assert failed.returncode == 1

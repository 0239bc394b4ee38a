"""The server-facing part of crypto never loads secret-key code or other packages."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CRYPTO = Path(__file__).resolve().parents[3] / "crypto"
ROOT = CRYPTO.parent

LINTER_CONFIG = """
[importlinter]
exclude_type_checking_imports = True
root_packages =
    crypto

[importlinter:contract:layers]
name = crypto layers: client > hazmat > public > errors
type = layers
layers =
    crypto.vectors
    crypto.client
    crypto.hazmat
    crypto.public
    crypto.errors
"""


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_importing_crypto_public_loads_no_secret_key_module() -> None:
    """crypto.public (what the server imports) pulls in neither client nor hazmat code."""
    code = (
        "import sys, crypto.public, crypto.errors;"
        "bad = [m for m in sys.modules if m.startswith(('crypto.client', 'crypto.hazmat',"
        " 'crypto.vectors', 'backend', 'audit'))];"
        "print(','.join(bad))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert result.stdout.strip() == ""


def test_no_crypto_module_imports_backend_audit_or_other_crypto_libraries() -> None:
    """PyNaCl only: no other cryptography dependency, and never backend/ or audit/."""
    forbidden = ("backend", "audit", "cryptography", "Crypto", "hashlib", "hmac", "secrets")
    for path in CRYPTO.rglob("*.py"):
        for module in _imports(path):
            assert not module.split(".")[0].startswith(forbidden), (path, module)


def test_import_layers_hold_according_to_import_linter(tmp_path: Path) -> None:
    """crypto.vectors > client > hazmat > public > errors: no upward import anywhere."""
    lint_imports = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    if not Path(lint_imports).exists():  # pragma: no cover - import-linter is a dev dependency
        pytest.skip("lint-imports is not installed")
    config = tmp_path / "importlinter.ini"
    config.write_text(LINTER_CONFIG, encoding="utf-8")
    result = subprocess.run(
        [lint_imports, "--config", str(config), "--no-cache"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr

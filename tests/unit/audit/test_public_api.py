"""The public surface of ``audit`` is pinned: changing it is a deliberate act."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import audit

PUBLIC = {
    "EMPTY_ROOT", "AuditAgent", "AuditEntity", "AuditEvent", "AuditFormatError", "Checkpoint",
    "CompactRange", "ExportError", "ExportFilters", "ExportRecord", "ExportSummary", "MemoryTree",
    "NodeID", "NodeSource", "NoteSigner", "ProofError", "ProofPlan", "SignatureError", "TreeNode",
    "VerificationError", "VerifiedCheckpoint", "VerifierKey", "consistency_proof",
    "consistency_proof_from_source", "consistency_proof_plan", "cosign_checkpoint", "decode_leaf",
    "encode_leaf", "format_checkpoint", "generate_signer", "inclusion_proof",
    "inclusion_proof_from_source", "inclusion_proof_plan", "leaf_hash", "node_hash",
    "parse_checkpoint", "root_from_leaf_hashes", "sign_checkpoint", "verify_checkpoint",
    "verify_checkpoint_consistency", "verify_consistency", "verify_cosignatures", "verify_export",
    "verify_inclusion", "witness_checkpoint", "write_csv", "write_fhir_bundle",
    "write_fhir_ndjson", "write_jsonl", "ForkError", "KeyConflictError", "KeyRollbackError", "KeyChange",
    "KeyLogClient", "KeyLogLeaf", "KeyLogState", "LoggedBundle", "compare_checkpoints",
    "decode_key_leaf", "encode_key_leaf",
}  # fmt: skip


def test_public_api_is_pinned() -> None:
    assert set(audit.__all__) == PUBLIC
    for name in audit.__all__:
        assert getattr(audit, name) is not None


def test_every_module_declares_all_and_exports_what_it_declares() -> None:
    for info in pkgutil.iter_modules(audit.__path__):
        module = importlib.import_module(f"audit.{info.name}")
        names = module.__all__
        for name in names:
            assert hasattr(module, name), f"audit.{info.name}.{name}"


def test_audit_imports_only_stdlib_msgspec_and_nacl() -> None:
    """audit/ never imports backend/ or crypto/ (mirrors the import-linter contract)."""
    allowed_third_party = {"msgspec", "nacl"}
    for path in Path(audit.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                roots = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                roots = {node.module.split(".")[0]}
            else:
                continue
            for root in roots:
                assert root not in {"backend", "crypto"}, path.name
                assert root in allowed_third_party or root == "audit" or root in _stdlib(), (
                    path.name,
                    root,
                )


def _stdlib() -> frozenset[str]:
    import sys  # noqa: PLC0415 - only needed here

    return frozenset(sys.stdlib_module_names) | {"__future__"}

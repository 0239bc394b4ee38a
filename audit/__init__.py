"""Tamper-evident audit log primitives: RFC 9162 Merkle tree, proofs, C2SP checkpoints.

Pure and database-free: imports only the standard library, msgspec and PyNaCl. The
backend stores leaves and node hashes; everything here computes and verifies.

Modules: :mod:`audit.leaf` (canonical event bytes), :mod:`audit.merkle` (hashing and
the compact range), :mod:`audit.proofs` (inclusion and consistency proofs),
:mod:`audit.note`, :mod:`audit.checkpoint`, :mod:`audit.cosignature` (signed tree heads),
:mod:`audit.export` and :mod:`audit.formats` (export writers), :mod:`audit.keylog` (key
transparency: the key log's leaves and the client's checks), :mod:`audit.verify`
(offline verification), :mod:`audit.cli` (what the ``confide audit`` commands call),
:mod:`audit.errors`.
"""

from audit.checkpoint import (
    Checkpoint,
    VerifiedCheckpoint,
    format_checkpoint,
    parse_checkpoint,
    sign_checkpoint,
    verify_checkpoint,
)
from audit.cosignature import cosign_checkpoint, verify_cosignatures, witness_checkpoint
from audit.errors import (
    AuditFormatError,
    ExportError,
    ForkError,
    KeyConflictError,
    KeyRollbackError,
    ProofError,
    SignatureError,
    VerificationError,
)
from audit.export import ExportFilters, ExportRecord, write_jsonl
from audit.formats import write_csv, write_fhir_bundle, write_fhir_ndjson
from audit.keylog import (
    KeyChange,
    KeyLogClient,
    KeyLogLeaf,
    KeyLogState,
    LoggedBundle,
    compare_checkpoints,
    decode_key_leaf,
    encode_key_leaf,
)
from audit.leaf import AuditAgent, AuditEntity, AuditEvent, decode_leaf, encode_leaf
from audit.merkle import (
    EMPTY_ROOT,
    CompactRange,
    NodeID,
    TreeNode,
    leaf_hash,
    node_hash,
    root_from_leaf_hashes,
)
from audit.note import NoteSigner, VerifierKey, generate_signer
from audit.proofs import (
    MemoryTree,
    NodeSource,
    ProofPlan,
    consistency_proof,
    consistency_proof_from_source,
    consistency_proof_plan,
    inclusion_proof,
    inclusion_proof_from_source,
    inclusion_proof_plan,
    verify_consistency,
    verify_inclusion,
)
from audit.verify import ExportSummary, verify_checkpoint_consistency, verify_export

__all__ = [
    "EMPTY_ROOT",
    "AuditAgent",
    "AuditEntity",
    "AuditEvent",
    "AuditFormatError",
    "Checkpoint",
    "CompactRange",
    "ExportError",
    "ExportFilters",
    "ExportRecord",
    "ExportSummary",
    "ForkError",
    "KeyChange",
    "KeyConflictError",
    "KeyLogClient",
    "KeyLogLeaf",
    "KeyLogState",
    "KeyRollbackError",
    "LoggedBundle",
    "MemoryTree",
    "NodeID",
    "NodeSource",
    "NoteSigner",
    "ProofError",
    "ProofPlan",
    "SignatureError",
    "TreeNode",
    "VerificationError",
    "VerifiedCheckpoint",
    "VerifierKey",
    "compare_checkpoints",
    "consistency_proof",
    "consistency_proof_from_source",
    "consistency_proof_plan",
    "cosign_checkpoint",
    "decode_key_leaf",
    "decode_leaf",
    "encode_key_leaf",
    "encode_leaf",
    "format_checkpoint",
    "generate_signer",
    "inclusion_proof",
    "inclusion_proof_from_source",
    "inclusion_proof_plan",
    "leaf_hash",
    "node_hash",
    "parse_checkpoint",
    "root_from_leaf_hashes",
    "sign_checkpoint",
    "verify_checkpoint",
    "verify_checkpoint_consistency",
    "verify_consistency",
    "verify_cosignatures",
    "verify_export",
    "verify_inclusion",
    "witness_checkpoint",
    "write_csv",
    "write_fhir_bundle",
    "write_fhir_ndjson",
    "write_jsonl",
]

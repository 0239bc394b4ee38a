"""Tamper-evident audit log primitives: RFC 9162 Merkle tree, proofs, C2SP checkpoints."""

"""Client-side end-to-end encryption for Confide (see crypto/SPEC.md)."""

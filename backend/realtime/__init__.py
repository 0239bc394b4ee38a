"""Real-time delivery: a per-account outbox of ids and metadata, fanned out by LISTEN/NOTIFY."""

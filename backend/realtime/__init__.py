"""Real-time delivery: a per-account outbox of ids and metadata, fanned out by LISTEN/NOTIFY.

``outbox`` writes events in the action's transaction; ``hub`` holds the process's one
LISTEN connection and wakes streams; ``service`` and ``controller`` serve the stream
(``GET /v1/events``).
"""

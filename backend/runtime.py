"""What a running process holds: settings, the pool, the clock, hashing, server keys."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from backend.auth.passwords import PasswordService
from backend.clock import Clock
from backend.realtime.hub import Hub
from backend.server_keys import ServerKeys
from backend.settings import Settings

__all__ = ["Runtime"]


@dataclass(slots=True)
class Runtime:
    """Process-wide dependencies, created in the app's lifespan."""

    settings: Settings
    clock: Clock
    passwords: PasswordService
    keys: ServerKeys
    instance_id: str
    pool: asyncpg.Pool | None = None
    hub: Hub | None = None
    """Push-stream fan-out (one LISTEN connection), started with the pool."""

    def require_pool(self) -> asyncpg.Pool:
        """The pool (present once the lifespan has started)."""
        if self.pool is None:  # pragma: no cover -- handlers run only inside the lifespan
            raise RuntimeError("database pool not started")
        return self.pool

    def require_hub(self) -> Hub:
        """The push-stream hub (present once the lifespan has started)."""
        if self.hub is None:  # pragma: no cover -- handlers run only inside the lifespan
            raise RuntimeError("realtime hub not started")
        return self.hub

"""Per-request context (the request id) carried in a context variable."""

from __future__ import annotations

import asyncio
from contextvars import ContextVar

__all__ = ["current_request_id", "extend_deadline", "request_deadline_var", "request_id_var"]

request_id_var: ContextVar[str | None] = ContextVar("confide_request_id", default=None)
request_deadline_var: ContextVar[asyncio.Timeout | None] = ContextVar(
    "confide_request_deadline", default=None
)


def extend_deadline(seconds: float) -> None:
    """Give the current request ``seconds`` from now before its deadline (long uploads)."""
    deadline = request_deadline_var.get()
    if deadline is not None:
        deadline.reschedule(asyncio.get_running_loop().time() + seconds)


def current_request_id() -> str | None:
    """The id of the request being served, if any."""
    return request_id_var.get()

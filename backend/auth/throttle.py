"""Login throttling: exponential back-off per account and per client address.

Pure rules; the rows live in PostgreSQL (``login_throttle``), so the limits hold
across workers, instances and restarts. After ``free`` failures inside the window
each further failure locks the key for ``base * 2**n`` seconds, capped at ``max``.
A locked key is refused before any password is checked, and refused attempts do
not extend the lock: an attacker can delay an account, never lock it for good.
"""

from __future__ import annotations

import datetime as dt

import msgspec

__all__ = ["ThrottlePolicy", "ThrottleState", "after_failure", "retry_after"]


class ThrottlePolicy(msgspec.Struct, frozen=True, kw_only=True):
    """Limits for one scope (account or address)."""

    free_failures: int
    base_delay_s: int
    max_delay_s: int
    window_s: int


class ThrottleState(msgspec.Struct, frozen=True, kw_only=True):
    """One key's counters."""

    failures: int
    window_started_at: dt.datetime
    locked_until: dt.datetime | None


def retry_after(state: ThrottleState | None, now: dt.datetime) -> int | None:
    """Seconds until the key may try again, or None when it is not locked."""
    if state is None or state.locked_until is None or state.locked_until <= now:
        return None
    return max(1, int((state.locked_until - now).total_seconds() + 0.999))


def after_failure(state: ThrottleState | None, policy: ThrottlePolicy, now: dt.datetime) -> ThrottleState:
    """The state after one more failure at ``now``."""
    window_expired = state is None or (now - state.window_started_at).total_seconds() > policy.window_s
    if state is None or window_expired:
        failures, started = 1, now
    else:
        failures, started = state.failures + 1, state.window_started_at
    locked_until = None
    excess = failures - policy.free_failures
    if excess > 0:
        delay = min(policy.max_delay_s, policy.base_delay_s * 2 ** min(excess - 1, 30))
        locked_until = now + dt.timedelta(seconds=delay)
    return ThrottleState(failures=failures, window_started_at=started, locked_until=locked_until)

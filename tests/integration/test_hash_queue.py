"""The password-hashing queue is bounded in time: a login storm gets quick 429s, not long waits.

Checklist L-02: excess logins get 429 or queue with a bounded wait. Real Argon2id in
real threads; the bound is set far below one hash so the outcome does not depend on
the machine's speed. Over HTTP on a real server: tests/e2e/test_login_storm.py.
"""

from __future__ import annotations

import asyncio

import pytest

from backend.auth.passwords import PasswordService
from backend.errors import ThrottledError
from tests.conftest import make_settings

# One hashing thread; a hash of a few tens of milliseconds; a wait bound of 1 ms.
SLOW_ONE_THREAD = {"hash_workers": 1, "argon2_time_cost": 6, "hash_queue_max_wait_s": 0.001}


async def test_a_login_that_would_wait_past_the_bound_gets_429_at_once() -> None:
    service = PasswordService(make_settings(**SLOW_ONE_THREAD))
    try:
        stored = await service.hash("a long enough passphrase")
        first = asyncio.create_task(service.verify(stored, "a long enough passphrase"))
        await asyncio.sleep(0)  # the first one has taken the only thread
        assert service.expected_wait_s() > 0.001
        with pytest.raises(ThrottledError) as refused:
            await service.verify(stored, "a long enough passphrase")
        assert refused.value.retry_after >= 1
        assert await first == (True, False)
        # Nothing stays locked: once the thread is free the next one is admitted.
        assert service.expected_wait_s() == 0
        assert await service.verify(stored, "a long enough passphrase") == (True, False)
    finally:
        service.close()

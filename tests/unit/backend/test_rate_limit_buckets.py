"""Token buckets of the general rate limit: arithmetic, bounded memory, keys that hide tokens."""

from __future__ import annotations

from typing import ClassVar, cast

import pytest
from hypothesis import given
from hypothesis import strategies as st
from litestar.types import Scope

from backend.auth.tokens import new_token
from backend.http.rate_limit import RateLimiter, RecentKeys, TokenBuckets, address_key


class FakeClock:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def test_a_full_bucket_allows_the_burst_then_refuses_with_the_wait() -> None:
    clock = FakeClock()
    buckets = TokenBuckets(rate=10, burst=5, max_keys=100, clock=clock)
    assert [buckets.take(b"k") for _ in range(5)] == [0.0] * 5
    assert buckets.take(b"k") == pytest.approx(0.1)  # one token comes back every 1/rate s
    clock.advance(0.05)
    assert buckets.take(b"k") == pytest.approx(0.05)
    clock.advance(0.05)
    assert buckets.take(b"k") == 0.0
    assert buckets.take(b"k") > 0


def test_a_refused_request_costs_nothing() -> None:
    """Hammering an empty bucket does not push the next allowed request further out."""
    clock = FakeClock()
    buckets = TokenBuckets(rate=2, burst=1, max_keys=100, clock=clock)
    assert buckets.take(b"k") == 0.0
    for _ in range(1000):
        assert buckets.take(b"k") > 0
    clock.advance(0.5)
    assert buckets.take(b"k") == 0.0


def test_the_sustained_rate_is_the_configured_rate() -> None:
    clock = FakeClock()
    buckets = TokenBuckets(rate=20, burst=10, max_keys=100, clock=clock)
    allowed = 0
    for _ in range(10_000):  # 10 s at 1,000 attempts a second
        allowed += buckets.take(b"k") == 0.0
        clock.advance(0.001)
    assert allowed == pytest.approx(10 + 20 * 10, abs=2)


def test_keys_do_not_share_a_bucket() -> None:
    clock = FakeClock()
    buckets = TokenBuckets(rate=1, burst=2, max_keys=100, clock=clock)
    assert buckets.take(b"a") == buckets.take(b"a") == 0.0
    assert buckets.take(b"a") > 0
    assert buckets.take(b"b") == 0.0


def test_a_bucket_never_holds_more_than_its_burst() -> None:
    clock = FakeClock()
    buckets = TokenBuckets(rate=100, burst=3, max_keys=100, clock=clock)
    buckets.take(b"k")
    clock.advance(3600)
    assert [buckets.take(b"k") == 0.0 for _ in range(4)] == [True, True, True, False]


def test_wait_spends_nothing_and_charge_never_goes_below_empty() -> None:
    clock = FakeClock()
    buckets = TokenBuckets(rate=1, burst=2, max_keys=100, clock=clock)
    assert buckets.wait(b"k") == 0.0
    assert len(buckets) == 0  # looking creates no entry
    for _ in range(5):
        buckets.charge(b"k")
    assert buckets.wait(b"k") == pytest.approx(1.0)  # empty, not in debt
    clock.advance(1.0)
    assert buckets.wait(b"k") == 0.0


def test_a_flood_of_distinct_keys_stays_within_max_keys() -> None:
    """A million made-up keys cannot grow the table past its bound; the newest keys are kept."""
    clock = FakeClock()
    buckets = TokenBuckets(rate=1, burst=5, max_keys=1000, clock=clock)
    for i in range(200_000):
        buckets.take(i.to_bytes(4, "big"))
    assert len(buckets) == 1000
    recent = (200_000 - 1).to_bytes(4, "big")
    assert [buckets.take(recent) == 0.0 for _ in range(5)] == [True] * 4 + [False]


def test_refilled_buckets_are_dropped_as_traffic_goes_on() -> None:
    clock = FakeClock()
    buckets = TokenBuckets(rate=10, burst=10, max_keys=10_000, clock=clock)
    for i in range(500):
        buckets.take(i.to_bytes(2, "big"))
    assert len(buckets) == 500
    clock.advance(1.0)  # burst / rate: every bucket is full again, the same as no entry
    for _ in range(300):
        buckets.take(b"busy")
        clock.advance(0.1)
    assert len(buckets) == 1


@given(st.lists(st.floats(min_value=0, max_value=1), max_size=300))
def test_one_key_never_beats_burst_plus_rate_times_time(gaps: list[float]) -> None:
    """Whatever the timing, a key gets at most burst + rate x elapsed requests through."""
    clock = FakeClock()
    start = clock.now
    buckets = TokenBuckets(rate=5, burst=3, max_keys=10, clock=clock)
    allowed = 0
    for gap in gaps:
        clock.advance(gap)
        allowed += buckets.take(b"k") == 0.0
    assert allowed <= 3 + 5 * (clock.now - start) + 1e-6


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        TokenBuckets(rate=0, burst=1, max_keys=1)
    with pytest.raises(ValueError, match="positive"):
        TokenBuckets(rate=1, burst=0, max_keys=1)


def test_session_keys_hide_the_token() -> None:
    """The table is keyed by a per-process keyed digest: not the token, not its stored SHA-256."""
    token = new_token()
    one = RateLimiter(rate=1, burst=1, address_rate=1, address_burst=1, max_keys=100)
    other = RateLimiter(rate=1, burst=1, address_rate=1, address_burst=1, max_keys=100)
    key = one.session_key(token)
    assert key == one.session_key(token)
    assert key != other.session_key(token)
    assert len(key) == 16
    assert token.encode() not in key
    assert one.session_key(new_token()) != key


def _scope(host: str | None) -> Scope:
    return cast("Scope", {"client": (host, 50000) if host is not None else None})


def test_address_keys_group_ipv6_by_64_and_unwrap_mapped_ipv4() -> None:
    assert address_key(_scope("192.0.2.1")) != address_key(_scope("192.0.2.2"))
    assert address_key(_scope("2001:db8:1:2::1")) == address_key(_scope("2001:db8:1:2:ffff::9"))
    assert address_key(_scope("2001:db8:1:2::1")) != address_key(_scope("2001:db8:1:3::1"))
    assert address_key(_scope("::ffff:192.0.2.1")) == address_key(_scope("192.0.2.1"))
    assert address_key(_scope("testclient")) == b"h:testclient"
    assert address_key(_scope(None)) == address_key(cast("Scope", {}))


def test_recent_keys_forget_the_least_recently_used_first() -> None:
    recent = RecentKeys(max_keys=3)
    for key in (b"a", b"b", b"c"):
        recent.add(key)
    recent.add(b"a")  # used again: now the newest
    recent.add(b"d")
    assert b"b" not in recent
    assert {key for key in (b"a", b"c", b"d") if key in recent} == {b"a", b"c", b"d"}
    recent.discard(b"c")
    recent.discard(b"never")
    assert len(recent) == 2


def test_a_refund_gives_back_what_take_spent_and_never_more_than_the_burst() -> None:
    clock = FakeClock()
    buckets = TokenBuckets(rate=1, burst=2, max_keys=10, clock=clock)
    assert buckets.take(b"k") == 0.0
    assert buckets.take(b"k") == 0.0
    assert buckets.take(b"k") > 0.0
    buckets.refund(b"k")
    assert buckets.take(b"k") == 0.0
    buckets.refund(b"k")
    buckets.refund(b"k")
    buckets.refund(b"k")
    assert buckets.take(b"k") == buckets.take(b"k") == 0.0
    assert buckets.take(b"k") > 0.0


async def test_concurrent_made_up_tokens_from_one_address_are_bounded_by_the_failure_burst() -> None:
    """However many arrive at once, at most the failure burst of unknown tokens is looked up."""
    import asyncio  # noqa: PLC0415

    from backend.errors import AuthenticationError, RateLimitedError  # noqa: PLC0415
    from backend.http.rate_limit import RateLimitMiddleware  # noqa: PLC0415

    looked_up = 0

    async def authentication(*_: object) -> None:
        nonlocal looked_up
        looked_up += 1
        await asyncio.sleep(0.05)  # the token look-up
        raise AuthenticationError

    class Route:
        opt: ClassVar[dict[str, object]] = {}

    limiter = RateLimiter(rate=20, burst=50, address_rate=10, address_burst=50, max_keys=10_000)
    middleware = RateLimitMiddleware(authentication, limiter)

    async def one() -> str:
        scope = {
            "type": "http", "route_handler": Route(), "path": "/v1/me", "client": ("203.0.113.9", 1),
            "headers": [(b"authorization", f"Bearer {new_token()}".encode())],
        }  # fmt: skip
        try:
            await middleware(cast(Scope, scope), None, None)  # type: ignore[arg-type]
        except AuthenticationError:
            return "401"
        except RateLimitedError:
            return "429"
        return "200"  # pragma: no cover -- the look-up always fails

    answers = await asyncio.gather(*(one() for _ in range(500)))
    assert looked_up <= 51, looked_up  # the burst, plus what refilled meanwhile
    assert answers.count("401") == looked_up
    assert answers.count("429") == 500 - looked_up

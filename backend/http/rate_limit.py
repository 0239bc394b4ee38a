"""The general request rate limit: token buckets per session and per client address, in memory.

Each server process keeps its own buckets (nothing touches the database, so a flood
is refused before it costs a connection); with N processes the effective limit is N
times the configured one (docs/OPERATIONS.md). Which bucket pays for a request:

- a route that needs a session, called with a well-formed bearer token: that session's
  bucket (``CONFIDE_RATE_LIMIT_RPS``/``_BURST``), keyed by a keyed hash of the token
  (the raw token is never kept). Authentication has not run yet, so an abusive caller
  costs no database look-up. A token this process has not seen authenticate also takes
  a token of its address's *failure* bucket before its look-up, given back if it
  authenticates: an address has at most the failure burst of unknown tokens being looked
  up at once (sent one after another or all together), and while that bucket is empty its
  unknown tokens are refused before any look-up: spraying made-up tokens gets nothing for
  free. Sessions this process has already seen authenticate skip that check (a known
  token that fails, revoked meanwhile, is charged afterwards), so one address's failures
  do not hold up working sessions behind the same NAT;
- anything else (public routes, the API description, a protected route without a token,
  which authentication refuses): the client address's bucket
  (``CONFIDE_RATE_LIMIT_ADDRESS_RPS``/``_BURST``); IPv6 clients by their /64 network;
- routes with ``opt={"rate_limit": False}`` (the health probes): no bucket.

A refused request answers 429 ``urn:confide:problem:rate-limited`` with ``Retry-After``
and costs its bucket nothing. Each bucket table holds at most
``CONFIDE_RATE_LIMIT_MAX_KEYS`` keys: a bucket left alone long enough to refill is the
same as none and is dropped, and when the table is full the least recently used key is
forgotten first (a flood of distinct keys cannot grow memory without bound).

The tables are plain data touched only from the process's event loop, with no ``await``
inside an update, so no lock is needed.

Not Litestar's ``RateLimitMiddleware`` (2.x): it counts fixed windows (a client may send
twice the limit across a window edge, and there is no separate burst), stores each key's
list of request times JSON-encoded in a ``MemoryStore`` that has no size bound (expired
entries go only when someone calls ``delete_expired``), serialises every request on one
lock, keys on one identifier (no "token, else address" or failure accounting), and
answers with ``RateLimit-*`` headers but no ``Retry-After``.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Receive, Scope, Send

from backend.auth.tokens import parse_bearer
from backend.errors import AuthenticationError, RateLimitedError
from backend.http.auth_middleware import PRINCIPAL_SCOPE_KEY
from backend.settings import Settings

__all__ = ["RateLimitMiddleware", "RateLimiter", "RecentKeys", "TokenBuckets", "address_key"]

#: Expired buckets dropped per update at most (amortised O(1); the table shrinks under any traffic).
_EXPIRE_PER_CALL = 2
#: Refill arithmetic in floating point lands a hair under a whole token; count that as one.
_EPSILON = 1e-9


class TokenBuckets:
    """Token buckets by key: ``rate`` tokens a second up to ``burst``; one token per request.

    A key never seen (or not seen for ``burst / rate`` seconds) has a full bucket.
    """

    __slots__ = ("_burst", "_clock", "_idle_s", "_max_keys", "_rate", "_table")

    def __init__(
        self, rate: float, burst: int, max_keys: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        """Buckets refilling at ``rate`` per second up to ``burst``, for at most ``max_keys`` keys."""
        if not (rate > 0 and burst >= 1 and max_keys >= 1):
            raise ValueError("rate, burst and max_keys must be positive")
        self._rate = float(rate)
        self._burst = float(burst)
        self._idle_s = self._burst / self._rate
        self._max_keys = max_keys
        self._clock = clock
        # key -> (tokens, monotonic time of that level), least recently updated first.
        self._table: OrderedDict[bytes, tuple[float, float]] = OrderedDict()

    def __len__(self) -> int:
        """Keys currently tracked."""
        return len(self._table)

    def take(self, key: bytes) -> float:
        """Spend one token: 0.0 if there was one, else the seconds until there will be (nothing spent)."""
        now = self._clock()
        self._expire(now)
        tokens = self._level(key, now)
        if tokens < 1.0 - _EPSILON:
            return (1.0 - tokens) / self._rate
        self._store(key, max(0.0, tokens - 1.0), now)
        return 0.0

    def wait(self, key: bytes) -> float:
        """Seconds until ``key`` has a token (0.0 if it has one now); spends nothing."""
        tokens = self._level(key, self._clock())
        return 0.0 if tokens >= 1.0 - _EPSILON else (1.0 - tokens) / self._rate

    def refund(self, key: bytes) -> None:
        """Give back one token spent by :meth:`take` (a bucket never holds more than its burst)."""
        now = self._clock()
        self._store(key, min(self._burst, self._level(key, now) + 1.0), now)

    def charge(self, key: bytes) -> None:
        """Spend one token if there is one (a bucket never goes below empty)."""
        now = self._clock()
        self._expire(now)
        self._store(key, max(0.0, self._level(key, now) - 1.0), now)

    def _level(self, key: bytes, now: float) -> float:
        entry = self._table.get(key)
        if entry is None:
            return self._burst
        tokens, at = entry
        return min(self._burst, tokens + max(0.0, now - at) * self._rate)

    def _store(self, key: bytes, tokens: float, now: float) -> None:
        table = self._table
        table[key] = (tokens, now)
        table.move_to_end(key)
        while len(table) > self._max_keys:
            table.popitem(last=False)  # the least recently used key starts afresh if it returns

    def _expire(self, now: float) -> None:
        # The table is in update order: the first entry is the one untouched the longest.
        table = self._table
        for _ in range(_EXPIRE_PER_CALL):
            if not table:
                return
            key, (_, at) = next(iter(table.items()))
            if now - at < self._idle_s:
                return
            del table[key]  # refilled by now: the same as no entry


class RecentKeys:
    """A bounded set that forgets its least recently used key first."""

    __slots__ = ("_keys", "_max_keys")

    def __init__(self, max_keys: int) -> None:
        """At most ``max_keys`` keys."""
        self._max_keys = max_keys
        self._keys: OrderedDict[bytes, None] = OrderedDict()

    def __contains__(self, key: object) -> bool:
        """Whether ``key`` is remembered (looking does not refresh it)."""
        return key in self._keys

    def __len__(self) -> int:
        """Keys remembered."""
        return len(self._keys)

    def add(self, key: bytes) -> None:
        """Remember ``key`` as the most recently used."""
        self._keys[key] = None
        self._keys.move_to_end(key)
        while len(self._keys) > self._max_keys:
            self._keys.popitem(last=False)

    def discard(self, key: bytes) -> None:
        """Forget ``key``."""
        self._keys.pop(key, None)


class RateLimiter:
    """The process's bucket tables, the sessions it has seen authenticate, and the token key."""

    def __init__(
        self,
        *,
        rate: float,
        burst: int,
        address_rate: float,
        address_burst: int,
        max_keys: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Per-session limits ``rate``/``burst``; per-address ``address_rate``/``address_burst``."""
        self.sessions = TokenBuckets(rate, burst, max_keys, clock)
        self.addresses = TokenBuckets(address_rate, address_burst, max_keys, clock)
        self.failures = TokenBuckets(address_rate, address_burst, max_keys, clock)
        # Sessions that authenticated in this process: an address's failures do not hold them up.
        self.authenticated = RecentKeys(max_keys)
        # A per-process key: the table's keys reveal nothing about tokens, here or in a memory dump.
        self._token_key = secrets.token_bytes(32)

    @classmethod
    def from_settings(cls, settings: Settings) -> RateLimiter:
        """The limiter ``settings`` describe."""
        return cls(
            rate=settings.rate_limit_rps,
            burst=settings.rate_limit_burst,
            address_rate=settings.rate_limit_address_rps,
            address_burst=settings.rate_limit_address_burst,
            max_keys=settings.rate_limit_max_keys,
        )

    def session_key(self, token: str) -> bytes:
        """The bucket key of a bearer token: a keyed BLAKE2b digest, never the token."""
        return hashlib.blake2b(token.encode("ascii"), key=self._token_key, digest_size=16).digest()


def address_key(scope: Scope) -> bytes:
    """The bucket key of the client's address: IPv4 as is, IPv6 by its /64 network.

    A client gets a whole /64 from its provider, so one key per IPv6 address would hand it
    2**64 buckets. The address is the one the server saw, or the proxy's forwarded one
    when ``CONFIDE_FORWARDED_ALLOW_IPS`` trusts that proxy.
    """
    client = scope.get("client")
    host = str(client[0]) if client else ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return b"h:" + host.encode("utf-8", "replace")[:256]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return b"4:" + address.ipv4_mapped.packed
        return b"6:" + address.packed[:8]
    return b"4:" + address.packed


def _refuse_if_waiting(wait_s: float) -> None:
    if wait_s > 0.0:
        raise RateLimitedError(math.ceil(wait_s))


class RateLimitMiddleware:
    """Refuse requests over the rate limit with 429 before authentication or any database work."""

    def __init__(
        self, app: ASGIApp, limiter: RateLimiter, public_prefixes: tuple[str, ...] = ("/schema",)
    ) -> None:
        self.app = app
        self.limiter = limiter
        # As in AuthenticationMiddleware: the API description is public (and limited per address).
        self.public_prefixes = public_prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Charge the request to its bucket, then continue (or answer 429)."""
        handler: Any = scope.get("route_handler")
        if scope["type"] != ScopeType.HTTP or handler is None or handler.opt.get("rate_limit", True) is False:
            await self.app(scope, receive, send)
            return
        limiter = self.limiter
        address = address_key(scope)
        token = None
        if not handler.opt.get("public", False) and not scope["path"].startswith(self.public_prefixes):
            token = parse_bearer(_header(scope, b"authorization"))
        if token is None:
            _refuse_if_waiting(limiter.addresses.take(address))
            await self.app(scope, receive, send)
            return
        session = limiter.session_key(token)
        known = session in limiter.authenticated
        if not known:
            # A token this process has not seen authenticate may be made up: it reserves a
            # token of its address's failure bucket before its look-up, and gets it back only
            # if it authenticates. So an address has at most its failure burst of look-ups of
            # unknown tokens in flight, however many it sends at once.
            _refuse_if_waiting(limiter.failures.take(address))
        wait = limiter.sessions.take(session)
        if wait > 0.0 and not known:
            limiter.failures.refund(address)
        _refuse_if_waiting(wait)
        failed = False
        try:
            await self.app(scope, receive, send)
        except AuthenticationError:
            failed = True
            limiter.authenticated.discard(session)
            if known:
                limiter.failures.charge(address)
            raise
        finally:
            if not known and not failed:
                # Authenticated, or failed for another reason (the database was unreachable):
                # not a made-up token.
                limiter.failures.refund(address)
                if scope.get(PRINCIPAL_SCOPE_KEY) is not None:
                    limiter.authenticated.add(session)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return bytes(value).decode("latin-1")
    return None

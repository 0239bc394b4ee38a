"""Argon2id password hashing off the event loop, with bounded concurrency.

Hashes run in a small thread pool (one thread per core by default; argon2-cffi
releases the GIL while hashing). At most ``workers + queue_max`` hashes are in the
system at once: beyond that a login gets 429 at once instead of a growing queue.
An unknown account is verified against a dummy hash, so it costs the same time.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import secrets
import time
import unicodedata
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from backend.errors import ThrottledError, WeakPasswordError
from backend.settings import Settings

_T = TypeVar("_T")

__all__ = ["PasswordService", "check_password_policy", "normalize_password"]

MAX_PASSWORD_CHARS = 256
MIN_CHARS_SINGLE_FACTOR = 15
MIN_CHARS_WITH_MFA = 8

# A short list of the most common passwords (and patterns thereof); the full
# breached-password check belongs to a k-anonymity service, out of scope offline.
_COMMON = frozenset(
    {
        "password",
        "password1",
        "password123",
        "passwordpassword",
        "123456789012345",
        "1234567890123456",
        "qwertyuiopasdfgh",
        "iloveyouiloveyou",
        "letmeinletmein1",
        "correcthorsebatterystaple",
        "aaaaaaaaaaaaaaa",
        "changemechangeme",
        "welcome12345678",
        "administrator123",
    }
)


def normalize_password(password: str) -> str:
    """NFKC, as NIST SP 800-63B asks before hashing; nothing is truncated."""
    return unicodedata.normalize("NFKC", password)


def check_password_policy(password: str, *, mfa_required: bool, email: str) -> None:
    """Raise :class:`WeakPasswordError` unless ``password`` meets the policy.

    Length only, no composition rules (NIST SP 800-63B-4): at least 15 characters
    for single-factor accounts, 8 where a second factor is required, at most 256;
    not a common password, not the email address or its local part.
    """
    normalized = normalize_password(password)
    minimum = MIN_CHARS_WITH_MFA if mfa_required else MIN_CHARS_SINGLE_FACTOR
    if len(normalized) < minimum:
        raise WeakPasswordError(f"The password must have at least {minimum} characters.")
    if len(normalized) > MAX_PASSWORD_CHARS:
        raise WeakPasswordError(f"The password must have at most {MAX_PASSWORD_CHARS} characters.")
    if "\x00" in normalized:
        raise WeakPasswordError("The password must not contain NUL characters.")
    lowered = normalized.casefold()
    local = email.casefold().split("@", 1)[0]
    if lowered in _COMMON or len(set(lowered)) < 4 or lowered in {email.casefold(), local}:
        raise WeakPasswordError("The password is too easy to guess.")


class PasswordService:
    """Hash and verify passwords in a bounded pool of threads."""

    def __init__(self, settings: Settings) -> None:
        self._hasher = PasswordHasher(
            time_cost=settings.argon2_time_cost,
            memory_cost=settings.argon2_memory_kib,
            parallelism=settings.argon2_parallelism,
            hash_len=32,
            salt_len=16,
            type=Type.ID,
        )
        self._workers = settings.effective_hash_workers
        self._capacity = self._workers + settings.hash_queue_max
        self._max_wait_s = settings.hash_queue_max_wait_s
        self._in_flight = 0
        self._executor = ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="argon2")
        started = time.perf_counter()
        self._dummy_hash = self._hasher.hash(secrets.token_urlsafe(24))
        #: Seconds one hash takes on this machine: measured at start, then a moving average.
        self._hash_s = time.perf_counter() - started

    @property
    def workers(self) -> int:
        """Threads hashing in parallel."""
        return self._workers

    def close(self) -> None:
        """Stop the hashing threads."""
        self._executor.shutdown(wait=False, cancel_futures=True)

    def expected_wait_s(self) -> float:
        """How long a hash asked for now would wait for a thread (the queue ahead of it)."""
        ahead = self._in_flight - self._workers + 1
        return max(0, ahead) * self._hash_s / self._workers

    def check_admission(self) -> None:
        """Raise the 429 a hash asked for now would get (callers shed load before other work)."""
        # Bounded in count and in time: a login storm gets quick 429s with a useful Retry-After
        # rather than answers after many seconds (checklist L-02: bounded wait).
        wait = self.expected_wait_s()
        if self._in_flight >= self._capacity or wait > self._max_wait_s:
            raise ThrottledError(retry_after=math.ceil(wait), detail="The server is busy. Try again shortly.")

    @contextlib.contextmanager
    def _admission(self) -> Iterator[None]:
        self.check_admission()
        self._in_flight += 1
        try:
            yield
        finally:
            self._in_flight -= 1

    def _timed(self, work: Callable[[], _T]) -> _T:
        started = time.perf_counter()
        try:
            return work()
        finally:
            self._hash_s = 0.8 * self._hash_s + 0.2 * (time.perf_counter() - started)

    async def hash(self, password: str) -> str:
        """The Argon2id PHC string for ``password``."""
        with self._admission():
            loop = asyncio.get_running_loop()
            normalized = normalize_password(password)
            return await loop.run_in_executor(
                self._executor, self._timed, lambda: self._hasher.hash(normalized)
            )

    async def verify(self, stored: str | None, password: str) -> tuple[bool, bool]:
        """``(matches, needs_rehash)``; an absent hash costs a real verification."""
        with self._admission():
            loop = asyncio.get_running_loop()
            normalized = normalize_password(password)
            return await loop.run_in_executor(
                self._executor, self._timed, lambda: self._verify_sync(stored, normalized)
            )

    def _verify_sync(self, stored: str | None, password: str) -> tuple[bool, bool]:
        target = stored if stored is not None else self._dummy_hash
        try:
            self._hasher.verify(target, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False, False
        if stored is None:
            return False, False
        return True, self._hasher.check_needs_rehash(stored)

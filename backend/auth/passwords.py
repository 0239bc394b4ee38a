"""Argon2id password hashing off the event loop, with bounded concurrency.

Hashes run in a small thread pool (one thread per core by default; argon2-cffi
releases the GIL while hashing). At most ``workers + queue_max`` hashes are in the
system at once: beyond that a login gets 429 at once instead of a growing queue.
An unknown account is verified against a dummy hash, so it costs the same time.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import unicodedata
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from backend.errors import ThrottledError, WeakPasswordError
from backend.settings import Settings

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
        self._in_flight = 0
        self._executor = ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="argon2")
        self._dummy_hash = self._hasher.hash(secrets.token_urlsafe(24))

    @property
    def workers(self) -> int:
        """Threads hashing in parallel."""
        return self._workers

    def close(self) -> None:
        """Stop the hashing threads."""
        self._executor.shutdown(wait=False, cancel_futures=True)

    @contextlib.contextmanager
    def _admission(self) -> Iterator[None]:
        if self._in_flight >= self._capacity:
            raise ThrottledError(retry_after=1, detail="The server is busy. Try again shortly.")
        self._in_flight += 1
        try:
            yield
        finally:
            self._in_flight -= 1

    async def hash(self, password: str) -> str:
        """The Argon2id PHC string for ``password``."""
        with self._admission():
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._executor, self._hasher.hash, normalize_password(password))

    async def verify(self, stored: str | None, password: str) -> tuple[bool, bool]:
        """``(matches, needs_rehash)``; an absent hash costs a real verification."""
        with self._admission():
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(
                self._executor, self._verify_sync, stored, normalize_password(password)
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

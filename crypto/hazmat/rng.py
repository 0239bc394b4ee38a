"""WARNING: randomness sources. Use the ``crypto.client`` functions, which use the OS RNG.

The safe API never takes a random source. The private ``_``-prefixed seams of
:mod:`crypto.client` accept an :data:`Rng` so that :mod:`crypto.vectors.generate` can
produce byte-for-byte reproducible test vectors with :class:`ScriptedRng`. Passing
anything but :func:`system_rng` outside vector generation and tests destroys security.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import nacl.utils

__all__ = ["Rng", "ScriptedRng", "system_rng"]

#: A source of random bytes: called with a size, returns that many bytes.
Rng = Callable[[int], bytes]


def system_rng(size: int) -> bytes:
    """Return ``size`` bytes from libsodium's ``randombytes_buf`` (the OS CSPRNG)."""
    data: bytes = nacl.utils.random(size)
    return data


class ScriptedRng:
    """An :data:`Rng` that returns fixed values in order. For test vectors ONLY.

    Each call must ask for exactly the length of the next scripted value, so a vector
    whose inputs drift out of step with the code fails loudly instead of silently
    producing different bytes.
    """

    __slots__ = ("_values",)

    def __init__(self, values: Iterable[bytes]) -> None:
        self._values = list(values)
        self._values.reverse()

    def __call__(self, size: int) -> bytes:
        """Return the next scripted value, which must be ``size`` bytes long."""
        if not self._values:
            raise LookupError("scripted randomness exhausted")
        value = self._values.pop()
        if len(value) != size:
            raise LookupError("scripted randomness has the wrong length for this call")
        return value

    @property
    def exhausted(self) -> bool:
        """Whether every scripted value has been consumed."""
        return not self._values

"""The canonical length-prefixed binary encoding used for signed bytes and AEAD data.

Every item is written as a 4-byte big-endian length followed by its bytes; integers are
fixed-width big-endian before being length-prefixed. The structure of each message is
fixed by its domain-separation string (the first item), so the encoding is injective.
See ``crypto/SPEC.md`` section "Canonical encoding".
"""

from __future__ import annotations

from uuid import UUID

__all__ = ["CanonicalWriter"]

# Length prefixes of the fixed-size items, precomputed (this encoding is on the hot path).
_LEN_1 = (1).to_bytes(4, "big")
_LEN_4 = (4).to_bytes(4, "big")
_LEN_8 = (8).to_bytes(4, "big")
_LEN_16 = (16).to_bytes(4, "big")
_EMPTY = (0).to_bytes(4, "big")


class CanonicalWriter:
    """Accumulates length-prefixed items; :meth:`getvalue` returns the encoding."""

    __slots__ = ("_buffer",)

    def __init__(self, domain: str) -> None:
        self._buffer = bytearray()
        self.item(domain.encode("ascii"))

    def item(self, data: bytes) -> CanonicalWriter:
        """Append ``u32be(len(data)) || data``.

        Callers enforce the size limits of :mod:`crypto.public.limits` first, so an item
        never approaches 2**32 bytes (``int.to_bytes`` would raise ``OverflowError``).
        """
        self._buffer += len(data).to_bytes(4, "big")
        self._buffer += data
        return self

    def u8(self, value: int) -> CanonicalWriter:
        """Append a one-byte unsigned integer as an item."""
        self._buffer += _LEN_1
        self._buffer += value.to_bytes(1, "big")
        return self

    def u32(self, value: int) -> CanonicalWriter:
        """Append a four-byte big-endian unsigned integer as an item."""
        self._buffer += _LEN_4
        self._buffer += value.to_bytes(4, "big")
        return self

    def u64(self, value: int) -> CanonicalWriter:
        """Append an eight-byte big-endian unsigned integer as an item."""
        self._buffer += _LEN_8
        self._buffer += value.to_bytes(8, "big")
        return self

    def uuid(self, value: UUID) -> CanonicalWriter:
        """Append the 16 bytes of a UUID (RFC 9562 byte order) as an item."""
        self._buffer += _LEN_16
        self._buffer += value.bytes
        return self

    def optional_uuid(self, value: UUID | None) -> CanonicalWriter:
        """Append a UUID, or an empty item when ``value`` is ``None``."""
        if value is None:
            self._buffer += _EMPTY
            return self
        return self.uuid(value)

    def optional_u64(self, value: int | None) -> CanonicalWriter:
        """Append a u64, or an empty item when ``value`` is ``None``."""
        if value is None:
            self._buffer += _EMPTY
            return self
        return self.u64(value)

    def getvalue(self) -> bytes:
        """Return the encoding accumulated so far."""
        return bytes(self._buffer)

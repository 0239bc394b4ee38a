"""The canonical length-prefixed binary encoding used for signed bytes and AEAD data.

Every item is written as a 4-byte big-endian length followed by its bytes; integers are
fixed-width big-endian before being length-prefixed. The structure of each message is
fixed by its domain-separation string (the first item), so the encoding is injective.
See ``crypto/SPEC.md`` section "Canonical encoding".
"""

from __future__ import annotations

from uuid import UUID

__all__ = ["CanonicalWriter"]


class CanonicalWriter:
    """Accumulates length-prefixed items; :meth:`getvalue` returns the encoding."""

    __slots__ = ("_parts",)

    def __init__(self, domain: str) -> None:
        self._parts: list[bytes] = []
        self.item(domain.encode("ascii"))

    def item(self, data: bytes) -> CanonicalWriter:
        """Append ``u32be(len(data)) || data``.

        Callers enforce the size limits of :mod:`crypto.public.limits` first, so an item
        never approaches 2**32 bytes (``int.to_bytes`` would raise ``OverflowError``).
        """
        self._parts.append(len(data).to_bytes(4, "big"))
        self._parts.append(data)
        return self

    def u8(self, value: int) -> CanonicalWriter:
        """Append a one-byte unsigned integer as an item."""
        return self.item(value.to_bytes(1, "big"))

    def u32(self, value: int) -> CanonicalWriter:
        """Append a four-byte big-endian unsigned integer as an item."""
        return self.item(value.to_bytes(4, "big"))

    def u64(self, value: int) -> CanonicalWriter:
        """Append an eight-byte big-endian unsigned integer as an item."""
        return self.item(value.to_bytes(8, "big"))

    def uuid(self, value: UUID) -> CanonicalWriter:
        """Append the 16 bytes of a UUID (RFC 9562 byte order) as an item."""
        return self.item(value.bytes)

    def optional_uuid(self, value: UUID | None) -> CanonicalWriter:
        """Append a UUID, or an empty item when ``value`` is ``None``."""
        return self.item(b"" if value is None else value.bytes)

    def getvalue(self) -> bytes:
        """Return the encoding accumulated so far."""
        return b"".join(self._parts)

"""Opaque keyset-pagination cursors, authenticated so they cannot be forged or moved.

A cursor is ``base64url(seq || tag)`` where ``seq`` is the 8-byte position and ``tag``
a 16-byte keyed digest (:meth:`ServerKeys.cursor_tag`) over the listing's scope (for
example a conversation id) and the position. A cursor made for one listing is refused by any
other; a forged or altered one is refused outright.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import struct

from backend.errors import InvalidCursorError, InvalidInputError
from backend.server_keys import ServerKeys

__all__ = ["decode_cursor", "encode_cursor", "page_before"]

_TAG_BYTES = 16


def _tag(keys: ServerKeys, scope: str, position: int) -> bytes:
    return keys.cursor_tag(f"{scope}:{position}".encode())


def encode_cursor(keys: ServerKeys, scope: str, position: int) -> str:
    """The cursor for ``position`` in the listing named ``scope``."""
    raw = struct.pack(">Q", position) + _tag(keys, scope, position)
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(keys: ServerKeys, scope: str, cursor: str) -> int:
    """The position a cursor names; :class:`InvalidCursorError` unless it is ours and for ``scope``."""
    if len(cursor) != 32:
        raise InvalidCursorError
    try:
        raw = base64.urlsafe_b64decode(cursor + "==")
    except (binascii.Error, ValueError) as exc:
        raise InvalidCursorError from exc
    if len(raw) != 8 + _TAG_BYTES:
        raise InvalidCursorError
    (position,) = struct.unpack(">Q", raw[:8])
    if not hmac.compare_digest(raw[8:], _tag(keys, scope, position)):
        raise InvalidCursorError
    return int(position)


def page_before(keys: ServerKeys, scope: str, cursor: str | None, limit: int, max_page: int) -> int | None:
    """Check a newest-first page request: the position to continue before (None: the start).

    Raises:
        InvalidInputError: ``limit`` is outside 1..``max_page``.
        InvalidCursorError: The cursor is not ours, not for ``scope``, or names no position.
    """
    if not 1 <= limit <= max_page:
        raise InvalidInputError(f"The page size is between 1 and {max_page}.")
    before = None if cursor is None else decode_cursor(keys, scope, cursor)
    if before is not None and before < 1:
        raise InvalidCursorError
    return before

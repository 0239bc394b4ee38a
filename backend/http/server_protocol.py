"""uvicorn's HTTP/1.1 protocol with a deadline for the request head (slow-loris defence).

uvicorn closes idle keep-alive connections, but a client that opens a connection and
sends its request line and headers a byte at a time is never timed out: each byte
resets nothing and the head never completes, so enough such clients hold every file
descriptor the process has. Here the head of each request must be complete within
``header_timeout_s`` of its first byte (or of the connection, for the first request);
otherwise the server answers ``408`` and closes the connection. The body is bounded
separately, by the request deadline in :class:`backend.http.middleware.RequestContextMiddleware`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["HeaderTimeoutProtocol"]

_TIMEOUT_BODY = (
    b'{"type":"urn:confide:problem:request-timeout","title":"Request timeout","status":408,'
    b'"detail":"The request head arrived too slowly."}'
)
_TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/problem+json\r\nconnection: close\r\n"
    + f"content-length: {len(_TIMEOUT_BODY)}\r\n\r\n".encode("ascii")
    + _TIMEOUT_BODY
)


class HeaderTimeoutProtocol(HttpToolsProtocol):
    """:class:`HttpToolsProtocol` that closes connections whose request head is too slow."""

    def __init__(self, *args: Any, header_timeout_s: float = 10.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout_s = header_timeout_s
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start the clock for the first request's head."""
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        """A request starts: its head must be complete in time."""
        self._arm()
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        """The head is complete; the body has its own deadline."""
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the clock."""
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_timed_out)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            # A pipelined head waits while the previous request is answered: not the client's delay.
            self._arm()
            return
        self.transport.write(_TIMEOUT_RESPONSE)
        self.transport.close()

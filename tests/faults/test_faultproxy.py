"""The fault proxy itself, against a loopback echo server: each mode does what it says."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from tests.faultproxy import Fault, FaultProxy, Mode

WITHIN_S = 5.0


@pytest.fixture
async def echo() -> AsyncIterator[tuple[str, int]]:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65_536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[:2]
    finally:
        server.close()


async def _round_trip(
    proxy: FaultProxy, payload: bytes = b"ping"
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection(*proxy.address)
    writer.write(payload)
    async with asyncio.timeout(WITHIN_S):
        assert await reader.readexactly(len(payload)) == payload
    return reader, writer


async def _fresh_read(proxy: FaultProxy, *, send: bool = True) -> bytes:
    """Connect, send a byte, read what comes back (a reset may surface at connect or at read)."""
    reader, writer = await asyncio.open_connection(*proxy.address)
    try:
        if send:  # (a byte sent to a socket the proxy already closed would draw an RST)
            writer.write(b"?")
        async with asyncio.timeout(WITHIN_S):
            return await reader.read(10)
    finally:
        writer.close()


async def test_pass_forwards_both_ways(echo: tuple[str, int]) -> None:
    with FaultProxy(echo) as proxy:
        _, writer = await _round_trip(proxy, b"x" * 200_000)
        writer.close()
        stats = proxy.stats()
    assert stats.accepted == 1
    assert stats.bytes_up == stats.bytes_down == 200_000


async def test_latency_delays_each_answer_and_keeps_order(echo: tuple[str, int]) -> None:
    with FaultProxy(echo) as proxy:
        reader, writer = await _round_trip(proxy)
        proxy.latency(0.3, 0.1)
        started = time.monotonic()
        for n in range(5):
            writer.write(f"<{n}>".encode())
            await writer.drain()
        async with asyncio.timeout(WITHIN_S):
            echoed = await reader.readexactly(15)
        assert echoed == b"<0><1><2><3><4>"
        assert time.monotonic() - started >= 0.2, "delayed by at least latency - jitter"
        proxy.pass_through()
        _, again = await _round_trip(proxy)
        again.close()
        writer.close()


async def test_stall_forwards_nothing_until_lifted(echo: tuple[str, int]) -> None:
    with FaultProxy(echo) as proxy:
        reader, writer = await _round_trip(proxy)
        proxy.stall()
        writer.write(b"held")
        await writer.drain()  # the kernel accepts the bytes
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):
                await reader.read(10)
        # A new connection is accepted but never joined to the upstream while stalled.
        new_reader, new_writer = await asyncio.open_connection(*proxy.address)
        new_writer.write(b"new")
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):
                await new_reader.read(10)
        proxy.pass_through()
        async with asyncio.timeout(WITHIN_S):
            assert await reader.readexactly(4) == b"held"
            assert await new_reader.readexactly(3) == b"new"
        writer.close()
        new_writer.close()


async def test_stall_then_heal_only_new_connections_leaves_the_old_ones_black_holed(
    echo: tuple[str, int],
) -> None:
    with FaultProxy(echo) as proxy:
        reader, writer = await _round_trip(proxy)
        proxy.stall()
        proxy.pass_through(existing=False)
        writer.write(b"lost")
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):
                await reader.read(10)
        _, new_writer = await _round_trip(proxy)
        writer.close()
        new_writer.close()


async def test_reset_sends_rst_on_next_data_and_on_new_connections(echo: tuple[str, int]) -> None:
    with FaultProxy(echo) as proxy:
        reader, writer = await _round_trip(proxy)
        proxy.reset()
        writer.write(b"boom")
        with pytest.raises(ConnectionResetError):
            async with asyncio.timeout(WITHIN_S):
                await reader.read(10)
        with pytest.raises(ConnectionResetError):
            await _fresh_read(proxy)
        assert proxy.stats().resets == 2
        writer.close()


async def test_reset_a_fraction_selects_some_connections_only(echo: tuple[str, int]) -> None:
    with FaultProxy(echo, seed=7) as proxy:
        proxy.reset(0.5)
        outcomes = []
        for _ in range(40):
            try:
                reader, writer = await asyncio.open_connection(*proxy.address)
            except ConnectionResetError:  # reset before the handshake completed on our side
                outcomes.append(False)
                continue
            writer.write(b"?")
            try:
                async with asyncio.timeout(WITHIN_S):
                    outcomes.append(await reader.read(1) == b"?")
            except ConnectionResetError:
                outcomes.append(False)
            writer.close()
    assert 5 < sum(outcomes) < 35, outcomes


async def test_drop_closes_with_fin(echo: tuple[str, int]) -> None:
    with FaultProxy(echo) as proxy:
        reader, writer = await _round_trip(proxy)
        proxy.drop()
        writer.write(b"bye")
        async with asyncio.timeout(WITHIN_S):
            assert await reader.read(10) == b""
        assert await _fresh_read(proxy, send=False) == b""
        assert proxy.stats().drops == 2
        writer.close()


async def test_an_unreachable_upstream_resets_the_client() -> None:
    with FaultProxy("/nonexistent/.s.PGSQL.5432") as proxy:
        with pytest.raises(ConnectionResetError):
            await _fresh_read(proxy)
        assert proxy.stats().upstream_failures == 1


def test_fault_parameters_are_checked() -> None:
    with pytest.raises(ValueError, match="fraction"):
        Fault(Mode.RESET, fraction=1.5)
    with pytest.raises(ValueError, match="jitter"):
        Fault(Mode.LATENCY, latency_s=0.1, jitter_s=0.2)

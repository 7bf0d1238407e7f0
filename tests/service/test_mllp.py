"""The MLLP listener's limits, over real sockets: frames over the size limit, connections that
go quiet (a frame without its end block), too many connections."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from engine.service.mllp import END, START, MllpServer

MESSAGE = b"MSH|^~\\&|A|B|C|D|20260101||ADT^A03|CTRL1|P|2.5\rPID|||1\r"


async def answering(source: str, message: bytes) -> tuple[str, str, int]:
    control = message.split(b"|")[9].decode()
    return "AA", f"MSH|^~\\&|C|D|A|B|20260101||ACK|A{control}|P|2.5\rMSA|AA|{control}", 200


def run(test: Callable[[MllpServer], Awaitable[None]], **limits: float) -> list[str]:
    refused: list[str] = []

    async def note(reason: str) -> None:
        refused.append(reason)

    async def main() -> None:
        server = MllpServer(answering, on_refused=note, **limits)  # type: ignore[arg-type]
        await server.start("127.0.0.1", 0)
        try:
            await test(server)
        finally:
            await server.close()

    asyncio.run(main())
    return refused


async def read_frame(reader: asyncio.StreamReader) -> bytes:
    frame = await asyncio.wait_for(reader.readuntil(END), 5)
    assert frame.startswith(START)
    return frame[1:-2]


def test_messages_are_answered_in_order_on_one_connection() -> None:
    async def test(server: MllpServer) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(START + MESSAGE + END + START + MESSAGE.replace(b"CTRL1", b"CTRL2") + END)
        assert b"MSA|AA|CTRL1" in await read_frame(reader)
        assert b"MSA|AA|CTRL2" in await read_frame(reader)
        writer.close()

    assert run(test) == []


def test_a_frame_over_the_limit_is_refused_unread_and_the_connection_closed() -> None:
    async def test(server: MllpServer) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(START + MESSAGE + b"OBX|1|TX|||" + b"x" * 5000)  # no end block yet
        await writer.drain()
        nak = await read_frame(reader)
        assert b"MSA|AE|CTRL1" in nak and b"mllp_max_frame_bytes" in nak
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed
        writer.close()

    (reason,) = run(test, max_frame_bytes=2048)
    assert "2048 bytes" in reason


def test_a_connection_that_goes_quiet_mid_frame_is_closed() -> None:
    async def test(server: MllpServer) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(START + MESSAGE)  # and never the end block
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()

    run(test, idle_timeout_seconds=0.3)


def test_connections_past_the_limit_are_closed_at_once() -> None:
    async def test(server: MllpServer) -> None:
        kept = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(2)]
        await asyncio.sleep(0.1)
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        assert await asyncio.wait_for(reader.read(), 5) == b""  # the third: closed
        # the first two still work
        first_reader, first_writer = kept[0]
        first_writer.write(START + MESSAGE + END)
        assert b"MSA|AA|CTRL1" in await read_frame(first_reader)
        for _, w in kept:
            w.close()
        writer.close()

    run(test, max_connections=2)

"""An MLLP listener for HL7 v2 (how hospitals send ADT): each message framed as
<VT> message <FS><CR>, answered with an ACK (or NAK) in the same framing. Off unless configured.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger("carepath.mllp")

START, END = b"\x0b", b"\x1c\x0d"

#: message bytes in, ACK text out
Handler = Callable[[bytes], Awaitable[str]]


async def serve_mllp(host: str, port: int, handle: Handler) -> asyncio.Server:
    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        buffer = b""
        try:
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                buffer += chunk
                while True:
                    start = buffer.find(START)
                    end = buffer.find(END, start + 1) if start >= 0 else -1
                    if start < 0 or end < 0:
                        break
                    message, buffer = buffer[start + 1 : end], buffer[end + 2 :]
                    reply = await handle(message)
                    writer.write(START + reply.encode("utf-8") + END)
                    await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(connection, host, port)
    log.info("MLLP listening on %s:%d", host, port)
    return server

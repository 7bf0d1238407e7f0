"""An MLLP listener for HL7 v2 (how hospitals send ADT): each message framed as
<VT> message <FS><CR>, answered with an ACK (or NAK) in the same framing. Off unless configured.

Limits, each a setting: a frame over `max_frame_bytes` is answered `AE` (from its MSH, read in
the first bytes) and the connection closed, the frame unread and kept as a dead letter noting
only its size; a connection that sends nothing for `idle_timeout_seconds` (a frame without its
end block included) is closed; past `max_connections` open connections a new one is closed at
once. Senders reconnect, as MLLP clients do.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger("carepath.mllp")

START, END = b"\x0b", b"\x1c\x0d"

#: (source, message bytes) in, (ACK code, ACK text, HTTP status) out
Handler = Callable[[str, bytes], Awaitable[tuple[str, str, int]]]
#: told why a frame was refused unread
Refused = Callable[[str], Awaitable[None]]


class MllpServer:
    def __init__(
        self,
        handle: Handler,
        *,
        max_frame_bytes: int = 16 * 1024 * 1024,
        idle_timeout_seconds: float = 30.0,
        max_connections: int = 64,
        on_refused: Refused | None = None,
    ) -> None:
        self.handle = handle
        self.max_frame_bytes = max_frame_bytes
        self.idle_timeout_seconds = idle_timeout_seconds
        self.max_connections = max_connections
        self.on_refused = on_refused
        self.server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    async def start(self, host: str, port: int) -> None:
        self.server = await asyncio.start_server(self._connection, host, port)
        log.info("MLLP listening on %s:%d", host, self.port)

    async def close(self) -> None:
        """Stop listening and close every connection (a message being answered is answered
        first: its handler runs to the end)."""
        if self.server is not None:
            self.server.close()
        for writer in list(self._open):
            writer.close()
        if self.server is not None:
            await self.server.wait_closed()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._open) >= self.max_connections:
            log.warning("MLLP: %d connections open (the limit): refusing one", len(self._open))
            writer.close()
            return
        self._open.add(writer)
        buffer = b""
        try:
            while True:
                try:
                    chunk = await asyncio.wait_for(
                        reader.read(65536), timeout=self.idle_timeout_seconds
                    )
                except TimeoutError:
                    if buffer.strip():
                        log.warning("MLLP: a frame without its end block timed out")
                    break
                if not chunk:
                    break
                buffer += chunk
                while True:
                    start = buffer.find(START)
                    end = buffer.find(END, start + 1) if start >= 0 else -1
                    if start < 0 or end < 0:
                        break
                    message, buffer = buffer[start + 1 : end], buffer[end + 2 :]
                    _code, reply, _status = await self.handle("mllp", message)
                    writer.write(START + reply.encode("utf-8") + END)
                    await writer.drain()
                if len(buffer) > self.max_frame_bytes:
                    await self._too_large(buffer, writer)
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._open.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    async def _too_large(self, buffer: bytes, writer: asyncio.StreamWriter) -> None:
        from adapters.inbound import ack

        reason = (
            f"an MLLP frame over {self.max_frame_bytes} bytes (mllp_max_frame_bytes): refused "
            "unread; split the message or raise the limit"
        )
        log.warning("MLLP: %s", reason)
        if self.on_refused is not None:
            await self.on_refused(reason)
        start = buffer.find(START)
        head = buffer[start + 1 : start + 1 + 4096].split(b"\r", 1)[0] if start >= 0 else b""
        with contextlib.suppress(Exception):  # an ACK needs an MSH; without one, just close
            writer.write(START + str(ack(head, "AE", reason)).encode("utf-8") + END)
            await writer.drain()

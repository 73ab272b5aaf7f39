"""A TCP proxy in front of Postgres that counts what clients send, by the wire protocol itself.

Every extended-protocol exchange ends with a Sync message ('S') and every simple query is one Query
message ('Q'): each is one round trip, whatever the driver or the ORM above it does. Independent of
our code on purpose: statement budgets are checked at the wire.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections import Counter
from dataclasses import dataclass, field

SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104
ROUND_TRIP_MESSAGES = (b"S", b"Q")


@dataclass
class WireCounter:
    upstream_host: str
    upstream_port: int
    round_trips: Counter[int] = field(default_factory=Counter)  # per client connection
    queries: list[str] = field(default_factory=list)  # simple-query texts (BEGIN, COMMIT, ...)
    server: asyncio.Server | None = None
    port: int = 0
    _next_id: int = 0

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 2)

    def reset(self) -> None:
        self.round_trips.clear()
        self.queries.clear()

    @property
    def total(self) -> int:
        return sum(self.round_trips.values())

    @property
    def connections(self) -> int:
        return sum(1 for n in self.round_trips.values() if n)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._next_id += 1
        conn_id = self._next_id
        up_reader, up_writer = await asyncio.open_connection(self.upstream_host, self.upstream_port)
        back = asyncio.create_task(_pump(up_reader, writer))
        try:
            await self._startup(reader, writer, up_writer)
            while True:
                kind = await reader.readexactly(1)
                length = struct.unpack("!I", await reader.readexactly(4))[0]
                body = await reader.readexactly(length - 4)
                if kind in ROUND_TRIP_MESSAGES:
                    self.round_trips[conn_id] += 1
                if kind == b"Q":
                    self.queries.append(body.rstrip(b"\0").decode("utf-8", "replace"))
                up_writer.write(kind + struct.pack("!I", length) + body)
                await up_writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            up_writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(back, 2)
            writer.close()

    async def _startup(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, up_writer: asyncio.StreamWriter
    ) -> None:
        """Untyped start-up messages; TLS and GSS requests are declined here, so the rest is readable."""
        while True:
            length = struct.unpack("!I", await reader.readexactly(4))[0]
            body = await reader.readexactly(length - 4)
            code = struct.unpack("!I", body[:4])[0]
            if code in (SSL_REQUEST, GSSENC_REQUEST):
                writer.write(b"N")
                await writer.drain()
                continue
            up_writer.write(struct.pack("!I", length) + body)
            await up_writer.drain()
            return


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, asyncio.CancelledError):
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    writer.close()  # the server hung up: so does the proxy, or the client waits for it

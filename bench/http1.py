"""A lean HTTP/1.1 keep-alive client for load generation on the API's own cores.

httpx spent about 1.5 ms of CPU per request in the soak (0.46 of a core at 300 requests/s, as much
as the API itself), and its time inside the generator's event loop counted as the API's latency.
This client writes a request as one buffer and reads the answer by its Content-Length: what the
API sends (Litestar always gives one; no chunked bodies, no redirects, no compression).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any
from urllib.parse import urlsplit

_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)", re.IGNORECASE)
_CLOSE = re.compile(rb"\r\nconnection:[ \t]*close", re.IGNORECASE)
IDLE_S = 2.0  # dropped before the server's 5 s keep-alive ends it (a request sent then gets no answer)


class ProtocolError(Exception):
    """The answer was not HTTP/1.1 as this client reads it."""


# what a request can fail with: no connection, a reset or an early close, the timeout, an answer this
# client cannot frame (a bad status line is a ValueError)
FAILURES = (OSError, EOFError, TimeoutError, asyncio.LimitOverrunError, ProtocolError, ValueError)


class Connection:
    """One keep-alive connection to `url`, opened on first use and again after a close or failure."""

    def __init__(self, url: str, headers: dict[str, str], timeout: float) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        fixed = {"Host": f"{self.host}:{self.port}", **headers}
        self.fixed = "".join(f"{k}: {v}\r\n" for k, v in fixed.items()).encode()
        self.timeout = timeout
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.used = 0.0

    async def request(self, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
        """(status, body bytes); a transport failure or timeout raises and closes the connection."""
        payload = b"" if body is None else json.dumps(body).encode()
        head = f"{method} {path} HTTP/1.1\r\n".encode() + self.fixed
        if body is not None:
            head += b"Content-Type: application/json\r\n"
        head += b"Content-Length: %d\r\n\r\n" % len(payload)
        try:
            async with asyncio.timeout(self.timeout):
                return await self._exchange(head + payload)
        except (*FAILURES, asyncio.CancelledError):  # a half-read answer must not serve the next request
            self.close()
            raise

    async def _exchange(self, message: bytes) -> tuple[int, bytes]:
        reader, writer = self.reader, self.writer
        if reader is None or writer is None or time.monotonic() - self.used > IDLE_S:
            self.close()
            reader, writer = self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        writer.write(message)
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 ") or len(head) < 12:
            raise ProtocolError(head[:40].decode("latin-1"))
        status = int(head[9:12])
        length = _LENGTH.search(head)
        if length is not None:
            answer = await reader.readexactly(int(length.group(1)))
        elif status in (204, 304):  # no body, whatever the headers say
            answer = b""
        else:
            raise ProtocolError(f"a {status} answer without Content-Length")
        self.used = time.monotonic()
        if _CLOSE.search(head):
            self.close()
        return status, answer

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

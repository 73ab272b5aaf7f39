"""The load generator's HTTP/1.1 client (bench.http1) against a scripted socket server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from bench.http1 import Connection, ProtocolError


@asynccontextmanager
async def scripted(answers: list[bytes]) -> AsyncIterator[tuple[str, list[bytes], list[int]]]:
    """A server that reads one request per answer and sends that answer; b"" closes the connection.
    Yields its URL, the requests it read and how many connections it accepted."""
    requests: list[bytes] = []
    accepted = [0]

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted[0] += 1
        while answers:
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            requests.append(head + await reader.readexactly(length))
            answer = answers.pop(0)
            if not answer:
                break
            writer.write(answer)
            await writer.drain()
            if b"connection: close" in answer.lower():
                break
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", requests, accepted
    finally:
        server.close()
        await server.wait_closed()


OK = b'HTTP/1.1 201 Created\r\ncontent-type: application/json\r\ncontent-length: 12\r\n\r\n{"id":"z-1"}'
NO_CONTENT = b"HTTP/1.1 204 No Content\r\ndate: x\r\n\r\n"


async def test_answers_are_read_by_length_on_one_kept_alive_connection() -> None:
    async with scripted([OK, NO_CONTENT, OK]) as (url, requests, accepted):
        conn = Connection(url, {"Authorization": "Bearer t"}, timeout=5)
        status, body = await conn.request("POST", "/v1/zones", {"name": "a"})
        assert (status, json.loads(body)) == (201, {"id": "z-1"})
        assert await conn.request("DELETE", "/v1/zones/z-1") == (204, b"")
        assert (await conn.request("GET", "/v1/zones/z-1"))[0] == 201
        conn.close()
    assert accepted == [1]
    first = requests[0]
    assert first.startswith(b"POST /v1/zones HTTP/1.1\r\n")
    assert b"\r\nAuthorization: Bearer t\r\n" in first and first.endswith(b'\r\n\r\n{"name": "a"}')
    assert b"Content-Length: 0\r\n" in requests[1]


async def test_a_connection_the_server_closes_is_opened_again() -> None:
    close = OK.replace(b"content-length", b"connection: close\r\ncontent-length")
    async with scripted([close, OK]) as (url, _, accepted):
        conn = Connection(url, {}, timeout=5)
        assert (await conn.request("GET", "/a"))[0] == 201
        assert (await conn.request("GET", "/b"))[0] == 201
        conn.close()
    assert accepted == [2]


async def test_no_answer_raises_and_the_next_request_reconnects() -> None:
    async with scripted([b"", OK]) as (url, _, accepted):
        conn = Connection(url, {}, timeout=5)
        with pytest.raises(asyncio.IncompleteReadError):
            await conn.request("GET", "/a")
        assert (await conn.request("GET", "/b"))[0] == 201
        conn.close()
    assert accepted == [2]


async def test_an_answer_it_cannot_frame_is_a_protocol_error() -> None:
    async with scripted([b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"]) as (url, _, _accepted):
        conn = Connection(url, {}, timeout=5)
        with pytest.raises(ProtocolError):
            await conn.request("GET", "/a")

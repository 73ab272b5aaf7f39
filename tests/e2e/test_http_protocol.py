"""Our uvicorn protocol on the wire: one write per response, and HEAD, 100-continue and pipelining intact."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from caracal_api.__main__ import HeadWithBody
from tests.conftest import recreate_database
from tests.support import ADMIN_TOKEN, Servers, Service, service_env, start_service, wait_ready

pytestmark = pytest.mark.e2e
AUTH = f"Authorization: Bearer {ADMIN_TOKEN}\r\n"


class Recorded:
    """What a transport was asked to write, call by call."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


def test_a_head_waits_for_its_body_and_both_go_out_in_one_write() -> None:
    recorded = Recorded()
    transport = HeadWithBody(recorded)  # type: ignore[arg-type]
    transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    assert recorded.writes == []
    transport.write(b"{}")
    transport.write(b"more")  # a streamed body's next chunk goes straight through
    assert recorded.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}", b"more"]
    assert not transport.is_closing()  # anything else is the transport's own


def test_100_continue_is_never_held_and_a_held_head_goes_out_when_the_transport_closes() -> None:
    recorded = Recorded()
    transport = HeadWithBody(recorded)  # type: ignore[arg-type]
    transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    assert recorded.writes == [b"HTTP/1.1 100 Continue\r\n\r\n"]
    transport.write(b"HTTP/1.1 500 Internal Server Error\r\n\r\n")
    transport.close()
    assert recorded.writes[1:] == [b"HTTP/1.1 500 Internal Server Error\r\n\r\n"]
    assert recorded.closed


@pytest.fixture(scope="module")
async def api(servers: Servers, logdir: Path) -> AsyncIterator[Service]:
    env = service_env(await recreate_database(servers, "e2e_http_protocol"), servers.redis_url)
    service = start_service("api", env | {"CARACAL_API_WORKERS": "1"}, logdir, tag="-protocol")
    try:
        await asyncio.to_thread(wait_ready, service)
        yield service
    finally:
        service.stop()


async def _read_response(reader: asyncio.StreamReader, *, head_only: bool = False) -> tuple[int, str]:
    """One response off the connection: its status and body (by its content-length)."""
    head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)).decode("latin-1")
    status = int(head.split(" ", 2)[1])
    length = re.search(r"(?im)^content-length: (\d+)\r$", head)
    if head_only or status in (100, 204) or length is None:
        return status, ""
    return status, (await asyncio.wait_for(reader.readexactly(int(length.group(1))), 10)).decode()


async def test_pipelined_get_head_and_404_answer_in_order_and_a_head_sends_no_body(api: Service) -> None:
    assert api.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", api.port)
    try:
        writer.write(
            b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n"
            b"HEAD /health HTTP/1.1\r\nHost: t\r\n\r\n"
            + f"GET /v1/zones/zone_missing HTTP/1.1\r\nHost: t\r\n{AUTH}\r\n".encode()
        )
        first = await _read_response(reader)
        second = await _read_response(reader, head_only=True)
        third = await _read_response(reader)
    finally:
        writer.close()
    assert first == (200, json.dumps({"ok": True}, separators=(",", ":")))
    assert second == (405, "")  # HEAD is routed nowhere; its answer has a head and no body bytes
    assert third[0] == 404 and json.loads(third[1])["error"] == "zone_not_found"


async def test_a_post_expecting_100_continue_gets_it_before_sending_its_body(api: Service) -> None:
    assert api.port is not None
    body = b'{"name": "Continued"}'
    reader, writer = await asyncio.open_connection("127.0.0.1", api.port)
    try:
        writer.write(
            b"POST /v1/zones HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            + f"{AUTH}Expect: 100-continue\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        )
        assert (await _read_response(reader))[0] == 100
        writer.write(body)
        status, answer = await _read_response(reader)
    finally:
        writer.close()
    assert status == 201 and json.loads(answer)["name"] == "Continued"

"""A client that leaves before its request's body is read (it timed out while the request queued)
is 499 in the access log, metrics and audit trail, not a 500: nothing failed on our side."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from caracal_api.resources import Resources
from tests.app_pool import bound_app
from tests.integration.api_helpers import count_rows
from tests.support import ADMIN_TOKEN


async def test_a_post_whose_client_left_before_its_body_is_499_and_writes_nothing(
    client: httpx.AsyncClient, resources: Resources, engine: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    """(`client` seeds the admin token; the request goes to the app directly, to disconnect.)"""
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/zones",
        "raw_path": b"/v1/zones",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"caracal.test"),
            (b"authorization", f"Bearer {ADMIN_TOKEN}".encode()),
            (b"content-type", b"application/json"),
            (b"content-length", b"20"),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("caracal.test", 80),
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    zones_before = await count_rows(engine, "zones")
    with caplog.at_level(logging.INFO), bound_app(resources) as app:
        await app(scope, receive, send)
    [start] = [m for m in sent if m["type"] == "http.response.start"]
    assert start["status"] == 499
    access = [r.getMessage() for r in caplog.records if r.name == "caracal.api.access"]
    assert access == ["POST /v1/zones 499 " + access[0].split(" 499 ")[1]]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert await count_rows(engine, "zones") == zones_before

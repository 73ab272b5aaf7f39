"""The soak's delivery verdict reads the whole stream a page at a time, every entry once, in order."""

from __future__ import annotations

import pytest
from bench import traffic
from redis.asyncio import Redis


async def test_the_stream_is_read_whole_across_pages_in_order(
    redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(traffic, "STREAM_PAGE", 10)
    stream = "test.traffic.pages"
    await redis.delete(stream)
    for n in range(25):  # two full pages and a short one; ids share milliseconds, so sequences count
        await redis.xadd(stream, {"n": str(n)})
    entries = await traffic._whole_stream(redis, stream)
    assert [int(fields[b"n"]) for _, fields in entries] == list(range(25))
    await redis.delete(stream)

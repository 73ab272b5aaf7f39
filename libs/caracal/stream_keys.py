"""`caracal keys streams-drained`: whether STREAMS_HMAC_KEY can be switched without a dropped entry.

The Gateway and the STS verify `_sig` with one key and drop (XACK) an entry that does not verify
(CONTRACT.md §5), so entries signed with the old key must all be consumed before the consumers get
the new one. With the dispatchers stopped the outbox holds new events (they are signed when they
are published, so later with the new key); this command says when every consumer group has read
and acknowledged every entry, and which key signed each stream's newest entry.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from caracal.cli import say, settings_or_exit
from caracal.events import CONTRACT_STREAMS, verify


@dataclass(frozen=True, slots=True)
class GroupState:
    """One consumer group of one stream: entries it has not read yet, and read but not acknowledged."""

    stream: str
    group: str
    unread: bool
    pending: int

    @property
    def drained(self) -> bool:
        return not self.unread and self.pending == 0

    def line(self) -> str:
        if self.drained:
            return f"{self.stream}: group {self.group}: drained"
        unread = "entries not read yet, " if self.unread else ""
        waiting = f"{unread}{self.pending} read but not acknowledged"
        return f"{self.stream}: group {self.group}: NOT drained ({waiting})"


async def stream_groups(redis: Redis, stream: str) -> list[GroupState]:
    """Each consumer group's state against the stream's newest entry."""
    if not await redis.exists(stream):
        return []
    info: dict[Any, Any] = await redis.xinfo_stream(stream)
    last = info["last-generated-id"] if info["length"] else None
    groups = await redis.xinfo_groups(stream)
    return [
        GroupState(
            stream,
            _text(g["name"]),
            last is not None and _id(g["last-delivered-id"]) < _id(last),
            g["pending"],
        )
        for g in groups
    ]


async def newest_signed_with(redis: Redis, stream: str, key: bytes | None) -> str:
    """Whether the newest entry verifies under `key` (the STREAMS_HMAC_KEY this command was given)."""
    newest = await redis.xrevrange(stream, count=1)
    if not newest:
        return "no entries"
    fields = {_text(k): _text(v) for k, v in (newest[0][1] or {}).items()}
    if "_sig" not in fields:
        return "newest entry unsigned"
    if key is None:
        return "newest entry signed (no STREAMS_HMAC_KEY given to check it)"
    verdict = "the given" if verify(key, stream, fields) else "ANOTHER"
    return f"newest entry signed with {verdict} STREAMS_HMAC_KEY"


async def drained_report(redis_url: str, key: bytes | None, tell: Callable[[str], None]) -> bool:
    redis = Redis.from_url(redis_url)
    try:
        drained = True
        for stream in CONTRACT_STREAMS:
            groups = await stream_groups(redis, stream)
            tell(f"{stream}: {await newest_signed_with(redis, stream, key)}, {len(groups)} consumer group(s)")
            for group in groups:
                tell(group.line())
                drained = drained and group.drained
        return drained
    finally:
        await redis.aclose()


def streams_drained_main() -> int:
    """0 when every consumer group has consumed every entry, 1 when one has not, 2 when it cannot run."""
    settings = settings_or_exit()
    if not settings.redis_url:
        say("caracal keys streams-drained needs REDIS_URL")
        return 2
    say("checking that every consumer group has read and acknowledged every stream entry")
    try:
        drained = asyncio.run(drained_report(settings.redis_url, settings.streams_hmac_key, say))
    except RedisError as exc:
        say(f"Redis did not answer: {exc}")
        return 2
    if drained:
        say("drained: the consumers may be given the new STREAMS_HMAC_KEY now")
        return 0
    say("not drained: an entry signed with the current key is still to be consumed; wait and run again")
    return 1


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _id(value: Any) -> tuple[int, int]:
    millis, _, seq = _text(value).partition("-")
    return int(millis), int(seq or 0)

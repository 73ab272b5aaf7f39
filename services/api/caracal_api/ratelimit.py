"""Fixed one-minute windows in Redis (the contract's keys); a Redis outage does not block requests."""

from __future__ import annotations

import logging
import time

from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger("caracal.ratelimit")
WINDOW_TTL = 90


def minute_key(prefix: str, subject: str) -> str:
    return f"{prefix}:{subject}:{int(time.time() // 60)}"


async def count_hit(redis: Redis, key: str) -> int:
    """Increment a window's counter; 0 when Redis does not answer (fail open, logged)."""
    try:
        async with redis.pipeline(transaction=False) as pipe:
            pipe.incr(key)
            pipe.expire(key, WINDOW_TTL)  # the key names its minute, so extending the TTL is harmless
            hits, _ = await pipe.execute()
        return int(hits)
    except (RedisError, OSError) as exc:
        log.warning("rate limit not counted, Redis unavailable: %r", exc)
        return 0


async def over_limit(redis: Redis, key: str, limit: int) -> bool:
    return limit > 0 and await count_hit(redis, key) > limit

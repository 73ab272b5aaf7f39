"""Redis on the request path: fixed one-minute windows (the contract's keys) behind a circuit breaker.

A request makes at most one Redis round trip, with tens-of-milliseconds timeouts and no retries; when
Redis fails or hangs, requests go on without limits (fail open) and, once the breaker opens, without
even trying until it lets one probe through.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from caracal.redis_client import connect

log = logging.getLogger("caracal.ratelimit")
WINDOW_TTL = 90
BREAKER_FAILURES = 3
BREAKER_OPEN_S = 5.0


def minute_key(prefix: str, subject: str) -> str:
    return f"{prefix}:{subject}:{int(time.time() // 60)}"


def seconds_left_in_minute() -> int:
    """Retry-After of a one-minute window: until the next calendar minute starts (1..60)."""
    return 60 - int(time.time()) % 60


def request_redis(url: str, timeout_ms: int) -> Redis:
    """A client for the request path only: short timeouts, no retries."""
    timeout = timeout_ms / 1000
    return connect(url, socket_timeout=timeout, socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0))


class CircuitBreaker:
    """Opens after BREAKER_FAILURES failures in a row; after BREAKER_OPEN_S one call probes again."""

    def __init__(self, failures: int = BREAKER_FAILURES, open_s: float = BREAKER_OPEN_S) -> None:
        self.failures_to_open = failures
        self.open_s = open_s
        self.failures = 0
        self.open_until = 0.0

    def allows(self) -> bool:
        now = time.monotonic()
        if self.failures < self.failures_to_open:
            return True
        if now >= self.open_until:
            self.open_until = now + self.open_s  # this call is the probe; the others wait for it
            return True
        return False

    def succeeded(self) -> None:
        self.failures = 0

    def failed(self) -> None:
        self.failures += 1
        if self.failures >= self.failures_to_open:
            self.open_until = time.monotonic() + self.open_s


@dataclass(frozen=True, slots=True)
class Window:
    """One counter: its key and the limit it must stay within (0 = no limit)."""

    key: str
    limit: int


class RequestLimits:
    """Counts windows (and the last-used debounce) in one pipeline; fails open."""

    def __init__(self, redis: Redis, breaker: CircuitBreaker | None = None) -> None:
        self.redis = redis
        self.breaker = breaker or CircuitBreaker()

    async def count(self, windows: Sequence[Window], touch_key: str | None = None) -> tuple[bool, bool]:
        """(whether a window is over its limit, whether `touch_key` was newly set) in one round trip."""
        counted = [w for w in windows if w.limit > 0]
        if not counted and touch_key is None:
            return False, False
        if not self.breaker.allows():
            return False, False
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for window in counted:
                    pipe.incr(window.key)
                    pipe.expire(window.key, WINDOW_TTL)  # the key names its minute: extending is harmless
                if touch_key is not None:
                    pipe.set(touch_key, "1", nx=True, ex=60)
                replies = await pipe.execute()
        except (RedisError, OSError) as exc:
            self.breaker.failed()
            log.warning("request limits not counted, Redis unavailable: %r", exc)
            return False, False
        self.breaker.succeeded()
        over = any(int(replies[2 * i]) > w.limit for i, w in enumerate(counted))
        return over, bool(touch_key is not None and replies[-1])

    async def over(self, key: str, limit: int) -> bool:
        over, _ = await self.count([Window(key, limit)])
        return over

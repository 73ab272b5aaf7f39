"""Admin tokens by SHA-256, cached in process for about a second; revocations are broadcast.

A hit costs no database round trip. A revoked token (or a token of an archived zone) is refused by
this process at once, by every other worker that hears the Redis broadcast within milliseconds, and by
any worker within the TTL when a broadcast is lost.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict

from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncEngine

from caracal.crypto import token_digest
from caracal.db.engine import read_retried
from caracal.domain.admin_tokens import authenticate
from caracal.domain.context import Actor
from caracal.redis_client import learn_slots

log = logging.getLogger("caracal.api.tokens")
CHANNEL = "caracal:admin_tokens:invalidate"
MAX_ENTRIES = 10_000
RESUBSCRIBE_S = 1.0


class TokenCache:
    def __init__(self, engine: AsyncEngine, ttl_s: float, max_entries: int = MAX_ENTRIES) -> None:
        self.engine = engine
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._entries: OrderedDict[bytes, tuple[Actor, float]] = OrderedDict()
        self._lookups: dict[bytes, asyncio.Future[Actor | None]] = {}

    async def actor(self, token: str) -> Actor | None:
        """The token's actor, or None when it is unknown, revoked or of an archived zone."""
        digest = token_digest(token)
        hit = self._entries.get(digest)
        if hit is not None and hit[1] > time.monotonic():
            return hit[0]
        pending = self._lookups.get(digest)
        if pending is not None:  # concurrent misses of one token share one lookup
            return await asyncio.shield(pending)
        future: asyncio.Future[Actor | None] = asyncio.get_running_loop().create_future()
        self._lookups[digest] = future
        try:
            found = await read_retried(self.engine, lambda conn: authenticate(conn, token))
            future.set_result(found)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it, nobody else must be warned
            raise
        finally:
            del self._lookups[digest]
        self._remember(digest, found)
        return found

    def _remember(self, digest: bytes, actor: Actor | None) -> None:
        if actor is None or self.ttl_s <= 0:  # unknown tokens are not cached: a new one works at once
            self._entries.pop(digest, None)
            return
        self._entries[digest] = (actor, time.monotonic() + self.ttl_s)
        self._entries.move_to_end(digest)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def forget(self, message: str) -> None:
        """Apply an invalidation: `token:<id>`, `zone:<id>` (its zone tokens) or `all`."""
        kind, _, ident = message.partition(":")
        for digest, (actor, _) in list(self._entries.items()):
            if (
                kind == "all"
                or (kind == "token" and actor.id == ident)
                or (kind == "zone" and actor.zone_id == ident)
            ):
                del self._entries[digest]


async def announce(redis: Redis, message: str) -> None:
    """Tell every worker of every replica (best effort: the TTL bounds a lost message)."""
    try:
        await redis.publish(CHANNEL, message)
    except (RedisError, OSError) as exc:
        log.warning("token invalidation %r not broadcast (the cache TTL still bounds it): %r", message, exc)


async def listen_for_invalidations(redis: Redis, cache: TokenCache) -> None:
    """Runs for the life of the worker; resubscribes after Redis failures."""
    while True:
        try:
            await learn_slots(redis)
            async with redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                await pubsub.subscribe(CHANNEL)
                cache.forget("all")  # whatever was broadcast while we were not listening
                async for message in pubsub.listen():
                    data = message.get("data")
                    if isinstance(data, bytes):
                        cache.forget(data.decode("utf-8", "replace"))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("token invalidations: subscription lost (%r); retrying", exc, exc_info=True)
        await asyncio.sleep(RESUBSCRIBE_S)

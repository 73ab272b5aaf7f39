"""CONTRACT.md §7.1's windows as we serve them: 429 rate_limited with Retry-After (seconds until the
window's minute ends), per address and per token on /v1, per address on /ready, and 0 turning off."""

from __future__ import annotations

import time

import httpx

from caracal_api.resources import Resources
from tests.integration.api_helpers import app_with
from tests.integration.test_api_auth import same_minute


def _seconds_left() -> int:
    return 60 - int(time.time()) % 60


async def test_v1_requests_over_the_limit_get_429_with_retry_after_until_the_minute_ends(
    client: httpx.AsyncClient, admin: dict[str, str], resources: Resources
) -> None:
    await same_minute()
    async with app_with(resources, peers=("127.0.1.1",), v1_rate_limit_per_min=2) as (http,):
        assert [(await http.get("/v1/zones", headers=admin)).status_code for _ in range(2)] == [200, 200]
        before = _seconds_left()
        limited = await http.get("/v1/zones", headers=admin)
        after = _seconds_left()
    assert (limited.status_code, limited.json()["error"]) == (429, "rate_limited")
    assert after <= int(limited.headers["retry-after"]) <= before


async def test_ready_over_its_limit_gets_429_with_retry_after(resources: Resources) -> None:
    await same_minute()
    async with app_with(resources, peers=("127.0.1.2",), ready_rate_limit_per_min=1) as (http,):
        assert (await http.get("/ready")).status_code == 200
        limited = await http.get("/ready")
    assert (limited.status_code, limited.json()) == (429, {"error": "rate_limited"})
    assert 1 <= int(limited.headers["retry-after"]) <= 60


async def test_limits_of_zero_turn_the_windows_off(
    client: httpx.AsyncClient, admin: dict[str, str], resources: Resources
) -> None:
    """API_V1_RATE_LIMIT_PER_MIN=0 (load tests) and READY_RATE_LIMIT_PER_MIN=0: nothing is counted."""
    async with app_with(
        resources, peers=("127.0.1.3",), v1_rate_limit_per_min=0, ready_rate_limit_per_min=0
    ) as (http,):
        statuses = {(await http.get("/v1/zones", headers=admin)).status_code for _ in range(30)}
        statuses |= {(await http.get("/ready")).status_code for _ in range(30)}
    assert statuses == {200}
    assert await resources.redis.keys("api:v1_rl:*") == []
    assert await resources.redis.keys("api:ready_rl:*") == []


async def test_a_window_is_one_redis_key_per_minute_expiring_within_90_s(
    client: httpx.AsyncClient, admin: dict[str, str], resources: Resources
) -> None:
    """The contract's keys: api:v1_rl:ip:<ip>:<minute> and api:v1_rl:actor:<token id>:<minute>, TTL 90 s."""
    await same_minute()
    async with app_with(resources, peers=("127.0.1.4",), v1_rate_limit_per_min=100) as (http,):
        assert (await http.get("/v1/zones", headers=admin)).status_code == 200
    minute = int(time.time() // 60)
    key = f"api:v1_rl:ip:127.0.1.4:{minute}"
    assert int(await resources.redis.get(key) or 0) == 1
    assert 0 < await resources.redis.ttl(key) <= 90
    actors = await resources.redis.keys(f"api:v1_rl:actor:*:{minute}")
    assert len(actors) == 1

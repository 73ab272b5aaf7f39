"""Forwarded headers and body limits against a real `caracal api` (uvicorn's own header and body
handling is part of what is proved): without TRUST_PROXY no header moves the peer; with it, only the
entry TRUST_PROXY_HOPS from the right counts; no framing trick gets a body past API_BODY_LIMIT_BYTES."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest
import pytest_asyncio
from redis.asyncio import Redis

from caracal.db.engine import plain_url
from tests.conftest import recreate_database
from tests.e2e.nginx import Nginx, start_nginx
from tests.support import ADMIN_TOKEN, Servers, Service, service_env, start_service, wait_ready, with_database

pytestmark = pytest.mark.e2e
BODY_LIMIT = 1024
FAIL_LIMIT = 2
LIMITED = [401, 401, 429, 429]  # two failed authentications a minute, then refused
SPOOFS = (
    {"X-Forwarded-For": "198.51.100.{n}"},
    {"Forwarded": "for=198.51.100.{n}"},
    {"X-Real-IP": "198.51.100.{n}"},
    {"X-Forwarded-For": "127.0.0.{n}, 198.51.100.{n}", "Forwarded": "for=127.0.0.{n}"},
)


@dataclass
class Api:
    service: Service
    database_url: str


async def _api(servers: Servers, logdir: Path, name: str, redis_db: str, **overrides: str) -> Api:
    """`caracal api` on its own database and Redis database (the failed-auth windows are the contract's
    keys, per address and minute: other tests' windows must not count here), both fresh."""
    redis_url = with_database(servers.redis_url, redis_db)
    redis = Redis.from_url(redis_url)
    try:
        await redis.flushdb()
    finally:
        await redis.aclose()
    env = service_env(
        await recreate_database(servers, name),
        redis_url,
        ADMIN_AUTH_FAIL_LIMIT_PER_MIN=str(FAIL_LIMIT),
        API_BODY_LIMIT_BYTES=str(BODY_LIMIT),
        CARACAL_LOCAL_BOOTSTRAP_ENABLED="true",
        **overrides,
    )
    service = start_service("api", env, logdir, tag=f"-{name}")
    await asyncio.to_thread(wait_ready, service)
    return Api(service, env["DATABASE_URL"])


@pytest_asyncio.fixture(scope="module")
async def untrusted(servers: Servers, logdir: Path) -> AsyncIterator[Api]:
    api = await _api(servers, logdir, "e2e_fwd_untrusted", "13")
    yield api
    await asyncio.to_thread(api.service.stop)


@pytest_asyncio.fixture(scope="module")
async def trusted(servers: Servers, logdir: Path) -> AsyncIterator[Api]:
    api = await _api(servers, logdir, "e2e_fwd_trusted", "14", TRUST_PROXY="true", TRUST_PROXY_HOPS="1")
    yield api
    await asyncio.to_thread(api.service.stop)


async def _failed_auths(base_url: str, headers: list[list[tuple[str, str]]]) -> list[int]:
    """One wrong-token request per header list (a list, so a header may appear twice)."""
    statuses = []
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
        for extra in headers:
            sent = httpx.Headers([("Authorization", "Bearer wrong-token"), *extra])
            statuses.append(
                (await client.send(client.build_request("GET", "/v1/zones", headers=sent))).status_code
            )
    return statuses


def _rotating(n: int) -> list[list[tuple[str, str]]]:
    return [[(k, v.format(n=i + 1)) for k, v in SPOOFS[i % len(SPOOFS)].items()] for i in range(n)]


async def _zone_names(api: Api) -> list[str]:
    conn = await asyncpg.connect(plain_url(api.database_url))
    try:
        return [row["name"] for row in await conn.fetch("SELECT name FROM zones ORDER BY name")]
    finally:
        await conn.close()


async def test_forwarded_headers_from_a_loopback_client_leave_the_bootstrap_peer_loopback(
    untrusted: Api,
) -> None:
    """Bootstrap answers loopback peers only: claiming another address in any header changes nothing
    (409: the loopback check passed and a global token exists; 403 would mean the peer moved)."""
    async with httpx.AsyncClient(base_url=untrusted.service.url, timeout=10) as client:
        for headers in _rotating(len(SPOOFS)):
            answer = await client.post("/v1/local/bootstrap", headers=dict(headers))
            assert answer.status_code == 409, (headers, answer.text)
            assert answer.json()["error"] == "bootstrap_already_done"


async def test_rotating_forwarded_headers_do_not_reset_the_failed_auth_limit_without_trust_proxy(
    untrusted: Api,
) -> None:
    assert await _failed_auths(untrusted.service.url, _rotating(4)) == LIMITED


async def _exchange(api: Api, raw: bytes, responses: int) -> list[tuple[int, bytes]]:
    """`raw` written to a fresh connection; up to `responses` answers (fewer if the server closes)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", api.service.port)
    try:
        writer.write(raw)
        await writer.drain()
        answers = []
        for _ in range(responses):
            answer = await asyncio.wait_for(_read_response(reader), 10)
            if answer is None:
                break
            answers.append(answer)
        return answers
    finally:
        writer.close()


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes] | None:
    status_line = await reader.readline()
    if not status_line:
        return None
    headers = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return int(status_line.split()[1]), body


def _post(headers: str, body: bytes) -> bytes:
    head = f"POST /v1/zones HTTP/1.1\r\nHost: caracal\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n"
    return f"{head}Content-Type: application/json\r\n{headers}\r\n".encode() + body


def _chunked(body: bytes, size: int = 256) -> bytes:
    chunks = [body[i : i + size] for i in range(0, len(body), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for chunk in chunks) + b"0\r\n\r\n"


def _big_zone() -> bytes:
    return json.dumps({"name": "n" * 10, "slug": "s" * (BODY_LIMIT * 3)}).encode()


async def test_a_chunked_body_over_the_limit_is_413_and_writes_nothing(untrusted: Api) -> None:
    answers = await _exchange(untrusted, _post("Transfer-Encoding: chunked\r\n", _chunked(_big_zone())), 1)
    assert [status for status, _ in answers] == [413]
    assert json.loads(answers[0][1])["error"] == "payload_too_large"
    assert await _zone_names(untrusted) == []


async def test_a_content_length_over_the_limit_is_refused_before_the_body_is_sent(untrusted: Api) -> None:
    answers = await _exchange(untrusted, _post(f"Content-Length: {BODY_LIMIT * 100}\r\n", b'{"na'), 1)
    assert [status for status, _ in answers] == [413]
    assert await _zone_names(untrusted) == []


async def test_content_length_with_transfer_encoding_is_refused(untrusted: Api) -> None:
    """Both framings at once (the request-smuggling shape): refused, never served by either reading."""
    both = _post("Content-Length: 4\r\nTransfer-Encoding: chunked\r\n", _chunked(_big_zone()))
    answers = await _exchange(untrusted, both, 2)
    assert answers, "the server closed without an answer"
    assert all(400 <= status < 500 for status, _ in answers), answers
    assert await _zone_names(untrusted) == []


async def test_a_short_content_length_serves_only_the_declared_body_and_limits_what_follows(
    untrusted: Api,
) -> None:
    """A Content-Length shorter than what is sent: the declared bytes are the request, and what follows
    is another request held to the same limit (here chunked and too large), or junk answered 400."""
    honest = b'{"name":"first"}'
    smuggled = _post("Transfer-Encoding: chunked\r\n", _chunked(_big_zone()))
    answers = await _exchange(untrusted, _post(f"Content-Length: {len(honest)}\r\n", honest + smuggled), 2)
    assert [status for status, _ in answers] == [201, 413]
    junk = await _exchange(untrusted, _post("Content-Length: 13\r\n", b'{"name":"a"} ' + b"A" * 4000), 2)
    assert [status for status, _ in junk] == [201, 400]
    assert await _zone_names(untrusted) == ["a", "first"]


async def test_behind_one_trusted_proxy_only_the_right_most_entry_counts(trusted: Api) -> None:
    """The proxy appends the peer it saw; entries to its left are the client's claim and rotate freely."""
    claims = [[("X-Forwarded-For", f"198.51.100.{n}, 203.0.113.7")] for n in range(4)]
    assert await _failed_auths(trusted.service.url, claims) == LIMITED
    # a proxy that adds its own header line instead of appending (HAProxy does): the last line is its
    lines = [[("X-Forwarded-For", f"198.51.100.{n}"), ("X-Forwarded-For", "203.0.113.8")] for n in range(4)]
    assert await _failed_auths(trusted.service.url, lines) == LIMITED
    # and the entry is taken: another client behind the proxy has its own budget
    fresh = [[("X-Forwarded-For", "198.51.100.1, 203.0.113.9")]]
    assert await _failed_auths(trusted.service.url, fresh) == [401]


async def test_through_nginx_the_client_cannot_choose_the_address_it_is_limited_by(
    trusted: Api, tmp_path: Path
) -> None:
    """A real hop with the shipped proxy settings: nginx overwrites X-Forwarded-For with its peer."""
    assert trusted.service.port is not None
    nginx: Nginx = await asyncio.to_thread(start_nginx, tmp_path / "nginx", [trusted.service.port])
    try:
        assert await _failed_auths(nginx.url, _rotating(4)) == LIMITED
    finally:
        await asyncio.to_thread(nginx.stop)

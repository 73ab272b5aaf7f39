"""The token exchange against a real HTTPS token endpoint on loopback: guard, client auth, limits."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator
from ipaddress import ip_address
from pathlib import Path

import pytest
import pytest_asyncio

from caracal.errors import CaracalError
from caracal.token_exchange import (
    ExchangeLimits,
    TokenRequest,
    exchange,
    is_public_address,
    parsed_token_response,
)
from tests.token_endpoint import HOST, Reply, TokenEndpoint, token_endpoint


@pytest_asyncio.fixture
async def endpoint(tmp_path: Path) -> AsyncIterator[TokenEndpoint]:
    async with token_endpoint(tmp_path) as found:
        yield found


def limits(endpoint: TokenEndpoint, **changes: object) -> ExchangeLimits:
    values: dict[str, object] = {"allow_loopback": True, "ca_file": endpoint.ca_file, **changes}
    return ExchangeLimits(**values)  # type: ignore[arg-type]


def token_request(
    url: str, method: str = "client_secret_basic", hosts: tuple[str, ...] = (HOST,)
) -> TokenRequest:
    return TokenRequest(
        token_endpoint=url,
        allowed_hosts=hosts,
        form={"grant_type": "authorization_code", "code": "the-code", "code_verifier": "v" * 43},
        client_id="client one",
        client_secret="s3cret:&=",
        client_auth_method=method,
    )


async def refused(request: TokenRequest, lim: ExchangeLimits) -> CaracalError:
    with pytest.raises(CaracalError) as caught:
        await exchange(request, lim)
    return caught.value


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "239.1.1.1",
        "240.0.0.1",
        "255.255.255.255",
        "192.0.2.1",
        "198.18.0.1",
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "fd12::1",
        "ff02::1",
        "ff0e::1",
        "::ffff:10.0.0.1",
        "::ffff:127.0.0.1",
        "2002:0a00:0001::1",
        "64:ff9b::a00:1",
        "2001:db8::1",
    ],
)
def test_non_public_addresses_are_refused(address: str) -> None:
    assert not is_public_address(ip_address(address))


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses_are_accepted(address: str) -> None:
    assert is_public_address(ip_address(address))


def test_loopback_is_accepted_only_when_allowed_and_private_never() -> None:
    assert is_public_address(ip_address("127.0.0.1"), allow_loopback=True)
    assert is_public_address(ip_address("::1"), allow_loopback=True)
    assert not is_public_address(ip_address("10.0.0.1"), allow_loopback=True)


async def test_basic_client_auth_posts_the_form_and_reads_the_tokens(endpoint: TokenEndpoint) -> None:
    endpoint.grant(access_token="at-1", refresh_token="rt-1", expires_in=3600, token_type="Bearer")
    granted = await exchange(token_request(endpoint.url), limits(endpoint))
    assert (granted.access_token, granted.refresh_token, granted.expires_in) == ("at-1", "rt-1", 3600)
    [sent] = endpoint.received
    assert sent.path == "/oauth/token"
    assert sent.form == {
        "grant_type": "authorization_code",
        "code": "the-code",
        "code_verifier": "v" * 43,
        "client_id": "client one",
    }
    user, _, secret = base64.b64decode(sent.headers["authorization"].split(" ", 1)[1]).decode().partition(":")
    assert (user, secret) == ("client%20one", "s3cret%3A%26%3D")
    assert sent.headers["host"] == f"{HOST}:{endpoint.port}"
    assert sent.headers["content-type"] == "application/x-www-form-urlencoded"


async def test_post_client_auth_sends_the_secret_in_the_form(endpoint: TokenEndpoint) -> None:
    endpoint.grant(access_token="at")
    granted = await exchange(token_request(endpoint.url, "client_secret_post"), limits(endpoint))
    assert granted.refresh_token is None and granted.expires_in is None
    [sent] = endpoint.received
    assert sent.form["client_secret"] == "s3cret:&="
    assert "authorization" not in sent.headers


async def test_no_client_auth_sends_only_the_client_id(endpoint: TokenEndpoint) -> None:
    endpoint.grant(access_token="at")
    await exchange(token_request(endpoint.url, "none"), limits(endpoint))
    [sent] = endpoint.received
    assert "client_secret" not in sent.form and "authorization" not in sent.headers
    assert sent.form["client_id"] == "client one"


async def test_loopback_endpoint_is_refused_without_the_test_allowance(endpoint: TokenEndpoint) -> None:
    error = await refused(token_request(endpoint.url), limits(endpoint, allow_loopback=False))
    assert (error.status, error.code) == (400, "provider_token_endpoint_not_allowed")
    assert "127.0.0.1" in str(error.detail)
    assert endpoint.received == []


async def test_a_name_resolving_to_loopback_is_refused(endpoint: TokenEndpoint) -> None:
    """`localhost` goes through the resolver; its addresses are not public."""
    url = f"https://localhost:{endpoint.port}/oauth/token"
    error = await refused(token_request(url, hosts=("localhost",)), limits(endpoint, allow_loopback=False))
    assert error.code == "provider_token_endpoint_not_allowed"
    assert endpoint.received == []


@pytest.mark.parametrize("host", ["10.0.0.7", "::ffff:10.0.0.7", "169.254.169.254"])
async def test_a_host_resolving_to_a_private_address_is_refused_even_with_loopback_allowed(
    endpoint: TokenEndpoint, host: str
) -> None:
    literal = f"[{host}]" if ":" in host else host
    error = await refused(token_request(f"https://{literal}/token", hosts=(host,)), limits(endpoint))
    assert error.code == "provider_token_endpoint_not_allowed"


async def test_a_host_outside_allowed_token_hosts_is_refused_before_any_lookup(
    endpoint: TokenEndpoint,
) -> None:
    error = await refused(token_request(endpoint.url, hosts=("idp.example.com",)), limits(endpoint))
    assert error.code == "provider_token_endpoint_not_allowed"
    assert "allowed_token_hosts" in str(error.detail)
    assert endpoint.received == []


async def test_plain_http_endpoint_is_refused(endpoint: TokenEndpoint) -> None:
    error = await refused(token_request(f"http://{HOST}:{endpoint.port}/t"), limits(endpoint))
    assert error.code == "provider_token_endpoint_not_allowed"


async def test_a_stalled_endpoint_fails_within_the_timeout(endpoint: TokenEndpoint) -> None:
    endpoint.reply = Reply(body=b'{"access_token":"late"}', stall_s=5)
    started = time.monotonic()
    error = await refused(token_request(endpoint.url), limits(endpoint, timeout_s=0.3))
    assert time.monotonic() - started < 2
    assert (error.status, error.code) == (502, "provider_token_exchange_failed")


async def test_a_response_over_the_size_limit_is_invalid(endpoint: TokenEndpoint) -> None:
    padding = "x" * (64 * 1024)
    endpoint.grant(access_token="at", padding=padding)
    error = await refused(token_request(endpoint.url), limits(endpoint))
    assert (error.status, error.code) == (502, "provider_token_response_invalid")


async def test_a_response_just_under_the_limit_is_read(endpoint: TokenEndpoint) -> None:
    endpoint.grant(access_token="at", padding="")
    size = len(endpoint.reply.body)
    endpoint.grant(access_token="at", padding="x" * (64 * 1024 - size))
    assert len(endpoint.reply.body) == 64 * 1024
    assert (await exchange(token_request(endpoint.url), limits(endpoint))).access_token == "at"


@pytest.mark.parametrize(
    "body",
    [
        b"<html>not json</html>",
        b"[]",
        b'{"token_type":"Bearer"}',
        b'{"access_token":""}',
        b'{"access_token":7}',
    ],
)
async def test_unusable_token_responses_are_invalid(endpoint: TokenEndpoint, body: bytes) -> None:
    endpoint.reply = Reply(body=body)
    error = await refused(token_request(endpoint.url), limits(endpoint))
    assert (error.status, error.code) == (502, "provider_token_response_invalid")


async def test_an_error_status_fails_the_exchange_naming_only_the_oauth_error(
    endpoint: TokenEndpoint,
) -> None:
    endpoint.reply = Reply(status=400, body=json.dumps({"error": "invalid_grant", "echo": "s3cret"}).encode())
    error = await refused(token_request(endpoint.url), limits(endpoint))
    assert (error.status, error.code) == (502, "provider_token_exchange_failed")
    assert "invalid_grant" in str(error.detail) and "s3cret" not in str(error.detail)


async def test_redirects_are_not_followed(endpoint: TokenEndpoint) -> None:
    endpoint.reply = Reply(status=302, headers={"Location": "https://169.254.169.254/latest"})
    error = await refused(token_request(endpoint.url), limits(endpoint))
    assert error.code == "provider_token_exchange_failed"
    assert len(endpoint.received) == 1


async def test_an_untrusted_certificate_fails_the_exchange(endpoint: TokenEndpoint) -> None:
    error = await refused(token_request(endpoint.url), limits(endpoint, ca_file=None))
    assert error.code == "provider_token_exchange_failed"


def test_expires_in_is_read_when_positive() -> None:
    assert parsed_token_response(b'{"access_token":"a","expires_in":"60"}').expires_in == 60
    assert parsed_token_response(b'{"access_token":"a","expires_in":0}').expires_in is None
    assert parsed_token_response(b'{"access_token":"a","expires_in":-5}').expires_in is None
    assert parsed_token_response(b'{"access_token":"a","expires_in":true}').expires_in is None
    assert parsed_token_response(b'{"access_token":"a","expires_in":1e300}').expires_in == 10 * 366 * 86400


def test_token_response_repr_hides_the_tokens() -> None:
    granted = parsed_token_response(b'{"access_token":"secret-at","refresh_token":"secret-rt"}')
    assert "secret" not in repr(granted)

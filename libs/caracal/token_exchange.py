"""The one outbound call of the control plane: an OAuth token request to a provider's token endpoint.

A provider's configuration names the URL, so the call is guarded against server-side request forgery:
the host must be one the provider lists in `allowed_token_hosts`, every address it resolves to must be
public, and the connection goes to the address that was checked (a second lookup could answer
differently). No redirect is followed, no proxy from the environment is used, the whole exchange has a
deadline and the response a size limit (CONTRACT.md §4.8).
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network
from urllib.parse import quote, urlsplit, urlunsplit

import certifi
import httpx

from caracal.errors import CaracalError, InvalidInput

TIMEOUT_S = 15.0
MAX_RESPONSE_BYTES = 64 * 1024
MAX_EXPIRES_IN = 10 * 366 * 86400  # a longer lifetime is taken as this one (no timestamp overflow)
_NAT64 = ip_network("64:ff9b::/96")  # the well-known prefix embeds an IPv4 address in its last 32 bits
IPAddress = IPv4Address | IPv6Address


class UpstreamFailed(CaracalError):
    """The provider's token endpoint failed us (no answer, an error status, an unusable body)."""

    status = 502
    title = "Bad Gateway"


@dataclass(frozen=True, slots=True)
class ExchangeLimits:
    """How the exchange may reach out. `allow_loopback` exists for tests (a token endpoint on this
    machine); settings refuse it outside dev mode."""

    timeout_s: float = TIMEOUT_S
    max_response_bytes: int = MAX_RESPONSE_BYTES
    allow_loopback: bool = False
    ca_file: str | None = None


@dataclass(frozen=True, slots=True)
class TokenResponse:
    """What the provider granted; never logged (repr hides the tokens)."""

    access_token: str
    refresh_token: str | None
    expires_in: int | None

    def __repr__(self) -> str:
        return f"TokenResponse(expires_in={self.expires_in})"


@dataclass(frozen=True, slots=True)
class TokenRequest:
    """A token request: the endpoint, the form fields and the client's credentials."""

    token_endpoint: str
    allowed_hosts: tuple[str, ...]
    form: Mapping[str, str]
    client_id: str
    client_secret: str | None
    client_auth_method: str  # client_secret_basic, client_secret_post or none

    def __repr__(self) -> str:
        return f"TokenRequest(token_endpoint={self.token_endpoint!r}, method={self.client_auth_method!r})"


def _embedded_ipv4(address: IPv6Address) -> IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]  # the client's address
    if address in _NAT64:
        return IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def is_public_address(address: IPAddress, *, allow_loopback: bool = False) -> bool:
    """Globally routable unicast: not loopback, private, link-local, shared, reserved, multicast,
    unspecified or documentation space; an IPv6 address embedding an IPv4 one is judged by that one."""
    if isinstance(address, IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            return is_public_address(embedded, allow_loopback=allow_loopback)
    if allow_loopback and address.is_loopback:
        return True
    return address.is_global and not address.is_multicast


def not_allowed(detail: str) -> InvalidInput:
    return InvalidInput("provider_token_endpoint_not_allowed", detail)


def exchange_failed(detail: str) -> UpstreamFailed:
    return UpstreamFailed("provider_token_exchange_failed", detail)


def response_invalid(detail: str) -> UpstreamFailed:
    return UpstreamFailed("provider_token_response_invalid", detail)


def checked_endpoint(url: str, allowed_hosts: tuple[str, ...]) -> tuple[str, int]:
    """(host, port) of an https token endpoint whose host the provider allows."""
    try:
        parts = urlsplit(url)
        host, port = (parts.hostname or "").lower(), parts.port or 443
    except ValueError as exc:
        raise not_allowed(f"token_endpoint is not a URL: {exc}") from exc
    if parts.scheme != "https" or not host or parts.username is not None or parts.password is not None:
        raise not_allowed("token_endpoint must be an https URL without credentials")
    if host not in {allowed.strip().lower() for allowed in allowed_hosts}:
        raise not_allowed(f"host {host!r} is not in the provider's allowed_token_hosts")
    return host, port


async def resolve_public(host: str, port: int, *, allow_loopback: bool = False) -> IPAddress:
    """The address to connect to: the first of the host's addresses, once every one of them is public."""
    try:
        found = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise exchange_failed(f"host {host!r} does not resolve: {exc.strerror or exc}") from exc
    addresses = [ip_address(str(info[4][0]).split("%", 1)[0]) for info in found]
    if not addresses:
        raise exchange_failed(f"host {host!r} has no address")
    refused = [str(a) for a in addresses if not is_public_address(a, allow_loopback=allow_loopback)]
    if refused:
        raise not_allowed(f"host {host!r} resolves to non-public addresses: {', '.join(refused)}")
    return addresses[0]


@lru_cache(maxsize=4)
def tls_context(ca_file: str | None) -> ssl.SSLContext:
    """Certificates are checked against `ca_file` when given, else against certifi's bundle."""
    return ssl.create_default_context(cafile=ca_file or certifi.where())


def _client_auth(request: TokenRequest) -> tuple[dict[str, str], dict[str, str]]:
    """(extra form fields, extra headers) of the client authentication (RFC 6749 §2.3.1)."""
    method, secret = request.client_auth_method, request.client_secret or ""
    if method == "client_secret_basic":
        pair = f"{quote(request.client_id, safe='')}:{quote(secret, safe='')}"
        return {}, {"Authorization": "Basic " + base64.b64encode(pair.encode()).decode()}
    if method == "client_secret_post":
        return {"client_secret": secret}, {}
    return {}, {}


def _pinned_url(url: str, address: IPAddress) -> str:
    """The URL with its host replaced by the checked address (the Host header and TLS keep the name)."""
    parts = urlsplit(url)
    literal = f"[{address}]" if isinstance(address, IPv6Address) else str(address)
    return urlunsplit(("https", f"{literal}:{parts.port or 443}", parts.path or "/", parts.query, ""))


async def exchange(request: TokenRequest, limits: ExchangeLimits = ExchangeLimits()) -> TokenResponse:
    """POST the form to the token endpoint and read the tokens it grants."""
    host, port = checked_endpoint(request.token_endpoint, request.allowed_hosts)
    try:
        async with asyncio.timeout(limits.timeout_s):
            address = await resolve_public(host, port, allow_loopback=limits.allow_loopback)
            status, body = await _post(request, host, port, address, limits)
    except TimeoutError as exc:
        raise exchange_failed(f"the token endpoint did not answer within {limits.timeout_s:g} s") from exc
    if not 200 <= status < 300:
        raise exchange_failed(f"the token endpoint answered {status}{_provider_error(body)}")
    return parsed_token_response(body)


async def _post(
    request: TokenRequest, host: str, port: int, address: IPAddress, limits: ExchangeLimits
) -> tuple[int, bytes]:
    form, headers = _client_auth(request)
    headers |= {"Accept": "application/json", "Host": host if port == 443 else f"{host}:{port}"}
    fields = {**request.form, "client_id": request.client_id, **form}
    async with httpx.AsyncClient(
        verify=tls_context(limits.ca_file), trust_env=False, follow_redirects=False, timeout=limits.timeout_s
    ) as client:
        try:
            async with client.stream(
                "POST",
                _pinned_url(request.token_endpoint, address),
                data=fields,
                headers=headers,
                extensions={"sni_hostname": host},
            ) as response:
                return response.status_code, await _bounded_body(response, limits.max_response_bytes)
        except httpx.HTTPError as exc:
            raise exchange_failed(f"the token endpoint could not be reached: {type(exc).__name__}") from exc


async def _bounded_body(response: httpx.Response, limit: int) -> bytes:
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > limit:
            raise response_invalid(f"the token response is larger than {limit} bytes")
    return bytes(body)


def _provider_error(body: bytes) -> str:
    """The provider's OAuth `error` code, when its body carries one (never anything else of it)."""
    try:
        found = json.loads(body)
    except ValueError:
        return ""
    code = found.get("error") if isinstance(found, dict) else None
    return f" ({code[:100]})" if isinstance(code, str) and code.isascii() and code.isprintable() else ""


def parsed_token_response(body: bytes) -> TokenResponse:
    """The tokens of a successful token response (RFC 6749 §5.1)."""
    try:
        found = json.loads(body)
    except ValueError as exc:
        raise response_invalid("the token response is not JSON") from exc
    if not isinstance(found, dict):
        raise response_invalid("the token response is not a JSON object")
    access, refresh = found.get("access_token"), found.get("refresh_token")
    if not isinstance(access, str) or not access:
        raise response_invalid("the token response has no access_token")
    if refresh is not None and (not isinstance(refresh, str) or not refresh):
        raise response_invalid("the token response's refresh_token is not a string")
    return TokenResponse(access, refresh, _expires_in(found.get("expires_in")))


def _expires_in(value: object) -> int | None:
    """Seconds, when the provider says (some send a numeric string); absent, zero or negative: none."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, int | float) and value > 0:
        return int(min(value, MAX_EXPIRES_IN))
    return None

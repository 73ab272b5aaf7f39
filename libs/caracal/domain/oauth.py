"""The OAuth authorization-code flow of provider grants: authorize URL, state and PKCE, the callback.

Authorize stores the state (with the PKCE verifier and the grant it is for) in Redis for ten minutes;
the callback takes it back exactly once (GETDEL), then exchanges the code at the provider's token
endpoint (caracal.token_exchange) and upserts the grant (caracal.domain.provider_grants).

The callback's state errors, as the contract orders them: a state of the wrong shape is
`invalid_oauth_callback`; a state Redis does not hold is `oauth_state_expired` (expired, used already
or never issued: telling those apart would mean keeping every state forever); a held value that is not
a state record is `oauth_state_invalid`; a state issued for another zone is `oauth_state_mismatch`
(and is spent all the same, so a leaked state cannot be tried elsewhere).
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import secrets
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import msgspec
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncConnection

from caracal.domain.provider_grants import GrantTarget, GrantTokens, require_grantable
from caracal.domain.wire import LenientBody, Name, Resource, Scopes, Timestamp
from caracal.domain.zones import require_live_zone
from caracal.errors import InvalidInput, Unavailable
from caracal.sealing import SealedValueInvalid, ZoneKekMissing, open_secret_config
from caracal.timefmt import iso_ms
from caracal.token_exchange import TokenRequest, TokenResponse

T = TypeVar("T")
STATE_TTL_S = 600
STATE_KEY = "api:provider_oauth_state:"
REDIS_TIMEOUT_S = 1.0
EXCHANGE_AUTH_METHODS = ("client_secret_basic", "client_secret_post", "none")
DETAIL_MAX = 500


class OAuthAuthorize(LenientBody):
    user_id: Name
    resource_id: Name
    provider_id: Name
    scopes: Scopes


class OAuthAuthorization(Resource):
    authorization_url: str
    state: str
    expires_at: Timestamp


class OAuthState(msgspec.Struct):
    """What Redis keeps under the state (the contract's keys)."""

    zone_id: str
    user_id: str
    resource_id: str
    provider_id: str
    scopes: list[str]
    code_verifier: str

    @property
    def target(self) -> GrantTarget:
        return GrantTarget(self.user_id, self.resource_id, self.provider_id, tuple(self.scopes))


class OAuthCallback(msgspec.Struct):
    state: Annotated[str, msgspec.Meta(min_length=32, max_length=256)]
    code: str | None = None
    error: str | None = None
    error_description: str | None = None


@dataclass(frozen=True, slots=True)
class PendingAuthorization:
    authorization: OAuthAuthorization
    record: OAuthState


def random_token() -> str:
    """base64url (unpadded) of 32 random bytes: a state or a PKCE verifier."""
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()


def code_challenge(verifier: str) -> str:
    """The S256 challenge of a PKCE verifier (RFC 7636 §4.2)."""
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def invalid_config(detail: str) -> InvalidInput:
    return InvalidInput("invalid_provider_config", detail)


def _required_text(config: Mapping[str, Any], *keys: str) -> list[str]:
    values = [config.get(key) for key in keys]
    empty = [key for key, value in zip(keys, values, strict=True) if not isinstance(value, str) or not value]
    if empty:
        raise invalid_config(f"the provider's config has no {', '.join(empty)}")
    return [str(value) for value in values]


def authorization_url(config: Mapping[str, Any], state: str, challenge: str) -> str:
    """The provider's authorization endpoint with its authorization_params, then ours (which win)."""
    endpoint, redirect_uri, client_id = _required_text(
        config, "authorization_endpoint", "redirect_uri", "client_id"
    )
    try:
        parts = urlsplit(endpoint)
        valid = parts.scheme == "https" and bool(parts.hostname)
    except ValueError:
        valid = False
    if not valid:
        raise InvalidInput(
            "provider_authorization_endpoint_invalid", "authorization_endpoint is not an https URL"
        )
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    query |= {str(k): str(v) for k, v in (config.get("authorization_params") or {}).items()}
    query |= {"response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri, "state": state}
    scopes = [str(scope) for scope in config.get("scopes") or []]
    if scopes:
        query["scope"] = " ".join(scopes)
    query |= {"code_challenge": challenge, "code_challenge_method": "S256"}
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))


async def prepare_authorization(
    conn: AsyncConnection, zone_id: str, data: OAuthAuthorize
) -> PendingAuthorization:
    """The checks of a new grant, then the URL to send the user to and the state record to keep."""
    await require_live_zone(conn, zone_id)
    target = GrantTarget(data.user_id, data.resource_id, data.provider_id, tuple(data.scopes))
    provider = await require_grantable(conn, zone_id, target)
    state, verifier = random_token(), random_token()
    url = authorization_url(provider.config_json or {}, state, code_challenge(verifier))
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=STATE_TTL_S)
    record = OAuthState(
        zone_id, data.user_id, data.resource_id, data.provider_id, list(data.scopes), verifier
    )
    return PendingAuthorization(OAuthAuthorization(url, state, iso_ms(expires)), record)


async def _redis(operation: Awaitable[T]) -> T:
    """Redis is required here (a state must be kept to be checked): down or slow is a 503, not fail-open."""
    try:
        return await asyncio.wait_for(operation, REDIS_TIMEOUT_S)
    except (RedisError, OSError, TimeoutError) as exc:
        raise Unavailable(
            "redis_unreachable",
            "Redis does not answer, so the OAuth state cannot be kept",
            dependency="redis",
        ) from exc


async def remember_state(redis: Redis, pending: PendingAuthorization) -> OAuthAuthorization:
    key = STATE_KEY + pending.authorization.state
    await _redis(redis.set(key, msgspec.json.encode(pending.record), ex=STATE_TTL_S))
    return pending.authorization


def parse_callback(query: Mapping[str, str | None]) -> OAuthCallback:
    try:
        return msgspec.convert({k: v for k, v in query.items() if v is not None}, OAuthCallback)
    except msgspec.ValidationError as exc:
        raise InvalidInput("invalid_oauth_callback", str(exc)) from exc


async def consume_state(redis: Redis, zone_id: str, callback: OAuthCallback) -> OAuthState:
    """The state's record, taken out of Redis (once), checked to belong to this zone."""
    held = await _redis(redis.getdel(STATE_KEY + callback.state))
    if held is None:
        raise InvalidInput(
            "oauth_state_expired", "the state is unknown: expired, already used or never issued"
        )
    try:
        record = msgspec.json.decode(held, type=OAuthState)
    except msgspec.DecodeError as exc:
        raise InvalidInput("oauth_state_invalid", "the stored state is not a state record") from exc
    if record.zone_id != zone_id:
        raise InvalidInput("oauth_state_mismatch", "the state was issued for another zone")
    return record


def authorization_code(callback: OAuthCallback) -> str:
    """The code the provider sent, unless it reported a refusal."""
    if callback.error is not None:
        reason = (
            f"{callback.error}: {callback.error_description}"
            if callback.error_description
            else callback.error
        )
        raise InvalidInput("provider_oauth_denied", reason[:DETAIL_MAX])
    if not callback.code:
        raise InvalidInput("authorization_code_required", "the callback carries no code")
    return callback.code


def _client_secret(zone_kek: bytes | None, provider: Any) -> str | None:
    if provider.secret_config_ct is None:
        return None
    try:
        opened = open_secret_config(zone_kek, provider.secret_config_ct, provider.secret_config_nonce)
    except ZoneKekMissing as exc:
        raise Unavailable("zone_kek_missing", str(exc)) from exc
    except SealedValueInvalid as exc:
        raise invalid_config("the provider's secrets do not open under ZONE_KEK") from exc
    return opened.get("client_secret")


async def token_request_for(
    conn: AsyncConnection, zone_kek: bytes | None, zone_id: str, record: OAuthState, code: str
) -> TokenRequest:
    """The token request for the code, after the checks of a new grant against today's rows."""
    await require_live_zone(conn, zone_id)
    provider = await require_grantable(conn, zone_id, record.target)
    config: Mapping[str, Any] = provider.config_json or {}
    token_endpoint, redirect_uri, client_id = _required_text(
        config, "token_endpoint", "redirect_uri", "client_id"
    )
    method = config.get("client_auth_method") or "client_secret_basic"
    if method not in EXCHANGE_AUTH_METHODS:
        raise invalid_config(f"client_auth_method {method} cannot exchange an authorization code")
    secret = _client_secret(zone_kek, provider)
    if method != "none" and not secret:
        raise invalid_config(f"client_auth_method {method} needs a client_secret")
    form = {str(k): str(v) for k, v in (config.get("token_params") or {}).items()}
    form |= {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
    form["code_verifier"] = record.code_verifier
    hosts = tuple(str(host) for host in config.get("allowed_token_hosts") or [])
    return TokenRequest(token_endpoint, hosts, form, client_id, secret, method)


def grant_tokens(response: TokenResponse) -> GrantTokens:
    expires_at = None
    if response.expires_in:
        expires_at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=response.expires_in)
    return GrantTokens(response.access_token, response.refresh_token, expires_at)

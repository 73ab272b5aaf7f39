"""The config_json rules of each provider kind (CONTRACT.md §4.4), as a table: keys, field checks, pairings.

`split_config` takes a request's `config_json` and answers the public part (normalised, as stored in
`config_json`) and the secret part (sealed by the caller). Every refusal is 400
`invalid_provider_config` with a message naming the kind and the offending keys.
Pure functions: no I/O, so every rule is unit-tested on its own (tests/unit/test_provider_config.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from caracal.errors import InvalidInput

# A field check: the value as sent -> the value stored (trimmed, lowercased), or ConfigRefused.
FieldCheck = Callable[[str, Any], Any]

_HTTP_TOKEN = re.compile(r"^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$")  # RFC 7230 tchar
_PARAM_NAME = re.compile(r"^[A-Za-z0-9._~-]+$")
_AUTH_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9-]*$")
_HOST = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")
_URI_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*$")

CLIENT_AUTH_METHODS = ("client_secret_basic", "client_secret_post", "private_key_jwt", "none")
TOKEN_PARAMS_RESERVED = frozenset(
    {
        "client_assertion",
        "client_assertion_type",
        "client_id",
        "client_secret",
        "code",
        "code_verifier",
        "grant_type",
        "redirect_uri",
        "refresh_token",
        "scope",
    }
)
AUTHORIZATION_PARAMS_RESERVED = frozenset(
    {
        "client_id",
        "code_challenge",
        "code_challenge_method",
        "redirect_uri",
        "response_type",
        "scope",
        "state",
    }
)


class ConfigRefused(InvalidInput):
    """400 `{"error":"invalid_provider_config","message":...}`."""

    def __init__(self, message: str) -> None:
        super().__init__("invalid_provider_config", message, message=message)


@dataclass(frozen=True, slots=True)
class SplitConfig:
    public: dict[str, Any]
    secrets: dict[str, str]


# --- field checks: each takes the key (for the message) and the value sent ---------------------------


def _text(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigRefused(f"{key} must be a non-empty string")
    if "\x00" in value:  # Postgres JSON cannot hold it: refuse it here rather than as a data error
        raise ConfigRefused(f"{key} must not contain NUL characters")
    return value


def trimmed(key: str, value: Any) -> str:
    return _text(key, value).strip()


def boolean(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigRefused(f"{key} must be true or false")
    return value


def matching(pattern: re.Pattern[str], what: str) -> FieldCheck:
    def check(key: str, value: Any) -> str:
        text = trimmed(key, value)
        if not pattern.match(text):
            raise ConfigRefused(f"{key} must be {what}, got {text!r}")
        return text

    return check


http_token = matching(_HTTP_TOKEN, "an HTTP token (letters, digits and !#$%&'*+-.^_`|~)")
param_name = matching(_PARAM_NAME, "made of letters, digits and . _ ~ -")
auth_scheme = matching(_AUTH_SCHEME, "a letter followed by letters, digits or -")


def one_of(options: Collection[str]) -> FieldCheck:
    def check(key: str, value: Any) -> str:
        if value not in options:
            raise ConfigRefused(f"{key} must be one of {', '.join(options)}")
        return str(value)

    return check


def https_url(*, userinfo: bool) -> FieldCheck:
    def check(key: str, value: Any) -> str:
        url = trimmed(key, value)
        try:
            parts = urlsplit(url)
            host = parts.hostname
        except ValueError:
            host = None
        if host is None or parts.scheme.lower() != "https":
            raise ConfigRefused(f"{key} must be an https:// URL")
        if not userinfo and (parts.username is not None or parts.password is not None):
            raise ConfigRefused(f"{key} must not hold a user name or password")
        return url

    return check


def absolute_uri(key: str, value: Any) -> str:
    uri = trimmed(key, value)
    scheme, colon, rest = uri.partition(":")
    if not colon or not _URI_SCHEME.match(scheme) or not rest or any(c.isspace() for c in uri):
        raise ConfigRefused(f"{key} must be an absolute URI (scheme:...)")
    return uri


def text_list(key: str, value: Any) -> list[str]:
    if not isinstance(value, list) or not value:
        raise ConfigRefused(f"{key} must be a non-empty list of strings")
    return [_text(f"{key}[{i}]", item) for i, item in enumerate(value)]


def host_list(key: str, value: Any) -> list[str]:
    hosts = [item.strip().lower() for item in text_list(key, value)]
    for i, host in enumerate(hosts):
        if not _HOST.match(host) or ".." in host:
            raise ConfigRefused(f"{key}[{i}] must be a host name, got {host!r}")
    return hosts


def params(reserved: frozenset[str]) -> FieldCheck:
    def check(key: str, value: Any) -> dict[str, str]:
        if not isinstance(value, dict):
            raise ConfigRefused(f"{key} must be an object of parameter names to strings")
        taken = sorted(name for name in value if name in reserved)
        if taken:
            raise ConfigRefused(f"{key} must not set reserved parameters: {', '.join(taken)}")
        for name in value:
            if not _PARAM_NAME.match(name):
                raise ConfigRefused(f"{key} name {name!r} must be made of letters, digits and . _ ~ -")
        return {name: trimmed(f"{key}.{name}", v) for name, v in value.items()}

    return check


# --- the kinds ---------------------------------------------------------------------------------------

GENERIC: Mapping[str, FieldCheck] = {
    "auth_scheme": auth_scheme,
    "forward_caracal_identity": boolean,
    "allow_runtime_injection": boolean,
}
OAUTH: Mapping[str, FieldCheck] = {
    **GENERIC,
    "token_endpoint": https_url(userinfo=False),
    "client_id": _text,
    "client_auth_method": one_of(CLIENT_AUTH_METHODS),
    "scopes": text_list,
    "allowed_token_hosts": text_list,
    "token_params": params(TOKEN_PARAMS_RESERVED),
    "auth_header": http_token,
}


@dataclass(frozen=True)
class KindSpec:
    """A kind's public keys (each with its check), its secret keys, and its cross-field rules."""

    public: Mapping[str, FieldCheck]
    secret: tuple[str, ...]
    rules: tuple[Callable[[Draft], None], ...] = ()


@dataclass
class Draft:
    """A config being checked: what the cross-field rules read and normalise."""

    kind: str
    public: dict[str, Any]
    secrets: dict[str, str]
    secrets_required: bool
    stored_secret_keys: frozenset[str] = field(default_factory=frozenset)

    def holds_secret(self, name: str) -> bool:
        """Given now, or (config-only PATCH, no secret sent) already stored."""
        return name in self.secrets or (not self.secrets and name in self.stored_secret_keys)

    def require(self, key: str, why: str) -> None:
        if key not in self.public:
            raise ConfigRefused(f"{self.kind}: {key} is required {why}")

    def forbid(self, keys: Collection[str], why: str) -> None:
        present = sorted(k for k in keys if k in self.public or k in self.secrets)
        if present:
            raise ConfigRefused(f"{self.kind}: {', '.join(present)} not allowed {why}")


def api_key_location(draft: Draft) -> None:
    location = draft.public.setdefault("auth_location", "header")
    if location == "header":
        draft.require("header_name", "when auth_location is header")
    else:
        draft.require("query_param_name", "when auth_location is query")
        draft.forbid(["auth_scheme"], "when auth_location is query")


def required_secret(name: str) -> Callable[[Draft], None]:
    def rule(draft: Draft) -> None:
        if draft.secrets_required and name not in draft.secrets:
            raise ConfigRefused(f"{draft.kind}: secret {name} is required")

    return rule


def oauth_basics(draft: Draft) -> None:
    for key in ("token_endpoint", "client_id", "allowed_token_hosts"):
        draft.require(key, "for OAuth providers")
    draft.public.setdefault("client_auth_method", "client_secret_basic")


def authorization_code_basics(draft: Draft) -> None:
    for key in ("authorization_endpoint", "redirect_uri"):
        draft.require(key, "for the authorization code flow")
    if draft.public["client_auth_method"] == "private_key_jwt":
        raise ConfigRefused(f"{draft.kind}: client_auth_method private_key_jwt is not supported")


def oauth_secret_pairing(draft: Draft) -> None:
    method = draft.public["client_auth_method"]
    if method == "private_key_jwt":
        draft.forbid(["client_secret"], "with private_key_jwt")
        if not draft.holds_secret("private_key"):
            raise ConfigRefused(f"{draft.kind}: secret private_key is required with private_key_jwt")
        return
    draft.forbid(["private_key", "key_id"], f"with client_auth_method {method}")
    if method != "none" and not draft.holds_secret("client_secret"):
        raise ConfigRefused(f"{draft.kind}: secret client_secret is required with {method}")


EMPTY = KindSpec(public={}, secret=())
SPECS: Mapping[str, KindSpec] = {
    "none": EMPTY,
    "caracal_mandate": EMPTY,
    "api_key": KindSpec(
        public={
            **GENERIC,
            "auth_location": one_of(("header", "query")),
            "header_name": http_token,
            "query_param_name": param_name,
        },
        secret=("api_key",),
        rules=(api_key_location, required_secret("api_key")),
    ),
    "bearer_token": KindSpec(
        public={**GENERIC, "allowed_token_hosts": host_list, "auth_header": http_token},
        secret=("bearer_token",),
        rules=(required_secret("bearer_token"),),
    ),
    "oauth2_client_credentials": KindSpec(
        public={**OAUTH, "audience": trimmed, "resource": trimmed, "key_id": trimmed},
        secret=("client_secret", "private_key"),
        rules=(oauth_basics, oauth_secret_pairing),
    ),
    "oauth2_authorization_code": KindSpec(
        public={
            **OAUTH,
            "authorization_endpoint": https_url(userinfo=True),
            "redirect_uri": absolute_uri,
            "authorization_params": params(AUTHORIZATION_PARAMS_RESERVED),
        },
        secret=("client_secret",),
        rules=(oauth_basics, authorization_code_basics, oauth_secret_pairing),
    ),
}
OAUTH_KINDS = frozenset({"oauth2_client_credentials", "oauth2_authorization_code"})


def split_config(
    kind: str,
    config: Mapping[str, Any] | None,
    *,
    secrets_required: bool,
    stored_secret_keys: Collection[str] = (),
) -> SplitConfig:
    """The public and secret parts of `config` for `kind`, checked and normalised.

    `secrets_required` on POST and on a PATCH that sets `kind`; a PATCH of config_json alone passes
    the stored `secret_config_keys`, which satisfy the OAuth secret rules when no secret is sent.
    """
    spec = SPECS[kind]
    config = dict(config or {})
    unknown = sorted(key for key in config if key not in spec.public and key not in spec.secret)
    if unknown:
        allowed = ", ".join((*spec.public, *spec.secret)) or "none (config must be {})"
        raise ConfigRefused(f"{kind}: unknown keys {', '.join(unknown)} (allowed: {allowed})")
    try:
        public = {key: spec.public[key](key, value) for key, value in config.items() if key in spec.public}
        secrets = {key: _text(key, value) for key, value in config.items() if key in spec.secret}
    except ConfigRefused as exc:
        raise ConfigRefused(f"{kind}: {exc.detail}") from None
    draft = Draft(kind, public, secrets, secrets_required, frozenset(stored_secret_keys))
    for rule in spec.rules:
        rule(draft)
    return SplitConfig(draft.public, draft.secrets)

"""The config_json rules of every provider kind (CONTRACT.md §4.4), one case per rule."""

from __future__ import annotations

from typing import Any

import pytest

from caracal.domain.provider_config import ConfigRefused, SplitConfig, split_config

API_KEY = {"header_name": "X-Api-Key", "api_key": "k"}
API_KEY_QUERY = {"auth_location": "query", "query_param_name": "key", "api_key": "k"}
BEARER = {"bearer_token": "t"}
CLIENT_CREDENTIALS = {
    "token_endpoint": "https://idp.example.com/token",
    "client_id": "c",
    "allowed_token_hosts": ["idp.example.com"],
    "client_secret": "s",
}
PRIVATE_KEY_JWT = {**CLIENT_CREDENTIALS, "client_auth_method": "private_key_jwt", "private_key": "pem"}
del PRIVATE_KEY_JWT["client_secret"]
AUTH_CODE = {
    **CLIENT_CREDENTIALS,
    "authorization_endpoint": "https://idp.example.com/authorize",
    "redirect_uri": "https://caracal.example.com/callback",
}


def _with(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    merged = {**base, **changes}
    return {key: value for key, value in merged.items() if value is not ...}


def _refusal(kind: str, config: dict[str, Any], **kwargs: Any) -> str:
    with pytest.raises(ConfigRefused) as caught:
        split_config(kind, config, secrets_required=kwargs.pop("secrets_required", True), **kwargs)
    error = caught.value
    assert (error.status, error.code) == (400, "invalid_provider_config")
    assert error.extra == {"message": error.detail}
    return str(error.detail)


# (kind, config, words the message must hold): every refusal rule of the contract's table.
REFUSALS = {
    "none_config_must_be_empty": ("none", {"a": 1}, "none: unknown keys a"),
    "mandate_config_must_be_empty": ("caracal_mandate", {"x": 1, "b": 2}, "unknown keys b, x"),
    "unknown_keys_are_listed": ("api_key", _with(API_KEY, foo=1, bar=2), "unknown keys bar, foo"),
    "another_kinds_secret_is_unknown": ("bearer_token", _with(BEARER, api_key="k"), "unknown keys api_key"),
    "api_key_location_is_header_or_query": ("api_key", _with(API_KEY, auth_location="body"), "auth_location"),
    "api_key_header_needs_header_name": ("api_key", {"api_key": "k"}, "header_name is required"),
    "api_key_header_name_is_a_token": ("api_key", _with(API_KEY, header_name="X Key"), "header_name"),
    "api_key_header_name_not_empty": ("api_key", _with(API_KEY, header_name="  "), "header_name"),
    "api_key_query_needs_param_name": (
        "api_key",
        _with(API_KEY_QUERY, query_param_name=...),
        "query_param_name is required",
    ),
    "api_key_query_param_name_chars": (
        "api_key",
        _with(API_KEY_QUERY, query_param_name="a&b"),
        "query_param",
    ),
    "api_key_query_forbids_auth_scheme": (
        "api_key",
        _with(API_KEY_QUERY, auth_scheme="Bearer"),
        "auth_scheme not allowed when auth_location is query",
    ),
    "api_key_secret_required": ("api_key", {"header_name": "X-Key"}, "secret api_key is required"),
    "secret_value_non_empty_string": ("api_key", _with(API_KEY, api_key=""), "api_key must be a non-empty"),
    "secret_value_is_a_string": ("api_key", _with(API_KEY, api_key=7), "api_key must be a non-empty string"),
    "auth_scheme_pattern": ("api_key", _with(API_KEY, auth_scheme="1Bearer"), "auth_scheme"),
    "forward_identity_boolean": ("api_key", _with(API_KEY, forward_caracal_identity="yes"), "true or false"),
    "runtime_injection_boolean": ("bearer_token", _with(BEARER, allow_runtime_injection=1), "true or false"),
    "bearer_secret_required": ("bearer_token", {}, "secret bearer_token is required"),
    "bearer_hosts_non_empty_list": ("bearer_token", _with(BEARER, allowed_token_hosts=[]), "non-empty list"),
    "bearer_hosts_are_hosts": ("bearer_token", _with(BEARER, allowed_token_hosts=["a/b"]), "host name"),
    "bearer_hosts_no_double_dot": ("bearer_token", _with(BEARER, allowed_token_hosts=["a..b"]), "host name"),
    "bearer_hosts_no_leading_dot": ("bearer_token", _with(BEARER, allowed_token_hosts=[".a"]), "host name"),
    "bearer_auth_header_is_a_token": ("bearer_token", _with(BEARER, auth_header="X:Y"), "auth_header"),
    "oauth_token_endpoint_required": (
        "oauth2_client_credentials",
        _with(CLIENT_CREDENTIALS, token_endpoint=...),
        "token_endpoint is required",
    ),
    "oauth_token_endpoint_https": (
        "oauth2_client_credentials",
        _with(CLIENT_CREDENTIALS, token_endpoint="http://idp.example.com/token"),
        "token_endpoint must be an https:// URL",
    ),
    "oauth_token_endpoint_a_url": (
        "oauth2_client_credentials",
        _with(CLIENT_CREDENTIALS, token_endpoint="not a url"),
        "token_endpoint must be an https:// URL",
    ),
    "oauth_token_endpoint_no_userinfo": (
        "oauth2_client_credentials",
        _with(CLIENT_CREDENTIALS, token_endpoint="https://u:p@idp.example.com/token"),
        "user name or password",
    ),
    "oauth_client_id_required": (
        "oauth2_client_credentials",
        _with(CLIENT_CREDENTIALS, client_id=...),
        "client_id is required",
    ),
    "oauth_client_id_non_empty": (
        "oauth2_client_credentials",
        _with(CLIENT_CREDENTIALS, client_id=" "),
        "client_id must be a non-empty string",
    ),
    "oauth_hosts_required": (
        "oauth2_client_credentials",
        _with(CLIENT_CREDENTIALS, allowed_token_hosts=...),
        "allowed_token_hosts is required",
    ),
    "oauth_hosts_non_empty": (
        "oauth2_client_credentials",
        _with(CLIENT_CREDENTIALS, allowed_token_hosts=[]),
        "allowed_token_hosts must be a non-empty list",
    ),
    "oauth_hosts_non_empty_strings": (
        "oauth2_client_credentials",
        _with(CLIENT_CREDENTIALS, allowed_token_hosts=[""]),
        "allowed_token_hosts[0] must be a non-empty string",
    ),
    "oauth_client_id_no_nul": (
        "oauth2_client_credentials",
        _with(CLIENT_CREDENTIALS, client_id="a\x00b"),
        "client_id must not contain NUL",
    ),
    "oauth_scopes_non_empty": (
        "oauth2_client_credentials",
        _with(CLIENT_CREDENTIALS, scopes=[]),
        "scopes must be a non-empty list",
    ),
    "oauth_scopes_strings": (
        "oauth2_client_credentials",
        _with(CLIENT_CREDENTIALS, scopes=["a", 3]),
        "scopes[1] must be a non-empty string",
    ),
    "oauth_token_params_object": (
        "oauth2_client_credentials",
        _with(CLIENT_CREDENTIALS, token_params=["a"]),
        "token_params must be an object",
    ),
    "oauth_token_params_names": (
        "oauth2_client_credentials",
        _with(CLIENT_CREDENTIALS, token_params={"a b": "x"}),
        "token_params name 'a b'",
    ),
    "oauth_token_params_values": (
        "oauth2_client_credentials",
        _with(CLIENT_CREDENTIALS, token_params={"a": " "}),
        "token_params.a must be a non-empty string",
    ),
    "oauth_token_params_reserved": (
        "oauth2_client_credentials",
        _with(CLIENT_CREDENTIALS, token_params={"scope": "x", "grant_type": "y", "ok": "z"}),
        "reserved parameters: grant_type, scope",
    ),
    "oauth_client_auth_method_enum": (
        "oauth2_client_credentials",
        _with(CLIENT_CREDENTIALS, client_auth_method="mtls"),
        "client_auth_method must be one of",
    ),
    "oauth_audience_non_empty": (
        "oauth2_client_credentials",
        _with(CLIENT_CREDENTIALS, audience=""),
        "audience must be a non-empty string",
    ),
    "oauth_resource_non_empty": (
        "oauth2_client_credentials",
        _with(CLIENT_CREDENTIALS, resource=" "),
        "resource must be a non-empty string",
    ),
    "oauth_auth_header_token": (
        "oauth2_client_credentials",
        _with(CLIENT_CREDENTIALS, auth_header="X Y"),
        "auth_header must be an HTTP token",
    ),
    "oauth_client_secret_required": (
        "oauth2_client_credentials",
        _with(CLIENT_CREDENTIALS, client_secret=...),
        "secret client_secret is required with client_secret_basic",
    ),
    "oauth_post_needs_client_secret": (
        "oauth2_client_credentials",
        _with(CLIENT_CREDENTIALS, client_secret=..., client_auth_method="client_secret_post"),
        "secret client_secret is required with client_secret_post",
    ),
    "oauth_private_key_forbidden_without_jwt": (
        "oauth2_client_credentials",
        _with(CLIENT_CREDENTIALS, private_key="pem"),
        "private_key not allowed with client_auth_method client_secret_basic",
    ),
    "oauth_key_id_forbidden_without_jwt": (
        "oauth2_client_credentials",
        _with(CLIENT_CREDENTIALS, key_id="k1"),
        "key_id not allowed",
    ),
    "oauth_jwt_forbids_client_secret": (
        "oauth2_client_credentials",
        _with(PRIVATE_KEY_JWT, client_secret="s"),
        "client_secret not allowed with private_key_jwt",
    ),
    "oauth_jwt_needs_private_key": (
        "oauth2_client_credentials",
        _with(PRIVATE_KEY_JWT, private_key=...),
        "secret private_key is required with private_key_jwt",
    ),
    "auth_code_endpoint_required": (
        "oauth2_authorization_code",
        _with(AUTH_CODE, authorization_endpoint=...),
        "authorization_endpoint is required",
    ),
    "auth_code_endpoint_https": (
        "oauth2_authorization_code",
        _with(AUTH_CODE, authorization_endpoint="http://idp.example.com/a"),
        "authorization_endpoint must be an https:// URL",
    ),
    "auth_code_redirect_required": (
        "oauth2_authorization_code",
        _with(AUTH_CODE, redirect_uri=...),
        "redirect_uri is required",
    ),
    "auth_code_redirect_absolute": (
        "oauth2_authorization_code",
        _with(AUTH_CODE, redirect_uri="/callback"),
        "redirect_uri must be an absolute URI",
    ),
    "auth_code_no_private_key_jwt": (
        "oauth2_authorization_code",
        _with(AUTH_CODE, client_auth_method="private_key_jwt", client_secret=...),
        "private_key_jwt is not supported",
    ),
    "auth_code_private_key_unknown": (
        "oauth2_authorization_code",
        _with(AUTH_CODE, private_key="pem"),
        "unknown keys private_key",
    ),
    "auth_code_key_id_unknown": (
        "oauth2_authorization_code",
        _with(AUTH_CODE, key_id="k"),
        "unknown keys key_id",
    ),
    "auth_code_authorization_params_reserved": (
        "oauth2_authorization_code",
        _with(AUTH_CODE, authorization_params={"state": "x", "code_challenge": "y", "prompt": "z"}),
        "authorization_params must not set reserved parameters: code_challenge, state",
    ),
    "auth_code_authorization_params_values": (
        "oauth2_authorization_code",
        _with(AUTH_CODE, authorization_params={"prompt": 1}),
        "authorization_params.prompt must be a non-empty string",
    ),
    "auth_code_secret_required": (
        "oauth2_authorization_code",
        _with(AUTH_CODE, client_secret=...),
        "secret client_secret is required",
    ),
}


@pytest.mark.parametrize(("kind", "config", "words"), list(REFUSALS.values()), ids=list(REFUSALS))
def test_a_broken_rule_is_invalid_provider_config_naming_what_is_wrong(
    kind: str, config: dict[str, Any], words: str
) -> None:
    message = _refusal(kind, config)
    assert words in message
    assert message.startswith(f"{kind}: ")


def test_secret_values_never_appear_in_a_refusal_message() -> None:
    message = _refusal("api_key", {"api_key": "sk-very-secret", "header_name": "bad header"})
    assert "sk-very-secret" not in message


@pytest.mark.parametrize("kind", ["none", "caracal_mandate"])
def test_credential_less_kinds_take_an_empty_or_absent_config(kind: str) -> None:
    assert split_config(kind, {}, secrets_required=True) == SplitConfig({}, {})
    assert split_config(kind, None, secrets_required=True) == SplitConfig({}, {})


def test_api_key_location_defaults_to_header_and_values_are_trimmed() -> None:
    split = split_config("api_key", {"header_name": " X-Api-Key ", "api_key": "k"}, secrets_required=True)
    assert split.public == {"header_name": "X-Api-Key", "auth_location": "header"}
    assert split.secrets == {"api_key": "k"}


def test_api_key_in_the_query_is_accepted_with_its_parameter_name() -> None:
    split = split_config(
        "api_key", {**API_KEY_QUERY, "query_param_name": " api.key~ "}, secrets_required=True
    )
    assert split.public == {"auth_location": "query", "query_param_name": "api.key~"}


def test_bearer_hosts_are_trimmed_and_lowercased() -> None:
    config = {**BEARER, "allowed_token_hosts": [" API.Example.COM "], "auth_header": "X-Token"}
    split = split_config("bearer_token", config, secrets_required=True)
    assert split.public == {"allowed_token_hosts": ["api.example.com"], "auth_header": "X-Token"}


def test_oauth_client_auth_method_defaults_to_basic_and_optional_values_are_trimmed() -> None:
    config = {**CLIENT_CREDENTIALS, "audience": " api ", "token_params": {"tenant": " t1 "}}
    split = split_config("oauth2_client_credentials", config, secrets_required=True)
    assert split.public["client_auth_method"] == "client_secret_basic"
    assert (split.public["audience"], split.public["token_params"]) == ("api", {"tenant": "t1"})
    assert split.secrets == {"client_secret": "s"}


def test_private_key_jwt_takes_a_private_key_and_key_id() -> None:
    split = split_config(
        "oauth2_client_credentials", {**PRIVATE_KEY_JWT, "key_id": "k1"}, secrets_required=True
    )
    assert split.secrets == {"private_key": "pem"}
    assert split.public["key_id"] == "k1"


def test_oauth_method_none_needs_no_secret() -> None:
    config = _with(CLIENT_CREDENTIALS, client_secret=..., client_auth_method="none")
    assert split_config("oauth2_client_credentials", config, secrets_required=True).secrets == {}


def test_authorization_code_accepts_the_full_key_set() -> None:
    config = {
        **AUTH_CODE,
        "client_auth_method": "client_secret_post",
        "scopes": ["openid"],
        "authorization_params": {"prompt": "consent"},
        "auth_header": "Authorization",
        "auth_scheme": "Bearer",
        "forward_caracal_identity": True,
        "allow_runtime_injection": False,
        "redirect_uri": "urn:ietf:wg:oauth:2.0:oob",
    }
    split = split_config("oauth2_authorization_code", config, secrets_required=True)
    assert set(split.public) == set(config) - {"client_secret"}


def test_config_only_patch_needs_no_api_key_or_bearer_secret() -> None:
    """Without `kind`, a PATCH keeps the stored secrets: the non-OAuth kinds do not ask for them."""
    assert split_config("api_key", {"header_name": "X-Key"}, secrets_required=False).secrets == {}
    assert split_config("bearer_token", {}, secrets_required=False).secrets == {}


def test_config_only_patch_of_an_oauth_kind_may_rely_on_the_stored_secret() -> None:
    config = _with(CLIENT_CREDENTIALS, client_secret=...)
    split = split_config(
        "oauth2_client_credentials", config, secrets_required=False, stored_secret_keys=["client_secret"]
    )
    assert split.secrets == {}


def test_config_only_patch_of_an_oauth_kind_without_the_stored_secret_is_refused() -> None:
    """Moving to private_key_jwt needs a private_key: the stored client_secret does not count."""
    message = _refusal(
        "oauth2_client_credentials",
        _with(PRIVATE_KEY_JWT, private_key=...),
        secrets_required=False,
        stored_secret_keys=["client_secret"],
    )
    assert "secret private_key is required" in message


def test_config_only_patch_may_keep_a_stored_private_key() -> None:
    split = split_config(
        "oauth2_client_credentials",
        _with(PRIVATE_KEY_JWT, private_key=...),
        secrets_required=False,
        stored_secret_keys=["private_key"],
    )
    assert split.secrets == {}

"""The resource rules decided without a database: identifiers, upstream URLs, the Gateway's three fields."""

from __future__ import annotations

import pytest

from caracal.domain.resource_rules import (
    ResourceRules,
    check_binding,
    check_identifier,
    check_upstream_url,
    default_identifier,
)
from caracal.errors import InvalidInput
from caracal.settings import Settings

RULES = ResourceRules(control_audience="caracal-control", max_per_zone=10)


@pytest.mark.parametrize(
    ("name", "identifier"),
    [
        ("Orders API", "resource://orders-api"),
        ("--Team 42--", "resource://team-42"),
        ("a_b.c/d", "resource://a-b-c-d"),
        ("!!!", "resource://resource"),
        ("   ", "resource://resource"),
        ("resource://Keep Me", "resource://Keep Me"),
        (" resource://x ", "resource://x"),
        ("Resource://not-prefix", "resource://resource-not-prefix"),
    ],
)
def test_default_identifier_is_the_resource_scheme_and_the_names_slug(name: str, identifier: str) -> None:
    """resource:// + slug(trimmed name), or the trimmed name when it starts with resource:// already."""
    assert default_identifier(name) == identifier


@pytest.mark.parametrize(
    "identifier",
    [
        "resource://orders",
        "https://api.example.com/v1?x=1#f",
        "urn:caracal:orders",
        "a:",
        "https://[2001:db8::1]:8443/",
        "resource://@host",  # an empty username is no credential
        "caracal-control",  # the control audience is valid whatever it looks like
    ],
)
def test_identifier_accepts_absolute_urls_and_the_control_audience(identifier: str) -> None:
    check_identifier(identifier, RULES)


@pytest.mark.parametrize(
    ("identifier", "message"),
    [
        ("orders", "absolute URL"),
        ("1http://x", "absolute URL"),
        ("//host/path", "absolute URL"),
        ("http://", "absolute URL"),
        ("https://exa mple.com", "absolute URL"),
        ("resource://tab\there", "absolute URL"),
        (" resource://leading-space", "absolute URL"),
        ("https://h:port", "absolute URL"),
        ("https://h:70000", "absolute URL"),
        ("https://[not-v6]/", "absolute URL"),
        ("https://a<b/", "absolute URL"),
        ("provider://orders", "provider:"),
        ("Provider:orders", "provider:"),
        ("https://user@api.example.com", "username or password"),
        ("https://:secret@api.example.com", "username or password"),
        ("resource://" + "é" * 1100, "at most 2048 bytes"),
    ],
)
def test_identifier_refusals_say_why(identifier: str, message: str) -> None:
    """400 invalid_resource_identifier with a `message` member naming the broken rule."""
    with pytest.raises(InvalidInput) as refused:
        check_identifier(identifier, RULES)
    assert refused.value.code == "invalid_resource_identifier"
    assert message in refused.value.extra["message"]


@pytest.mark.parametrize(
    "url", [None, "http://upstream", "https://upstream.example.com:8443/base?q=1", "HTTPS://X"]
)
def test_upstream_url_accepts_absolute_http_and_https(url: str | None) -> None:
    check_upstream_url(url)


@pytest.mark.parametrize(
    "url", ["not a url", "", "upstream.example.com", "ftp://files", "https://", "https://a b", "mailto:x@y"]
)
def test_upstream_url_refuses_anything_else_as_invalid_resource(url: str) -> None:
    """A string that is no URL at all is a 400 like a wrong scheme (the original crashed with a 500)."""
    with pytest.raises(InvalidInput) as refused:
        check_upstream_url(url)
    assert refused.value.code == "invalid_resource"


@pytest.mark.parametrize(
    ("provider", "upstream", "application", "code"),
    [
        (None, None, None, "credential_provider_required"),
        ("", "https://u", "app", "credential_provider_required"),
        ("p", None, None, "upstream_url_required"),
        ("p", "", "app", "upstream_url_required"),
        ("p", "https://u", None, "gateway_application_required"),
        ("p", "https://u", "", "gateway_application_required"),
    ],
)
def test_binding_needs_provider_then_upstream_then_application(
    provider: str | None, upstream: str | None, application: str | None, code: str
) -> None:
    with pytest.raises(InvalidInput) as refused:
        check_binding(provider, upstream, application)
    assert refused.value.code == code
    check_binding("p", "https://u", "app")


def test_rules_follow_the_settings_and_only_manage_opens_the_control_resource() -> None:
    """CONTROL_AUDIENCE names the control resource; the header's one value `manage` opens it."""
    settings = Settings(control_audience="ctl", max_resources_per_zone=7)
    assert ResourceRules.of(settings, "manage") == ResourceRules("ctl", 7, manage_control=True)
    for header in (None, "", "Manage", "manage "):
        assert ResourceRules.of(settings, header).manage_control is False
    assert ResourceRules.of(settings, None).is_control("ctl")
    assert not ResourceRules.of(settings, None).is_control("caracal-control")

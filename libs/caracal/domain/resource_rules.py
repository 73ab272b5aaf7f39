"""What a resource's fields must be (CONTRACT.md §4.3, §7.2), decided without the database."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

from caracal.domain.zones import slugify
from caracal.errors import InvalidInput
from caracal.settings import Settings

CONTROL_HEADER = "x-caracal-control-resource"
CONTROL_HEADER_MANAGE = "manage"
IDENTIFIER_PREFIX = "resource://"
# The contract sets no limit, but (zone_id, identifier) is a btree key, whose entries cannot pass
# ~2700 bytes; a longer identifier would fail in the index as a 500.
IDENTIFIER_MAX_BYTES = 2048
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:")
# Schemes whose URLs must name a host (the WHATWG URL standard's "special" schemes but file).
_HOSTED = frozenset({"http", "https", "ws", "wss", "ftp"})
_FORBIDDEN_HOST = frozenset(" #%/:<>?@[\\]^|")
# An identifier is an audience the Gateway and STS compare byte for byte: whitespace or control
# characters (which a browser URL parser would strip or encode) could never be matched, so refuse them.
_UNPRINTABLE = re.compile(r"[\x00-\x20\x7f]")


@dataclass(frozen=True, slots=True)
class ResourceRules:
    """What a request may do with resources: the control audience, the quota, and the request's
    `x-caracal-control-resource: manage` header."""

    control_audience: str
    max_per_zone: int  # 0: no quota
    manage_control: bool = False

    @classmethod
    def of(cls, settings: Settings, control_header: str | None) -> ResourceRules:
        manage = control_header == CONTROL_HEADER_MANAGE
        return cls(settings.control_audience, settings.max_resources_per_zone, manage)

    def is_control(self, identifier: str) -> bool:
        return identifier == self.control_audience


def invalid(detail: str) -> InvalidInput:
    return InvalidInput("invalid_resource", detail)


def invalid_identifier(message: str) -> InvalidInput:
    return InvalidInput("invalid_resource_identifier", message, message=message)


def default_identifier(name: str) -> str:
    """`resource://` + slug(name) (or the trimmed name when it is one already); collisions are the
    caller's (`first_free`)."""
    trimmed = name.strip()
    if trimmed.startswith(IDENTIFIER_PREFIX):
        return trimmed
    return IDENTIFIER_PREFIX + slugify(trimmed, "resource")


def _host_is_valid(parts: SplitResult) -> bool:
    host = parts.hostname
    if not host:
        return False
    if parts.netloc.rsplit("@", 1)[-1].startswith("["):
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return False
        return True
    return not _FORBIDDEN_HOST & set(host)


def absolute_url(value: str) -> SplitResult | None:
    """The parts of an absolute URL; None for anything else (a relative or malformed one)."""
    if _UNPRINTABLE.search(value) or not _SCHEME.match(value):
        return None
    try:
        parts = urlsplit(value)
        _ = parts.port  # a port that is not a number or exceeds 65535 fails here
    except ValueError:
        return None
    if parts.scheme.lower() in _HOSTED and not _host_is_valid(parts):
        return None
    return parts


def check_upstream_url(value: str | None) -> None:
    if value is None:
        return
    parts = absolute_url(value)
    if parts is None or parts.scheme.lower() not in ("http", "https"):
        raise invalid("upstream_url must be an absolute http or https URL")


def check_identifier(identifier: str, rules: ResourceRules) -> None:
    """The control audience, or an absolute URL outside `provider:` carrying no credentials."""
    if rules.is_control(identifier):
        return
    if len(identifier.encode()) > IDENTIFIER_MAX_BYTES:
        raise invalid_identifier(f"identifier must be at most {IDENTIFIER_MAX_BYTES} bytes")
    parts = absolute_url(identifier)
    if parts is None:
        raise invalid_identifier("identifier must be an absolute URL (such as resource://name)")
    if parts.scheme.lower() == "provider":
        raise invalid_identifier("identifier must not use the provider: scheme")
    if parts.username or parts.password:
        raise invalid_identifier("identifier must not carry a username or password")


def check_binding(provider_id: str | None, upstream_url: str | None, application_id: str | None) -> None:
    """An ordinary resource is served by the Gateway, so it needs all three (in the contract's order)."""
    for code, field, value in (
        ("credential_provider_required", "credential_provider_id", provider_id),
        ("upstream_url_required", "upstream_url", upstream_url),
        ("gateway_application_required", "gateway_application_id", application_id),
    ):
        if not value:
            raise InvalidInput(code, f"{field} is required for a resource other than the control resource")

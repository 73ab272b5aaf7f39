"""The stream contract with the Gateway and STS: stream names, flat entries and their `_sig`."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

SESSIONS_REVOKE = "caracal.sessions.revoke"
POLICY_INVALIDATE = "caracal.policy.invalidate"
AGENTS_LIFECYCLE = "caracal.agents.lifecycle"
CHANGES = "caracal.changes"

Scalar = str | int | float | bool | None


def render_value(value: Scalar) -> str:
    """Stream values as the original producer renders them (booleans lowercase, numbers decimal)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def canonical_text(stream: str, fields: Mapping[str, Scalar]) -> str:
    lines = [stream]
    lines.extend(
        f"{name}={render_value(fields[name])}"
        for name in sorted(fields)
        if name != "_sig" and fields[name] is not None
    )
    return "\n".join(lines) + "\n"


def sign(key: bytes, stream: str, fields: Mapping[str, Scalar]) -> str:
    """HMAC-SHA256 over the canonical text: stream name, then sorted `name=value` lines."""
    return hmac.new(key, canonical_text(stream, fields).encode(), hashlib.sha256).hexdigest()


def verify(key: bytes, stream: str, fields: Mapping[str, str]) -> bool:
    given = fields.get("_sig", "")
    return hmac.compare_digest(given, sign(key, stream, fields))


def stream_entry(
    key: bytes | None, stream: str, outbox_id: str, payload: Mapping[str, Scalar]
) -> dict[str, str]:
    """The flat field list written to the stream: outbox_id, the payload (nulls dropped), `_sig`."""
    fields = {name: render_value(value) for name, value in payload.items() if value is not None}
    fields["outbox_id"] = outbox_id
    if key is not None:
        fields["_sig"] = sign(key, stream, fields)
    return fields


CONTRACT_STREAMS = (SESSIONS_REVOKE, POLICY_INVALIDATE, AGENTS_LIFECYCLE, CHANGES)


def hwm_key(stream: str) -> str:
    """The stream's high-water mark; `{stream}` keeps it in the stream's Redis Cluster hash slot."""
    return f"{{{stream}}}:hwm"


def stats_key(stream: str) -> str:
    return f"{{{stream}}}:stats"

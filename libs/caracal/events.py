"""The stream contract with the Gateway and STS: stream names, flat entries and their `_sig`."""

from __future__ import annotations

import functools
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
    if type(value) is str:  # most values: str() of a str is the str itself, without the calls
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def canonical_text(stream: str, fields: Mapping[str, Scalar]) -> str:
    lines = [
        f"{name}={render_value(value)}\n"
        for name, value in sorted(fields.items())
        if name != "_sig" and value is not None
    ]
    return f"{stream}\n" + "".join(lines)


@functools.lru_cache(maxsize=8)
def _keyed(key: bytes) -> hmac.HMAC:
    """The key's HMAC-SHA256 state, made once per key: a signature copies it rather than keying a new
    HMAC (hmac.new per entry cost 1.3 us against 0.9 us, for every event the dispatcher publishes).
    The standard library's own HMAC, not ours: no hand-made crypto to review."""
    return hmac.new(key, digestmod=hashlib.sha256)


def _hmac_sha256_hex(key: bytes, message: bytes) -> str:
    """What hmac.new(key, message, hashlib.sha256).hexdigest() returns."""
    signer = _keyed(key).copy()
    signer.update(message)
    return signer.hexdigest()


def sign(key: bytes, stream: str, fields: Mapping[str, Scalar]) -> str:
    """HMAC-SHA256 over the canonical text: stream name, then sorted `name=value` lines."""
    return _hmac_sha256_hex(key, canonical_text(stream, fields).encode())


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

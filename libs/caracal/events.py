"""The stream contract with the Gateway and STS: stream names, flat entries and their `_sig`."""

from __future__ import annotations

import functools
import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

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


_BLOCK = 64  # SHA-256's block size, which RFC 2104 pads the key to


@functools.lru_cache(maxsize=8)
def _keyed_sha256(key: bytes) -> tuple[Any, Any]:
    """HMAC-SHA256's inner and outer hashes after their key block (RFC 2104), once per key.

    A signature then copies both instead of keying a new HMAC: hmac.new costs twice as much per
    entry, which the dispatcher pays for every event it publishes.
    """
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    key = key.ljust(_BLOCK, b"\0")
    inner = hashlib.sha256(bytes(byte ^ 0x36 for byte in key))
    outer = hashlib.sha256(bytes(byte ^ 0x5C for byte in key))
    return inner, outer


def _hmac_sha256_hex(key: bytes, message: bytes) -> str:
    """What hmac.new(key, message, hashlib.sha256).hexdigest() returns."""
    keyed_inner, keyed_outer = _keyed_sha256(key)
    inner = keyed_inner.copy()
    inner.update(message)
    outer = keyed_outer.copy()
    outer.update(inner.digest())
    return str(outer.hexdigest())


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

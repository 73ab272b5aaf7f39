"""Activation status: is the version active, did its invalidation leave the outbox, did the STS load it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

import httpx
import msgspec
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from caracal.domain.wire import Resource, Timestamp
from caracal.errors import NotFound
from caracal.events import POLICY_INVALIDATE
from caracal.timefmt import iso_ms

UNSET = msgspec.UNSET
STS_TIMEOUT_S = 2.0
OutboxState = Literal["dispatched", "pending", "dead", "missing", "mismatch"]
StsState = Literal["loaded", "not_loaded", "not_configured", "unreachable", "failed"]

_BINDING = text(
    """
    SELECT b.active_version_id, b.shadow_version_id, v.manifest_sha256
      FROM policy_set_bindings b
      JOIN policy_sets s ON s.zone_id = b.zone_id AND s.id = b.policy_set_id AND s.archived_at IS NULL
      LEFT JOIN policy_set_versions v ON v.id = b.active_version_id
     WHERE b.zone_id = :zone_id AND b.policy_set_id = :set_id
    """
)
# An outbox id of another zone reads as missing: an id says nothing about other zones.
_OUTBOX_BY_ID = text(
    """
    SELECT id, stream_name, payload_json, attempts, last_error, dispatched_at,
           (dead_at IS NOT NULL OR available_at = 'infinity') AS dead
      FROM event_outbox WHERE id = :id AND payload_json ->> 'zone_id' = :zone_id
    """
)
# No index serves this (the outbox is pruned after CARACAL_OUTBOX_RETENTION_HOURS); give outbox_id.
_NEWEST_INVALIDATION = text(
    """
    SELECT id, stream_name, payload_json, attempts, last_error, dispatched_at,
           (dead_at IS NOT NULL OR available_at = 'infinity') AS dead
      FROM event_outbox
     WHERE stream_name = :stream AND payload_json @> CAST(:wanted AS jsonb)
     ORDER BY created_at DESC, seq DESC LIMIT 1
    """
)


class OutboxView(Resource):
    id: str | None
    state: OutboxState
    attempts: int
    last_error: str | None
    dispatched_at: Timestamp | None


class StsView(Resource):
    state: StsState
    loaded: bool | msgspec.UnsetType = UNSET
    zone_id: str | msgspec.UnsetType = UNSET
    policy_set_version_id: str | msgspec.UnsetType = UNSET
    manifest_sha256: str | msgspec.UnsetType = UNSET
    loaded_at: str | msgspec.UnsetType = UNSET
    age_seconds: float | msgspec.UnsetType = UNSET
    detail: str | msgspec.UnsetType = UNSET


class ActivationStatus(Resource):
    zone_id: str
    policy_set_id: str
    version_id: str
    active: bool
    active_version_id: str | None
    shadow_version_id: str | None
    manifest_sha256: str | None
    propagation_status: Literal[
        "loaded", "waiting_for_activation", "waiting_for_outbox", "waiting_for_sts", "failed"
    ]
    outbox: OutboxView
    sts: StsView


@dataclass(frozen=True, slots=True)
class Recorded:
    """What the database says, before the STS is asked."""

    zone_id: str
    set_id: str
    version_id: str
    active_version_id: str | None
    shadow_version_id: str | None
    manifest_sha256: str | None
    outbox: OutboxView


def outbox_view(row: Any, wanted: dict[str, str], given_id: str | None) -> OutboxView:
    if row is None:
        return OutboxView(id=given_id, state="missing", attempts=0, last_error=None, dispatched_at=None)
    payload = row.payload_json if isinstance(row.payload_json, dict) else {}
    matches = row.stream_name == POLICY_INVALIDATE and all(payload.get(k) == v for k, v in wanted.items())
    state: OutboxState = (
        "mismatch"
        if not matches
        else "dispatched"
        if row.dispatched_at
        else "dead"
        if row.dead
        else "pending"
    )
    return OutboxView(
        id=row.id,
        state=state if matches else "mismatch",
        attempts=row.attempts,
        last_error=row.last_error,
        dispatched_at=iso_ms(row.dispatched_at),
    )


async def recorded_status(
    conn: AsyncConnection, zone_id: str, set_id: str, version_id: str | None, outbox_id: str | None
) -> Recorded:
    binding = (await conn.execute(_BINDING, {"zone_id": zone_id, "set_id": set_id})).first()
    if binding is None:
        raise NotFound("policy_set_binding_not_found", f"policy set {set_id} has no binding in this zone")
    version = version_id or binding.active_version_id
    if version is None:
        raise NotFound("active_policy_set_version_not_found", f"policy set {set_id} has no active version")
    wanted = {"zone_id": zone_id, "policy_set_id": set_id, "policy_set_version_id": version}
    if outbox_id is not None:
        row = (await conn.execute(_OUTBOX_BY_ID, {"id": outbox_id, "zone_id": zone_id})).first()
    else:
        found = await conn.execute(
            _NEWEST_INVALIDATION, {"stream": POLICY_INVALIDATE, "wanted": json.dumps(wanted)}
        )
        row = found.first()
    return Recorded(
        zone_id,
        set_id,
        version,
        binding.active_version_id,
        binding.shadow_version_id,
        binding.manifest_sha256,
        outbox_view(row, wanted, outbox_id),
    )


async def sts_view(sts_url: str | None, zone_id: str, version_id: str) -> StsView:
    """What the STS says it loaded for the zone (`GET <STS_URL>/internal/policy/status?zone_id=`)."""
    if sts_url is None:
        return StsView(state="not_configured")
    try:
        async with httpx.AsyncClient(timeout=STS_TIMEOUT_S) as client:
            answer = await client.get(f"{sts_url}/internal/policy/status", params={"zone_id": zone_id})
    except httpx.HTTPError as exc:
        return StsView(state="unreachable", detail=type(exc).__name__)
    if answer.status_code != 200:
        return StsView(state="failed", detail=f"status {answer.status_code}")
    try:
        report = msgspec.convert(answer.json(), StsReport)
    except (ValueError, msgspec.ValidationError) as exc:
        return StsView(state="failed", detail=f"unreadable answer: {exc}")
    loaded = bool(report.loaded) and report.policy_set_version_id == version_id
    return StsView(state="loaded" if loaded else "not_loaded", **msgspec.structs.asdict(report))


class StsReport(msgspec.Struct):
    loaded: bool | msgspec.UnsetType = UNSET
    zone_id: str | msgspec.UnsetType = UNSET
    policy_set_version_id: str | msgspec.UnsetType = UNSET
    manifest_sha256: str | msgspec.UnsetType = UNSET
    loaded_at: str | msgspec.UnsetType = UNSET
    age_seconds: float | msgspec.UnsetType = UNSET


def activation_status(recorded: Recorded, sts: StsView) -> ActivationStatus:
    active = recorded.active_version_id == recorded.version_id
    outbox = recorded.outbox.state
    propagation: Any
    if not active:
        propagation = "waiting_for_activation"
    elif outbox in ("dead", "mismatch"):
        propagation = "failed"
    elif outbox != "dispatched":
        propagation = "waiting_for_outbox"
    elif sts.state == "loaded":
        propagation = "loaded"
    else:
        propagation = "failed" if sts.state == "failed" else "waiting_for_sts"
    return ActivationStatus(
        zone_id=recorded.zone_id,
        policy_set_id=recorded.set_id,
        version_id=recorded.version_id,
        active=active,
        active_version_id=recorded.active_version_id,
        shadow_version_id=recorded.shadow_version_id,
        manifest_sha256=recorded.manifest_sha256,
        propagation_status=propagation,
        outbox=recorded.outbox,
        sts=sts,
    )
